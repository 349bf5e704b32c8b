"""Everything one viewer pane shows, without Qt: the open volume, position, window/level, camera, layers, cursor.

Widgets observe ``state.events`` and never keep their own copy of these values, so two panes (compare mode)
or three views (MPR) can share or link them through :class:`~viewer.model.sync.SyncGroup`.

Events (``value`` = the new value):

* ``volume``   -- a new volume was opened (or None: closed)
* ``position`` -- crosshair voxel (z, y, x) moved; the axial slice index is ``position[0]``
* ``window``   -- window/level changed (a :class:`WindowLevel`)
* ``camera``   -- zoom/pan of the main (axial) view changed
* ``cursor``   -- voxel under the mouse changed (a :class:`CursorReadout` or None)
* ``layers``   -- a layer was added/removed/reordered
* ``heatmap``  -- a display property of a heatmap layer changed (value = (layer, property name))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.io.volume import Volume
from viewer.model.camera import Camera
from viewer.model.events import Event, EmitterGroup
from viewer.model.layers import HeatmapLayer, ImageLayer, Layer, LayerList
from viewer.model.slice_geometry import SliceGeometry
from viewer.model.window_level import FULL_8BIT, PRESETS, WindowLevel, dicom_window

DEFAULT_PRESET = "lung"
HEATMAP_DISPLAY_PROPERTIES = ("colormap", "scale", "threshold", "opacity", "visible")


@dataclass(frozen=True)
class CursorReadout:
    """The voxel under the mouse: index (z, y, x), patient position (LPS mm) and value (HU, or raw if not HU)."""

    voxel: tuple[int, int, int]
    lps: tuple[float, float, float]
    value: float
    is_hu: bool

    def __str__(self) -> str:
        z, y, x = self.voxel
        unit = "HU" if self.is_hu else "(not HU)"
        value = f"{self.value:.0f}" if float(self.value).is_integer() or self.is_hu else f"{self.value:.1f}"
        lx, ly, lz = self.lps
        return f"{value} {unit}  ·  voxel x {x}, y {y}, z {z}  ·  LPS {lx:.1f}, {ly:.1f}, {lz:.1f} mm"


class ViewerState:
    def __init__(self, volume: Volume | None = None, *, window: str | WindowLevel | None = None):
        self.events = EmitterGroup(self, ("volume", "position", "window", "camera", "cursor", "layers",
                                          "heatmap"))
        self.layers = LayerList()
        self.layers.events.inserted.connect(self._on_layer_inserted)
        self.layers.events.removed.connect(self._on_layer_removed)
        self.layers.events.reordered.connect(self._on_layers_reordered)
        self._volume: Volume | None = None
        self._position = (0, 0, 0)
        self._window = PRESETS[DEFAULT_PRESET]
        self._camera = Camera()
        self._cursor: CursorReadout | None = None
        if volume is not None:
            self.set_volume(volume, window=window)

    # --- volume -------------------------------------------------------------------------------------------
    @property
    def volume(self) -> Volume | None:
        return self._volume

    def set_volume(self, volume: Volume | None, *, window: str | WindowLevel | None = None,
                   slice_index: int | None = None) -> None:
        """Open ``volume`` (replacing every layer), centred, middle slice, ``window`` or the default window."""
        self.layers.clear()
        self._volume = volume
        self._cursor = None
        self._camera = Camera()
        if volume is None:
            self._position = (0, 0, 0)
            self.events.volume.emit(None)
            return
        nz, ny, nx = volume.shape
        self._position = (nz // 2, ny // 2, nx // 2)
        if slice_index is not None:
            self._position = (self._clamp(slice_index, nz), ny // 2, nx // 2)
        self._window = self._resolve_window(window)
        self.layers.append(ImageLayer(volume))
        self.events.volume.emit(volume)
        self.events.window.emit(self._window)
        self.events.position.emit(self._position)
        self.events.camera.emit(self._camera)

    @property
    def image_layer(self) -> ImageLayer | None:
        images = self.layers.of_type(ImageLayer)
        return images[0] if images else None

    @property
    def n_slices(self) -> int:
        return self._volume.shape[0] if self._volume is not None else 0

    @property
    def is_hu(self) -> bool:
        return bool(self._volume is not None and self._volume.is_hu)

    def slice_geometry(self, axis: int = 0) -> SliceGeometry | None:
        """How slices along numpy ``axis`` are placed on screen (radiological convention), None if no volume."""
        v = self._volume
        return None if v is None else SliceGeometry.for_axis(v.shape, v.spacing, v.direction, axis)

    # --- position / slice ---------------------------------------------------------------------------------
    @property
    def position(self) -> tuple[int, int, int]:
        return self._position

    @position.setter
    def position(self, value: tuple[int, int, int]) -> None:
        if self._volume is None:
            return
        shape = self._volume.shape
        new = tuple(self._clamp(int(v), n) for v, n in zip(value, shape))
        if new != self._position:
            self._position = new  # type: ignore[assignment]
            self.events.position.emit(self._position)

    @property
    def slice_index(self) -> int:
        """Current axial slice (numpy z index, 0-based, increasing along the slice normal)."""
        return self._position[0]

    @slice_index.setter
    def slice_index(self, value: int) -> None:
        self.position = (int(value), self._position[1], self._position[2])

    def scroll(self, steps: int) -> None:
        """Move ``steps`` slices (positive = increasing z); clamps at the ends."""
        self.slice_index = self.slice_index + int(steps)

    @staticmethod
    def _clamp(value: int, n: int) -> int:
        return max(0, min(int(n) - 1, int(value)))

    # --- window / level -----------------------------------------------------------------------------------
    @property
    def window(self) -> WindowLevel:
        return self._window

    @window.setter
    def window(self, value: WindowLevel) -> None:
        if not isinstance(value, WindowLevel):
            value = WindowLevel(*value)
        if value != self._window:
            self._window = value
            self.events.window.emit(value)

    def window_presets(self) -> dict[str, WindowLevel]:
        """Presets usable for the open volume: lung, mediastinum, bone, and ``dicom`` when the header has one."""
        if self._volume is not None and not self._volume.is_hu:
            return {"full": FULL_8BIT}
        presets = dict(PRESETS)
        own = dicom_window(self._volume.meta) if self._volume is not None else None
        if own is not None:
            presets["dicom"] = own
        return presets

    def apply_window_preset(self, name: str) -> None:
        presets = self.window_presets()
        if name not in presets:
            raise KeyError(f"window preset {name!r} is not available here; choose one of {', '.join(presets)}")
        self.window = presets[name]

    @property
    def window_preset(self) -> str | None:
        """Name of the preset equal to the current window, if any."""
        for name, window in self.window_presets().items():
            if window == self._window:
                return name
        return None

    def _resolve_window(self, window: str | WindowLevel | None) -> WindowLevel:
        presets = self.window_presets()
        if isinstance(window, WindowLevel):
            return window
        if window is None:
            return presets.get(DEFAULT_PRESET) or next(iter(presets.values()))
        if window not in presets:
            raise KeyError(f"window preset {window!r} is not available for this series; "
                           f"choose one of {', '.join(presets)}")
        return presets[window]

    # --- camera (zoom / pan of the axial view) ------------------------------------------------------------
    @property
    def camera(self) -> Camera:
        return self._camera

    @camera.setter
    def camera(self, value: Camera) -> None:
        if value != self._camera:
            self._camera = value
            self.events.camera.emit(value)

    def zoom_by(self, factor: float, anchor: tuple[float, float] | None = None) -> None:
        self.camera = self._camera.zoomed(factor, anchor, self._default_center())

    def pan_by(self, dx_mm: float, dy_mm: float) -> None:
        self.camera = self._camera.panned(dx_mm, dy_mm, self._default_center())

    def reset_camera(self) -> None:
        self.camera = Camera()

    def _default_center(self) -> tuple[float, float]:
        geometry = self.slice_geometry(0)
        return geometry.scene_center if geometry is not None else (0.0, 0.0)

    # --- cursor / HU readout ------------------------------------------------------------------------------
    @property
    def cursor(self) -> CursorReadout | None:
        return self._cursor

    def set_cursor(self, voxel: tuple[int, int, int] | None) -> None:
        """Put the mouse cursor on voxel (z, y, x) (None: off the image) and announce the readout."""
        readout = self.readout(voxel) if voxel is not None else None
        if readout != self._cursor:
            self._cursor = readout
            self.events.cursor.emit(readout)

    def readout(self, voxel: tuple[int, int, int]) -> CursorReadout | None:
        v = self._volume
        if v is None:
            return None
        z, y, x = (int(i) for i in voxel)
        nz, ny, nx = v.shape
        if not (0 <= z < nz and 0 <= y < ny and 0 <= x < nx):
            return None
        return CursorReadout((z, y, x), self.voxel_to_lps((z, y, x)), float(v.array[z, y, x]), v.is_hu)

    def voxel_to_lps(self, voxel: tuple[float, float, float]) -> tuple[float, float, float]:
        """Patient position (LPS mm) of voxel (z, y, x)."""
        v = self._volume
        if v is None:
            raise ValueError("no volume open")
        z, y, x = voxel
        sz, sy, sx = v.spacing
        m = np.asarray(v.direction, dtype=float).reshape(3, 3)
        p = np.asarray(v.origin, dtype=float) + m @ np.array([x * sx, y * sy, z * sz])
        return (float(p[0]), float(p[1]), float(p[2]))

    # --- layers -------------------------------------------------------------------------------------------
    def add_heatmap(self, data: np.ndarray | None = None, name: str = "heatmap", **kwargs) -> HeatmapLayer:
        """Add a heatmap layer on top (``data`` on the voxel grid; None: empty, to be filled slice by slice)."""
        if self._volume is None:
            raise ValueError("open a volume before adding a heatmap")
        layer = (HeatmapLayer.empty(self._volume.shape, name, **kwargs) if data is None
                 else HeatmapLayer(data, name, **kwargs))
        self.layers.append(layer)
        return layer

    @property
    def heatmap_layers(self) -> list[HeatmapLayer]:
        return self.layers.of_type(HeatmapLayer)

    @property
    def active_heatmap(self) -> HeatmapLayer | None:
        """The topmost heatmap layer (the one sync groups and heatmap controls act on)."""
        heatmaps = self.heatmap_layers
        return heatmaps[-1] if heatmaps else None

    def _on_layer_inserted(self, event: Event) -> None:
        layer: Layer = event.value
        if self._volume is not None and layer.shape != self._volume.shape:
            self.layers.remove(layer)
            raise ValueError(f"layer {layer.name!r} has shape {layer.shape}, the open volume {self._volume.shape}")
        if isinstance(layer, HeatmapLayer):
            for prop in HEATMAP_DISPLAY_PROPERTIES:
                getattr(layer.events, prop).connect(self._on_heatmap_changed)
        self.events.layers.emit(("inserted", layer))

    def _on_layer_removed(self, event: Event) -> None:
        layer: Layer = event.value
        if isinstance(layer, HeatmapLayer):
            layer.events.disconnect(self._on_heatmap_changed)
        self.events.layers.emit(("removed", layer))

    def _on_layers_reordered(self, event: Event) -> None:
        self.events.layers.emit(("reordered", None))

    def _on_heatmap_changed(self, event: Event) -> None:
        self.events.heatmap.emit((event.source, event.type))
