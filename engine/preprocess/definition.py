"""One preprocessing definition per model, used by training, the viewer and batch screening alike.

A ``Preprocess`` turns what a reader gives us (an HU slice/volume, or a pre-windowed 8-bit image) into the
tensor a network eats, and records a *geometry* so a heatmap computed on the network's grid can be put back
exactly on the source voxels (``to_voxels``).  There is no second preprocessing path anywhere: if the viewer
and the trainer disagree about a window or a resize, this is the one place to fix it.

Pipeline (2D):  HU --window(level, width)--> [0, 1]   (8-bit images: /255)
                --optional lung-field crop--> --resize to input_size (bilinear, antialiased)-->
                --(x - mean) / std--> --replicate to in_chans-->  N×C×H×W float32
Inverse (2D):   map on model grid (h×w, any size) --resize to crop box--> paste into the slice grid (zeros).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SliceGeometry:
    """Where the network's input came from on the source slice grid (pixels, y then x)."""

    source_shape: tuple[int, int]           # (H, W) of the source slice
    crop_box: tuple[int, int, int, int]     # (y0, y1, x0, x1), half-open, on the source grid
    input_size: tuple[int, int]             # (H, W) the crop was resized to


@dataclass(frozen=True)
class Preprocess:
    """A model's input definition.  Build it with ``Preprocess.for_model(name)``; store it with ``to_dict``."""

    spatial_dims: int = 2
    input_size: tuple[int, ...] = (224, 224)      # (H, W) or (D, H, W)
    in_chans: int = 1
    hu_window: tuple[float, float] = (-600.0, 1500.0)   # (level, width) in HU
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    lung_crop: bool = False                        # crop to the lung field's bounding box (HU inputs only)
    crop_margin: float = 0.0                       # extra margin around the lung box, fraction of its size
    # "window": the unit image as windowed / scaled; "equalize": then global histogram equalisation per slice
    # (256 bins), which makes the input invariant to monotone grey-level changes (window, level, gamma).
    intensity: str = "window"
    cam_layer: str = ""
    classifier: str = ""
    # 3D only: resample to this spacing (z, y, x mm) before slice sampling, so thickness cannot leak the label.
    target_spacing: tuple[float, float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction / serialisation
    @classmethod
    def for_model(cls, name_or_config: Any, **overrides: Any) -> "Preprocess":
        """Default definition from the registry config of a model (name, ModelConfig or nn.Module)."""
        from engine.models.registry import ModelConfig, model_config

        config = name_or_config
        if isinstance(config, str):
            config = model_config(config)
        elif not isinstance(config, ModelConfig):
            config = getattr(config, "model_config")
        base = cls(
            spatial_dims=config.spatial_dims,
            input_size=tuple(config.input_size),
            in_chans=overrides.pop("in_chans", 1),
            hu_window=tuple(config.hu_window),
            mean=tuple(config.mean),
            std=tuple(config.std),
            cam_layer=config.cam_layer,
            classifier=config.classifier,
            # 3D: common slice spacing first, so slice thickness cannot leak the label (volume3d, spec §5.5)
            target_spacing=(5.0, 0.0, 0.0) if config.spatial_dims == 3 else None,
        )
        return replace(base, **overrides) if overrides else base

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocess":
        known = {f.name for f in fields(cls)}
        clean = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
        return cls(**clean)

    # ------------------------------------------------------------------ intensity
    def to_unit(self, image: np.ndarray | torch.Tensor, is_hu: bool) -> torch.Tensor:
        """HU -> [0, 1] through the lung window; 8-bit -> /255.  Any shape; returns float32 tensor."""
        t = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
        t = t.to(torch.float32)
        if is_hu:
            level, width = self.hu_window
            lo = level - width / 2.0
            return ((t - lo) / width).clamp_(0.0, 1.0)
        return (t / 255.0).clamp_(0.0, 1.0)

    def normalise(self, unit: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std on N×1×... tensors, then replicate grey to ``in_chans``."""
        if unit.shape[1] != 1:
            raise ValueError(f"expected a single grey channel, got {unit.shape[1]}")
        x = unit.expand(-1, self.in_chans, *unit.shape[2:])
        mean = torch.tensor(_per_channel(self.mean, self.in_chans), dtype=x.dtype)
        std = torch.tensor(_per_channel(self.std, self.in_chans), dtype=x.dtype)
        shape = (1, self.in_chans) + (1,) * (x.ndim - 2)
        return ((x - mean.view(shape)) / std.view(shape)).contiguous()

    # ------------------------------------------------------------------ 2D forward
    def crop_box(self, stack: np.ndarray, is_hu: bool) -> tuple[int, int, int, int]:
        """The crop box ``slices`` would use for this stack: the lung field's box when ``lung_crop`` and the
        input is HU, else the whole slice.  Compute it once per volume and pass it to ``slices(box=...)`` when
        a volume is processed in chunks, so every chunk (and every heatmap) shares one geometry."""
        stack = np.asarray(stack)
        if stack.ndim == 2:
            stack = stack[None]
        h, w = int(stack.shape[1]), int(stack.shape[2])
        if not (self.lung_crop and is_hu):
            return (0, h, 0, w)
        y0, y1, x0, x1 = lung_bounding_box(stack)
        if self.crop_margin > 0 and (y0, y1, x0, x1) != (0, h, 0, w):
            my, mx = int(round(self.crop_margin * (y1 - y0))), int(round(self.crop_margin * (x1 - x0)))
            y0, y1, x0, x1 = max(0, y0 - my), min(h, y1 + my), max(0, x0 - mx), min(w, x1 + mx)
        return (y0, y1, x0, x1)

    def unit_slices(self, stack: np.ndarray, is_hu: bool, indices: Sequence[int] | None = None,
                    box: tuple[int, int, int, int] | None = None) -> tuple[torch.Tensor, SliceGeometry]:
        """The first half of ``slices``: window/scale, crop and resize, *before* normalisation.

        Returns N×1×H×W float32 in [0, 1].  Training caches this form (augmentation acts on it) and then
        calls ``normalise``; ``slices`` is exactly ``normalise(unit_slices(...))``.
        """
        if self.spatial_dims != 2:
            raise ValueError("Preprocess.slices is the 2D path; use engine.preprocess.volume3d for 3D models")
        stack = np.asarray(stack)
        if stack.ndim == 2:
            stack = stack[None]
        if stack.ndim != 3:
            raise ValueError(f"expected a (z, y, x) slice stack or one (y, x) slice, got shape {stack.shape}")
        if indices is not None:
            stack = stack[np.asarray(indices, dtype=int)]
        if stack.shape[0] == 0 or stack.shape[1] == 0 or stack.shape[2] == 0:
            raise ValueError(f"empty slice stack, shape {stack.shape}")
        source_shape = (int(stack.shape[1]), int(stack.shape[2]))
        if box is None:
            box = self.crop_box(stack, is_hu)
        y0, y1, x0, x1 = (int(v) for v in box)
        if not (0 <= y0 < y1 <= source_shape[0] and 0 <= x0 < x1 <= source_shape[1]):
            raise ValueError(f"crop box {tuple(box)} does not fit slices of shape {source_shape}")
        box = (y0, y1, x0, x1)
        unit = self.to_unit(stack[:, y0:y1, x0:x1], is_hu)[:, None]
        size = tuple(int(s) for s in self.input_size)
        unit = resize(unit, size)
        if self.intensity == "equalize":
            unit = equalize(unit)
        elif self.intensity != "window":
            raise ValueError(f"unknown intensity mode {self.intensity!r} (window | equalize)")
        geometry = SliceGeometry(source_shape=source_shape, crop_box=box, input_size=size)  # type: ignore[arg-type]
        return unit, geometry

    def slices(self, stack: np.ndarray, is_hu: bool, indices: Sequence[int] | None = None,
               box: tuple[int, int, int, int] | None = None) -> tuple[torch.Tensor, SliceGeometry]:
        """(z, y, x) slice stack (HU or 8-bit) -> N×C×H×W tensor and the shared slice geometry.

        One crop box is used for the whole stack (the union of the lung field over the chosen slices), so a
        heatmap from any slice maps back through the same geometry.  ``box`` (from ``crop_box``) fixes it, e.g.
        for a volume screened in chunks.
        """
        unit, geometry = self.unit_slices(stack, is_hu, indices, box)
        return self.normalise(unit), geometry

    def unit_image(self, image: np.ndarray, is_hu: bool = False) -> tuple[torch.Tensor, SliceGeometry]:
        """One 2D grey image -> 1×1×H×W in [0, 1] (before ``normalise``) + geometry."""
        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"expected a single grey image (H, W), got shape {image.shape}; "
                             "use engine.train.data.read_image_grey to canonicalise files")
        return self.unit_slices(image[None], is_hu)

    def image(self, image: np.ndarray, is_hu: bool = False) -> tuple[torch.Tensor, SliceGeometry]:
        """One 2D image (H×W grey) -> 1×C×H×W tensor + geometry.  Colour/alpha must be removed by the reader."""
        unit, geometry = self.unit_image(image, is_hu)
        return self.normalise(unit), geometry

    # ------------------------------------------------------------------ 3D forward (engine.preprocess.volume3d)
    def volume(self, volume: Any, spacing: Sequence[float] | None = None, *, is_hu: bool | None = None,
               train: bool = False, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, Any]:
        """A CT ``Volume`` (or (z, y, x) array + spacing) -> 1×C×D×H×W tensor + ``VolumeGeometry``:
        z-resampling, P4 slice sampling (random when ``train``), window, resize, centre crop, normalise,
        training flips.  See ``engine.preprocess.volume3d``."""
        from engine.preprocess.volume3d import volume_tensor
        return volume_tensor(self, volume, spacing, is_hu=is_hu, train=train, rng=rng)

    def unit_volume(self, volume: Any, spacing: Sequence[float] | None = None, *, is_hu: bool | None = None,
                    train: bool = False, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, Any]:
        """``volume`` before ``normalise`` (1×1×D×H×W in [0, 1])."""
        from engine.preprocess.volume3d import unit_volume
        return unit_volume(self, volume, spacing, is_hu=is_hu, train=train, rng=rng)

    # ------------------------------------------------------------------ inverse (2D here, 3D in volume3d)
    @staticmethod
    def to_voxels(heatmap: np.ndarray | torch.Tensor, geometry: Any) -> np.ndarray:
        """Map(s) on the model grid (h×w or N×h×w, any h, w) -> the source slice grid (N×H×W), zeros outside
        the crop box.  Bilinear; values are not renormalised.  With a 3D ``VolumeGeometry``: D×H×W map(s) ->
        the source volume's (z, y, x) grid (``engine.preprocess.volume3d.volume_to_voxels``)."""
        if not isinstance(geometry, SliceGeometry):
            from engine.preprocess.volume3d import VolumeGeometry, volume_to_voxels
            if isinstance(geometry, VolumeGeometry):
                return volume_to_voxels(heatmap, geometry)
        m = torch.as_tensor(np.asarray(heatmap) if not isinstance(heatmap, torch.Tensor) else heatmap)
        m = m.detach().to(torch.float32)
        squeeze = m.ndim == 2
        if squeeze:
            m = m[None]
        y0, y1, x0, x1 = geometry.crop_box
        inside = F.interpolate(m[:, None], size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False)[:, 0]
        out = torch.zeros((m.shape[0],) + tuple(geometry.source_shape), dtype=torch.float32)
        out[:, y0:y1, x0:x1] = inside
        result = out.numpy()
        return result[0] if squeeze else result


def equalize(unit: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Global histogram equalisation of each N×1×H×W unit-range image: v -> (cdf(v) − cdf_min)/(1 − cdf_min)
    on ``bins`` grey levels (ties map to one value; a constant image stays 0)."""
    n = unit.shape[0]
    flat = unit.reshape(n, -1).clamp(0.0, 1.0)
    q = (flat * (bins - 1)).round().long()
    hist = torch.zeros(n, bins, dtype=torch.float64).scatter_add_(1, q, torch.ones_like(q, dtype=torch.float64))
    cdf = hist.cumsum(1) / flat.shape[1]
    cmin = torch.where(hist > 0, cdf, torch.full_like(cdf, 2.0)).min(1, keepdim=True).values
    denom = (1.0 - cmin).clamp_min(1e-12)
    mapped = ((cdf - cmin) / denom).clamp(0.0, 1.0)
    mapped = torch.where((1.0 - cmin) > 1e-12, mapped, torch.zeros_like(mapped))
    return mapped.gather(1, q).to(unit.dtype).reshape(unit.shape)


def resize(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """N×C×(D×)H×W resize used by every path: bilinear/trilinear, antialiased when shrinking 2D."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    if x.ndim == 4:
        shrink = any(s < t for s, t in zip(size, x.shape[2:]))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


def lung_mask(stack: np.ndarray, air_hu: float = -400.0, max_side: int = 256,
              min_component: float = 0.1) -> tuple[np.ndarray, int]:
    """Coarse lung-field mask of a (z, y, x) HU stack, on a grid downsampled by an integer factor ``f``.

    Per slice: average-pool to at most ``max_side`` pixels a side; air = HU < ``air_hu``; body = the largest
    connected non-air component with its holes filled (so the table, arms' gaps and the air around the body
    are outside it); candidate lung = air inside the body, opened with a 3×3 cross (removes specks); keep
    the connected components at least ``min_component`` × the largest one on the stack (the lungs; bowel gas
    and noise are smaller).  Connected components come from SimpleITK (C++; a dependency of the readers
    anyway).  Returns (mask (z, h', w') bool, f).
    """
    import SimpleITK as sitk

    stack = np.asarray(stack, dtype=np.float32)
    if stack.ndim == 2:
        stack = stack[None]
    z, h, w = stack.shape
    f = max(1, int(np.ceil(max(h, w) / max_side)))
    t = torch.from_numpy(np.ascontiguousarray(stack))[:, None]
    if f > 1:
        t = F.avg_pool2d(t, f, f, ceil_mode=True)
    air = (t[:, 0] < air_hu).numpy().astype(np.uint8)
    kept: list[tuple[int, np.ndarray, np.ndarray]] = []   # (slice, labels, sizes)
    for k in range(z):
        if air[k].all() or not air[k].any():
            continue
        tissue = sitk.ConnectedComponent(sitk.GetImageFromArray((1 - air[k]).astype(np.uint8)), True)
        body = sitk.GetArrayFromImage(sitk.RelabelComponent(tissue)) == 1          # largest component
        body = sitk.GetArrayFromImage(sitk.BinaryFillhole(sitk.GetImageFromArray(body.astype(np.uint8)),
                                                          True)).astype(bool)
        inner = body & (air[k] > 0)
        if not inner.any():
            continue
        opened = sitk.BinaryMorphologicalOpening(sitk.GetImageFromArray(inner.astype(np.uint8)), [1, 1],
                                                 sitk.sitkCross)
        lab = sitk.GetArrayFromImage(sitk.ConnectedComponent(opened, True))
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        if sizes.max() > 0:
            kept.append((k, lab, sizes))
    mask = np.zeros(air.shape, dtype=bool)
    if kept:
        largest = max(int(s.max()) for _, _, s in kept)
        for k, lab, sizes in kept:
            good = np.flatnonzero(sizes >= max(1.0, largest * min_component))
            mask[k] = np.isin(lab, good[good > 0])
    return mask, f


def lung_bounding_box(stack: np.ndarray, margin: int = 8, air_hu: float = -400.0,
                      max_slices: int = 24) -> tuple[int, int, int, int]:
    """Bounding box (y0, y1, x0, x1), half-open, of the lung field over a (z, y, x) HU stack, plus ``margin``.

    Uses ``lung_mask`` on up to ``max_slices`` evenly spaced slices (one box for the whole stack).  Falls back
    to the body's box when no lung-like air is found, and to the whole slice when there is no body either.
    Not a segmentation: good enough to crop away the table, the air around the body and the arms.
    """
    stack = np.asarray(stack)
    if stack.ndim == 2:
        stack = stack[None]
    z, h, w = stack.shape
    full = (0, h, 0, w)
    if z == 0 or h < 8 or w < 8:
        return full
    pick = np.unique(np.linspace(0, z - 1, min(z, max_slices)).round().astype(int))
    sub = stack[pick]
    mask, f = lung_mask(sub, air_hu=air_hu)
    union = mask.any(axis=0)
    if not union.any():
        body = np.asarray(sub > air_hu).any(axis=0)
        if not body.any() or body.all():
            return full
        union, f = body, 1
    rows = np.flatnonzero(union.any(axis=1))
    cols = np.flatnonzero(union.any(axis=0))
    y0, y1 = int(rows[0]) * f, min(h, (int(rows[-1]) + 1) * f)
    x0, x1 = int(cols[0]) * f, min(w, (int(cols[-1]) + 1) * f)
    return (max(0, y0 - margin), min(h, y1 + margin), max(0, x0 - margin), min(w, x1 + margin))


def _per_channel(values: Sequence[float], n: int) -> list[float]:
    values = list(values)
    if len(values) == n:
        return values
    if len(values) == 1:
        return values * n
    raise ValueError(f"mean/std has {len(values)} values for {n} channels")
