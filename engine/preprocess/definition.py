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
    def slices(self, stack: np.ndarray, is_hu: bool,
               indices: Sequence[int] | None = None) -> tuple[torch.Tensor, SliceGeometry]:
        """(z, y, x) slice stack (HU or 8-bit) -> N×C×H×W tensor and the shared slice geometry.

        One crop box is used for the whole stack (the union of the lung field over the chosen slices), so a
        heatmap from any slice maps back through the same geometry.
        """
        if self.spatial_dims != 2:
            raise ValueError("Preprocess.slices is the 2D path; use engine.preprocess.volume3d for 3D models")
        stack = np.asarray(stack)
        if stack.ndim == 2:
            stack = stack[None]
        if indices is not None:
            stack = stack[np.asarray(indices, dtype=int)]
        source_shape = (int(stack.shape[1]), int(stack.shape[2]))
        box = lung_bounding_box(stack) if (self.lung_crop and is_hu) else (0, source_shape[0], 0, source_shape[1])
        y0, y1, x0, x1 = box
        unit = self.to_unit(stack[:, y0:y1, x0:x1], is_hu)[:, None]
        size = tuple(int(s) for s in self.input_size)
        unit = resize(unit, size)
        geometry = SliceGeometry(source_shape=source_shape, crop_box=box, input_size=size)  # type: ignore[arg-type]
        return self.normalise(unit), geometry

    def image(self, image: np.ndarray, is_hu: bool = False) -> tuple[torch.Tensor, SliceGeometry]:
        """One 2D image (H×W grey) -> 1×C×H×W tensor + geometry.  Colour/alpha must be removed by the reader."""
        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"expected a single grey image (H, W), got shape {image.shape}; "
                             "use engine.train.data.read_image_grey to canonicalise files")
        return self.slices(image[None], is_hu)

    # ------------------------------------------------------------------ 2D inverse
    @staticmethod
    def to_voxels(heatmap: np.ndarray | torch.Tensor, geometry: SliceGeometry) -> np.ndarray:
        """Map(s) on the model grid (h×w or N×h×w, any h, w) -> the source slice grid (N×H×W), zeros outside
        the crop box.  Bilinear; values are not renormalised."""
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


def resize(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """N×C×(D×)H×W resize used by every path: bilinear/trilinear, antialiased when shrinking 2D."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    if x.ndim == 4:
        shrink = any(s < t for s, t in zip(size, x.shape[2:]))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


def lung_bounding_box(stack: np.ndarray, margin: int = 8, air_hu: float = -400.0) -> tuple[int, int, int, int]:
    """Bounding box (y0, y1, x0, x1) of low-attenuation tissue *inside* the body over a (z, y, x) HU stack.

    Air outside the body is excluded by dropping regions connected to the image border row/column-wise
    (cheap and good enough for a crop; not a segmentation).  Falls back to the whole slice.
    """
    z, h, w = stack.shape
    body = stack > air_hu
    rows = body.any(axis=(0, 2))
    cols = body.any(axis=(0, 1))
    if not rows.any() or not cols.any():
        return (0, h, 0, w)
    by0, by1 = int(np.argmax(rows)), int(h - np.argmax(rows[::-1]))
    bx0, bx1 = int(np.argmax(cols)), int(w - np.argmax(cols[::-1]))
    inner = stack[:, by0:by1, bx0:bx1] < air_hu
    r = inner.any(axis=(0, 2))
    c = inner.any(axis=(0, 1))
    if not r.any() or not c.any():
        return (0, h, 0, w)
    y0 = by0 + int(np.argmax(r)); y1 = by0 + int(len(r) - np.argmax(r[::-1]))
    x0 = bx0 + int(np.argmax(c)); x1 = bx0 + int(len(c) - np.argmax(c[::-1]))
    return (max(0, y0 - margin), min(h, y1 + margin), max(0, x0 - margin), min(w, x1 + margin))


def _per_channel(values: Sequence[float], n: int) -> list[float]:
    values = list(values)
    if len(values) == n:
        return values
    if len(values) == 1:
        return values * n
    raise ValueError(f"mean/std has {len(values)} values for {n} channels")
