"""VGG16 / VGG19 (Simonyan & Zisserman 2015, configurations D / E) as in Keras Applications — P1 backbones.

Five conv blocks of 3x3 "same" convs (with bias) + ReLU, each closed by a 2x2/2 max-pool; then the P1 head keeps
the original top: flatten (512 x 7 x 7) -> FC-4096 -> ReLU -> FC-4096 -> ReLU -> Linear(classes).

Modules carry Keras' layer names (``block5_conv3``, ``block5_relu3``, ``fc1`` ...).  The Grad-CAM target is the
last conv's activation (Keras ``block5_conv3`` includes its ReLU; here ``features.block5_relu3`` for VGG16 and
``features.block5_relu4`` for VGG19) — a map at input/16, *before* the last pool.  The head is not GAP -> Linear,
so only Grad-CAM (not Zhou et al. CAM) applies.

Reduced inputs: an adaptive average pool to 7x7 sits before ``flatten`` (identity at 224 px), so the FC head keeps
its 25,088 inputs at any input size >= 32 px.  Keras has no dropout in these FC layers (``dropout=0`` default).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
from torch.nn.utils import skip_init

from engine.models._layers_p1 import KerasBackbone, check_in_chans_num_classes, init_weights
from engine.models.registry import ModelConfig, register_model

# convs per block: configuration D (VGG16) and E (VGG19)
CONFIGS: dict[str, tuple[int, ...]] = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
BLOCK_WIDTHS = (64, 128, 256, 512, 512)
FC_WIDTH = 4096


class VGG(KerasBackbone):
    """VGG with the original FC-4096 x 2 top; ``forward_features`` returns the last conv block's ReLU map (H/16)."""

    def __init__(self, convs_per_block: tuple[int, ...], num_classes: int = 2, in_chans: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        check_in_chans_num_classes("VGG", in_chans, num_classes)
        self.in_chans, self.num_classes = in_chans, num_classes
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        chans = in_chans
        for b, (n_convs, width) in enumerate(zip(convs_per_block, BLOCK_WIDTHS), start=1):
            for c in range(1, n_convs + 1):
                layers[f"block{b}_conv{c}"] = nn.Conv2d(chans, width, 3, padding=1)
                layers[f"block{b}_relu{c}"] = nn.ReLU()
                chans = width
            if b < len(convs_per_block):
                layers[f"block{b}_pool"] = nn.MaxPool2d(2, stride=2)
        self.features = nn.Sequential(layers)
        self.cam_layer_name = f"features.block{len(convs_per_block)}_relu{convs_per_block[-1]}"
        self.last_pool = nn.MaxPool2d(2, stride=2)  # Keras block5_pool
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        # skip_init: the 100 M FC weights are initialised once, by init_weights (not twice) — VGG builds in ~1 s.
        self.fc1 = skip_init(nn.Linear, chans * 7 * 7, FC_WIDTH, device=torch.get_default_device())
        self.fc1_act = nn.ReLU()
        self.fc1_drop = nn.Dropout(dropout)
        self.fc2 = skip_init(nn.Linear, FC_WIDTH, FC_WIDTH, device=torch.get_default_device())
        self.fc2_act = nn.ReLU()
        self.fc2_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(FC_WIDTH, num_classes)
        self.num_features = chans
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.last_pool(features)), 1)
        x = self.fc1_drop(self.fc1_act(self.fc1(x)))
        x = self.fc2_drop(self.fc2_act(self.fc2(x)))
        return self.classifier(x)


_EXPECTED = {"vgg16": 134_272_835, "vgg19": 139_582_531}


def _register(name: str) -> None:
    convs = CONFIGS[name]
    config = ModelConfig(
        name=name,
        family="vgg",
        paper="P1",
        input_size=(224, 224),
        paper_in_chans=3,
        paper_num_classes=3,
        cam_layer=f"features.block5_relu{convs[-1]}",
        classifier="classifier",
        cam_kind="gradcam",
        test_input_size=(64, 64),
        giant=True,
        expected_params={"in3_cls3": _EXPECTED[name], "in3_cls3_keras": _EXPECTED[name]},  # no BN
        description=(f"VGG{name[3:]} (configuration {'D' if name == 'vgg16' else 'E'}, FC-4096 x 2 top; Keras "
                     "application layout) — P1 backbone"),
        aliases=(f"VGG{name[3:]}",),
    )

    def factory(num_classes: int = 2, in_chans: int = 1, dropout: float = 0.0) -> VGG:
        return VGG(convs, num_classes=num_classes, in_chans=in_chans, dropout=dropout)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"VGG{name[3:]} with the FC-4096 -> FC-4096 -> classes head."
    register_model(config)(factory)
    globals()[name] = factory


for _name in CONFIGS:
    _register(_name)
del _name

__all__ = ["CONFIGS", "VGG", "vgg16", "vgg19"]
