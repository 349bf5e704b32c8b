"""DenseNet121 / 169 / 201 (Huang et al. 2017, DenseNet-BC) as in Keras Applications — P1 backbones.

One builder (:class:`DenseNet`) from the block configuration: growth rate 32, bottleneck width 4 x growth,
compression 0.5.

* stem: 7x7/2 conv (64) -> BN -> ReLU -> 3x3/2 max-pool;
* dense layer: ``BN -> ReLU -> 1x1 conv (4k) -> BN -> ReLU -> 3x3 conv (k)``, output concatenated to its input;
* transition: ``BN -> ReLU -> 1x1 conv (floor(0.5 C)) -> 2x2/2 average pool``;
* closing ``norm5 -> relu5`` (Keras ``bn`` / ``relu``; ``features.relu5`` is the CAM target), global average pool,
  Linear.

Dense layers concatenate once per block (a list of features and one ``torch.cat`` per layer, no memory-efficient
checkpointing): simple and fast on CPU at inference.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from engine.models._layers_p1 import KerasBackbone, batch_norm, check_in_chans_num_classes, init_weights
from engine.models.registry import ModelConfig, register_model

GROWTH_RATE = 32
BN_SIZE = 4
COMPRESSION = 0.5
STEM_CHANS = 64


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (bn_size*growth) - BN-ReLU-3x3 conv (growth); returns only the ``growth`` new channels."""

    def __init__(self, in_chans: int, growth_rate: int = GROWTH_RATE, bn_size: int = BN_SIZE) -> None:
        super().__init__()
        mid = bn_size * growth_rate
        self.norm1 = batch_norm(in_chans)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_chans, mid, 1, bias=False)
        self.norm2 = batch_norm(mid)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(mid, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; each sees the concatenation of the block input and all earlier outputs."""

    def __init__(self, num_layers: int, in_chans: int, growth_rate: int = GROWTH_RATE,
                 bn_size: int = BN_SIZE) -> None:
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(in_chans + i * growth_rate, growth_rate, bn_size)
        self.out_chans = in_chans + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN -> ReLU -> 1x1 conv (compression) -> 2x2/2 average pool."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.norm = batch_norm(in_chans)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(in_chans, out_chans, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)


class DenseNet(KerasBackbone):
    """DenseNet-BC from ``block_config``; ``forward_features`` returns ``features.relu5`` (N, C, H/32, W/32)."""

    def __init__(self, block_config: tuple[int, ...], num_classes: int = 2, in_chans: int = 1,
                 growth_rate: int = GROWTH_RATE, bn_size: int = BN_SIZE, compression: float = COMPRESSION) -> None:
        super().__init__()
        check_in_chans_num_classes("DenseNet", in_chans, num_classes)
        self.in_chans, self.num_classes = in_chans, num_classes
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"DenseNet compression must be in (0, 1], got {compression}")
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=nn.Conv2d(in_chans, STEM_CHANS, 7, stride=2, padding=3, bias=False),
            norm0=batch_norm(STEM_CHANS),
            relu0=nn.ReLU(),
            pool0=nn.MaxPool2d(3, stride=2, padding=1),
        )
        chans = STEM_CHANS
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, chans, growth_rate, bn_size)
            layers[f"denseblock{i + 1}"] = block
            chans = block.out_chans
            if i != len(block_config) - 1:
                out = int(chans * compression)
                layers[f"transition{i + 1}"] = Transition(chans, out)
                chans = out
        layers["norm5"] = batch_norm(chans)
        layers["relu5"] = nn.ReLU()
        self.features = nn.Sequential(layers)
        self.num_features = chans
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(chans, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


BLOCK_CONFIGS: dict[str, tuple[int, int, int, int]] = {
    "densenet121": (6, 12, 24, 16),
    "densenet169": (6, 12, 32, 32),
    "densenet201": (6, 12, 48, 32),
}
# spec §2.1: (trainable, Keras-style incl. BN moving statistics) with 3 input channels and 3 classes
_EXPECTED = {"densenet121": (6_956_931, 7_040_579), "densenet169": (12_489_475, 12_647_875),
             "densenet201": (18_098_691, 18_327_747)}


def _register(name: str) -> None:
    blocks = BLOCK_CONFIGS[name]
    depth = name.removeprefix("densenet")
    config = ModelConfig(
        name=name,
        family="densenet",
        paper="P1",
        input_size=(224, 224),
        paper_in_chans=3,
        paper_num_classes=3,
        cam_layer="features.relu5",
        classifier="classifier",
        cam_kind="cam",
        test_input_size=(64, 64),
        expected_params={"in3_cls3": _EXPECTED[name][0], "in3_cls3_keras": _EXPECTED[name][1]},
        description=f"DenseNet{depth} (BC, growth 32, blocks {list(blocks)}; Keras application layout) — P1 backbone",
        aliases=(f"DenseNet{depth}",),
    )

    def factory(num_classes: int = 2, in_chans: int = 1) -> DenseNet:
        return DenseNet(blocks, num_classes=num_classes, in_chans=in_chans)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"DenseNet{depth}: blocks {list(blocks)}, growth 32, compression 0.5."
    register_model(config)(factory)
    globals()[name] = factory


for _name in BLOCK_CONFIGS:
    _register(_name)
del _name

__all__ = ["BLOCK_CONFIGS", "DenseBlock", "DenseLayer", "DenseNet", "Transition", *BLOCK_CONFIGS]
