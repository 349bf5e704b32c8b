"""Parameter and MAC counters with the spec's conventions (shared/spec/architectures.md §0).

* ``count_params(model) -> ParamCount``: ``trainable`` (``requires_grad`` parameters; BatchNorm = 2 per
  channel), ``total`` (all parameters) and ``keras_style`` (total + BatchNorm running mean/variance, i.e. what
  Keras ``model.summary()`` prints as "Total params").
* ``count_macs(model, input_shape) -> int``: multiply-accumulates of one item (batch 1), counted by forward
  hooks on Conv1d/2d/3d, ConvTranspose1d/2d/3d and Linear only:

  - conv:            output elements × (C_in / groups) × kernel volume (over **all** kernel dims — 3-D convs
                     count kd·kh·kw, unlike counters that multiply only two of them);
  - transposed conv: input elements × (C_out / groups) × kernel volume;
  - linear:          in_features × out_features (per row it is applied to).

  BatchNorm, activations, pooling, additions and functional (non-module) ops are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONVT = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class ParamCount:
    trainable: int      # requires_grad parameters (PyTorch count)
    total: int          # all parameters, frozen ones included
    keras_style: int    # total + BatchNorm running mean/var (Keras "Total params")

    @property
    def non_trainable_keras(self) -> int:
        return self.keras_style - self.trainable


def count_params(model: nn.Module) -> ParamCount:
    """Trainable / total / Keras-style parameter counts (shared parameters counted once)."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():          # .parameters() already de-duplicates shared tensors
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    running = 0
    for m in model.modules():
        if isinstance(m, _BN) and m.track_running_stats and m.running_mean is not None:
            running += m.running_mean.numel() + m.running_var.numel()
    return ParamCount(trainable=trainable, total=total, keras_style=total + running)


def _layer_macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    n = max(int(out.shape[0]), 1) if out.ndim > 1 else 1
    if isinstance(module, _CONV):
        kernel = math.prod(module.kernel_size)
        return out.numel() // n * (module.in_channels // module.groups) * kernel
    if isinstance(module, _CONVT):
        kernel = math.prod(module.kernel_size)
        return inp.numel() // n * (module.out_channels // module.groups) * kernel
    if isinstance(module, nn.Linear):
        rows = out.numel() // module.out_features // (n if out.ndim > 1 else 1)
        return rows * module.in_features * module.out_features
    return 0


def _as_input(model: nn.Module, input_shape: Any) -> torch.Tensor:
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    if isinstance(input_shape, torch.Tensor):
        return input_shape[:1].to(device=device, dtype=dtype)
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 3:
        raise ValueError(f"input_shape must be (N, C, *spatial), got {shape}")
    return torch.zeros((1,) + shape[1:], device=device, dtype=dtype)


def _conv_out_len(n: int, k: int, s: int, p: Any, d: int) -> int:
    if p == "same":
        return n
    if p == "valid":
        p = 0
    return (n + 2 * int(p) - d * (k - 1) - 1) // s + 1


def _shape_only_forward(module: nn.Module) -> Any:
    """A forward that returns zeros of the right shape without doing the arithmetic (Conv/ConvT/Linear)."""

    def conv_forward(x: torch.Tensor) -> torch.Tensor:
        nd = len(module.kernel_size)
        pads = module.padding if isinstance(module.padding, str) else tuple(module.padding)
        spatial = [_conv_out_len(x.shape[-nd + i], module.kernel_size[i], module.stride[i],
                                 pads if isinstance(pads, str) else pads[i], module.dilation[i])
                   for i in range(nd)]
        return x.new_zeros((*x.shape[:-nd - 1], module.out_channels, *spatial))

    def convt_forward(x: torch.Tensor, output_size: Sequence[int] | None = None) -> torch.Tensor:
        nd = len(module.kernel_size)
        if output_size is not None:
            spatial = [int(s) for s in list(output_size)[-nd:]]
        else:
            spatial = [(x.shape[-nd + i] - 1) * module.stride[i] - 2 * module.padding[i]
                       + module.dilation[i] * (module.kernel_size[i] - 1) + module.output_padding[i] + 1
                       for i in range(nd)]
        return x.new_zeros((*x.shape[:-nd - 1], module.out_channels, *spatial))

    def linear_forward(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != module.in_features:
            raise RuntimeError(f"Linear expects {module.in_features} features, got {x.shape[-1]}")
        return x.new_zeros((*x.shape[:-1], module.out_features))

    if isinstance(module, _CONV):
        return conv_forward
    if isinstance(module, _CONVT):
        return convt_forward
    return linear_forward


def count_macs_by_layer(model: nn.Module, input_shape: Sequence[int] | torch.Tensor, *,
                        execute: bool = False) -> dict[str, int]:
    """MACs per counted module (dotted name -> MACs for one item); a module called twice is summed.

    By default Conv/ConvT/Linear layers are *not executed*: they return zeros of the right shape, so counting a
    15-GMAC network costs milliseconds (everything else — pooling, BN, concatenation — still runs, on zeros).
    ``execute=True`` runs the real layers (use it for models whose control flow depends on values)."""
    x = _as_input(model, input_shape)
    counts: dict[str, int] = {}
    handles = []
    patched: list[nn.Module] = []
    for name, m in model.named_modules():
        if isinstance(m, _CONV + _CONVT + (nn.Linear,)):
            def hook(mod: nn.Module, inputs: Any, output: Any, _name: str = name) -> None:
                counts[_name] = counts.get(_name, 0) + _layer_macs(mod, inputs[0], output)
            handles.append(m.register_forward_hook(hook))
            if not execute:
                m.forward = _shape_only_forward(m)  # type: ignore[method-assign]
                patched.append(m)
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
        for m in patched:
            del m.forward          # back to the class's forward
    return counts


def count_macs(model: nn.Module, input_shape: Sequence[int] | torch.Tensor, *, execute: bool = False) -> int:
    """MACs of one forward pass for one item of shape ``input_shape[1:]`` (``input_shape`` = (N, C, *spatial);
    N is ignored, a tensor may be given instead).  See ``count_macs_by_layer`` for ``execute``."""
    return int(sum(count_macs_by_layer(model, input_shape, execute=execute).values()))


def format_count(n: float, unit: str = "") -> str:
    """1_272_450 -> '1.27 M'; 467_000_000 -> '0.467 G' (MAC style: G below 1e12)."""
    n = float(n)
    if n >= 1e9:
        return f"{n / 1e9:.3f} G{unit}"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M{unit}"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k{unit}"
    return f"{n:.0f}{unit}"
