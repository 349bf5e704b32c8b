"""P2's MobileNet benchmarks: V1 (Howard 2017), V2 (Sandler 2018), V3-Small / V3-Large (Howard 2019).

Built as in Keras Applications (which P2 used): BatchNorm ε 1e-3 (momentum 0.99 → PyTorch 0.01), bias-free
convs, head = global average pool → (dropout) → dense.  MobileNet V1 (α = 1) with a 3-class dense head is
exactly P2's 3,231,939 (Keras-style, BN moving statistics included; 3,210,051 trainable).  P2's V2 / V3 counts
could not be reproduced (their head configuration is unknown, spec §3.2): the standard heads are used here
and the differences are listed in the model descriptions.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
import torch.nn as nn

from engine.models.registry import ModelConfig, register_model

P2_BENCH = "P2 benchmark (Abdani et al., Table II)"


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor``, never below 90 % of ``v`` (Keras / TF reference rule)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU6) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict([
            ("conv", nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups=groups, bias=False)),
            ("bn", _bn(cout)),
        ])
        if act is not None:
            layers["act"] = act()
        super().__init__(layers)


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------- MobileNet V1
V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
             (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 2, in_chans: int = 1, *, alpha: float = 1.0,
                 dropout: float = 1e-3) -> None:
        super().__init__()
        c = int(32 * alpha)
        layers: OrderedDict[str, nn.Module] = OrderedDict([("stem", ConvBNAct(in_chans, c, 3, 2))])
        for i, (out, stride) in enumerate(V1_BLOCKS, start=1):
            out = int(out * alpha)
            layers[f"block{i}"] = nn.Sequential(OrderedDict([
                ("dw", ConvBNAct(c, c, 3, stride, groups=c)),
                ("pw", ConvBNAct(c, out, 1)),
            ]))
            c = out
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.flatten(self.pool(self.features(x)), 1)))


# --------------------------------------------------------------------------------------------- MobileNet V2
V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if expand != 1:
            layers["expand"] = ConvBNAct(cin, hidden, 1)
        layers["dw"] = ConvBNAct(hidden, hidden, 3, stride, groups=hidden)
        layers["project"] = ConvBNAct(hidden, cout, 1, act=None)
        self.block = nn.Sequential(layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 2, in_chans: int = 1, *, alpha: float = 1.0,
                 dropout: float = 0.2, last_channels: int = 1280) -> None:
        super().__init__()
        c = make_divisible(32 * alpha)
        layers: OrderedDict[str, nn.Module] = OrderedDict([("stem", ConvBNAct(in_chans, c, 3, 2))])
        i = 0
        for t, ch, n, s in V2_SETTINGS:
            out = make_divisible(ch * alpha)
            for r in range(n):
                i += 1
                layers[f"block{i}"] = InvertedResidual(c, out, s if r == 0 else 1, t)
                c = out
        last = make_divisible(last_channels * max(1.0, alpha))
        layers["head_conv"] = ConvBNAct(c, last, 1)
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(last, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.flatten(self.pool(self.features(x)), 1)))


# --------------------------------------------------------------------------------------------- MobileNet V3
# (kernel, expanded, out, squeeze-excite, activation "RE"/"HS", stride)
V3_LARGE = ((3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
            (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
            (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
            (3, 184, 80, False, "HS", 1), (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
            (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1))
V3_SMALL = ((3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
            (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
            (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
            (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class V3Block(nn.Module):
    def __init__(self, cin: int, k: int, expanded: int, cout: int, se: bool, act: str, stride: int) -> None:
        super().__init__()
        a = nn.Hardswish if act == "HS" else nn.ReLU
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if expanded != cin:
            layers["expand"] = ConvBNAct(cin, expanded, 1, act=a)
        layers["dw"] = ConvBNAct(expanded, expanded, k, stride, groups=expanded, act=a)
        if se:
            layers["se"] = SqueezeExcite(expanded, make_divisible(expanded / 4))
        layers["project"] = ConvBNAct(expanded, cout, 1, act=None)
        self.block = nn.Sequential(layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3(nn.Module):
    def __init__(self, settings: Sequence[tuple], last_channels: int, num_classes: int = 2, in_chans: int = 1,
                 *, dropout: float = 0.2) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict([("stem", ConvBNAct(in_chans, 16, 3, 2, act=nn.Hardswish))])
        c = 16
        for i, (k, exp, out, se, act, s) in enumerate(settings, start=1):
            layers[f"block{i}"] = V3Block(c, k, exp, out, se, act, s)
            c = out
        layers["head_conv"] = ConvBNAct(c, 6 * c, 1, act=nn.Hardswish)
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(6 * c, last_channels)),
            ("act", nn.Hardswish()),
            ("dropout", nn.Dropout(dropout)),
            ("fc2", nn.Linear(last_channels, num_classes)),
        ]))
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


# ------------------------------------------------------------------------------------------------ registry
def _cfg(name: str, **kw: Any) -> ModelConfig:
    return ModelConfig(name=name, family="mobilenet", paper=P2_BENCH, input_size=(224, 224), paper_num_classes=3,
                       test_input_size=(128, 128), **kw)


@register_model(_cfg("mobilenet_v1", cam_layer="features", classifier="classifier", cam_kind="cam",
                     expected_params={"in3_cls3_keras": 3_231_939, "in3_cls3": 3_210_051,
                                      "in3_cls1000_keras": 4_253_864},
                     description="MobileNet V1 (α=1, Keras layout) + GAP → dense; P2's 3,231,939 (Keras-style)."))
def mobilenet_v1(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> nn.Module:
    return MobileNetV1(num_classes, in_chans, **cfg)


@register_model(_cfg("mobilenet_v2", cam_layer="features", classifier="classifier", cam_kind="cam",
                     expected_params={"in3_cls1000_keras": 3_538_984, "in3_cls1000": 3_504_872},
                     description="MobileNet V2 (α=1) + GAP → dense. 3-class Keras-style 2,261,827; P2 claims "
                                 "2,262,979 (head unknown)."))
def mobilenet_v2(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> nn.Module:
    return MobileNetV2(num_classes, in_chans, **cfg)


@register_model(_cfg("mobilenet_v3_small", cam_layer="features", classifier="head.fc2", cam_kind="gradcam",
                     expected_params={"in3_cls1000": 2_542_856},
                     description="MobileNet V3-Small (GAP → FC 1024 → FC); P2 claims 1,665,501 (head unknown)."))
def mobilenet_v3_small(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> nn.Module:
    return MobileNetV3(V3_SMALL, 1024, num_classes, in_chans, **cfg)


@register_model(_cfg("mobilenet_v3_large", cam_layer="features", classifier="head.fc2", cam_kind="gradcam",
                     expected_params={"in3_cls1000": 5_483_032},
                     description="MobileNet V3-Large (GAP → FC 1280 → FC); P2 claims 3,789,427 (head unknown)."))
def mobilenet_v3_large(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> nn.Module:
    return MobileNetV3(V3_LARGE, 1280, num_classes, in_chans, **cfg)
