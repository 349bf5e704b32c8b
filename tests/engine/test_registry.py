"""The registry's own contract (the per-model smoke tests live in test_models_smoke.py)."""

from __future__ import annotations

import pytest
import torch.nn as nn

from engine.models import registry
from engine.models.registry import ModelConfig


def test_register_create_and_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_ALIASES", {})
    monkeypatch.setattr(registry, "_loaded", True)

    @registry.register_model(ModelConfig(name="tiny_net", family="test", paper="-", aliases=("tiny",)))
    def tiny_net(num_classes: int = 2, in_chans: int = 1, **cfg) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * 4, num_classes))

    model = registry.create_model("tiny", num_classes=3, in_chans=1)
    assert model[1].out_features == 3
    assert model.model_config.name == "tiny_net"
    assert registry.list_models("tiny*") == ["tiny_net"]
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        registry.create_model("nope")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_model(ModelConfig(name="tiny_net", family="test", paper="-"))(tiny_net)
