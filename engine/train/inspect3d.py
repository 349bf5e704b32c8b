"""Qualitative check of a 3-D model on real volumes: score, 3-D CAM on the voxel grid, overlay montages.

    python -m engine.train.inspect3d --weights resources/weights/covidnet3d_s VOLUME [VOLUME ...] --out DIR

For every volume (anything ``engine.io.load_volume`` reads): the model's class probabilities, the CAM of the
positive class mapped onto the volume's own voxels (``Preprocess.to_voxels``), where its peak lies (slice, row,
column, and whether inside the coarse lung field of ``engine.preprocess.lung_mask``), the share of the map's
mass inside that lung field, and a PNG montage of axial slices with the heatmap overlaid (alpha 0.3 as in P4).
Prints one JSON object.  Nothing is written next to the input files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def inspect_volume(loaded: Any, path: str | Path, out_dir: Path | None = None, *, slices: int = 12) -> dict[str, Any]:
    import torch

    from engine.io import load_volume
    from engine.preprocess import Preprocess
    from engine.xai import explain

    vol = load_volume(path)
    pre = loaded.preprocess
    x, geom = pre.volume(vol)
    positive = loaded.positive_index if loaded.positive_index is not None else len(loaded.classes) - 1
    cam, logits = explain(loaded.model, x, "cam", target=positive, return_logits=True)
    probs = torch.softmax(torch.from_numpy(logits), 1)[0].numpy()
    cam = cam[0]
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-8)
    heat = Preprocess.to_voxels(cam, geom)
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    lung = _lung_field(vol.array) if vol.is_hu else None
    result: dict[str, Any] = {
        "file": str(path), "shape": list(vol.shape), "spacing_mm": [round(s, 3) for s in vol.spacing],
        "probabilities": {c: round(float(p), 4) for c, p in zip(loaded.classes, probs)},
        "prediction": loaded.classes[int(np.argmax(probs))],
        "cam_peak_voxel": [int(v) for v in peak],
        "cam_grid": list(cam.shape),
    }
    if lung is not None and lung.any():
        result["cam_peak_in_lung_field"] = bool(lung[peak])
        result["cam_mass_in_lung_field"] = round(float(heat[lung].sum() / max(heat.sum(), 1e-8)), 4)
        result["lung_field_share_of_volume"] = round(float(lung.mean()), 4)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        png = out_dir / (Path(str(path)).name.split(".")[0] + "_cam.png")
        _montage(vol.array, heat, pre.hu_window if vol.is_hu else None, png, slices, result)
        result["montage"] = str(png)
    return result


def _lung_field(hu: np.ndarray) -> np.ndarray:
    """The coarse lung mask of ``engine.preprocess.lung_mask`` back on the full grid."""
    from engine.preprocess import lung_mask

    mask, f = lung_mask(hu)
    if f > 1:
        mask = mask.repeat(f, axis=1).repeat(f, axis=2)[:, :hu.shape[1], :hu.shape[2]]
    return mask


def _montage(hu: np.ndarray, heat: np.ndarray, window: Any, path: Path, n: int, info: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = hu.shape[0]
    picks = np.unique(np.linspace(0, z - 1, min(n, z)).round().astype(int))
    cols = 6
    rows = int(np.ceil(len(picks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.3 * rows + 0.4))
    if window is not None:
        level, width = window
        img = np.clip((hu - (level - width / 2)) / width, 0, 1)
    else:
        img = hu / 255.0
    for ax, k in zip(np.ravel(axes), picks):
        ax.imshow(img[k], cmap="gray", vmin=0, vmax=1)
        ax.imshow(heat[k], cmap="jet", alpha=0.3, vmin=0, vmax=1)
        ax.set_title(f"z={k}" + (" (peak)" if k == info["cam_peak_voxel"][0] else ""), fontsize=7)
    for ax in np.ravel(axes):
        ax.axis("off")
    probs = ", ".join(f"{c} {p:.2f}" for c, p in info["probabilities"].items())
    fig.suptitle(f"{Path(info['file']).name}: {probs}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("volumes", nargs="+", type=Path)
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None, help="folder for PNG montages (not next to the inputs)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    import torch

    from engine.weights import load_weights

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_weights(args.weights)
    results = [inspect_volume(loaded, p, args.out) for p in args.volumes]
    print(json.dumps({"weights": str(args.weights), "model": loaded.name, "volumes": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
