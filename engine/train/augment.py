"""Augmentation policies of the papers, on unit-range N×1×H×W batches (before ``Preprocess.normalise``).

All randomness comes from an explicit ``torch.Generator`` so a run is a pure function of its seed (and a
resumed run continues bit-identically).  Geometric transforms use one affine grid per image (bilinear,
zero fill = black = air, the CT background).

* ``p0``  (Polsinelli, seed 000): *offline* ×4 — every training image plus 3 transformed copies, each copy with
  rotation U(0°, 90°), scale U(1.1, 1.3) (zoom in) and additive Gaussian noise (σ not given by the paper;
  0.02 of the unit range, assumed).  The copies are fixed for the whole run (drawn from the seed and the
  image index), as in an offline-augmented training set.
* ``p1``  (Garg, seed 001): on the fly, Keras ImageDataGenerator-like: rotation ±10°, width/height shift ±10 %,
  shear ±0.1 rad (magnitudes are the spec's assumed defaults; the paper's Table 2 is missing).
* ``p3``  (Wang, seed 003 repository): rotation ±10°, shift ±10 %, horizontal flip, brightness ×[0.9, 1.1],
  zoom [0.85, 1.15].
* ``flip`` (He, seed 004, 2D analogue of the 3D random flips): horizontal / vertical flips, p = 0.5 each.
* ``mixed`` (LungLens' own, used for the shipped weights): rotation ±15°, zoom [0.9, 1.2], shift ±8 %,
  horizontal flip, contrast/brightness jitter (gamma [0.8, 1.25], gain [0.9, 1.1]) and Gaussian noise σ 0.01 —
  the papers' transforms combined, plus the window variability of paper-figure images.
* ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

POLICIES = ("none", "p0", "p1", "p3", "flip", "mixed")


def affine(x: torch.Tensor, angle_deg: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
           shear: torch.Tensor | None = None, hflip: torch.Tensor | None = None,
           vflip: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image affine warp of N×C×H×W (rotation about the centre, isotropic zoom, shift as a fraction of
    the image size, x-shear in radians, flips).  Positive angles turn the picture clockwise as displayed (row 0
    at the top); ``scale`` > 1 zooms in; a positive x shift moves content right.  Output size = input size."""
    n = x.shape[0]
    dtype = torch.float32
    a = torch.deg2rad(angle_deg.to(dtype))
    cos, sin = torch.cos(a), torch.sin(a)
    inv_s = 1.0 / scale.to(dtype)
    sh = torch.zeros(n, dtype=dtype) if shear is None else shear.to(dtype)
    # Output->input mapping in normalised coordinates: R(-a) · Shear · S^-1, then translate.
    m = torch.zeros(n, 2, 3, dtype=dtype)
    m[:, 0, 0] = cos * inv_s
    m[:, 0, 1] = (sin + cos * torch.tan(sh)) * inv_s
    m[:, 1, 0] = -sin * inv_s
    m[:, 1, 1] = (cos - sin * torch.tan(sh)) * inv_s
    m[:, :, 2] = -2.0 * shift.to(dtype)  # shift is a fraction of the size; grid spans 2 units
    if hflip is not None:
        m[:, :, 0] = torch.where(hflip[:, None], -m[:, :, 0], m[:, :, 0])
    if vflip is not None:
        m[:, :, 1] = torch.where(vflip[:, None], -m[:, :, 1], m[:, :, 1])
    grid = F.affine_grid(m, list(x.shape), align_corners=False)
    out = F.grid_sample(x.to(dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.to(x.dtype)


def _u(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


@dataclass(frozen=True)
class Augment:
    """A policy applied to a unit-range batch: ``aug(x, generator)`` -> augmented batch in [0, 1]."""

    policy: str = "none"
    noise_std: float = 0.02

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown augmentation {self.policy!r}; choose one of {POLICIES}")

    @property
    def offline_copies(self) -> int:
        """How many fixed variants per image the policy defines (P0: 4 = original + 3 copies)."""
        return 4 if self.policy == "p0" else 1

    def __call__(self, x: torch.Tensor, g: torch.Generator, copy: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        x = x.to(torch.float32)
        if self.policy == "none":
            return x
        if self.policy == "p0":
            # copy 0 = the original; copies 1..3 transformed (the generator is seeded per image+copy).
            out = affine(x, _u(g, n, 0.0, 90.0), _u(g, n, 1.1, 1.3), torch.zeros(n, 2))
            out = out + self.noise_std * torch.randn(out.shape, generator=g)
            out = out.clamp_(0.0, 1.0)
            if copy is not None:
                keep = (copy == 0).view(-1, 1, 1, 1)
                out = torch.where(keep, x, out)
            return out
        if self.policy == "p1":
            return affine(x, _u(g, n, -10.0, 10.0), torch.ones(n), _u(g, 2 * n, -0.1, 0.1).view(n, 2),
                          shear=_u(g, n, -0.1, 0.1)).clamp_(0.0, 1.0)
        if self.policy == "p3":
            out = affine(x, _u(g, n, -10.0, 10.0), _u(g, n, 0.85, 1.15), _u(g, 2 * n, -0.1, 0.1).view(n, 2),
                         hflip=torch.rand(n, generator=g) < 0.5)
            return (out * _u(g, n, 0.9, 1.1).view(n, 1, 1, 1)).clamp_(0.0, 1.0)
        if self.policy == "mixed":
            out = affine(x, _u(g, n, -15.0, 15.0), _u(g, n, 0.9, 1.2), _u(g, 2 * n, -0.08, 0.08).view(n, 2),
                         hflip=torch.rand(n, generator=g) < 0.5).clamp_(0.0, 1.0)
            gamma = torch.exp(_u(g, n, -0.223, 0.223)).view(n, 1, 1, 1)
            out = out.pow(gamma) * _u(g, n, 0.9, 1.1).view(n, 1, 1, 1)
            return (out + 0.01 * torch.randn(out.shape, generator=g)).clamp_(0.0, 1.0)
        # flip
        return affine(x, torch.zeros(n), torch.ones(n), torch.zeros(n, 2),
                      hflip=torch.rand(n, generator=g) < 0.5, vflip=torch.rand(n, generator=g) < 0.5)


def seeded_generator(*parts: int) -> torch.Generator:
    """A generator seeded from a tuple of ints (seed, epoch, step, ...), stable across runs and platforms."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFF)) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    g = torch.Generator()
    g.manual_seed(h & 0x7FFFFFFFFFFFFFFF)
    return g


def apply_offline(aug: Augment, x: torch.Tensor, index: torch.Tensor, copy: torch.Tensor, seed: int) -> torch.Tensor:
    """P0's offline copies: image ``index`` copy ``copy`` always gets the same transform for a given seed."""
    out = []
    for i in range(x.shape[0]):
        g = seeded_generator(seed, 7919, int(index[i]), int(copy[i]))
        out.append(aug(x[i:i + 1], g, copy[i:i + 1]))
    return torch.cat(out) if out else x.to(torch.float32)

