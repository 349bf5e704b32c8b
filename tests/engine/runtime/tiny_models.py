"""Small networks with registry-style configs for runtime/bench tests (fast to export and run)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from engine.models.registry import ModelConfig


class TinyCNN(nn.Module):
    """conv-BN-ReLU trunk -> GAP -> Linear: Zhou CAM is exact (mean of the class map + bias = logit)."""

    def __init__(self, num_classes: int = 3, in_chans: int = 1, spatial_dims: int = 2, width: int = 8):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        bn = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
        pool = nn.AdaptiveAvgPool2d if spatial_dims == 2 else nn.AdaptiveAvgPool3d
        self.features = nn.Sequential(
            conv(in_chans, width, 3, stride=2, padding=1), bn(width), nn.ReLU(),
            conv(width, 2 * width, 3, padding=1), bn(2 * width), nn.ELU(),
        )
        self.pool = pool(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def tiny_config(name: str = "tiny2d", spatial_dims: int = 2, **kw) -> ModelConfig:
    size = (32, 32) if spatial_dims == 2 else (8, 16, 16)
    base = dict(name=name, family="test", paper="-", spatial_dims=spatial_dims, input_size=size,
                paper_in_chans=1, paper_num_classes=3, cam_layer="features", classifier="fc", cam_kind="cam")
    base.update(kw)
    return ModelConfig(**base)


def tiny_model(spatial_dims: int = 2, num_classes: int = 3, seed: int = 0, **cfg) -> nn.Module:
    torch.manual_seed(seed)
    model = TinyCNN(num_classes=num_classes, spatial_dims=spatial_dims)
    # Non-trivial BN statistics so a wrong train/eval mode in the export would show.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.model_config = tiny_config(f"tiny{spatial_dims}d", spatial_dims, **cfg)
    return model.eval()


def reference_outputs(model: nn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, features of model.features) straight from torch, no wrapper."""
    captured = []
    handle = model.features.register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        with torch.inference_mode():
            logits = model(torch.from_numpy(x))
    finally:
        handle.remove()
    return logits.numpy(), captured[-1].numpy()
