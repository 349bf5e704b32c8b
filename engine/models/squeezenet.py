"""P0 (Polsinelli et al.): SqueezeNet v1.0 / v1.1 and the three light SqueezeNet variants (spec §1).

* ``squeezenet1_0`` / ``squeezenet1_1`` — vanilla SqueezeNet (ReLU, no BN, ceil-mode pools), head
  Dropout(0.5) → conv10 1×1 → ReLU → GAP.  v1.0 with a 3-class conv10 is P2's benchmark (736,963 params).
* ``lightsqueeze_plain`` (variant A) — v1.1 trunk with the *custom Fire* (BN after the squeeze conv, ELU
  everywhere), no bypass, conv10 head (ELU).  724,162 params at 3×227×227, 2 classes.
* ``lightsqueeze_bypass`` (variant B) — A plus identity bypass around Fire3/5/7/9 (no extra parameters).
* ``lightsqueeze_proposed`` (variant C, the paper's CNN) — A's trunk up to Fire9, then a transposed conv
  (×4 up-sampling, ``up_filters`` F=64, kernel 4, stride 4) concatenated with the Fire2 output, a 1×1 "weighted
  sum" conv to 128 channels + ELU, GAP and an FC layer.  1,272,450 params (F=63 gives the paper's "1.26 M").

CAM: for the conv10 heads the class map is conv10's channel c applied to the Fire9 output (cam_layer
``features.fire9``, classifier ``head.conv10``); for variant C the map is the FC rows applied to ``fuse``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.models.registry import ModelConfig, register_model

# (squeeze, expand1x1, expand3x3) per Fire module, identical in v1.0 and v1.1.
FIRE_CFG = {
    2: (16, 64, 64), 3: (16, 64, 64), 4: (32, 128, 128), 5: (32, 128, 128),
    6: (48, 192, 192), 7: (48, 192, 192), 8: (64, 256, 256), 9: (64, 256, 256),
}
# Max-pool positions: a pool is inserted *before* the listed Fire modules.
POOL_BEFORE = {"1_0": (2, 5, 9), "1_1": (2, 4, 6)}
# Fire modules wrapped by the original "simple bypass" (identity shortcut; channel counts match).
BYPASS_FIRES = (3, 5, 7, 9)

P0 = "P0 Polsinelli et al., A light CNN for detecting COVID-19 from CT scans of the chest"
P2 = "P2 Abdani et al., A lightweight deep learning model for COVID-19 detection (benchmark)"


def _act(kind: str) -> nn.Module:
    return nn.ELU(alpha=1.0, inplace=False) if kind == "elu" else nn.ReLU(inplace=False)


class Fire(nn.Module):
    """SqueezeNet Fire module; ``custom=True`` is P0's Fig. 2b (BN after the squeeze conv, ELU activations).

    ``bypass=True`` adds the module input to its output (the original SqueezeNet simple bypass).
    """

    def __init__(self, in_ch: int, squeeze: int, e1: int, e3: int, *, custom: bool = False,
                 bypass: bool = False) -> None:
        super().__init__()
        act = "elu" if custom else "relu"
        if bypass and in_ch != e1 + e3:
            raise ValueError(f"bypass needs equal channels, got {in_ch} -> {e1 + e3}")
        self.bypass = bypass
        self.squeeze = nn.Conv2d(in_ch, squeeze, 1, bias=True)
        self.squeeze_bn = nn.BatchNorm2d(squeeze) if custom else nn.Identity()
        self.squeeze_act = _act(act)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1, bias=True)
        self.expand1x1_act = _act(act)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1, bias=True)
        self.expand3x3_act = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze_act(self.squeeze_bn(self.squeeze(x)))
        out = torch.cat([self.expand1x1_act(self.expand1x1(s)), self.expand3x3_act(self.expand3x3(s))], 1)
        return out + x if self.bypass else out


def _trunk(version: str, in_chans: int, *, custom: bool, bypass: bool) -> nn.Sequential:
    """conv1 → pools/Fire2..Fire9 as a named Sequential (``features.fire9`` etc.)."""
    if version not in POOL_BEFORE:
        raise ValueError(f"SqueezeNet version must be '1_0' or '1_1', got {version!r}")
    act = "elu" if custom else "relu"
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if version == "1_0":
        layers["conv1"] = nn.Conv2d(in_chans, 96, 7, stride=2)
        ch = 96
    else:
        layers["conv1"] = nn.Conv2d(in_chans, 64, 3, stride=2)
        ch = 64
    layers["act1"] = _act(act)
    for i in range(2, 10):
        if i in POOL_BEFORE[version]:
            layers[f"pool{i - 1}"] = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        s, e1, e3 = FIRE_CFG[i]
        layers[f"fire{i}"] = Fire(ch, s, e1, e3, custom=custom, bypass=bypass and i in BYPASS_FIRES)
        ch = e1 + e3
    return nn.Sequential(layers)


def _init(model: nn.Module, final: nn.Module | None) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if m is final:
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
            else:
                nn.init.kaiming_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


class SqueezeNet(nn.Module):
    """SqueezeNet with the conv10 head (vanilla v1.0/v1.1 and P0 variants A/B)."""

    def __init__(self, num_classes: int = 2, in_chans: int = 1, *, version: str = "1_1",
                 custom: bool = False, bypass: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = _trunk(version, in_chans, custom=custom, bypass=bypass)
        self.head = nn.Sequential(OrderedDict([
            ("dropout", nn.Dropout(dropout)),
            ("conv10", nn.Conv2d(512, num_classes, 1, bias=True)),
            ("act10", _act("elu" if custom else "relu")),
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten(1)),
        ]))
        _init(self, self.head.conv10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LightSqueezeProposed(nn.Module):
    """P0 variant C: custom-Fire v1.1 trunk + transposed-conv ×4 skip head (spec §1.5).

    ``up_filters``/``up_kernel``/``up_stride``: the transposed conv (defaults 64 / 4 / 4, non-overlapping);
    ``skip``: which 56×56 Fire output is concatenated (``"fire2"`` or ``"fire3"``); ``head``: ``"fc"`` (GAP →
    Linear, default) or ``"conv"`` (1×1 conv → GAP, parameter-identical).  When the up-sampled map does not
    land exactly on the skip grid (inputs other than 227²), the transposed conv's output size is adjusted via
    ``output_size`` where possible and bilinearly resized otherwise.
    """

    def __init__(self, num_classes: int = 2, in_chans: int = 1, *, up_filters: int = 64, up_kernel: int = 4,
                 up_stride: int = 4, skip: str = "fire2", head: str = "fc", fuse_channels: int = 128,
                 bypass: bool = False) -> None:
        super().__init__()
        if skip not in ("fire2", "fire3"):
            raise ValueError(f"skip must be 'fire2' or 'fire3' (the 56×56 Fire outputs), got {skip!r}")
        if head not in ("fc", "conv"):
            raise ValueError(f"head must be 'fc' or 'conv', got {head!r}")
        if up_kernel < up_stride:
            raise ValueError(f"up_kernel ({up_kernel}) must be >= up_stride ({up_stride})")
        self.skip = skip
        self.head_kind = head
        self.features = _trunk("1_1", in_chans, custom=True, bypass=bypass)
        self.up = nn.ConvTranspose2d(512, up_filters, up_kernel, stride=up_stride,
                                     padding=(up_kernel - up_stride) // 2, bias=True)
        self.fuse = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(up_filters + 128, fuse_channels, 1, bias=True)),
            ("act", nn.ELU(alpha=1.0)),
        ]))
        self.pool = nn.AdaptiveAvgPool2d(1)
        if head == "fc":
            self.fc = nn.Linear(fuse_channels, num_classes)
            final: nn.Module = self.fc
        else:
            self.conv_head = nn.Conv2d(fuse_channels, num_classes, 1, bias=True)
            final = self.conv_head
        _init(self, final)

    def _upsample(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        s, k, p = self.up.stride[0], self.up.kernel_size[0], self.up.padding[0]
        natural = [(n - 1) * s - 2 * p + k for n in x.shape[-2:]]
        if all(0 <= t - n < s for t, n in zip(size, natural)):
            return self.up(x, output_size=list(size))
        return F.interpolate(self.up(x), size=tuple(size), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = None
        for name, layer in self.features.named_children():
            x = layer(x)
            if name == self.skip:
                skip = x
        assert skip is not None
        y = torch.cat([self._upsample(x, skip.shape[-2:]), skip], 1)
        y = self.fuse(y)
        if self.head_kind == "fc":
            return self.fc(torch.flatten(self.pool(y), 1))
        return torch.flatten(self.pool(self.conv_head(y)), 1)


# ------------------------------------------------------------------------------------------------ registry
_CT = dict(family="squeezenet", test_input_size=None)


@register_model(ModelConfig(
    name="squeezenet1_0", paper=P2, input_size=(224, 224), paper_num_classes=3,
    cam_layer="features.fire9", classifier="head.conv10", cam_kind="cam",
    expected_params={"in3_cls3": 736_963, "in3_cls1000": 1_248_424},
    description="SqueezeNet v1.0 (ReLU, no BN); P2's benchmark with a 3-class conv10.", **_CT))
def squeezenet1_0(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> nn.Module:
    return SqueezeNet(num_classes, in_chans, version="1_0", **cfg)


@register_model(ModelConfig(
    name="squeezenet1_1", paper=P0, input_size=(227, 227), paper_num_classes=2,
    cam_layer="features.fire9", classifier="head.conv10", cam_kind="cam",
    expected_params={"in3_cls1000": 1_235_496},
    description="SqueezeNet v1.1 (MATLAB's squeezenet, 227² input): P0's starting point.", **_CT))
def squeezenet1_1(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> nn.Module:
    return SqueezeNet(num_classes, in_chans, version="1_1", **cfg)


@register_model(ModelConfig(
    name="lightsqueeze_plain", paper=P0, input_size=(227, 227), paper_num_classes=2,
    cam_layer="features.fire9", classifier="head.conv10", cam_kind="cam",
    expected_params={"in3_cls2": 724_162}, aliases=("p0_a",),
    description="P0 variant A: v1.1 with custom Fire (BN after squeeze, ELU), no bypass.", **_CT))
def lightsqueeze_plain(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> nn.Module:
    return SqueezeNet(num_classes, in_chans, version="1_1", custom=True, bypass=False, **cfg)


@register_model(ModelConfig(
    name="lightsqueeze_bypass", paper=P0, input_size=(227, 227), paper_num_classes=2,
    cam_layer="features.fire9", classifier="head.conv10", cam_kind="cam",
    expected_params={"in3_cls2": 724_162}, aliases=("p0_b",),
    description="P0 variant B: variant A plus identity bypass around Fire3/5/7/9.", **_CT))
def lightsqueeze_bypass(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> nn.Module:
    return SqueezeNet(num_classes, in_chans, version="1_1", custom=True, bypass=True, **cfg)


@register_model(ModelConfig(
    name="lightsqueeze_proposed", paper=P0, input_size=(227, 227), paper_num_classes=2,
    cam_layer="fuse", classifier="fc", cam_kind="cam",
    expected_params={"in3_cls2": 1_272_450}, aliases=("p0_c", "light_cnn"),
    description="P0 proposed light CNN: custom-Fire trunk, ConvT ×4 (64 filters) ‖ Fire2, 1×1 conv 128, "
                "GAP, FC (1.27 M params; 63 filters give the paper's 1.26 M).", **_CT))
def lightsqueeze_proposed(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> nn.Module:
    model = LightSqueezeProposed(num_classes, in_chans, **cfg)
    if cfg.get("head") == "conv":
        model.cam_override = ("fuse", "conv_head")  # classifier path for CAM when the head is a 1×1 conv
    return model
