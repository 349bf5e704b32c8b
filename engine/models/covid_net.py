"""P3 (Wang, Lin, Wong): COVID-Net with PEPX modules — spec §4.2.

The macro-architecture is Fig. 2 of the paper (input 224×224×3, 3 classes); the PEPX widths were produced by
GenSynth and never published, so they follow the spec's fitted rule P = 3C/16, E = 13C/32 (stage width C),
which gives 116,769,227 params / 2.249 G MACs (−0.5 % vs the published 117.4 M / 2.26 G).

Connectivity (dense within a stage): Z_1 = pool(conv7×7(x)); Z_s = maxpool2×2(S_{s−1} + Σ_j P_{s−1,j});
S_s = conv1×1(Z_s); P_s,1 = PEPX(Z_s); P_s,j = PEPX(S_s + Σ_{i<j} P_s,i); head input = S_4 + Σ_j P_4,j,
flattened (2048×7×7) → FC 1024 → FC 1024 → FC classes.  ReLU after conv7×7, PEPX steps 1–4 and FC1/FC2;
linear extension; no BN (``batch_norm=True`` adds BN after every conv).
"""

from __future__ import annotations

from collections import OrderedDict
from fractions import Fraction
from typing import Any, Sequence

import torch
import torch.nn as nn

from engine.models.registry import ModelConfig, register_model

P3 = "P3 Wang, Lin, Wong, COVID-Net: a tailored deep CNN design for detection of COVID-19 from CXR images"
STAGE_WIDTHS = (256, 512, 1024, 2048)
STAGE_DEPTHS = (3, 4, 6, 3)


def _conv(cin: int, cout: int, k: int = 1, *, groups: int = 1, act: bool = True, bn: bool = False,
          stride: int = 1) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv"] = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=True)
    if bn:
        layers["bn"] = nn.BatchNorm2d(cout)
    if act:
        layers["act"] = nn.ReLU()
    return nn.Sequential(layers)


class PEPX(nn.Module):
    """Projection (1×1, C_in→P) → expansion (1×1, P→E) → depthwise 3×3 (E) → projection (1×1, E→P) →
    extension (1×1, P→C, linear)."""

    def __init__(self, cin: int, cout: int, proj: int, expand: int, bn: bool = False) -> None:
        super().__init__()
        self.project1 = _conv(cin, proj, bn=bn)
        self.expand = _conv(proj, expand, bn=bn)
        self.depthwise = _conv(expand, expand, 3, groups=expand, bn=bn)
        self.project2 = _conv(expand, proj, bn=bn)
        self.extend = _conv(proj, cout, act=False, bn=bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.extend(self.project2(self.depthwise(self.expand(self.project1(x)))))


class Stage(nn.Module):
    def __init__(self, cin: int, width: int, depth: int, proj: int, expand: int, bn: bool) -> None:
        super().__init__()
        self.shortcut = _conv(cin, width, act=False, bn=bn)
        self.pepx = nn.ModuleList(
            [PEPX(cin if j == 0 else width, width, proj, expand, bn) for j in range(depth)])
        self.out = nn.Identity()   # hook point: S_s + Σ_j P_s,j (the CAM layer of the last stage)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        total = self.shortcut(z)
        for j, block in enumerate(self.pepx):
            total = total + block(z if j == 0 else total)
        return self.out(total)


class CovidNet(nn.Module):
    def __init__(self, num_classes: int = 3, in_chans: int = 1, *,
                 proj_ratio: Fraction | float = Fraction(3, 16), expand_ratio: Fraction | float = Fraction(13, 32),
                 widths: Sequence[int] = STAGE_WIDTHS, depths: Sequence[int] = STAGE_DEPTHS,
                 input_size: Sequence[int] = (224, 224), fc: Sequence[int] = (1024, 1024),
                 batch_norm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = nn.Sequential(OrderedDict([
            ("conv", _conv(in_chans, 64, 7, stride=2, bn=batch_norm)),
            ("pool", nn.MaxPool2d(2, 2)),
        ]))
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        cin = 64
        for i, (w, d) in enumerate(zip(widths, depths), start=1):
            proj, expand = max(1, round(w * float(proj_ratio))), max(1, round(w * float(expand_ratio)))
            stages[f"stage{i}"] = Stage(cin, w, d, proj, expand, batch_norm)
            cin = w
        self.stages = nn.ModuleDict(stages)
        self.pool = nn.MaxPool2d(2, 2)
        h, w = (int(s) // 2 ** (1 + len(widths)) for s in input_size)
        layers: OrderedDict[str, nn.Module] = OrderedDict([("flatten", nn.Flatten(1))])
        n_in = cin * h * w
        for k, n in enumerate(fc, start=1):
            layers[f"fc{k}"] = nn.Linear(n_in, n)
            layers[f"act{k}"] = nn.ReLU()
            if dropout:
                layers[f"drop{k}"] = nn.Dropout(dropout)
            n_in = n
        layers["fc_out"] = nn.Linear(n_in, num_classes)
        self.head = nn.Sequential(layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.stem(x)
        for i, stage in enumerate(self.stages.values()):
            if i:
                z = self.pool(z)
            z = stage(z)
        expected = self.head.fc1.in_features if hasattr(self.head, "fc1") else self.head.fc_out.in_features
        if z[0].numel() != expected:
            raise ValueError(f"COVID-Net's dense head expects {expected} features (224×224 input), got "
                             f"{z[0].numel()}; resize inputs to the model's input_size")
        return self.head(z)


@register_model(ModelConfig(
    name="covid_net", family="covid_net", paper=P3, input_size=(224, 224), paper_num_classes=3,
    cam_layer="stages.stage4.out", classifier="head.fc_out", cam_kind="gradcam", giant=True,
    expected_params={"in3_cls3": 116_769_227}, aliases=("covidnet", "covidnet_cxr_small"),
    description="COVID-Net (Fig. 2 topology, PEPX widths P=3C/16, E=13C/32 fitted to 117.4 M / 2.26 G)."))
def covid_net(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> nn.Module:
    return CovidNet(num_classes, in_chans, **cfg)
