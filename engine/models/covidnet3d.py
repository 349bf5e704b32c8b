"""P4 (He et al., AAAI-21): CovidNet3D-S / -L, built from a *genotype* over the DNAS search space (spec §5).

A genotype is the list of 21 op names, one per searchable block in cell order (``s0_c0 … s5_c0``), drawn from
``engine.models.ops3d.PAPER_OPS``.  The searched genotypes of the paper were never published, so the default is
the spec's *representative* genotype (cyclic [3x3x3_MBConv3, 5x5x5_MBConv3, 3x3x3_MBConv4, skip] →
S 2,677,955 / L 17,048,483 params at in_chans=1, 3 classes).  ``engine.search`` finds real ones and exports
JSON files that ``create_model("covidnet3d_s", genotype="path/to/genotype.json")`` accepts.

Layout: stem (3×3×3 s2, 32 ch) → fixed 3×3×3 MBConv1 (32→16) → 21 blocks → feature mix 1×1×1 →1280 + BN +
ReLU6 (``feature_mix``, the CAM layer) → GAP → Dropout(0.5) → Linear (``classifier``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from engine.models.ops3d import (
    CODE_OPS,
    ConvBNReLU6,
    MacroSpace,
    SearchBlock,
    canonical_op,
    stem_and_first_block,
)
from engine.models.registry import ModelConfig, register_model

P4 = ("P4 He et al., Automated model design and benchmarking of 3D deep learning models for COVID-19 "
      "detection with chest CT scans (AAAI-21)")

REPRESENTATIVE_CYCLE = ("3x3x3_MBConv3", "5x5x5_MBConv3", "3x3x3_MBConv4", "skip")


def representative_genotype(num_blocks: int = 21) -> list[str]:
    """The spec's fixed benchmark genotype (§5.2): the 4-op cycle repeated over the blocks."""
    return [REPRESENTATIVE_CYCLE[i % len(REPRESENTATIVE_CYCLE)] for i in range(num_blocks)]


class GenotypeError(ValueError):
    """A genotype (list, JSON file or JSON text) that does not describe this search space."""


