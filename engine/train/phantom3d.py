"""In-memory synthetic phantom sets for the 3-D networks (what the shipped ``covidnet3d_s`` was trained on).

Each case is a deterministic function of ``(set_seed, index)``: anatomy, noise, field of view, slice spacing and
lesions come from ``engine.phantom.make_phantom`` and ``engine.train.data3d.sample_lesions``; nothing is written
to disk, so a set of a few hundred chests costs minutes, not the NIfTI round trip of ``make_phantom_dataset``.

``MODERATE_SET`` is an honest *easier* set: positives have clearly visible multifocal involvement (3-10 large
ground-glass / consolidation lesions; the lesion share of the lung volume is recorded per case and must reach
``min_involvement`` = 3 %; drawn sets come out at 3-22 %, median ~7 %, i.e. MosMed CT-1-like extent, no CT-3/4
severe cases), negatives are lesion-free.  Slice spacing, noise, body size and field of view are drawn
independently of the label so they cannot leak it.  Small or single lesions (the mild end of real COVID-19) are
deliberately *not* in this set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np

MODERATE_SET: dict[str, Any] = {
    "name": "lunglens-phantom3d-multifocal-v1",
    "inplane": (96, 128),             # in-plane matrix (multiple of 8), drawn per case
    "fov_mm": (320.0, 400.0),         # field of view -> in-plane spacing = fov / matrix
    "extent_mm": (260.0, 330.0),      # cranio-caudal coverage
    "slice_mm": (2.5, 3.0, 5.0),      # slice spacing, drawn independently of the label
    "noise_hu": (6.0, 22.0),
    "lesions": (3, 10),               # lesion count of positives
    "radius_mm": (12.0, 40.0),        # log-uniform ground-glass semi-axes (consolidation x0.7), +-30 % anisotropy
    "ggo_fraction": 0.7,
    "min_involvement": 0.03,          # positives whose lesion share of the lung is smaller are redrawn
    "positive_fraction": 0.5,
}


@dataclass
class PhantomCase:
    index: int
    seed: int
    label: int                 # 1 = COVID-like lesions, 0 = lesion-free
    volume: Any                # engine.io.Volume (HU)
    lesion_mask: np.ndarray    # uint8 (z, y, x)
    lung_mask: np.ndarray      # uint8 (z, y, x)
    info: dict[str, Any]


def make_case(set_seed: int, index: int, params: Mapping[str, Any] | None = None) -> PhantomCase:
    """Case ``index`` of the set ``set_seed`` (same arguments -> identical volume, masks and label)."""
    from engine.phantom import make_phantom
    from engine.train.data3d import sample_lesions

    p = {**MODERATE_SET, **dict(params or {})}
    seed = int(np.random.default_rng([int(set_seed), int(index)]).integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    label = int(rng.uniform() < float(p["positive_fraction"]))
    matrix = int(rng.integers(p["inplane"][0] // 8, p["inplane"][1] // 8 + 1) * 8)
    fov = float(rng.uniform(*p["fov_mm"]))
    sz = float(rng.choice(p["slice_mm"]))
    nz = max(8, int(round(float(rng.uniform(*p["extent_mm"])) / sz)))
    spacing = (sz, fov / matrix, fov / matrix)
    anatomy = {"noise_hu": float(rng.uniform(*p["noise_hu"])), "body_scale": float(rng.uniform(0.85, 1.1)),
               "fit_fov": True}
    shape = (nz, matrix, matrix)
    healthy = make_phantom(shape, spacing, seed=seed, lesions=0, **anatomy)
    ph = healthy
    lung_n = max(int(healthy.lung_mask.sum()), 1)
    if label:
        for _attempt in range(20):
            k = int(rng.integers(p["lesions"][0], p["lesions"][1] + 1))
            specs = sample_lesions(healthy.lung_mask.astype(bool), spacing, k, rng, tuple(p["radius_mm"]),
                                   float(p["ggo_fraction"]))
            ph = make_phantom(shape, spacing, seed=seed, lesions=specs, **anatomy)
            if ph.lesion_mask.sum() / lung_n >= float(p["min_involvement"]):
                break
        else:
            raise RuntimeError(f"case {index}: no draw reached {p['min_involvement']:.0%} involvement in 20 tries")
    vox_ml = float(np.prod(spacing)) / 1000.0
    info = {"index": int(index), "seed": seed, "label": label, "shape": list(shape),
            "spacing_mm": [round(s, 4) for s in spacing], "noise_hu": anatomy["noise_hu"],
            "body_scale": anatomy["body_scale"], "n_lesions": len(ph.lesions), "kinds": sorted({l.kind for l in ph.lesions}),
            "lesion_ml": round(float(ph.lesion_mask.sum()) * vox_ml, 2), "lung_ml": round(lung_n * vox_ml, 1),
            "involvement": round(float(ph.lesion_mask.sum()) / lung_n, 4)}
    return PhantomCase(index, seed, label, ph.volume, ph.lesion_mask, healthy.lung_mask, info)


def iter_cases(set_seed: int, indices: range | list[int],
               params: Mapping[str, Any] | None = None) -> Iterator[PhantomCase]:
    for i in indices:
        yield make_case(set_seed, i, params)


def ground_glass_fraction(case: PhantomCase, lo: float = -700.0, hi: float = -200.0) -> float:
    """The trivial hand-made feature: share of lung voxels in ``lo..hi`` HU (a ceiling check for a set)."""
    lung = case.lung_mask.astype(bool)
    hu = np.asarray(case.volume.array)[lung]
    return float(((hu >= lo) & (hu <= hi)).mean()) if hu.size else 0.0


__all__ = ["MODERATE_SET", "PhantomCase", "make_case", "iter_cases", "ground_glass_fraction"]
