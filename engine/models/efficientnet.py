"""EfficientNet B0-B7 (Tan & Le 2019) as in Keras Applications — P1 (Garg et al.) backbones.

One builder (:class:`EfficientNet`) scales the B0 stage table with a width and a depth multiplier:

* channels: ``round_filters(c * width)`` — nearest multiple of 8, never below 90 % of the scaled value;
* repeats: ``ceil(depth * r)``.

MBConv block = expand 1x1 (skipped when the expansion ratio is 1) -> depthwise kxk -> squeeze-excitation
(``max(1, int(0.25 * block_input_channels))`` SiLU/sigmoid) -> project 1x1; BN after every conv, SiLU; residual with
stochastic depth when stride 1 and in == out channels.  Head: 1x1 conv to ``round_filters(1280)`` -> BN -> SiLU
(Keras ``top_activation`` = module ``head.act``, the CAM target) -> global average pool -> dropout -> Linear.

Deviations from Keras (none changes the trainable parameter count): symmetric ``k // 2`` padding on stride-2
depthwise convs instead of TF "same" (identical output sizes); no built-in Rescaling/Normalization layers (input
normalisation lives in ``engine.preprocess``; Keras counts those 7 non-trainable values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from engine.models._layers_p1 import (
    ConvBnAct,
    KerasBackbone,
    StochasticDepth,
    check_in_chans_num_classes,
    init_weights,
)
from engine.models.registry import ModelConfig, register_model


@dataclass(frozen=True)
class StageArgs:
    """One row of the B0 stage table (before width/depth scaling)."""

    expand_ratio: int
    kernel: int
    stride: int
    out_chans: int
    repeats: int


# B0 stage table (expand, kernel, stride, out channels, repeats) — spec §2.1.
B0_STAGES: tuple[StageArgs, ...] = (
    StageArgs(1, 3, 1, 16, 1),
    StageArgs(6, 3, 2, 24, 2),
    StageArgs(6, 5, 2, 40, 2),
    StageArgs(6, 3, 2, 80, 3),
    StageArgs(6, 5, 1, 112, 3),
    StageArgs(6, 5, 2, 192, 4),
    StageArgs(6, 3, 1, 320, 1),
)
STEM_CHANS = 32
HEAD_CHANS = 1280
SE_RATIO = 0.25

# variant -> (width multiplier, depth multiplier, Keras default resolution, dropout before the classifier)
VARIANTS: dict[str, tuple[float, float, int, float]] = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}


def round_filters(chans: int, width: float, divisor: int = 8) -> int:
    """Scale ``chans`` by ``width`` and round to a multiple of ``divisor`` (never below 90 % of the scaled value)."""
    scaled = chans * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def scaled_stages(width: float, depth: float) -> list[tuple[int, int, int, int, int]]:
    """The stage table after scaling: ``[(expand, kernel, stride, out_chans, repeats), ...]``."""
    return [
        (s.expand_ratio, s.kernel, s.stride, round_filters(s.out_chans, width), round_repeats(s.repeats, depth))
        for s in B0_STAGES
    ]


class SqueezeExcite(nn.Module):
    """GAP -> 1x1 conv (reduce, bias) -> SiLU -> 1x1 conv (expand, bias) -> sigmoid -> channel-wise scale."""

    def __init__(self, chans: int, squeeze_chans: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(chans, squeeze_chans, 1)
        self.act = nn.SiLU()
        self.expand = nn.Conv2d(squeeze_chans, chans, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return x * s


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-excitation (EfficientNet block)."""

    def __init__(self, in_chans: int, out_chans: int, kernel: int, stride: int, expand_ratio: int,
                 drop_path: float = 0.0, se_ratio: float = SE_RATIO) -> None:
        super().__init__()
        mid = in_chans * expand_ratio
        self.expand = ConvBnAct(in_chans, mid, 1, act=nn.SiLU) if expand_ratio != 1 else nn.Identity()
        self.depthwise = ConvBnAct(mid, mid, kernel, stride=stride, groups=mid, act=nn.SiLU)
        self.se = SqueezeExcite(mid, max(1, int(in_chans * se_ratio)))
        self.project = ConvBnAct(mid, out_chans, 1, act=None)
        self.use_residual = stride == 1 and in_chans == out_chans
        self.drop_path = StochasticDepth(drop_path) if self.use_residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        if self.use_residual:
            out = self.drop_path(out) + x
        return out


