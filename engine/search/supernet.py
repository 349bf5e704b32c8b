"""The CovidNet3D supernet (spec §5.1) with Gumbel-softmax single-path sampling (spec §5.3).

Every searchable block holds all candidate ops and a row of architecture logits α (``SuperNet.alpha``,
num_blocks × K).  One forward pass executes **one** op per block, drawn by Gumbel-softmax:

    Z = softmax((α + G) / τ),  G = −log(−log U),  k = argmax Z,  h = onehot(k) − sg(Z) + Z   (straight-through)

and multiplies the block's output by ``h_k`` (value exactly 1 in the forward pass, ∂Z_k/∂α in the backward
pass), so the loss depends on α and α is trained — the paper's intent.  ``alpha_grad="none"`` reproduces the
released code, whose boolean mask left α without gradient (uniform random sampling with weight sharing).

The block output for op k is the full block of a derived network (calibration → op → + residual); skip = the
calibration output.  Deriving a network from a genotype (``CovidNet3D``) therefore gives exactly the sub-network
the supernet executed.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.models.covidnet3d import _init_weights
from engine.models.ops3d import (
    CODE_OPS,
    PAPER_OPS,
    Calibration,
    ConvBNReLU6,
    MacroSpace,
    build_op,
    canonical_op,
    is_skip,
    stem_and_first_block,
    triple,
)


def candidate_ops(op_set: str | Sequence[str] = "paper") -> tuple[str, ...]:
    """``"paper"`` -> the paper's 8 ops (skip = true skip); ``"code"`` -> the released code's 9 (incl.
    Identity = 2x under the residual, Zero = skip); or an explicit list of op names."""
    if isinstance(op_set, str):
        if op_set == "paper":
            return PAPER_OPS
        if op_set == "code":
            return CODE_OPS
        raise ValueError(f"op_set must be 'paper', 'code' or a list of op names, got {op_set!r}")
    ops = tuple(canonical_op(o) for o in op_set)
    if len(ops) < 2 or len(set(ops)) != len(ops):
        raise ValueError(f"need at least two distinct candidate ops, got {list(op_set)}")
    return ops


class MixedBlock(nn.Module):
    """Calibration conv + all candidate ops of one searchable block."""

    def __init__(self, c_in: int, c_out: int, stride: "int | tuple[int, int, int]", ops: Sequence[str]) -> None:
        super().__init__()
        self.residual = triple(stride) == (1, 1, 1) and c_in == c_out
        self.calib = Calibration(c_in, c_out, stride)
        self.ops = nn.ModuleList([build_op(op, c_out) for op in ops])

    def forward(self, x: torch.Tensor, index: int, weight: torch.Tensor | None = None) -> torch.Tensor:
        x = self.calib(x)
        op = self.ops[index]
        if is_skip(op):
            out = x
        else:
            y = op(x)
            out = x + y if self.residual else y
        return out if weight is None else out * weight


def gumbel_softmax_st(logits: torch.Tensor, tau: float, generator: torch.Generator | None = None,
                      straight_through: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``logits`` -> (sampled indices, hard weights).  Hard weights are one-hot in value; with
    ``straight_through`` their gradient is that of the soft Gumbel-softmax (else no gradient)."""
    u = torch.rand(logits.shape, generator=generator, dtype=torch.float32).clamp_(1e-10, 1.0 - 1e-10)
    g = -torch.log(-torch.log(u)).to(device=logits.device, dtype=logits.dtype)
    soft = F.softmax((logits + g) / tau, dim=-1)
    index = soft.argmax(dim=-1)
    hard = F.one_hot(index, logits.shape[-1]).to(soft.dtype)
    if straight_through:
        hard = hard - soft.detach() + soft
    return index, hard


