"""P2 (Abdani et al.): SPP-COVID-Net, and its benchmark DarkCOVID-Net (Ozturk et al.) — spec §3.1 / §3.2.

SPP-COVID-Net follows the authors' Keras script (862,331 Keras-style = 859,883 trainable at 3×256×256,
3 classes): every conv is bias-free, "same", followed by BatchNorm (Keras momentum 0.99 → PyTorch 0.01,
ε 1e-3) and LeakyReLU(0.1); the SPP "module" is three parallel stride-1 valid max-pools (7, 6, 4) of the last
8×8 map, flattened and concatenated into one dense layer.  The script feeds raw 0–255 pixels, which the default
preprocessing reproduces (mean 0, std 1/255 on [0, 1] inputs).

DarkCOVID-Net follows Ozturk's fastai notebook, including its quirk of padding 1×1 convs by 1 (each grows H, W
by 2) and the final fastai ``conv_layer`` (conv → ReLU → BN).  1,167,361 params at 224² (P2 claims 1,167,363).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
import torch.nn as nn

from engine.models.registry import ModelConfig, register_model

P2 = "P2 Abdani et al., A lightweight deep learning model for COVID-19 detection"
P2_BENCH = "P2 benchmark: Ozturk et al., DarkCOVID-Net (DarkNet-19 based)"


def _conv_bn_lrelu(cin: int, cout: int, k: int, padding: int, keras_bn: bool = True) -> nn.Sequential:
    bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01) if keras_bn else nn.BatchNorm2d(cout)
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(cin, cout, k, padding=padding, bias=False)),
        ("bn", bn),
        ("act", nn.LeakyReLU(0.1)),
    ]))


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class SPPPool(nn.Module):
    """Three stride-1 'valid' max-pools of the same map, flattened and concatenated (no parameters)."""

    def __init__(self, sizes: Sequence[int] = (7, 6, 4), channels_last_flatten: bool = False):
        super().__init__()
        self.sizes = tuple(sizes)
        self.channels_last_flatten = channels_last_flatten

    def out_features(self, channels: int, h: int, w: int) -> int:
        return sum(channels * (h - k + 1) * (w - k + 1) for k in self.sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if min(h, w) < max(self.sizes):
            raise ValueError(f"SPP pools of {self.sizes} need a final map of at least {max(self.sizes)}², got "
                             f"{h}×{w}: the input is too small for SPP-COVID-Net")
        parts = []
        for k in self.sizes:
            p = nn.functional.max_pool2d(x, k, stride=1)
            if self.channels_last_flatten:      # Keras flattens H, W, C — only matters when porting weights
                p = p.permute(0, 2, 3, 1)
            parts.append(torch.flatten(p, 1))
        return torch.cat(parts, 1)


class SPPCovidNet(nn.Module):
    """Layer numbering follows spec §3.1 (conv1 … conv18; pools between)."""

    def __init__(self, num_classes: int = 3, in_chans: int = 1, *, input_size: Sequence[int] = (256, 256),
                 spp_sizes: Sequence[int] = (7, 6, 4), keras_flatten: bool = False) -> None:
        super().__init__()
        plan: list[Any] = [
            ("conv1", in_chans, 8, 3), "pool", ("conv2", 8, 16, 3), "pool",
            ("conv4", 16, 32, 3), ("conv5", 32, 16, 1), ("conv6", 16, 32, 3), "pool",
            ("conv8", 32, 64, 3), ("conv9", 64, 32, 1), ("conv10", 32, 64, 3), "pool",
            ("conv12", 64, 128, 3), ("conv13", 128, 64, 1), ("conv14", 64, 128, 3), "pool",
            ("conv16", 128, 256, 3), ("conv17", 256, 128, 1), ("conv18", 128, 256, 3),
        ]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        n_pool = 0
        for item in plan:
            if item == "pool":
                n_pool += 1
                layers[f"pool{n_pool}"] = nn.MaxPool2d(2, 2)
            else:
                name, cin, cout, k = item
                layers[name] = _conv_bn_lrelu(cin, cout, k, padding=k // 2)
        self.features = nn.Sequential(layers)
        self.spp = SPPPool(spp_sizes, keras_flatten)
        h, w = (int(s) // 2 ** n_pool for s in input_size)
        self.classifier = nn.Linear(self.spp.out_features(256, h, w), num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.spp(self.features(x))
        if feats.shape[1] != self.classifier.in_features:
            raise ValueError(f"SPP-COVID-Net was built for another input size ({self.classifier.in_features} "
                             f"SPP features, got {feats.shape[1]}); resize inputs to the model's input_size or "
                             "create it with input_size=")
        return self.classifier(feats)


class DarkCovidNet(nn.Module):
    """Ozturk et al.'s DarkCOVID-Net (fastai definition, spec §3.2 table)."""

    def __init__(self, num_classes: int = 3, in_chans: int = 1, *,
                 input_size: Sequence[int] = (224, 224), head_channels: int = 3) -> None:
        super().__init__()

        def block(cin: int, cout: int, k: int = 3) -> nn.Sequential:
            # fastai helper pads (max(k, 3) - 1) // 2, i.e. 1 also for 1×1 convs; default BN (ε 1e-5, m 0.1)
            return _conv_bn_lrelu(cin, cout, k, padding=(max(k, 3) - 1) // 2, keras_bn=False)

        def triple(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(OrderedDict([("a", block(cin, cout)), ("b", block(cout, cin, 1)),
                                              ("c", block(cin, cout))]))

        self.features = nn.Sequential(OrderedDict([
            ("conv1", block(in_chans, 8)), ("pool1", nn.MaxPool2d(2, 2)),
            ("conv2", block(8, 16)), ("pool2", nn.MaxPool2d(2, 2)),
            ("triple3", triple(16, 32)), ("pool3", nn.MaxPool2d(2, 2)),
            ("triple4", triple(32, 64)), ("pool4", nn.MaxPool2d(2, 2)),
            ("triple5", triple(64, 128)), ("pool5", nn.MaxPool2d(2, 2)),
            ("triple6", triple(128, 256)),
            ("conv7", block(256, 128, 1)),
            ("conv8", block(128, 256)),
        ]))
        # fastai conv_layer(256, 3): conv (no bias) → ReLU → BatchNorm (3 channels in the notebook)
        self.conv9 = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(256, head_channels, 3, padding=1, bias=False)),
            ("act", nn.ReLU()),
            ("bn", nn.BatchNorm2d(head_channels)),
        ]))
        with torch.no_grad():
            n = self.conv9(self.features(torch.zeros(1, in_chans, *[int(s) for s in input_size]))).numel()
        self.classifier = nn.Linear(n, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.flatten(self.conv9(self.features(x)), 1)
        if f.shape[1] != self.classifier.in_features:
            raise ValueError(f"DarkCOVID-Net was built for another input size ({self.classifier.in_features} "
                             f"features, got {f.shape[1]}); resize inputs or create it with input_size=")
        return self.classifier(f)


@register_model(ModelConfig(
    name="spp_covid_net", family="spp_covid_net", paper=P2, input_size=(256, 256), paper_num_classes=3,
    cam_layer="features.conv18", classifier="classifier", cam_kind="gradcam",
    mean=(0.0,), std=(1.0 / 255.0,),   # the authors feed raw 0–255 pixel values
    expected_params={"in3_cls3": 859_883, "in3_cls3_keras": 862_331}, aliases=("sppcovidnet",),
    description="SPP-COVID-Net: 13-conv LeakyReLU/BN trunk + spatial pyramid max-pooling (7, 6, 4) → dense."))
def spp_covid_net(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> nn.Module:
    return SPPCovidNet(num_classes, in_chans, **cfg)


@register_model(ModelConfig(
    name="darkcovid_net", family="spp_covid_net", paper=P2_BENCH, input_size=(224, 224), paper_num_classes=3,
    cam_layer="features.conv8", classifier="classifier", cam_kind="gradcam",
    expected_params={"in3_cls3": 1_167_361}, aliases=("darkcovidnet",),
    description="DarkCOVID-Net (Ozturk et al.): DarkNet-19-style triple convs, fastai conv head, flatten → FC."))
def darkcovid_net(num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> nn.Module:
    return DarkCovidNet(num_classes, in_chans, **cfg)