class EfficientNet(KerasBackbone):
    """EfficientNet from width/depth multipliers; ``forward_features`` returns ``head.act`` (N, C, H/32, W/32)."""

    def __init__(self, width: float = 1.0, depth: float = 1.0, num_classes: int = 2, in_chans: int = 1,
                 dropout: float = 0.2, drop_connect_rate: float = 0.2) -> None:
        super().__init__()
        check_in_chans_num_classes("EfficientNet", in_chans, num_classes)
        self.in_chans, self.num_classes = in_chans, num_classes
        stages = scaled_stages(width, depth)
        stem_chans = round_filters(STEM_CHANS, width)
        self.stem = ConvBnAct(in_chans, stem_chans, 3, stride=2, act=nn.SiLU)

        total_blocks = sum(s[4] for s in stages)
        block_idx = 0
        chans = stem_chans
        blocks: list[nn.Module] = []
        for expand_ratio, kernel, stride, out_chans, repeats in stages:
            stage: list[nn.Module] = []
            for j in range(repeats):
                drop = drop_connect_rate * block_idx / total_blocks
                stage.append(MBConv(chans, out_chans, kernel, stride if j == 0 else 1, expand_ratio, drop))
                chans = out_chans
                block_idx += 1
            blocks.append(nn.Sequential(*stage))
        self.blocks = nn.Sequential(*blocks)

        self.num_features = round_filters(HEAD_CHANS, width)
        self.head = ConvBnAct(chans, self.num_features, 1, act=nn.SiLU)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.num_features, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.flatten(self.pool(features), 1)))


# Reproduced 3-class counts (spec §2.1 table): (trainable, Keras-style incl. BN moving statistics).  Keras itself
# prints 7 more (its built-in Normalization layer's mean/variance/count), which this port leaves to preprocessing.
_EXPECTED = {
    "b0": (4_011_391, 4_053_407), "b1": (6_517_027, 6_579_075), "b2": (7_705_221, 7_772_789),
    "b3": (10_700_843, 10_788_139), "b4": (17_553_995, 17_679_195), "b5": (28_346_931, 28_519_667),
    "b6": (40_742_619, 40_967_051), "b7": (63_794_643, 64_105_363),
}
_GIANT = {"b6", "b7"}


def _register(variant: str) -> None:
    width, depth, resolution, dropout = VARIANTS[variant]
    name = f"efficientnet_{variant}"
    config = ModelConfig(
        name=name,
        family="efficientnet",
        paper="P1",
        input_size=(resolution, resolution),
        paper_in_chans=3,
        paper_num_classes=3,
        cam_layer="head.act",
        classifier="classifier",
        cam_kind="cam",
        test_input_size=(64, 64),
        giant=variant in _GIANT,
        expected_params={"in3_cls3": _EXPECTED[variant][0], "in3_cls3_keras": _EXPECTED[variant][1]},
        description=(f"EfficientNet-{variant.upper()} (width {width}, depth {depth}, {resolution}px; Keras "
                     "application layout) — P1 backbone" + ("; P1's best model" if variant == "b5" else "")),
        aliases=(f"EfficientNet{variant.upper()}",),
    )

    def factory(num_classes: int = 2, in_chans: int = 1, dropout: float = dropout,
                drop_connect_rate: float = 0.2) -> EfficientNet:
        return EfficientNet(width, depth, num_classes=num_classes, in_chans=in_chans, dropout=dropout,
                            drop_connect_rate=drop_connect_rate)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"EfficientNet-{variant.upper()} ({resolution}px native input)."
    register_model(config)(factory)
    globals()[name] = factory


for _variant in VARIANTS:
    _register(_variant)
del _variant

__all__ = ["B0_STAGES", "VARIANTS", "EfficientNet", "MBConv", "SqueezeExcite", "round_filters", "round_repeats",
           "scaled_stages"] + [f"efficientnet_{v}" for v in VARIANTS]
