"""Weights as safetensors + a JSON manifest (sha256, config, preprocessing, metrics, data provenance).

Never unpickles: ``.pt``/``.pth``/pickle files are refused with a clear message.
"""

from engine.weights.store import (
    CARD_NAME,
    MANIFEST_NAME,
    WEIGHTS_NAME,
    LoadedModel,
    WeightsError,
    WeightsNotFoundError,
    find_default_weights,
    guess_positive_class,
    list_weighted_models,
    load_default,
    load_weights,
    read_manifest,
    render_model_card,
    save_weights,
    sha256_file,
    weights_search_path,
)

__all__ = [
    "CARD_NAME", "MANIFEST_NAME", "WEIGHTS_NAME", "LoadedModel", "WeightsError", "WeightsNotFoundError",
    "find_default_weights", "guess_positive_class", "list_weighted_models", "load_default", "load_weights",
    "read_manifest", "render_model_card", "save_weights", "sha256_file", "weights_search_path",
]
