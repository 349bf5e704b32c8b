"""Every network of the five papers, behind one registry: ``create_model`` / ``list_models`` / ``model_card``."""

from engine.models.registry import (
    ModelConfig,
    create_model,
    list_models,
    model_card,
    model_config,
    register_model,
)

__all__ = ["ModelConfig", "create_model", "list_models", "model_card", "model_config", "register_model"]
