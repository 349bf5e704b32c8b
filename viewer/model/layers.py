"""The layer stack drawn by a slice view, bottom to top: one image layer, then overlays (heatmaps, ...).

Layers hold data on the voxel grid of the open volume (z, y, x) plus how to draw it.  They know nothing about
Qt; views observe ``layer.events`` and redraw.  Heatmap layers are ready for the AI workflow: a heatmap is a
float map on the voxel grid (already brought back through the model's preprocessing inverse), NaN where it has
not been computed yet (2-D models fill it slice by slice with :meth:`HeatmapLayer.set_slice`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import numpy as np

from engine.io.volume import Volume
from viewer.model.events import EmitterGroup

# Perceptually uniform colour maps every renderer can provide (matplotlib and pyqtgraph both ship them).
HEATMAP_COLORMAPS = ("inferno", "magma", "viridis", "plasma", "cividis", "turbo")
# Diverging (blue - white - red) maps for signed layers such as the compare mode's "A - B" difference view.
DIVERGING_COLORMAPS = ("CET-D1",)

L = TypeVar("L", bound="Layer")


class Layer:
    """Common layer properties: ``name``, ``visible``, ``opacity`` (0..1), each with an event of the same name."""

    _EVENTS: tuple[str, ...] = ("name", "visible", "opacity", "data")

    def __init__(self, name: str, *, visible: bool = True, opacity: float = 1.0):
        self.events = EmitterGroup(self, self._EVENTS)
        self._name = str(name)
        self._visible = bool(visible)
        self._opacity = _unit(opacity, "opacity")

    def _set(self, attr: str, value: Any) -> None:
        if getattr(self, "_" + attr) != value:
            setattr(self, "_" + attr, value)
            getattr(self.events, attr).emit(value)

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._set("name", str(value))

    @property
    def visible(self) -> bool:
        return self._visible

    @visible.setter
    def visible(self, value: bool) -> None:
        self._set("visible", bool(value))

    @property
    def opacity(self) -> float:
        return self._opacity

    @opacity.setter
    def opacity(self, value: float) -> None:
        self._set("opacity", _unit(value, "opacity"))

    @property
    def shape(self) -> tuple[int, int, int]:
        raise NotImplementedError

    def slice(self, index: int, axis: int = 0) -> np.ndarray:
        """The 2-D array (rows, cols) of this layer at ``index`` along numpy ``axis``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ImageLayer(Layer):
    """The CT itself.  Its window/level lives on :class:`~viewer.model.viewer_state.ViewerState` (it is shared)."""

    def __init__(self, volume: Volume, name: str | None = None, **kwargs: Any):
        super().__init__(name or volume.meta.get("SeriesDescription") or "image", **kwargs)
        self.volume = volume

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.volume.shape

    def slice(self, index: int, axis: int = 0) -> np.ndarray:
        # a read-only view, not a copy: a sagittal slice gathered by np.take costs ~3x more than windowing it
        view = self.volume.array[(slice(None),) * axis + (int(index),)]
        view.flags.writeable = False
        return view


class HeatmapLayer(Layer):
    """A float map on the voxel grid drawn with a colour map over the image.

    ``scale`` = (vmin, vmax) of the colour map; values below ``threshold`` (and NaN) are transparent.  A
    ``signed`` layer (e.g. a difference of two maps) hides values whose *magnitude* is below the threshold.
    ``info`` describes where the map came from (model, explainer, target class, ...), for legends and exports.
    """

    _EVENTS = Layer._EVENTS + ("colormap", "scale", "threshold")

    def __init__(self, data: np.ndarray, name: str = "heatmap", *, colormap: str = "inferno",
                 scale: tuple[float, float] = (0.0, 1.0), threshold: float = 0.0, opacity: float = 0.5,
                 visible: bool = True, info: dict | None = None, signed: bool = False):
        super().__init__(name, visible=visible, opacity=opacity)
        self.signed = bool(signed)
        data = np.asarray(data, dtype=np.float32)
        if data.ndim != 3:
            raise ValueError(f"heatmap data must be (z, y, x) on the voxel grid, got shape {data.shape}")
        self._data = data
        self._colormap = _colormap(colormap)
        self._scale = _scale(scale)
        self._threshold = float(threshold)
        self.info = dict(info or {})

    @classmethod
    def empty(cls, shape: tuple[int, int, int], name: str = "heatmap", **kwargs: Any) -> HeatmapLayer:
        """A heatmap not computed anywhere yet (all NaN), to be filled slice by slice."""
        return cls(np.full(shape, np.nan, dtype=np.float32), name, **kwargs)

    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value: np.ndarray) -> None:
        value = np.asarray(value, dtype=np.float32)
        if value.shape != self._data.shape:
            raise ValueError(f"heatmap shape {value.shape} differs from the layer's {self._data.shape}")
        self._data = value
        self.events.data.emit(None)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self._data.shape)  # type: ignore[return-value]

    def slice(self, index: int, axis: int = 0) -> np.ndarray:
        return np.take(self._data, index, axis=axis)

    def set_slice(self, index: int, values: np.ndarray, axis: int = 0) -> None:
        """Fill one slice (e.g. a 2-D model's map for slice ``index``) and announce it (``value`` = index)."""
        target = [slice(None)] * 3
        target[axis] = index
        expected = self.slice(index, axis).shape
        values = np.asarray(values, dtype=np.float32)
        if values.shape != expected:
            raise ValueError(f"heatmap slice must have shape {expected}, got {values.shape}")
        self._data[tuple(target)] = values
        self.events.data.emit(index)

    def has_slice(self, index: int, axis: int = 0) -> bool:
        """True once any value of that slice has been computed."""
        return bool(np.isfinite(self.slice(index, axis)).any())

    @property
    def colormap(self) -> str:
        return self._colormap

    @colormap.setter
    def colormap(self, value: str) -> None:
        self._set("colormap", _colormap(value))

    @property
    def scale(self) -> tuple[float, float]:
        return self._scale

    @scale.setter
    def scale(self, value: tuple[float, float]) -> None:
        self._set("scale", _scale(value))

    @property
    def threshold(self) -> float:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._set("threshold", float(value))

    def rgba_slice(self, index: int, lut: np.ndarray, axis: int = 0) -> np.ndarray:
        """(rows, cols, 4) uint8 image of one slice through ``lut`` ((n, 3 or 4) uint8), transparent below threshold.

        Kept here (not in the widget) so the exact pixels drawn can be tested and exported without Qt.
        """
        values = self.slice(index, axis)
        lo, hi = self._scale
        n = len(lut)
        rgba = np.zeros(values.shape + (4,), dtype=np.uint8)
        with np.errstate(invalid="ignore"):        # NaN compares False: not computed = not shown
            shown = (np.abs(values) if self.signed else values) >= self._threshold
        n_shown = int(np.count_nonzero(shown))
        if not n_shown:                            # e.g. a slice not computed yet: nothing to colour
            return rgba
        if n_shown > DENSE_FRACTION * shown.size:  # most pixels shown (a 3-D map in an MPR plane): one table look-up
            return _rgba_by_table(values, shown, lut, lo, hi, round(255 * self.opacity))
        # colour only the shown pixels (often a small part of the slice): the GUI thread draws this per slice
        picked = values[shown].astype(np.float32, copy=False)
        level = np.clip((picked - np.float32(lo)) * np.float32(n / (hi - lo)), 0, n - 1).astype(np.intp)
        rgba[shown, :3] = np.asarray(lut, dtype=np.uint8)[level, :3]
        rgba[shown, 3] = round(255 * self.opacity)
        return rgba


