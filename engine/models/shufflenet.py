"""P2's ShuffleNet V1 benchmark (Zhang et al. 2018): group pointwise convs + channel shuffle.

Units: 1×1 group conv (bottleneck = out/4) → BN → ReLU → channel shuffle → 3×3 depthwise (stride) → BN →
1×1 group conv → BN; stride 1 adds the identity, stride 2 concatenates a 3×3/2 average-pooled shortcut.  The
first pointwise conv of stage 2 is not grouped (its input has only 24 channels).  Stage repeats 4/8/4; stage
widths by group count g (paper Table 1), scaled by ``scale``; head = GAP → FC.

P2's count (939,531) does not pin down g/scale/head; the defaults are the paper's flagship g = 3, 1×.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.models.registry import ModelConfig, register_model

P2_BENCH = "P2 benchmark (Abdani et al., Table II)"
STAGE_OUT = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
             8: (384, 768, 1536)}
REPEATS = (4, 8, 4)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int, first_grouped: bool = True) -> None:
        super().__init__()
        self.stride = stride
        branch_out = cout - cin if stride == 2 else cout
        mid = cout // 4
        g1 = groups if first_grouped else 1
        self.groups = groups
        self.gconv1 = nn.Conv2d(cin, mid, 1, groups=g1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.dwconv = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.gconv2 = nn.Conv2d(mid, branch_out, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(branch_out)
        self.shuffle = g1 > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.gconv1(x)))
        if self.shuffle:
            y = channel_shuffle(y, self.groups)
        y = self.bn3(self.gconv2(self.bn2(self.dwconv(y))))
        if self.stride == 2:
            return F.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), y], 1))
        return F.relu(x + y)


class ShuffleNetV1(nn.Module):
    def __init__(self, num_classes: int = 2, in_chans: int = 1, *, groups: int = 3, scale: float = 1.0) -> None:
        super().__init__()
        if groups not in STAGE_OUT:
            raise ValueError(f"groups must be one of {sorted(STAGE_OUT)}, got {groups}")
        widths = [int(c * scale) // (4 * groups) * (4 * groups) for c in STAGE_OUT[groups]]
        stem = 24
        layers: OrderedDict[str, nn.Module] = OrderedDict([
            ("stem", nn.Sequential(OrderedDict([
                ("conv", nn.Conv2d(in_chans, stem, 3, 2, 1, bias=False)),
                ("bn", nn.BatchNorm2d(stem)), ("act", nn.ReLU())]))),
            ("pool", nn.MaxPool2d(3, 2, 1)),
        ])
        c = stem
        for s, (w, n) in enumerate(zip(widths, REPEATS), start=2):
            units = [ShuffleUnit(c, w, 2, groups, first_grouped=s > 2)]
            units += [ShuffleUnit(w, w, 1, groups) for _ in range(n - 1)]
            layers[f"stage{s}"] = nn.Sequential(*units)
            c = w
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register_model(ModelConfig(
    name="shufflenet_v1", family="shufflenet", paper=P2_BENCH, input_size=(224, 224), paper_num_classes=3,
    cam_layer="features", classifier="classifier", cam_kind="cam", test_input_size=(128, 128),
    description="ShuffleNet V1 (g=3, 1×) + GAP → FC; P2 claims 939,531 (configuration unknown)."))
def shufflenet_v1(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> nn.Module:
    return ShuffleNetV1(num_classes, in_chans, **cfg)
