"""3-D MBConv op library of CovidNet3D (P4, spec §5.1): the blocks the searched networks and the supernet share.

Search space (paper): every searchable block picks one of eight ops,

    3x3x3_MBConv3  3x3x3_MBConv4  3x3x3_MBConv6  5x5x5_MBConv3  5x5x5_MBConv4  7x7x7_MBConv3  7x7x7_MBConv4  skip

``MBConv3d(k, e)`` on C channels = 1×1×1 C→eC (no bias) → BN → ReLU6 → depthwise k×k×k (pad k//2) → BN → ReLU6
→ 1×1×1 eC→C (no bias) → BN (linear bottleneck).  Each block is ``calibration`` (1×1×1 conv **with bias**, carries
the block stride and the width change, present before every block) → op (stride 1) → identity shortcut from the
calibration output when the block keeps stride 1 and width.  ``skip`` returns the calibration output (a true
skip — the paper's "skip connection", the public code's "Zero").  For replication studies the code's extra
candidates exist too: ``identity`` returns its input *and* the residual is added (= 2x), ``zero`` = skip.

All BatchNorm3d use momentum 0.1, eps 1e-3 (spec).  Tensors are N×C×D×H×W.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_MOMENTUM = 0.1
BN_EPS = 1e-3

# The paper's eight candidates, in the paper's (and the public code's) order.
PAPER_OPS: tuple[str, ...] = (
    "3x3x3_MBConv3", "3x3x3_MBConv4", "3x3x3_MBConv6",
    "5x5x5_MBConv3", "5x5x5_MBConv4",
    "7x7x7_MBConv3", "7x7x7_MBConv4",
    "skip",
)
# The public code's candidate list (9 entries; a second "zero" is appended on stride-1 equal-width blocks).
CODE_OPS: tuple[str, ...] = PAPER_OPS[:7] + ("identity", "zero")

# (kernel, expansion) of every MBConv op name the library knows (incl. the fixed first block's MBConv1).
MBCONV_SPECS: dict[str, tuple[int, int]] = {
    f"{k}x{k}x{k}_MBConv{e}": (k, e) for k in (3, 5, 7) for e in (1, 2, 3, 4, 5, 6)
}
SKIP_OPS = ("skip", "zero")
ALL_OPS = tuple(MBCONV_SPECS) + ("skip", "identity", "zero")

# Names accepted in genotype files besides ours: the public code's 2-D-style spelling ("3x3_MBConv3", "Zero").
_ALIASES = {f"{k}x{k}_MBConv{e}": f"{k}x{k}x{k}_MBConv{e}" for k in (3, 5, 7) for e in (1, 2, 3, 4, 5, 6)}
_ALIASES.update({"Zero": "zero", "Identity": "identity", "skip_connect": "skip", "none": "skip"})


def canonical_op(name: str) -> str:
    """Our spelling of an op name (accepts the public code's ``3x3_MBConv3`` / ``Zero`` / ``Identity``)."""
    if not isinstance(name, str):
        raise TypeError(f"op names are strings, got {name!r}")
    op = _ALIASES.get(name, name)
    if op not in ALL_OPS:
        raise ValueError(f"unknown 3-D op {name!r}; known ops: {', '.join(PAPER_OPS)} (plus 'identity', 'zero' "
                         "for replicating the public code)")
    return op


class _DepthwiseConv3dFn(torch.autograd.Function):
    """Stride-1 'same' depthwise Conv3d whose backward is two ordinary (fast, oneDNN) convolutions.

    PyTorch's CPU backward for depthwise 3-D convolutions is 5–10× slower than its forward, which made training
    and the architecture search impractical on two cores.  Both gradients are convolutions themselves:
    grad_input = depthwise conv of grad_output with the flipped kernel; grad_weight = per-channel correlation of
    the input with grad_output, computed as one grouped conv with the batch folded into the channels.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv3d(x, weight, None, 1, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        p, c = ctx.padding, weight.shape[0]
        grad = grad.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv3d(grad, weight.flip(2, 3, 4), None, 1, p, 1, c)
        if ctx.needs_input_grad[1]:
            n = x.shape[0]
            xx = x.contiguous().reshape(1, n * c, *x.shape[2:])
            gg = grad.reshape(n * c, 1, *grad.shape[2:])
            grad_w = F.conv3d(xx, gg, None, 1, p, 1, n * c).reshape(n, c, *weight.shape[2:]).sum(0)
            grad_w = grad_w.unsqueeze(1)
        return grad_x, grad_w, None


class DepthwiseConv3d(nn.Conv3d):
    """``nn.Conv3d(c, c, k, padding=k//2, groups=c, bias=False)`` with a fast CPU backward (same state dict)."""

    def __init__(self, channels: int, kernel: int, stride: int = 1) -> None:
        super().__init__(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1, 1) and torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return _DepthwiseConv3dFn.apply(x, self.weight, self.padding[0])
        return super().forward(x)


def bn3d(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class ConvBNReLU6(nn.Sequential):
    """Conv3d (no bias) → BN3d → ReLU6; the stem and the feature-mix layer."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: "int | tuple[int, int, int]" = 1,
                 groups: int = 1) -> None:
        if groups == c_in == c_out and groups > 1:
            conv: nn.Conv3d = DepthwiseConv3d(c_in, kernel, stride)
        else:
            conv = nn.Conv3d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
        super().__init__(OrderedDict([
            ("conv", conv),
            ("bn", bn3d(c_out)),
            ("act", nn.ReLU6(inplace=True)),
        ]))


class MBConv3d(nn.Module):
    """Mobile inverted bottleneck, 3-D.  ``expand == 1`` omits the expansion conv (the fixed first block)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expand: int, stride: int = 1) -> None:
        super().__init__()
        mid = round(c_in * expand)
        self.kernel, self.expand = kernel, expand
        self.inverted_bottleneck = ConvBNReLU6(c_in, mid, 1) if expand != 1 else None
        self.depth_conv = ConvBNReLU6(mid, mid, kernel, stride, groups=mid)
        self.point_linear = nn.Sequential(OrderedDict([
            ("conv", nn.Conv3d(mid, c_out, 1, bias=False)),
            ("bn", bn3d(c_out)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))


class Skip(nn.Module):
    """The paper's skip connection: the block returns its (calibrated) input unchanged."""

    is_skip = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Identity(nn.Module):
    """The public code's ``Identity`` candidate: returns x, to which the residual adds x again (2x)."""

    is_skip = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def build_op(name: str, channels: int) -> nn.Module:
    """One candidate op at stride 1 on ``channels`` channels."""
    op = canonical_op(name)
    if op in SKIP_OPS:
        return Skip()
    if op == "identity":
        return Identity()
    kernel, expand = MBCONV_SPECS[op]
    return MBConv3d(channels, channels, kernel, expand)


def is_skip(op: nn.Module) -> bool:
    return bool(getattr(op, "is_skip", False))


Stride = int | tuple[int, int, int]


def triple(stride: Stride) -> tuple[int, int, int]:
    """An int or a (z, y, x) stride as a 3-tuple."""
    if isinstance(stride, int):
        return (stride, stride, stride)
    t = tuple(int(s) for s in stride)
    if len(t) != 3 or min(t) < 1:
        raise ValueError(f"a 3-D stride is an int or three positive ints (z, y, x), got {stride!r}")
    return t  # type: ignore[return-value]


class Calibration(nn.Module):
    """1×1×1 conv **with bias** before every searchable block; carries the stride and width change."""

    def __init__(self, c_in: int, c_out: int, stride: Stride) -> None:
        super().__init__()
        self.conv = nn.Conv3d(c_in, c_out, 1, stride=triple(stride), bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SearchBlock(nn.Module):
    """calibration → chosen op → (+ calibration output when ``residual``).  A fixed-op block of a derived net."""

    def __init__(self, c_in: int, c_out: int, stride: Stride, op: str) -> None:
        super().__init__()
        self.op_name = canonical_op(op)
        self.residual = triple(stride) == (1, 1, 1) and c_in == c_out
        self.calib = Calibration(c_in, c_out, stride)
        self.op = build_op(self.op_name, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.calib(x)
        if is_skip(self.op):
            return x
        out = self.op(x)
        return x + out if self.residual else out


# ---------------------------------------------------------------------------------------------- macro layout
class MacroSpace:
    """The fixed macro-architecture: 6 cells of [4, 4, 4, 4, 4, 1] blocks, first-block strides
    [2, 2, 2, 1, 2, 1], one width per cell.  ``block_layout()`` lists (c_in, c_out, stride, key) per block,
    ``key`` = ``s{cell}_c{block}`` as in the public code's architecture files.

    ``strides`` / ``stem_stride`` may be overridden (ints or (z, y, x) tuples) — an engine extension for a finer
    CAM grid (the paper's total stride of 32 leaves a 1×4×4 map for a 32×128×128 input); the defaults are the
    paper's.  Overrides travel with a genotype file / a weights manifest as ``macro``."""

    STEM_CHANNELS = 32
    FIRST_BLOCK_CHANNELS = 16
    MIX_CHANNELS = 1280
    BLOCKS = (4, 4, 4, 4, 4, 1)
    STRIDES = (2, 2, 2, 1, 2, 1)
    WIDTHS = {
        "covidnet3d_s": (24, 40, 80, 96, 192, 320),
        "covidnet3d_l": (32, 64, 128, 256, 512, 1024),
    }

    def __init__(self, widths: tuple[int, ...], blocks: tuple[int, ...] = BLOCKS,
                 strides: tuple[Stride, ...] = STRIDES, stem_stride: Stride = 2) -> None:
        if not (len(widths) == len(blocks) == len(strides)):
            raise ValueError("widths, blocks and strides need one entry per cell")
        self.widths, self.blocks = tuple(widths), tuple(blocks)
        self.strides = tuple(s if isinstance(s, int) else triple(s) for s in strides)
        self.stem_stride = stem_stride if isinstance(stem_stride, int) else triple(stem_stride)

    def overrides(self) -> dict:
        """The non-default parts as a JSON-able dict (``{}`` for the paper's macro-architecture)."""
        out: dict = {}
        if self.strides != self.STRIDES:
            out["strides"] = [s if isinstance(s, int) else list(s) for s in self.strides]
        if self.stem_stride != 2:
            out["stem_stride"] = self.stem_stride if isinstance(self.stem_stride, int) else list(self.stem_stride)
        return out

    def total_stride(self) -> tuple[int, int, int]:
        t = list(triple(self.stem_stride))
        for s in self.strides:
            t = [a * b for a, b in zip(t, triple(s))]
        return tuple(t)  # type: ignore[return-value]

    @classmethod
    def named(cls, space: str, macro: dict | None = None) -> "MacroSpace":
        key = space.lower().replace("-", "_")
        if key in ("s", "small"):
            key = "covidnet3d_s"
        if key in ("l", "large"):
            key = "covidnet3d_l"
        if key not in cls.WIDTHS:
            raise ValueError(f"unknown search space {space!r}; choose one of {sorted(cls.WIDTHS)}")
        macro = dict(macro or {})
        unknown = set(macro) - {"strides", "stem_stride"}
        if unknown:
            raise ValueError(f"unknown macro option(s) {sorted(unknown)}; known: strides, stem_stride")
        strides = tuple(macro.get("strides", cls.STRIDES))
        if len(strides) != len(cls.BLOCKS):
            raise ValueError(f"macro strides need {len(cls.BLOCKS)} entries (one per cell), got {len(strides)}")
        return cls(cls.WIDTHS[key], strides=strides, stem_stride=macro.get("stem_stride", 2))

    @property
    def num_blocks(self) -> int:
        return sum(self.blocks)

    def block_layout(self) -> list[tuple[int, int, int, str]]:
        layout = []
        c_in = self.FIRST_BLOCK_CHANNELS
        for cell, (width, n, stride) in enumerate(zip(self.widths, self.blocks, self.strides)):
            for b in range(n):
                layout.append((c_in, width, stride if b == 0 else 1, f"s{cell}_c{b}"))
                c_in = width
        return layout


def stem_and_first_block(in_chans: int, stem_stride: Stride = 2) -> tuple[nn.Module, nn.Module]:
    """Stem Conv3d 3×3×3 s2 (all axes) 1→32 + BN + ReLU6, then the fixed 3×3×3 MBConv1 32→16 (no residual)."""
    stem = ConvBNReLU6(in_chans, MacroSpace.STEM_CHANNELS, 3, stride=triple(stem_stride))
    first = MBConv3d(MacroSpace.STEM_CHANNELS, MacroSpace.FIRST_BLOCK_CHANNELS, 3, 1)
    return stem, first


OpFactory = Callable[[str, int], nn.Module]

__all__ = [
    "PAPER_OPS", "CODE_OPS", "ALL_OPS", "MBCONV_SPECS", "canonical_op", "bn3d", "ConvBNReLU6", "MBConv3d",
    "Skip", "Identity", "build_op", "is_skip", "Calibration", "SearchBlock", "MacroSpace", "triple",
    "stem_and_first_block",
]