class SuperNet(nn.Module):
    """Weight-sharing supernet over ``space`` ('covidnet3d_s' / 'covidnet3d_l')."""

    def __init__(self, space: str = "covidnet3d_s", *, num_classes: int = 2, in_chans: int = 1,
                 op_set: str | Sequence[str] = "paper", dropout: float = 0.5,
                 alpha_grad: str = "straight_through", alpha_init_std: float = 1e-3,
                 macro: dict | None = None) -> None:
        super().__init__()
        if alpha_grad not in ("straight_through", "none"):
            raise ValueError("alpha_grad must be 'straight_through' (paper intent) or 'none' (released code)")
        self.space = space
        self.macro = MacroSpace.named(space, macro)
        self.ops = candidate_ops(op_set)
        self.alpha_grad = alpha_grad
        self.stem, self.first_block = stem_and_first_block(in_chans, self.macro.stem_stride)
        layout = self.macro.block_layout()
        self.block_keys = [key for *_, key in layout]
        self.blocks = nn.ModuleList([MixedBlock(c_in, c_out, s, self.ops) for c_in, c_out, s, _ in layout])
        self.feature_mix = ConvBNReLU6(self.macro.widths[-1], MacroSpace.MIX_CHANNELS, 1)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(MacroSpace.MIX_CHANNELS, num_classes)
        _init_weights(self)
        self.alpha = nn.Parameter(alpha_init_std * torch.randn(len(layout), len(self.ops)))

    # ------------------------------------------------------------------ parameters
    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n != "alpha"]

    # ------------------------------------------------------------------ sampling
    def sample(self, tau: float = 1.0, generator: torch.Generator | None = None) -> tuple[list[int], torch.Tensor]:
        index, hard = gumbel_softmax_st(self.alpha, tau, generator, self.alpha_grad == "straight_through")
        return index.tolist(), hard

    def argmax(self) -> list[int]:
        return self.alpha.detach().argmax(dim=-1).tolist()

    def genotype(self, indices: Sequence[int]) -> list[str]:
        return [self.ops[i] for i in indices]

    def indices(self, genotype: Sequence[str]) -> list[int]:
        ops = [canonical_op(o) for o in genotype]
        missing = [o for o in ops if o not in self.ops]
        if missing or len(ops) != len(self.blocks):
            raise ValueError(f"genotype does not fit this supernet (ops {missing}, length {len(ops)})")
        return [self.ops.index(o) for o in ops]

    def probabilities(self) -> torch.Tensor:
        return F.softmax(self.alpha.detach(), dim=-1)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, indices: Sequence[int] | None = None,
                weights: torch.Tensor | None = None, tau: float = 1.0) -> torch.Tensor:
        """Run one sub-network: ``indices`` (one op per block) with optional straight-through ``weights``
        (num_blocks × K); without ``indices`` a fresh Gumbel sample at temperature ``tau`` is drawn."""
        if indices is None:
            indices, weights = self.sample(tau)
        x = self.first_block(self.stem(x))
        for b, (block, k) in enumerate(zip(self.blocks, indices)):
            x = block(x, int(k), None if weights is None else weights[b, int(k)])
        f = self.feature_mix(x)
        return self.classifier(self.dropout(torch.flatten(self.pool(f), 1)))

    @torch.no_grad()
    def op_macs(self, input_shape: Sequence[int]) -> torch.Tensor:
        """Multiply-accumulates of every candidate op in every block (num_blocks × K) for one input of
        ``input_shape`` (C, D, H, W); skip = 0.  The calibration convs, stem and head run on every path and are
        left out.  The table of the resource term of the search (``SearchConfig.cost_weight``)."""
        macs = torch.zeros(len(self.blocks), len(self.ops))
        count = [0]

        def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            if isinstance(mod, nn.Conv3d):
                k = mod.kernel_size[0] * mod.kernel_size[1] * mod.kernel_size[2]
                count[0] += out[0].numel() * (mod.in_channels // mod.groups) * k
            elif isinstance(mod, nn.Linear):
                count[0] += out[0].numel() * mod.in_features

        was_training = self.training
        self.eval()
        handles = [m.register_forward_hook(hook) for m in self.blocks.modules()
                   if isinstance(m, (nn.Conv3d, nn.Linear))]
        try:
            x = self.first_block(self.stem(torch.zeros(1, *input_shape, device=self.alpha.device)))
            for b, block in enumerate(self.blocks):
                x = block.calib(x)
                for k, op in enumerate(block.ops):
                    if not is_skip(op):
                        count[0] = 0
                        op(x)
                        macs[b, k] = count[0]
        finally:
            for h in handles:
                h.remove()
            self.train(was_training)
        return macs

    def derived_state_dict(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Weights of the chosen sub-network under ``CovidNet3D``'s parameter names (inherit-and-fine-tune)."""
        out: dict[str, torch.Tensor] = {}
        for name, t in self.state_dict().items():
            if name == "alpha":
                continue
            if name.startswith("blocks."):
                parts = name.split(".")
                b = int(parts[1])
                if parts[2] == "calib":
                    out[".".join(["blocks", str(b), "calib"] + parts[3:])] = t
                elif parts[2] == "ops" and int(parts[3]) == int(indices[b]):
                    out[".".join(["blocks", str(b), "op"] + parts[4:])] = t
                continue
            out[name] = t
        return out


__all__ = ["SuperNet", "MixedBlock", "gumbel_softmax_st", "candidate_ops"]