def genotype_macro(genotype: Any) -> dict | None:
    """The ``macro`` overrides stored in a genotype document (JSON path/text or dict), if any."""
    try:
        doc = genotype
        if isinstance(genotype, (str, Path)):
            text = str(genotype)
            if text.lstrip().startswith("{"):
                doc = json.loads(text)
            elif Path(text).is_file():
                doc = json.loads(Path(text).read_text(encoding="utf-8"))
        if isinstance(doc, dict) and isinstance(doc.get("macro"), dict):
            return dict(doc["macro"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # load_genotype reports the problem
    return None


def load_genotype(genotype: Any, num_blocks: int = 21, *, space: str | None = None) -> list[str]:
    """Normalise every accepted genotype form to a list of ``num_blocks`` canonical op names.

    Accepted: ``None``/``"representative"`` (the default), a sequence of op names, a JSON file path or JSON text
    holding either such a list, ``{"genotype": [...], "space": ...}`` (what ``engine.search`` exports), or the
    public code's per-epoch architecture file ``{"s0_c0": [one-hot over its 9/10 candidates], ...}``.
    """
    source = "genotype"
    if genotype is None or (isinstance(genotype, str) and genotype == "representative"):
        return representative_genotype(num_blocks)
    if isinstance(genotype, (str, Path)):
        text = str(genotype)
        if text.lstrip().startswith(("[", "{")):
            genotype = _parse_json(text, "genotype text")
        else:
            path = Path(text)
            source = str(path)
            if not path.is_file():
                raise GenotypeError(f"genotype file not found: {path} (give a JSON file written by "
                                    "`lunglens-engine search`, or a list of op names)")
            try:
                genotype = _parse_json(path.read_text(encoding="utf-8"), str(path))
            except UnicodeDecodeError as exc:
                raise GenotypeError(f"genotype file {path} is not UTF-8 JSON text ({exc})") from exc
    if isinstance(genotype, dict):
        if "genotype" in genotype:
            file_space = genotype.get("space")
            if space and file_space and _space_key(file_space) != _space_key(space):
                raise GenotypeError(f"{source} was searched in space {file_space!r}, not {space!r}; "
                                    f"build it with create_model({file_space!r}, genotype=...)")
            genotype = genotype["genotype"]
        elif all(isinstance(k, str) and k.startswith("s") and "_c" in k for k in genotype):
            genotype = _from_code_masks(genotype, source)
        else:
            raise GenotypeError(f"{source}: a genotype dict needs a 'genotype' list (engine.search export) or "
                                "s{cell}_c{block} one-hot masks (public CovidNet3D code)")
    if not isinstance(genotype, Sequence) or isinstance(genotype, (str, bytes)):
        raise GenotypeError(f"{source}: expected a list of {num_blocks} op names, got {type(genotype).__name__}")
    ops = list(genotype)
    if len(ops) != num_blocks:
        raise GenotypeError(f"{source}: a genotype for this space has {num_blocks} blocks, got {len(ops)}")
    try:
        return [canonical_op(op) for op in ops]
    except (ValueError, TypeError) as exc:
        raise GenotypeError(f"{source}: {exc}") from exc


def _space_key(space: str) -> str:
    return space.lower().replace("-", "_")


def _parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenotypeError(f"{what} is not valid JSON ({exc})") from exc


def _from_code_masks(masks: dict[str, Any], source: str) -> list[str]:
    """The public code's architecture JSON: one boolean/0-1 mask per block over its candidate list."""
    def order(key: str) -> tuple[int, int]:
        cell, block = key[1:].split("_c")
        return int(cell), int(block)

    ops = []
    for key in sorted(masks, key=order):
        mask = [bool(v) for v in masks[key]]
        if sum(mask) != 1:
            raise GenotypeError(f"{source}: mask {key} must select exactly one op, got {masks[key]}")
        index = mask.index(True)
        ops.append(CODE_OPS[index] if index < len(CODE_OPS) else "zero")
    return ops


class CovidNet3D(nn.Module):
    """A derived (fixed-genotype) CovidNet3D.  ``genotype`` is stored on the module for manifests/cards."""

    def __init__(self, genotype: Any = None, *, space: str = "covidnet3d_s", widths: Sequence[int] | None = None,
                 num_classes: int = 2, in_chans: int = 1, dropout: float = 0.5, macro: dict | None = None) -> None:
        super().__init__()
        if macro is None:
            macro = genotype_macro(genotype)
        if widths is not None:
            space_def = MacroSpace(tuple(widths), **{k: tuple(v) if k == "strides" else v
                                                     for k, v in (macro or {}).items()})
        else:
            space_def = MacroSpace.named(space, macro)
        self.space = space
        self.macro = space_def.overrides()
        self.genotype = load_genotype(genotype, space_def.num_blocks, space=space)
        self.stem, self.first_block = stem_and_first_block(in_chans, space_def.stem_stride)
        self.blocks = nn.Sequential(*[
            SearchBlock(c_in, c_out, stride, op)
            for (c_in, c_out, stride, _key), op in zip(space_def.block_layout(), self.genotype)
        ])
        self.feature_mix = ConvBNReLU6(space_def.widths[-1], MacroSpace.MIX_CHANNELS, 1)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(MacroSpace.MIX_CHANNELS, num_classes)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """N×C×D×H×W → the feature-mix output (N×1280×d×h×w), the CAM layer."""
        return self.feature_mix(self.blocks(self.first_block(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"CovidNet3D expects N×C×D×H×W input, got shape {tuple(x.shape)}")
        f = self.forward_features(x)
        return self.classifier(self.dropout(torch.flatten(self.pool(f), 1)))


def _init_weights(model: nn.Module) -> None:
    """He (fan-out) init for the convs that feed BN + ReLU6, unit BN — and a *variance-preserving* init
    (std 1/√fan_in) for the calibration convs.

    The calibration 1×1×1 convs have no BN and no activation after them, and a chain of skip blocks stacks up to
    21 of them: with He init each one doubles the activations' second moment (2^21 over the net), with
    PyTorch's default uniform init each one divides it by 3.  Either way the feature-mix BN sees activations
    whose scale swings by orders of magnitude from one sampled path / training step to the next, its running
    statistics never match, and eval-mode predictions collapse to one class (observed: train-mode logits
    separated the classes while eval-mode logits were all ~+60).  Variance-preserving init keeps a skip chain
    at unit gain."""
    from engine.models.ops3d import Calibration

    calib_convs = {id(m.conv) for m in model.modules() if isinstance(m, Calibration)}
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            if id(m) in calib_convs:
                nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(m.in_channels))
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


_COMMON = dict(
    family="covidnet3d", paper=P4, spatial_dims=3, input_size=(32, 128, 128), paper_in_chans=1,
    paper_num_classes=3, cam_layer="feature_mix", classifier="classifier", cam_kind="cam",
    test_input_size=(16, 64, 64),
)


@register_model(ModelConfig(
    name="covidnet3d_s", aliases=("covidnet3d-s", "CovidNet3D-S"),
    expected_params={"in1_cls3": 2_677_955},  # representative genotype; search-space bounds 676,515 … 6,116,387
    description="CovidNet3D-S (DNAS over 3-D MBConv blocks, widths 24/40/80/96/192/320); default genotype is "
                "the spec's representative one unless a searched genotype is given",
    **_COMMON,
))
def covidnet3d_s(num_classes: int = 2, in_chans: int = 1, genotype: Any = None, **cfg: Any) -> CovidNet3D:
    return CovidNet3D(genotype, space="covidnet3d_s", num_classes=num_classes, in_chans=in_chans, **cfg)


@register_model(ModelConfig(
    name="covidnet3d_l", aliases=("covidnet3d-l", "CovidNet3D-L"),
    expected_params={"in1_cls3": 17_048_483},  # representative genotype; bounds 3,070,947 … 34,268,387
    description="CovidNet3D-L (widths 32/64/128/256/512/1024); default genotype is the representative one",
    **_COMMON,
))
def covidnet3d_l(num_classes: int = 2, in_chans: int = 1, genotype: Any = None, **cfg: Any) -> CovidNet3D:
    return CovidNet3D(genotype, space="covidnet3d_l", num_classes=num_classes, in_chans=in_chans, **cfg)


__all__ = ["CovidNet3D", "GenotypeError", "load_genotype", "genotype_macro", "representative_genotype",
           "REPRESENTATIVE_CYCLE"]