DENSE_FRACTION = 0.15   # above this share of shown pixels a whole-slice table look-up beats masked indexing


def _rgba_by_table(values: np.ndarray, shown: np.ndarray, lut: np.ndarray, lo: float, hi: float,
                   alpha: int) -> np.ndarray:
    """Same pixels as the masked path of ``rgba_slice``, for dense maps: each pixel's colour index (the
    transparent entry ``n`` where not shown) gathers one packed RGBA word -- ~5x faster on a 512² slice."""
    n = len(lut)
    table = np.zeros((n + 1, 4), dtype=np.uint8)
    table[:n, :3] = np.asarray(lut, dtype=np.uint8)[:, :3]
    table[:n, 3] = alpha
    level = np.subtract(values, np.float32(lo), dtype=np.float32)
    level *= np.float32(n / (hi - lo))
    np.clip(level, 0, n - 1, out=level)
    np.copyto(level, np.float32(n), where=~shown)     # also every NaN (not shown)
    words = np.take(table.view(np.uint32).ravel(), level.astype(np.uint16))
    return words.view(np.uint8).reshape(values.shape + (4,))


class LayerList:
    """Ordered layers, bottom first.  Events: ``inserted``/``removed`` (value = layer), ``reordered``."""

    def __init__(self) -> None:
        self.events = EmitterGroup(self, ("inserted", "removed", "reordered"))
        self._layers: list[Layer] = []

    def append(self, layer: Layer) -> Layer:
        return self.insert(len(self._layers), layer)

    def insert(self, index: int, layer: Layer) -> Layer:
        if any(existing is layer for existing in self._layers):
            raise ValueError(f"{layer!r} is already in the layer list")
        self._layers.insert(index, layer)
        self.events.inserted.emit(layer)
        return layer

    def remove(self, layer: Layer | str) -> None:
        layer = self[layer] if isinstance(layer, str) else layer
        self._layers = [existing for existing in self._layers if existing is not layer]
        self.events.removed.emit(layer)

    def clear(self) -> None:
        for layer in list(reversed(self._layers)):
            self.remove(layer)

    def move(self, layer: Layer, index: int) -> None:
        self._layers = [existing for existing in self._layers if existing is not layer]
        self._layers.insert(index, layer)
        self.events.reordered.emit(None)

    def of_type(self, kind: type[L]) -> list[L]:
        return [layer for layer in self._layers if isinstance(layer, kind)]

    def __getitem__(self, key: int | str) -> Layer:
        if isinstance(key, str):
            for layer in self._layers:
                if layer.name == key:
                    return layer
            raise KeyError(f"no layer named {key!r}")
        return self._layers[key]

    def __contains__(self, layer: object) -> bool:
        return any(existing is layer for existing in self._layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(list(self._layers))

    def __len__(self) -> int:
        return len(self._layers)

    def index(self, layer: Layer) -> int:
        for i, existing in enumerate(self._layers):
            if existing is layer:
                return i
        raise ValueError(f"{layer!r} is not in the layer list")


def _unit(value: float, what: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be within 0..1, got {value}")
    return value


def _scale(value: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not hi > lo:
        raise ValueError(f"heatmap colour scale needs vmin < vmax, got ({lo}, {hi})")
    return (lo, hi)


def _colormap(name: str) -> str:
    if name not in HEATMAP_COLORMAPS + DIVERGING_COLORMAPS:
        raise ValueError(f"unknown heatmap colour map {name!r}; choose one of "
                         f"{', '.join(HEATMAP_COLORMAPS + DIVERGING_COLORMAPS)}")
    return name
