"""The 3-D path of ``engine.preprocess.Preprocess`` (``spatial_dims=3``) and its inverse for heatmaps.

Forward (one CT volume -> one N×C×D×H×W tensor), in the order of P4 (spec §5.5) with the fixes the spec asks for:

1. **Resample along z to a common slice spacing** (``target_spacing[0]`` mm, default 5 mm; antialiased linear),
   so slice thickness cannot leak the label.  In-plane scale is set by step 4.
2. **Slice sampling** to D slices, relative order preserved: *random* for training (delete random slices until D
   remain / duplicate random slices in place), *symmetrical* for evaluation (centre-out at equal intervals,
   the public code's ``SymmetricalResampler``; the docstring examples n=7 -> D=15, 10, 3 hold exactly).
3. Optional in-plane **lung crop** (``lung_crop=True``: one square box around the lung field of the stack).
4. **HU window** -> [0, 1] (8-bit stacks: /255), **resize** in-plane to ``crop_scale`` × (H, W) (bilinear,
   antialiased when shrinking — the shared ``resize``), **centre-crop** to (H, W) with the offset
   ``(S - H) // 2`` (the public code's NIfTI path cropped an off-centre window; this one is centred).
5. **Normalise** ``(x - mean) / std`` and replicate grey to ``in_chans``.
6. Training only: **random flips** (each of the axes in ``flip_axes`` with probability 0.5, the whole transform
   applied with probability 0.5 — torchio's RandomFlip as configured by P4).

Every step is recorded in a ``VolumeGeometry``; ``volume_to_voxels`` walks it backwards so a D×H×W map on the
model grid lands on the source volume's (z, y, x) voxel grid (slices between sampled ones are interpolated,
voxels outside the centre crop are 0).  Options beyond ``Preprocess``'s fields live in ``Preprocess.extra``:
``crop_scale`` (1.25), ``flip_axes`` ((0, 1, 2)), ``flip_p`` (0.5), ``transform_p`` (0.5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch

DEFAULT_Z_SPACING_MM = 5.0
DEFAULT_CROP_SCALE = 1.25


@dataclass(frozen=True)
class VolumeGeometry:
    """How a model input was cut from a source volume (all indices on the (z, y, x) voxel grids)."""

    source_shape: tuple[int, int, int]          # (Z, Y, X) of the source volume
    source_spacing: tuple[float, float, float]  # (z, y, x) mm
    resampled_depth: int                        # slices after resampling z to the target spacing
    slice_indices: tuple[int, ...]              # sampled slices, indices into the resampled stack, sorted
    crop_box: tuple[int, int, int, int]         # (y0, y1, x0, x1) half-open in-plane box on the source grid
    resized_hw: tuple[int, int]                 # the box was resized to this (crop_scale × input)
    crop_offset: tuple[int, int]                # centre-crop offset (rows, cols) inside the resized grid
    input_size: tuple[int, int, int]            # (D, H, W) of the model input
    flips: tuple[bool, bool, bool] = (False, False, False)   # training flips applied to (D, H, W)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------ slice sampling
def symmetrical_indices(n: int, depth: int) -> list[int]:
    """P4's deterministic evaluation sampling: ``depth`` indices out of ``n`` slices, sorted.

    Centre-out at equal intervals: start at the middle slice (n//2 for odd n, n//2 - 1 for even n), then
    middle + i, middle - i, middle + 2i, ... with i = n // depth.  When depth > n, whole copies of 0..n-1 are
    repeated ceil((depth - n) / n) times and the remainder is filled with the same centre-out rule.
    """
    if n < 1 or depth < 1:
        raise ValueError(f"slice sampling needs n >= 1 and depth >= 1, got n={n}, depth={depth}")
    if depth == n:
        return list(range(n))
    if depth > n:
        add = depth - n
        copies = -(-add // n)
        idx = list(range(n)) * copies
        rest = depth - len(idx)
        return sorted(idx + (_centre_out(n, rest) if rest > 0 else []))
    return sorted(_centre_out(n, depth))


def _centre_out(n: int, count: int) -> list[int]:
    interval = max(1, n // count)
    idx = n // 2 if n % 2 == 1 else n // 2 - 1
    out = [idx]
    step = 1
    right = True
    while len(out) < count:
        idx = idx + step * interval if right else idx - step * interval
        right = not right
        step += 1
        out.append(idx)
    # The public code never leaves the range for these inputs; clip defensively (n, count from the same rule).
    return [min(max(i, 0), n - 1) for i in out]


def random_indices(n: int, depth: int, rng: np.random.Generator) -> list[int]:
    """P4's training sampling, relative order kept.  Deleting random slices one at a time until ``depth`` remain
    is a uniform random subset; when n < depth, ``depth - n`` random slices (with replacement) are duplicated in
    place."""
    if n < 1 or depth < 1:
        raise ValueError(f"slice sampling needs n >= 1 and depth >= 1, got n={n}, depth={depth}")
    if depth == n:
        return list(range(n))
    if depth < n:
        return sorted(rng.choice(n, size=depth, replace=False).tolist())
    counts = 1 + np.bincount(rng.integers(0, n, size=depth - n), minlength=n)
    return np.repeat(np.arange(n), counts).tolist()


# ------------------------------------------------------------------------------------------ interpolation
def linear_weights(n_in: int, n_out: int, antialias: bool = True) -> np.ndarray:
    """(n_out × n_in) weights of 1-D linear resampling with ``align_corners=False`` geometry (the one
    ``F.interpolate(size=...)`` uses); when shrinking and ``antialias``, a triangle filter widened by
    n_in / n_out (PIL-style), so thin slices are averaged rather than skipped."""
    scale = n_in / n_out
    support = max(1.0, scale) if antialias else 1.0
    centres = (np.arange(n_out) + 0.5) * scale - 0.5
    src = np.arange(n_in)
    w = np.clip(1.0 - np.abs(src[None, :] - centres[:, None]) / support, 0.0, None)
    # Edge handling as F.interpolate: positions beyond the first/last sample clamp to the edge sample.
    empty = w.sum(1) == 0
    if empty.any():
        nearest = np.clip(np.rint(centres[empty]), 0, n_in - 1).astype(int)
        w[empty, nearest] = 1.0
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def resampled_depth(n: int, spacing_z: float, target_z: float | None) -> int:
    """Number of slices after resampling ``n`` slices of ``spacing_z`` mm to ``target_z`` mm (same extent)."""
    if not target_z or target_z <= 0:
        return n
    return max(1, int(round(n * spacing_z / target_z)))


def _inverse_axis(n_src: int, n_model: int, box0: int, box1: int, resized: int, offset: int) -> np.ndarray:
    """(n_src × n_model) weights taking a model-grid axis back to a source axis through box -> resize -> crop.

    A source pixel centre s maps to resized coordinate u = (s + 0.5 - box0) * resized / (box1 - box0) - 0.5 and
    to model coordinate m = u - offset.  Pixels outside the model's field of view get 0; inside, linear
    interpolation between model pixel centres (clamped at the crop's edge pixels)."""
    w = np.zeros((n_src, n_model), dtype=np.float32)
    extent = box1 - box0
    s = np.arange(n_src, dtype=np.float64)
    m = (s + 0.5 - box0) * resized / extent - 0.5 - offset
    inside = (m >= -0.5) & (m <= n_model - 0.5) & (s >= box0) & (s < box1)
    mc = np.clip(m, 0.0, n_model - 1)
    lo = np.floor(mc).astype(int)
    hi = np.minimum(lo + 1, n_model - 1)
    frac = (mc - lo).astype(np.float32)
    rows = np.flatnonzero(inside)
    np.add.at(w, (rows, lo[rows]), 1.0 - frac[rows])
    np.add.at(w, (rows, hi[rows]), frac[rows])
    return w


def _inverse_z(n_src: int, n_resampled: int, indices: Sequence[int]) -> np.ndarray:
    """(n_src × D) weights: each source slice reads the sampled model slices around its resampled position
    (linear between sampled positions, duplicates averaged, clamped beyond the first/last sampled slice)."""
    idx = np.asarray(indices, dtype=np.float64)
    uniq = np.unique(idx)
    r = (np.arange(n_src) + 0.5) * n_resampled / n_src - 0.5
    w_uniq = np.zeros((n_src, len(uniq)), dtype=np.float64)
    if len(uniq) == 1:
        w_uniq[:, 0] = 1.0
    else:
        rc = np.clip(r, uniq[0], uniq[-1])
        hi = np.clip(np.searchsorted(uniq, rc, side="right"), 1, len(uniq) - 1)
        lo = hi - 1
        frac = (rc - uniq[lo]) / (uniq[hi] - uniq[lo])
        rows = np.arange(n_src)
        w_uniq[rows, lo] += 1.0 - frac
        w_uniq[rows, hi] += frac
    # spread each unique position's weight evenly over the model slices that sampled it
    member = (idx[None, :] == uniq[:, None]).astype(np.float64)            # U × D
    member /= member.sum(1, keepdims=True)
    return (w_uniq @ member).astype(np.float32)


# ------------------------------------------------------------------------------------------ forward
def _extra(pre: Any, key: str, default: Any) -> Any:
    extra = getattr(pre, "extra", None) or {}
    return extra.get(key, default)


def square_box(box: tuple[int, int, int, int], h: int, w: int) -> tuple[int, int, int, int]:
    """Grow the shorter side of ``box`` about its centre to make it square, shifted/clipped into the image."""
    y0, y1, x0, x1 = box
    side = max(y1 - y0, x1 - x0)

    def grow(a0: int, a1: int, limit: int) -> tuple[int, int]:
        s = min(side, limit)
        c = (a0 + a1) / 2.0
        b0 = int(round(c - s / 2.0))
        b0 = min(max(b0, 0), limit - s)
        return b0, b0 + s

    y0, y1 = grow(y0, y1, h)
    x0, x1 = grow(x0, x1, w)
    return y0, y1, x0, x1


def unit_volume(pre: Any, volume: Any, spacing: Sequence[float] | None = None, *, is_hu: bool | None = None,
                train: bool = False, rng: np.random.Generator | None = None,
                crop_box: tuple[int, int, int, int] | None = None) -> tuple[torch.Tensor, VolumeGeometry]:
    """Steps 1–4 and 6 (everything but normalisation): 1×1×D×H×W float32 in [0, 1] and the geometry.

    ``volume`` is an ``engine.io.Volume`` or a (z, y, x) array (then give ``spacing`` in mm and ``is_hu``).
    ``crop_box`` overrides the in-plane box (e.g. a cached lung box).  Training needs ``rng``.
    """
    from engine.preprocess.definition import lung_bounding_box, resize

    if getattr(pre, "spatial_dims", 3) != 3:
        raise ValueError("volume3d is the 3D path; this Preprocess has spatial_dims="
                         f"{pre.spatial_dims} (use Preprocess.slices for 2D models)")
    array = getattr(volume, "array", volume)
    if spacing is None:
        spacing = getattr(volume, "spacing", None)
    if is_hu is None:
        is_hu = bool(getattr(volume, "is_hu", True))
    array = np.asarray(array)
    if array.ndim != 3 or min(array.shape) < 1:
        raise ValueError(f"a 3D model needs a (z, y, x) volume, got an array of shape {array.shape}")
    if spacing is None:
        raise ValueError("spacing (z, y, x) in mm is needed to resample the slices; pass spacing= or a Volume")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive mm values (z, y, x), got {spacing}")
    size = tuple(int(s) for s in pre.input_size)
    if len(size) != 3:
        raise ValueError(f"a 3D Preprocess needs input_size (D, H, W), got {pre.input_size}")
    depth, out_h, out_w = size
    if train and rng is None:
        raise ValueError("training-time sampling needs rng=np.random.Generator (for reproducible augmentation)")

    n, h, w = array.shape
    # 1. common slice spacing (8-bit stacks carry no trustworthy spacing: their slices are taken as they are)
    target = pre.target_spacing
    target_z = target[0] if (target is not None and is_hu) else None
    if target is not None and any(t not in (None, 0, 0.0) for t in target[1:]):
        raise ValueError("3D target_spacing sets the slice spacing only: give (z_mm, 0, 0); the in-plane scale "
                         "comes from the resize to input_size")
    n_res = resampled_depth(n, spacing[0], target_z)
    # 2. slice sampling on the resampled stack; only the sampled rows of the resampling matrix are computed
    idx = random_indices(n_res, depth, rng) if train else symmetrical_indices(n_res, depth)
    if n_res == n:
        stack = np.asarray(array[np.asarray(idx)], dtype=np.float32)
    else:
        wz = linear_weights(n, n_res)[np.asarray(idx)]                      # D × n
        cols = np.flatnonzero(wz.any(0))
        src = np.asarray(array[cols], dtype=np.float32).reshape(len(cols), -1)
        stack = (wz[:, cols] @ src).reshape(depth, h, w)
    # 3. in-plane box
    if crop_box is None:
        if getattr(pre, "lung_crop", False) and is_hu:
            crop_box = square_box(lung_bounding_box(np.asarray(array)), h, w)
        else:
            crop_box = (0, h, 0, w)
    y0, y1, x0, x1 = (int(v) for v in crop_box)
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise ValueError(f"crop box {crop_box} does not fit the {h}×{w} slices")
    # 4. window, resize to crop_scale × input, centre crop
    unit = pre.to_unit(stack[:, y0:y1, x0:x1], is_hu)[:, None]             # D×1×h×w
    scale = float(_extra(pre, "crop_scale", DEFAULT_CROP_SCALE))
    if scale < 1.0:
        raise ValueError(f"crop_scale must be >= 1 (resize then centre-crop), got {scale}")
    rh, rw = int(round(out_h * scale)), int(round(out_w * scale))
    unit = resize(unit, (rh, rw))
    oy, ox = (rh - out_h) // 2, (rw - out_w) // 2
    unit = unit[:, :, oy:oy + out_h, ox:ox + out_w]
    vol = unit[:, 0][None, None].contiguous()                                # 1×1×D×H×W
    # 6. training flips
    flips = (False, False, False)
    if train:
        if rng.uniform() < float(_extra(pre, "transform_p", 0.5)):
            axes = tuple(int(a) for a in _extra(pre, "flip_axes", (0, 1, 2)))
            p = float(_extra(pre, "flip_p", 0.5))
            flips = tuple(bool(a in axes and rng.uniform() < p) for a in range(3))  # type: ignore[assignment]
            dims = [2 + a for a in range(3) if flips[a]]
            if dims:
                vol = vol.flip(dims).contiguous()
    geometry = VolumeGeometry(
        source_shape=(n, h, w), source_spacing=spacing, resampled_depth=n_res,
        slice_indices=tuple(int(i) for i in idx), crop_box=(y0, y1, x0, x1), resized_hw=(rh, rw),
        crop_offset=(oy, ox), input_size=size, flips=flips)  # type: ignore[arg-type]
    return vol, geometry


def volume_tensor(pre: Any, volume: Any, spacing: Sequence[float] | None = None, *, is_hu: bool | None = None,
                  train: bool = False, rng: np.random.Generator | None = None,
                  crop_box: tuple[int, int, int, int] | None = None) -> tuple[torch.Tensor, VolumeGeometry]:
    """The whole forward path: 1×C×D×H×W float32 network input and its geometry."""
    unit, geometry = unit_volume(pre, volume, spacing, is_hu=is_hu, train=train, rng=rng, crop_box=crop_box)
    return pre.normalise(unit), geometry


# ------------------------------------------------------------------------------------------ inverse
def volume_to_voxels(heatmap: Any, geometry: VolumeGeometry) -> np.ndarray:
    """Map(s) on the model grid (D×H×W or N×D×H×W; other sizes are first resized trilinearly to the model
    input) -> the source voxel grid (Z×Y×X or N×Z×Y×X), float32, values not renormalised."""
    from engine.preprocess.definition import resize

    m = torch.as_tensor(np.asarray(heatmap) if not isinstance(heatmap, torch.Tensor) else heatmap)
    m = m.detach().to(torch.float32)
    squeeze = m.ndim == 3
    if squeeze:
        m = m[None]
    if m.ndim != 4:
        raise ValueError(f"expected a D×H×W or N×D×H×W map, got shape {tuple(m.shape)}")
    size = tuple(geometry.input_size)
    if tuple(m.shape[1:]) != size:
        m = resize(m[:, None], size)[:, 0]
    dims = [1 + a for a in range(3) if geometry.flips[a]]
    if dims:
        m = m.flip(dims)
    Z, Y, X = geometry.source_shape
    y0, y1, x0, x1 = geometry.crop_box
    wz = torch.from_numpy(_inverse_z(Z, geometry.resampled_depth, geometry.slice_indices))
    wy = torch.from_numpy(_inverse_axis(Y, size[1], y0, y1, geometry.resized_hw[0], geometry.crop_offset[0]))
    wx = torch.from_numpy(_inverse_axis(X, size[2], x0, x1, geometry.resized_hw[1], geometry.crop_offset[1]))
    out = torch.einsum("ndhw,xw->ndhx", m, wx)
    out = torch.einsum("ndhx,yh->ndyx", out, wy)
    out = torch.einsum("ndyx,zd->nzyx", out, wz)
    result = out.contiguous().numpy()
    return result[0] if squeeze else result


def geometry_from_dict(data: dict[str, Any]) -> VolumeGeometry:
    return VolumeGeometry(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})


__all__ = [
    "VolumeGeometry", "symmetrical_indices", "random_indices", "linear_weights", "resampled_depth", "square_box",
    "unit_volume", "volume_tensor", "volume_to_voxels", "geometry_from_dict",
    "DEFAULT_Z_SPACING_MM", "DEFAULT_CROP_SCALE",
]
