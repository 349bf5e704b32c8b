"""P4's human-designed 3-D baselines (spec §5.7): MC3_18, ResNet3D-101, DenseNet3D-121.

* ``mc3_18`` — torchvision's video ResNet "mixed convolution": stem Conv3d (3,7,7) s(1,2,2) 64 ch (no max-pool),
  BasicBlocks [2,2,2,2] at 64/128/256/512; layer1 full 3×3×3 convs, layers 2–4 (1,3,3) convs with spatial-only
  stride; 1×1×1 conv+BN downsample shortcuts.  11,491,779 params at in_chans=3, 3 classes.
* ``resnet3d_101`` — Hara et al. 3D-ResNets: conv1 7×7×7 s(1,2,2), max-pool 3 s2, bottlenecks [3,4,23,3]
  (stride on the 3×3×3), shortcut type B.  85,251,267 params.
* ``densenet3d_121`` — same stem as ResNet3D, dense blocks (6,12,24,16), growth 32, bottleneck 4×growth,
  transitions ×0.5 + AvgPool3d 2, final BN-ReLU.  11,289,603 params.

All end in GAP → Linear, so Zhou et al. CAM applies (``cam_layer`` = the last feature map, post-ReLU).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
import torch.nn as nn

from engine.models.registry import ModelConfig, register_model

P4_BASELINE = ("P4 He et al. (AAAI-21), 3-D baseline of Table 3 (torchvision video / Hara et al. 3D-ResNets / "
               "3D-DenseNet)")


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------------------------- MC3_18
class _BasicBlock3d(nn.Module):
    def __init__(self, c_in: int, planes: int, stride: int, temporal: bool) -> None:
        super().__init__()
        k = (3, 3, 3) if temporal else (1, 3, 3)
        p = (1, 1, 1) if temporal else (0, 1, 1)
        s = (stride, stride, stride) if temporal else (1, stride, stride)
        self.conv1 = nn.Sequential(nn.Conv3d(c_in, planes, k, s, p, bias=False), nn.BatchNorm3d(planes),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(nn.Conv3d(planes, planes, k, 1, p, bias=False), nn.BatchNorm3d(planes))
        self.downsample = None
        if stride != 1 or c_in != planes:
            self.downsample = nn.Sequential(nn.Conv3d(c_in, planes, 1, s, bias=False), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


class MC3(nn.Module):
    """Mixed-convolution video ResNet (Tran et al. 2018), torchvision's ``mc3_18`` layout."""

    def __init__(self, num_classes: int = 2, in_chans: int = 1, layers: Sequence[int] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(in_chans, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
            nn.BatchNorm3d(64), nn.ReLU(inplace=True))
        c_in = 64
        stages = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for b in range(n):
                blocks.append(_BasicBlock3d(c_in, planes, (1 if i == 0 else 2) if b == 0 else 1, temporal=i == 0))
                c_in = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


# ----------------------------------------------------------------------------------------------- ResNet3D
class _Bottleneck3d(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv3d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != out:  # shortcut type B
            self.downsample = nn.Sequential(nn.Conv3d(c_in, out, 1, stride, bias=False), nn.BatchNorm3d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


def _hara_stem(in_chans: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv3d(in_chans, 64, 7, (1, 2, 2), 3, bias=False)),
        ("norm1", nn.BatchNorm3d(64)),
        ("relu1", nn.ReLU(inplace=True)),
        ("pool1", nn.MaxPool3d(3, 2, 1)),
    ]))


class ResNet3D(nn.Module):
    """3D-ResNets-PyTorch (Hara et al.) bottleneck ResNet with type-B shortcuts."""

    def __init__(self, num_classes: int = 2, in_chans: int = 1, layers: Sequence[int] = (3, 4, 23, 3)) -> None:
        super().__init__()
        self.stem = _hara_stem(in_chans)
        c_in = 64
        stages = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for b in range(n):
                blocks.append(_Bottleneck3d(c_in, planes, (1 if i == 0 else 2) if b == 0 else 1))
                c_in = planes * _Bottleneck3d.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(c_in, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


# ----------------------------------------------------------------------------------------------- DenseNet3D
class _DenseLayer3d(nn.Module):
    def __init__(self, c_in: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm3d(c_in)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv3d(c_in, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm3d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.relu1(self.norm1(x)))
        y = self.conv2(self.relu2(self.norm2(y)))
        return torch.cat([x, y], 1)


class _Transition3d(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(OrderedDict([
            ("norm", nn.BatchNorm3d(c_in)), ("relu", nn.ReLU(inplace=True)),
            ("conv", nn.Conv3d(c_in, c_out, 1, bias=False)), ("pool", nn.AvgPool3d(2, 2)),
        ]))


class DenseNet3D(nn.Module):
    """3-D DenseNet-BC (growth 32, bottleneck 4×growth, compression 0.5) with the Hara-style stem."""

    def __init__(self, num_classes: int = 2, in_chans: int = 1, blocks: Sequence[int] = (6, 12, 24, 16),
                 growth: int = 32, bn_size: int = 4, init_features: int = 64) -> None:
        super().__init__()
        feats: OrderedDict[str, nn.Module] = OrderedDict(_hara_stem(in_chans).named_children())
        c = init_features
        for i, n in enumerate(blocks):
            layers = []
            for _ in range(n):
                layers.append(_DenseLayer3d(c, growth, bn_size))
                c += growth
            feats[f"denseblock{i + 1}"] = nn.Sequential(*layers)
            if i != len(blocks) - 1:
                feats[f"transition{i + 1}"] = _Transition3d(c, c // 2)
                c //= 2
        feats["norm5"] = nn.BatchNorm3d(c)
        feats["relu5"] = nn.ReLU(inplace=True)
        self.features = nn.Sequential(feats)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.classifier = nn.Linear(c, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


_COMMON: dict[str, Any] = dict(
    family="video3d", paper=P4_BASELINE, spatial_dims=3, input_size=(32, 128, 128), paper_in_chans=3,
    paper_num_classes=3, cam_kind="cam",
)


@register_model(ModelConfig(
    name="mc3_18", cam_layer="layer4", classifier="fc", test_input_size=(8, 32, 32),
    expected_params={"in3_cls3": 11_491_779, "in1_cls3": 11_472_963},
    description="MC3_18 mixed-convolution video ResNet (P4 baseline, 43.84 MB)", **_COMMON))
def mc3_18(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> MC3:
    return MC3(num_classes=num_classes, in_chans=in_chans, **cfg)


@register_model(ModelConfig(
    name="resnet3d_101", cam_layer="layer4", classifier="fc", test_input_size=(16, 64, 64), giant=True,
    expected_params={"in3_cls3": 85_251_267, "in1_cls3": 85_207_363},
    description="ResNet3D-101 (Hara et al. 3D-ResNets, shortcut B; P4 baseline, 325.21 MB)", **_COMMON))
def resnet3d_101(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> ResNet3D:
    return ResNet3D(num_classes=num_classes, in_chans=in_chans, **cfg)


@register_model(ModelConfig(
    name="densenet3d_121", cam_layer="features", classifier="classifier", test_input_size=(16, 64, 64),
    expected_params={"in3_cls3": 11_289_603, "in1_cls3": 11_245_699},
    description="DenseNet3D-121 (growth 32; P4 baseline, 43.06 MB)", **_COMMON))
def densenet3d_121(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> DenseNet3D:
    return DenseNet3D(num_classes=num_classes, in_chans=in_chans, **cfg)


__all__ = ["MC3", "ResNet3D", "DenseNet3D", "mc3_18", "resnet3d_101", "densenet3d_121"]
