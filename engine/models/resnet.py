"""ResNet50 (v1) and ResNet50V2 / 101V2 / 152V2 (pre-activation) as in Keras Applications — P1 backbones.

One builder per variant from bottleneck block counts (``[3, 4, 6, 3]``, ``[3, 4, 23, 3]``, ``[3, 8, 36, 3]``):

* **v1** (He et al. 2015, :class:`ResNetV1`): stem 7x7/2 conv-BN-ReLU + 3x3/2 max-pool; bottleneck
  ``1x1 -> 3x3 -> 1x1 (x4)`` with BN after each conv, ReLU after the residual addition (module ``act``; the last
  one, ``layer4.2.act``, is Keras ``conv5_block3_out`` = CAM target).  The stride sits on the first 1x1 conv as
  in Keras / the original paper (``stride_in_1x1=False`` gives the "v1.5" layout with the stride on the 3x3 —
  same parameters, +0.2 GMACs).  Convs have no bias (Keras' redundant pre-BN biases are left out, as the spec's
  trainable count assumes).
* **v2** (He et al. 2016, :class:`ResNetV2`): pre-activation ``BN -> ReLU -> conv`` units.  Following Keras
  ``stack2``: the first block of a stage has a 1x1 projection shortcut fed by the pre-activation; the *last*
  block of stages 1-3 downsamples (stride on its 3x3, shortcut = 1x1/2 max-pool subsampling); the stem conv, the
  projection shortcut and each block's final 1x1 carry biases; a closing ``post_bn -> post_act`` (Keras
  ``post_relu``, the CAM target) precedes global average pooling.  ``downsample_first=True`` instead downsamples
  in the first block of stages 2-4 (He et al. 2016's layout, which the spec's MAC column assumes: 4.09 vs 3.48
  GMACs for ResNet50V2) — same parameters.

Keras pads the stem max-pool with zeros; here it pads with -inf (identical for v1 where the pool follows a
ReLU; a border-pixel difference for v2).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from engine.models._layers_p1 import ConvBnAct, KerasBackbone, batch_norm, check_in_chans_num_classes, init_weights
from engine.models.registry import ModelConfig, register_model

EXPANSION = 4
STAGE_WIDTHS = (64, 128, 256, 512)


class Bottleneck(nn.Module):
    """ResNet v1 bottleneck: ``conv1 (1x1) -> conv2 (3x3) -> conv3 (1x1, x4, no act) + shortcut -> act``."""

    def __init__(self, in_chans: int, width: int, stride: int = 1, stride_in_1x1: bool = True) -> None:
        super().__init__()
        out_chans = width * EXPANSION
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvBnAct(in_chans, width, 1, stride=s1)
        self.conv2 = ConvBnAct(width, width, 3, stride=s3)
        self.conv3 = ConvBnAct(width, out_chans, 1, act=None)
        if stride != 1 or in_chans != out_chans:
            self.shortcut: nn.Module = ConvBnAct(in_chans, out_chans, 1, stride=stride, act=None)
        else:
            self.shortcut = nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class PreActBottleneck(nn.Module):
    """ResNet v2 bottleneck (Keras ``block2``).

    ``preact = ReLU(BN(x))``; residual = ``conv1 1x1 -> BN-ReLU -> conv2 3x3/stride -> BN-ReLU -> conv3 1x1 (bias)``
    on ``preact``; shortcut = 1x1 projection (bias) of ``preact`` when ``projection``, else ``x`` subsampled by
    ``stride`` (1x1 max-pool).  No activation after the addition — the next block's pre-activation provides it.
    """

    def __init__(self, in_chans: int, width: int, stride: int = 1, projection: bool = False) -> None:
        super().__init__()
        out_chans = width * EXPANSION
        self.preact_bn = batch_norm(in_chans)
        self.preact_act = nn.ReLU()
        self.projection = projection
        if projection:
            self.shortcut: nn.Module = nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=True)
        elif stride > 1:
            self.shortcut = nn.MaxPool2d(1, stride=stride)
        else:
            self.shortcut = nn.Identity()
        self.conv1 = ConvBnAct(in_chans, width, 1)
        self.conv2 = ConvBnAct(width, width, 3, stride=stride)
        self.conv3 = nn.Conv2d(width, out_chans, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.preact_act(self.preact_bn(x))
        shortcut = self.shortcut(preact if self.projection else x)
        return self.conv3(self.conv2(self.conv1(preact))) + shortcut


class ResNetV1(KerasBackbone):
    """ResNet v1 with bottleneck blocks; ``forward_features`` returns the ``layer4`` output (N, 2048, H/32, W/32)."""

    def __init__(self, layers: tuple[int, int, int, int], num_classes: int = 2, in_chans: int = 1,
                 stride_in_1x1: bool = True) -> None:
        super().__init__()
        check_in_chans_num_classes("ResNet", in_chans, num_classes)
        self.in_chans, self.num_classes = in_chans, num_classes
        self.stem = ConvBnAct(in_chans, 64, 7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        chans = 64
        for i, (width, blocks) in enumerate(zip(STAGE_WIDTHS, layers)):
            stage = []
            for j in range(blocks):
                stride = 2 if (j == 0 and i > 0) else 1
                stage.append(Bottleneck(chans, width, stride, stride_in_1x1=stride_in_1x1))
                chans = width * EXPANSION
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.num_features = chans
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(chans, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ResNetV2(KerasBackbone):
    """Pre-activation ResNet (Keras ResNet*V2); ``forward_features`` returns ``post_act`` (N, 2048, H/32, W/32)."""

    def __init__(self, layers: tuple[int, int, int, int], num_classes: int = 2, in_chans: int = 1,
                 downsample_first: bool = False) -> None:
        super().__init__()
        check_in_chans_num_classes("ResNetV2", in_chans, num_classes)
        self.in_chans, self.num_classes = in_chans, num_classes
        self.stem = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        chans = 64
        last_stage = len(layers) - 1
        for i, (width, blocks) in enumerate(zip(STAGE_WIDTHS, layers)):
            stage = []
            for j in range(blocks):
                if downsample_first:
                    stride = 2 if (j == 0 and i > 0) else 1
                else:  # Keras stack2: projection in the first block, downsampling in the last (not the last stage)
                    stride = 2 if (j == blocks - 1 and i < last_stage) else 1
                stage.append(PreActBottleneck(chans, width, stride, projection=(j == 0)))
                chans = width * EXPANSION
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.num_features = chans
        self.post_bn = batch_norm(chans)
        self.post_act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(chans, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.post_act(self.post_bn(x))


def _config(name: str, layers: tuple[int, ...], cam_layer: str, expected: tuple[int, int], description: str,
            alias: str, giant: bool = False) -> ModelConfig:
    """``expected`` = spec §2.1 (trainable, Keras-style incl. BN moving statistics), 3 channels, 3 classes."""
    return ModelConfig(
        name=name,
        family="resnet",
        paper="P1",
        input_size=(224, 224),
        paper_in_chans=3,
        paper_num_classes=3,
        cam_layer=cam_layer,
        classifier="classifier",
        cam_kind="cam",
        test_input_size=(64, 64),
        giant=giant,
        expected_params={"in3_cls3": expected[0], "in3_cls3_keras": expected[1]},
        description=f"{description} {list(layers)} (Keras application layout) — P1 backbone",
        aliases=(alias,),
    )


@register_model(_config("resnet50", (3, 4, 6, 3), "layer4.2.act", (23_514_179, 23_567_299), "ResNet50 v1, bottleneck",
                        "ResNet50"))
def resnet50(num_classes: int = 2, in_chans: int = 1, stride_in_1x1: bool = True) -> ResNetV1:
    """ResNet50 v1 (stride on the first 1x1 as in Keras; ``stride_in_1x1=False`` for the v1.5 layout)."""
    return ResNetV1((3, 4, 6, 3), num_classes=num_classes, in_chans=in_chans, stride_in_1x1=stride_in_1x1)


@register_model(_config("resnet50v2", (3, 4, 6, 3), "post_act", (23_525_507, 23_570_947),
                        "ResNet50V2, pre-activation bottleneck", "ResNet50V2"))
def resnet50v2(num_classes: int = 2, in_chans: int = 1, downsample_first: bool = False) -> ResNetV2:
    """ResNet50V2 (pre-activation)."""
    return ResNetV2((3, 4, 6, 3), num_classes=num_classes, in_chans=in_chans, downsample_first=downsample_first)


@register_model(_config("resnet101v2", (3, 4, 23, 3), "post_act", (42_535_043, 42_632_707),
                        "ResNet101V2, pre-activation bottleneck", "ResNet101V2"))
def resnet101v2(num_classes: int = 2, in_chans: int = 1, downsample_first: bool = False) -> ResNetV2:
    """ResNet101V2 (pre-activation)."""
    return ResNetV2((3, 4, 23, 3), num_classes=num_classes, in_chans=in_chans, downsample_first=downsample_first)


@register_model(_config("resnet152v2", (3, 8, 36, 3), "post_act", (58_194_051, 58_337_795),
                        "ResNet152V2, pre-activation bottleneck", "ResNet152V2", giant=True))
def resnet152v2(num_classes: int = 2, in_chans: int = 1, downsample_first: bool = False) -> ResNetV2:
    """ResNet152V2 (pre-activation)."""
    return ResNetV2((3, 8, 36, 3), num_classes=num_classes, in_chans=in_chans, downsample_first=downsample_first)


__all__ = ["Bottleneck", "PreActBottleneck", "ResNetV1", "ResNetV2", "resnet50", "resnet50v2", "resnet101v2",
           "resnet152v2"]
