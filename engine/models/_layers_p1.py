"""Small building blocks shared by the P1 (Garg et al.) families: Keras-application networks in PyTorch.

The Keras applications the paper used differ from the usual PyTorch ports in a few details that change the
parameter count, so they are spelled out here once:

* ``BatchNorm2dNoScale`` — Keras ``BatchNormalization(scale=False)`` (InceptionV3, InceptionResNetV2): a learnable
  shift (beta) but no scale (gamma).  Trainable 1 per channel, plus the 2 running statistics.
* ``ConvBnAct`` — conv (no bias) → BN → activation, with named children ``conv`` / ``bn`` / ``act`` so dotted
  paths such as ``"head.act"`` address the post-activation feature map (Grad-CAM targets).
* Keras default BN epsilon is 1e-3 (PyTorch's is 1e-5); the P1 families use ``KERAS_BN_EPS``.

Activations are never in-place: CAM / Grad-CAM and the "look inside" activation view hook module outputs, and an
in-place op downstream would silently overwrite what a hook captured.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

KERAS_BN_EPS = 1e-3


class BatchNorm2dNoScale(nn.BatchNorm2d):
    """BatchNorm with a learnable bias but no learnable scale (Keras ``scale=False``)."""

    def __init__(self, num_features: int, eps: float = KERAS_BN_EPS, momentum: float = 0.1) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False)
        # ``_BatchNorm.forward`` passes ``self.weight`` (None here) and ``self.bias`` to ``F.batch_norm``.
        self.bias = nn.Parameter(torch.zeros(num_features))

    def extra_repr(self) -> str:
        return super().extra_repr() + ", scale=False"


def batch_norm(channels: int, scale: bool = True) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPS) if scale else BatchNorm2dNoScale(channels)


class ConvBnAct(nn.Sequential):
    """``conv(k, stride, padding, groups, bias=False) -> BN -> act`` with children ``conv``, ``bn``, ``act``.

    ``padding=None`` means "same" for stride 1 (``k // 2``, per axis for rectangular kernels).  ``act=None`` leaves
    the activation out (the child ``act`` is then ``nn.Identity``), ``bn_scale=False`` uses Keras ``scale=False``.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int | tuple[int, int] = 1,
        stride: int = 1,
        padding: int | tuple[int, int] | None = None,
        groups: int = 1,
        act: Callable[[], nn.Module] | None = nn.ReLU,
        bn_scale: bool = True,
    ) -> None:
        k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if padding is None:
            padding = (k[0] // 2, k[1] // 2)
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, k, stride=stride, padding=padding, groups=groups, bias=False)
        self.bn = batch_norm(out_chans, scale=bn_scale)
        self.act = act() if act is not None else nn.Identity()


def init_weights(model: nn.Module, linear_std: float = 0.01) -> None:
    """He-normal (fan-out) convs, unit/zero BN, N(0, ``linear_std``) linear layers with zero bias.

    ``normal_`` is used for the linear layers on purpose: VGG's 100 M-parameter FC layers initialise in well under a
    second this way (truncated-normal would take several).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, linear_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class StochasticDepth(nn.Module):
    """Drop the residual branch per sample with probability ``p`` in training.

    Keras: ``Dropout(p, noise_shape=(N, 1, 1, 1))`` before the residual addition.

    Surviving samples are scaled by ``1 / (1 - p)``; identity in ``eval()`` or when ``p == 0``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"stochastic-depth probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class KerasBackbone(nn.Module):
    """Base of the P1 networks: ``forward = forward_head(forward_features(x))`` with an input check first.

    ``forward_features`` returns the CAM / Grad-CAM target map; the default ``forward_head`` is
    global average pool -> flatten -> ``classifier`` (Linear).  ``check_input`` turns a wrong channel count or a
    too-small slice into a clear ``ValueError`` instead of a conv shape error deep inside the network.
    """

    min_input_size: int = 32
    in_chans: int
    num_classes: int
    num_features: int
    pool: nn.Module
    classifier: nn.Linear

    def check_input(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        if x.dim() != 4:
            raise ValueError(f"{name} expects a batch of 2-D images shaped (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"{name} was built for {self.in_chans} input channel(s) but got {x.shape[1]} "
                f"(input shape {tuple(x.shape)}); build it with in_chans={x.shape[1]} or convert the input")
        h, w = x.shape[-2:]
        if h < self.min_input_size or w < self.min_input_size:
            raise ValueError(
                f"{name} needs an input of at least {self.min_input_size}x{self.min_input_size} pixels, got "
                f"{h}x{w}; resize the slice to the model's input size")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(features), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))


def check_in_chans_num_classes(name: str, in_chans: int, num_classes: int) -> None:
    """A clear error for nonsense channel / class counts instead of a cryptic conv shape failure."""
    if not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"{name}: in_chans must be a positive integer (1 for grey CT, 3 for RGB), got {in_chans!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{name}: num_classes must be a positive integer, got {num_classes!r}")


__all__ = [
    "KERAS_BN_EPS",
    "BatchNorm2dNoScale",
    "ConvBnAct",
    "KerasBackbone",
    "StochasticDepth",
    "batch_norm",
    "check_in_chans_num_classes",
    "init_weights",
]
