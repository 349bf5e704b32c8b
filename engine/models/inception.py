"""InceptionV3, InceptionResNetV2 and Xception as in Keras Applications — P1 backbones (299 px native input).

The layer graphs follow the Keras application definitions layer for layer (branch order, kernel shapes, "valid"
vs "same" padding, residual scales), so that the Keras-style parameter totals of the spec are reproduced:

* **InceptionV3** (Szegedy et al. 2016): ``conv2d_bn`` = conv (no bias) -> BN *without scale* (Keras
  ``scale=False``) -> ReLU; stem, ``mixed0``..``mixed10`` (``mixed10`` = CAM target, 8x8 at 299 px).
* **InceptionResNetV2** (Szegedy et al. 2017): same ``conv2d_bn``; stem, ``mixed_5b``, 10 x block35 (scale 0.17),
  ``mixed_6a``, 20 x block17 (0.1), ``mixed_7a``, 9 x block8 (0.2) + a final block8 (scale 1, no activation),
  ``conv_7b`` (1536, CAM target ``conv_7b.act`` = Keras ``conv_7b_ac``).  The residual "up" 1x1 convs carry a bias
  and no BN.
* **Xception** (Chollet 2017): entry flow (blocks 1-4), 8 middle-flow blocks (5-12), exit flow (13-14) with
  depthwise-separable convs (no bias) and full-affine BN; CAM target ``block14.sepconv2_act``.

Each head is global average pool -> Linear.  Pools with Keras "same" padding use symmetric padding (identical
output sizes; TF pads stride-2 windows only at the bottom/right); "same" average pools exclude the padding from the
mean as TF does.  Minimum input: 75 px (InceptionV3 / InceptionResNetV2), 71 px (Xception).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from engine.models._layers_p1 import ConvBnAct, KerasBackbone, batch_norm, check_in_chans_num_classes, init_weights
from engine.models.registry import ModelConfig, register_model


def conv_bn(in_chans: int, out_chans: int, kernel: int | tuple[int, int], stride: int = 1,
            valid: bool = False) -> ConvBnAct:
    """Keras ``conv2d_bn`` of InceptionV3 / InceptionResNetV2: conv (no bias) -> BN(scale=False) -> ReLU."""
    return ConvBnAct(in_chans, out_chans, kernel, stride=stride, padding=0 if valid else None, bn_scale=False)


def avg_pool_same() -> nn.AvgPool2d:
    """3x3/1 average pool with "same" padding that, like TF, averages only over real pixels."""
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class Concat(nn.ModuleDict):
    """Parallel named branches applied to the same input, concatenated along channels in insertion order."""

    def __init__(self, branches: "OrderedDict[str, nn.Module]") -> None:
        super().__init__(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.values()], 1)


def _seq(*modules: nn.Module) -> nn.Sequential:
    return nn.Sequential(*modules)


# --------------------------------------------------------------------------------------------------- InceptionV3

def _inception_stem(in_chans: int) -> nn.Sequential:
    """Shared by InceptionV3 and InceptionResNetV2: 299 -> 35 px, 192 channels."""
    return nn.Sequential(OrderedDict(
        conv1=conv_bn(in_chans, 32, 3, stride=2, valid=True),
        conv2=conv_bn(32, 32, 3, valid=True),
        conv3=conv_bn(32, 64, 3),
        pool1=nn.MaxPool2d(3, stride=2),
        conv4=conv_bn(64, 80, 1, valid=True),
        conv5=conv_bn(80, 192, 3, valid=True),
        pool2=nn.MaxPool2d(3, stride=2),
    ))


def _inception_a(in_chans: int, pool_chans: int) -> Concat:  # mixed0-2, 35x35
    return Concat(OrderedDict(
        branch1x1=conv_bn(in_chans, 64, 1),
        branch5x5=_seq(conv_bn(in_chans, 48, 1), conv_bn(48, 64, 5)),
        branch3x3dbl=_seq(conv_bn(in_chans, 64, 1), conv_bn(64, 96, 3), conv_bn(96, 96, 3)),
        branch_pool=_seq(avg_pool_same(), conv_bn(in_chans, pool_chans, 1)),
    ))


def _inception_b(in_chans: int) -> Concat:  # mixed3, 35 -> 17
    return Concat(OrderedDict(
        branch3x3=conv_bn(in_chans, 384, 3, stride=2, valid=True),
        branch3x3dbl=_seq(conv_bn(in_chans, 64, 1), conv_bn(64, 96, 3), conv_bn(96, 96, 3, stride=2, valid=True)),
        branch_pool=nn.MaxPool2d(3, stride=2),
    ))


def _inception_c(in_chans: int, c7: int) -> Concat:  # mixed4-7, 17x17, factorised 7x7
    return Concat(OrderedDict(
        branch1x1=conv_bn(in_chans, 192, 1),
        branch7x7=_seq(conv_bn(in_chans, c7, 1), conv_bn(c7, c7, (1, 7)), conv_bn(c7, 192, (7, 1))),
        branch7x7dbl=_seq(conv_bn(in_chans, c7, 1), conv_bn(c7, c7, (7, 1)), conv_bn(c7, c7, (1, 7)),
                          conv_bn(c7, c7, (7, 1)), conv_bn(c7, 192, (1, 7))),
        branch_pool=_seq(avg_pool_same(), conv_bn(in_chans, 192, 1)),
    ))


def _inception_d(in_chans: int) -> Concat:  # mixed8, 17 -> 8
    return Concat(OrderedDict(
        branch3x3=_seq(conv_bn(in_chans, 192, 1), conv_bn(192, 320, 3, stride=2, valid=True)),
        branch7x7x3=_seq(conv_bn(in_chans, 192, 1), conv_bn(192, 192, (1, 7)), conv_bn(192, 192, (7, 1)),
                         conv_bn(192, 192, 3, stride=2, valid=True)),
        branch_pool=nn.MaxPool2d(3, stride=2),
    ))


def _split_1x3_3x1(chans: int) -> Concat:
    return Concat(OrderedDict(branch1x3=conv_bn(chans, 384, (1, 3)), branch3x1=conv_bn(chans, 384, (3, 1))))


def _inception_e(in_chans: int) -> Concat:  # mixed9-10, 8x8, expanded filter bank
    return Concat(OrderedDict(
        branch1x1=conv_bn(in_chans, 320, 1),
        branch3x3=_seq(conv_bn(in_chans, 384, 1), _split_1x3_3x1(384)),
        branch3x3dbl=_seq(conv_bn(in_chans, 448, 1), conv_bn(448, 384, 3), _split_1x3_3x1(384)),
        branch_pool=_seq(avg_pool_same(), conv_bn(in_chans, 192, 1)),
    ))


class InceptionV3(KerasBackbone):
    """Keras InceptionV3; ``forward_features`` returns ``mixed10`` (N, 2048, 8, 8 at 299 px)."""

    min_input_size = 75

    def __init__(self, num_classes: int = 2, in_chans: int = 1) -> None:
        super().__init__()
        check_in_chans_num_classes("InceptionV3", in_chans, num_classes)
        self.in_chans, self.num_classes = in_chans, num_classes
        self.stem = _inception_stem(in_chans)
        self.mixed0 = _inception_a(192, 32)     # -> 256
        self.mixed1 = _inception_a(256, 64)     # -> 288
        self.mixed2 = _inception_a(288, 64)     # -> 288
        self.mixed3 = _inception_b(288)         # -> 768
        self.mixed4 = _inception_c(768, 128)
        self.mixed5 = _inception_c(768, 160)
        self.mixed6 = _inception_c(768, 160)
        self.mixed7 = _inception_c(768, 192)
        self.mixed8 = _inception_d(768)         # -> 1280
        self.mixed9 = _inception_e(1280)        # -> 2048
        self.mixed10 = _inception_e(2048)
        self.num_features = 2048
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2048, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(11):
            x = getattr(self, f"mixed{i}")(x)
        return x


# --------------------------------------------------------------------------------------------- InceptionResNetV2

class InceptionResidual(nn.Module):
    """Inception-ResNet unit: ``act(x + scale * up(concat(branches(x))))``; ``up`` = 1x1 conv with bias, no BN."""

    def __init__(self, in_chans: int, branches: Concat, mixed_chans: int, scale: float,
                 activation: bool = True) -> None:
        super().__init__()
        self.branches = branches
        self.up = nn.Conv2d(mixed_chans, in_chans, 1, bias=True)
        self.scale = scale
        self.act = nn.ReLU() if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.scale * self.up(self.branches(x)))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def _block35(scale: float = 0.17) -> InceptionResidual:  # 35x35, 320 channels
    c = 320
    branches = Concat(OrderedDict(
        branch_0=conv_bn(c, 32, 1),
        branch_1=_seq(conv_bn(c, 32, 1), conv_bn(32, 32, 3)),
        branch_2=_seq(conv_bn(c, 32, 1), conv_bn(32, 48, 3), conv_bn(48, 64, 3)),
    ))
    return InceptionResidual(c, branches, 32 + 32 + 64, scale)


def _block17(scale: float = 0.1) -> InceptionResidual:  # 17x17, 1088 channels
    c = 1088
    branches = Concat(OrderedDict(
        branch_0=conv_bn(c, 192, 1),
        branch_1=_seq(conv_bn(c, 128, 1), conv_bn(128, 160, (1, 7)), conv_bn(160, 192, (7, 1))),
    ))
    return InceptionResidual(c, branches, 192 + 192, scale)


def _block8(scale: float = 0.2, activation: bool = True) -> InceptionResidual:  # 8x8, 2080 channels
    c = 2080
    branches = Concat(OrderedDict(
        branch_0=conv_bn(c, 192, 1),
        branch_1=_seq(conv_bn(c, 192, 1), conv_bn(192, 224, (1, 3)), conv_bn(224, 256, (3, 1))),
    ))
    return InceptionResidual(c, branches, 192 + 256, scale, activation)


class InceptionResNetV2(KerasBackbone):
    """Keras InceptionResNetV2; ``forward_features`` returns ``conv_7b`` (N, 1536, 8, 8 at 299 px)."""

    min_input_size = 75

    def __init__(self, num_classes: int = 2, in_chans: int = 1) -> None:
        super().__init__()
        check_in_chans_num_classes("InceptionResNetV2", in_chans, num_classes)
        self.in_chans, self.num_classes = in_chans, num_classes
        self.stem = _inception_stem(in_chans)
        self.mixed_5b = Concat(OrderedDict(                                      # 192 -> 320
            branch_0=conv_bn(192, 96, 1),
            branch_1=_seq(conv_bn(192, 48, 1), conv_bn(48, 64, 5)),
            branch_2=_seq(conv_bn(192, 64, 1), conv_bn(64, 96, 3), conv_bn(96, 96, 3)),
            branch_pool=_seq(avg_pool_same(), conv_bn(192, 64, 1)),
        ))
        self.block35 = nn.Sequential(*[_block35() for _ in range(10)])
        self.mixed_6a = Concat(OrderedDict(                                      # 320 -> 1088, 35 -> 17
            branch_0=conv_bn(320, 384, 3, stride=2, valid=True),
            branch_1=_seq(conv_bn(320, 256, 1), conv_bn(256, 256, 3), conv_bn(256, 384, 3, stride=2, valid=True)),
            branch_pool=nn.MaxPool2d(3, stride=2),
        ))
        self.block17 = nn.Sequential(*[_block17() for _ in range(20)])
        self.mixed_7a = Concat(OrderedDict(                                      # 1088 -> 2080, 17 -> 8
            branch_0=_seq(conv_bn(1088, 256, 1), conv_bn(256, 384, 3, stride=2, valid=True)),
            branch_1=_seq(conv_bn(1088, 256, 1), conv_bn(256, 288, 3, stride=2, valid=True)),
            branch_2=_seq(conv_bn(1088, 256, 1), conv_bn(256, 288, 3), conv_bn(288, 320, 3, stride=2, valid=True)),
            branch_pool=nn.MaxPool2d(3, stride=2),
        ))
        self.block8 = nn.Sequential(*[_block8() for _ in range(9)], _block8(scale=1.0, activation=False))
        self.conv_7b = conv_bn(2080, 1536, 1)
        self.num_features = 1536
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1536, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block35(self.mixed_5b(self.stem(x)))
        x = self.block17(self.mixed_6a(x))
        x = self.block8(self.mixed_7a(x))
        return self.conv_7b(x)


# ------------------------------------------------------------------------------------------------------ Xception

class SeparableConv2d(nn.Sequential):
    """Keras ``SeparableConv2D`` (depth multiplier 1, no bias): depthwise kxk then pointwise 1x1."""

    def __init__(self, in_chans: int, out_chans: int, kernel: int = 3) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_chans, in_chans, kernel, padding=kernel // 2, groups=in_chans, bias=False)
        self.pointwise = nn.Conv2d(in_chans, out_chans, 1, bias=False)


class XceptionBlock(nn.Module):
    """``[ReLU] -> sepconv -> BN`` repeated per width, then (downsampling blocks) a 3x3/2 max-pool; plus shortcut.

    Shortcut: 1x1/2 conv + BN when downsampling (entry/exit flow), identity otherwise (middle flow).  Children are
    named like Keras (``sepconv1_act``, ``sepconv1``, ``sepconv1_bn`` ...).
    """

    def __init__(self, in_chans: int, widths: tuple[int, ...], start_with_relu: bool = True,
                 downsample: bool = True) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        chans = in_chans
        for i, width in enumerate(widths, start=1):
            if i > 1 or start_with_relu:
                layers[f"sepconv{i}_act"] = nn.ReLU()
            layers[f"sepconv{i}"] = SeparableConv2d(chans, width)
            layers[f"sepconv{i}_bn"] = batch_norm(width)
            chans = width
        if downsample:
            layers["pool"] = nn.MaxPool2d(3, stride=2, padding=1)
            self.shortcut: nn.Module = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(in_chans, chans, 1, stride=2, bias=False), bn=batch_norm(chans)))
        elif in_chans == chans:
            self.shortcut = nn.Identity()
        else:
            raise ValueError(f"identity shortcut needs in_chans == out_chans, got {in_chans} -> {chans}")
        self.main = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)


class Xception(KerasBackbone):
    """Keras Xception; ``forward_features`` returns ``block14.sepconv2_act`` (N, 2048, 10, 10 at 299 px)."""

    min_input_size = 71

    def __init__(self, num_classes: int = 2, in_chans: int = 1) -> None:
        super().__init__()
        check_in_chans_num_classes("Xception", in_chans, num_classes)
        self.in_chans, self.num_classes = in_chans, num_classes
        self.block1 = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_chans, 32, 3, stride=2, bias=False), conv1_bn=batch_norm(32), conv1_act=nn.ReLU(),
            conv2=nn.Conv2d(32, 64, 3, bias=False), conv2_bn=batch_norm(64), conv2_act=nn.ReLU(),
        ))
        self.block2 = XceptionBlock(64, (128, 128), start_with_relu=False)
        self.block3 = XceptionBlock(128, (256, 256))
        self.block4 = XceptionBlock(256, (728, 728))
        for i in range(5, 13):                                                   # middle flow
            self.add_module(f"block{i}", XceptionBlock(728, (728, 728, 728), downsample=False))
        self.block13 = XceptionBlock(728, (728, 1024))
        self.block14 = nn.Sequential(OrderedDict(
            sepconv1=SeparableConv2d(1024, 1536), sepconv1_bn=batch_norm(1536), sepconv1_act=nn.ReLU(),
            sepconv2=SeparableConv2d(1536, 2048), sepconv2_bn=batch_norm(2048), sepconv2_act=nn.ReLU(),
        ))
        self.num_features = 2048
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2048, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 15):
            x = getattr(self, f"block{i}")(x)
        return x


# ------------------------------------------------------------------------------------------------------ registry

# The spec gives only Keras-style totals (trainable + BN moving mean/variance) for these three: Keras
# ``include_top=False`` totals + a 3-way Dense head.  Trainable = that total minus the BN moving statistics
# (Keras' only non-trainable weights here): Keras' "Trainable params" at 1000 classes (23,817,352 / 55,813,192 /
# 22,855,952) with the 1000-way head swapped for a 3-way one.
_EXPECTED = {
    "inception_v3": {"in3_cls3": 21_774_499, "in3_cls3_keras": 21_808_931},
    "inception_resnet_v2": {"in3_cls3": 54_280_803, "in3_cls3_keras": 54_341_347},
    "xception": {"in3_cls3": 20_813_099, "in3_cls3_keras": 20_867_627},
}


def _config(name: str, cam_layer: str, description: str, alias: str, test_size: int) -> ModelConfig:
    return ModelConfig(
        name=name,
        family="inception",
        paper="P1",
        input_size=(299, 299),
        paper_in_chans=3,
        paper_num_classes=3,
        cam_layer=cam_layer,
        classifier="classifier",
        cam_kind="cam",
        test_input_size=(test_size, test_size),
        expected_params=_EXPECTED[name],
        description=f"{description} (Keras application layout, 299 px) — P1 backbone",
        aliases=(alias,),
    )


@register_model(_config("inception_v3", "mixed10", "InceptionV3", "InceptionV3", 107))
def inception_v3(num_classes: int = 2, in_chans: int = 1) -> InceptionV3:
    """InceptionV3 (Keras layout: BN without scale, no auxiliary head)."""
    return InceptionV3(num_classes=num_classes, in_chans=in_chans)


@register_model(_config("inception_resnet_v2", "conv_7b.act", "InceptionResNetV2", "InceptionResNetV2", 107))
def inception_resnet_v2(num_classes: int = 2, in_chans: int = 1) -> InceptionResNetV2:
    """InceptionResNetV2 (Keras layout)."""
    return InceptionResNetV2(num_classes=num_classes, in_chans=in_chans)


@register_model(_config("xception", "block14.sepconv2_act", "Xception", "Xception", 75))
def xception(num_classes: int = 2, in_chans: int = 1) -> Xception:
    """Xception (Keras layout)."""
    return Xception(num_classes=num_classes, in_chans=in_chans)


__all__ = ["Concat", "InceptionResNetV2", "InceptionResidual", "InceptionV3", "SeparableConv2d", "Xception",
           "XceptionBlock", "inception_resnet_v2", "inception_v3", "xception"]
