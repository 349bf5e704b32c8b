"""Do heatmaps point at lesions?  Pointing game and energy-in-mask per explainer, on the source image grid.

For every image of a manifest with a ``mask_binary`` column (radiologist infection masks,
covid-lesion-masks-2d): canonical read → the weights' ``Preprocess`` → ``engine.xai.explain`` for the COVID
class → ``Preprocess.to_voxels`` back to the original pixel grid → compared with the mask (> 127 = lesion).

* pointing game: hit when the heatmap's maximum (``engine.xai.heatmap_peak``: ties on a plateau broken at its
  centre) lies in the mask (dilated by ``tolerance`` pixels; Zhang et
  al. 2016 use 15 px).  A constant map (no maximum) is a miss and counted as ``degenerate``.
  ``chance_hit_rate`` = mean mask area fraction (what a random point scores).
* energy in mask: Σ(h · mask) / Σ h with h the min-max normalised map (Wang et al. 2020, Score-CAM's
  energy-based pointing game); ``uniform_energy`` = mean mask fraction, the value of an uninformative map.
* IoU of the map thresholded at 0.5 (after min-max) with the mask.
Means come with Student-t 95 % intervals over images.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from engine.train.data import ManifestDataset, read_image_grey
from engine.train.metrics import mean_ci
from engine.xai import heatmap_peak


def read_mask(path) -> np.ndarray:
    return read_image_grey(path) > 127


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    k = 2 * radius + 1
    return (F.max_pool2d(t, k, 1, radius)[0, 0] > 0).numpy()


def score_map(heat: np.ndarray, mask: np.ndarray, tolerance: int = 0) -> dict[str, Any]:
    """Pointing-game hit, energy share and IoU of one heatmap against one boolean mask (same shape)."""
    if heat.shape != mask.shape:
        raise ValueError(f"heatmap {heat.shape} and mask {mask.shape} differ in shape")
    h = heat.astype(np.float64)
    lo, hi = float(np.nanmin(h)), float(np.nanmax(h))
    area = float(mask.mean())
    if not np.isfinite(hi) or hi - lo <= 1e-12:
        return {"hit": False, "degenerate": True, "energy": area, "iou": 0.0, "area": area}
    hn = (h - lo) / (hi - lo)
    y, x = heatmap_peak(hn)   # plateau ties -> the plateau's centre, not its first (corner) pixel
    hit = bool(_dilate(mask, tolerance)[y, x])
    energy = float((hn * mask).sum() / max(hn.sum(), 1e-12))
    on = hn >= 0.5
    union = float((on | mask).sum())
    iou = float((on & mask).sum() / union) if union else 0.0
    return {"hit": hit, "degenerate": False, "energy": energy, "iou": iou, "area": area}


def localize(loaded, data_dir, methods: Sequence[str] | None = None, *, tolerance: int = 0,
             split: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """Run every explainer on every masked image; ``loaded`` is an ``engine.weights.LoadedModel``."""
    from engine.xai import METHODS, ExplainError, explain

    ds = ManifestDataset.from_folder(data_dir, classes=loaded.classes, split=split)
    rows = [s for s in ds.samples if s.extra.get("mask_binary")]
    if not rows:
        raise ValueError(f"{ds.manifest} has no 'mask_binary' column (or it is empty); localisation needs "
                         "a lesion mask per image")
    if limit:
        rows = rows[:limit]
    pos = loaded.positive_index
    if pos is None:
        raise ValueError("the weights have no COVID class to explain")
    methods = list(methods or METHODS)
    pre = loaded.preprocess
    per: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    errors: dict[str, str] = {}
    predicted_pos = 0
    for s in rows:
        img = read_image_grey(s.path)
        mask = read_mask(ds.root / s.extra["mask_binary"])
        if mask.shape != img.shape:
            raise ValueError(f"mask {s.extra['mask_binary']} is {mask.shape}, image {s.path.name} is {img.shape}")
        x, geom = pre.image(img, is_hu=False)
        with torch.no_grad():
            predicted_pos += int(loaded.model(x).argmax(1).item() == pos)
        for m in methods:
            if m in errors:
                continue
            try:
                heat = explain(loaded.model, x, m, target=pos)[0]
            except ExplainError as exc:
                errors[m] = str(exc)
                continue
            src = pre.to_voxels(heat, geom)
            per[m].append(score_map(src, mask, tolerance))
    areas = [r["area"] for rs in per.values() for r in rs][:len(rows)] or [0.0]
    result: dict[str, Any] = {
        "n": len(rows), "tolerance_px": tolerance, "target_class": loaded.classes[pos],
        "predicted_covid_rate": predicted_pos / len(rows),
        "chance_hit_rate": float(np.mean(areas)), "uniform_energy": float(np.mean(areas)),
        "methods": {},
    }
    for m in methods:
        if m in errors:
            result["methods"][m] = {"error": errors[m]}
            continue
        rs = per[m]
        hits = [float(r["hit"]) for r in rs]
        result["methods"][m] = {
            "pointing_game": mean_ci(hits),
            "energy_in_mask": mean_ci([r["energy"] for r in rs]),
            "iou_at_0.5": mean_ci([r["iou"] for r in rs]),
            "degenerate_maps": int(sum(r["degenerate"] for r in rs)),
        }
    return result
