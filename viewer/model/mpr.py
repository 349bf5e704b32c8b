"""Multi-planar reconstruction (MPR) without Qt: pane layouts, the crosshair in every plane, readouts.

A *plane* is a slice perpendicular to a numpy axis of the (z, y, x) volume: 0 axial, 1 coronal, 2 sagittal.
Every plane view shows ``ViewerState.position`` (the crosshair voxel (z, y, x)) through its own
:class:`~viewer.model.slice_geometry.SliceGeometry`, which scales pixels by the voxel spacing (so a 5 mm-slice
series is not squashed in the coronal/sagittal planes) and applies the radiological flips.  The other two
planes appear in a view as two lines through the crosshair; moving one moves the position, so every view
follows (linked crosshair).  Layers (the CT, heatmaps) live on the voxel grid, so a heatmap "resampled into a
plane" is simply its slice along that plane's axis drawn with that plane's geometry -- 3-D heatmaps show
natively, 2-D models' maps stack slice by slice (NaN rows = not computed yet = transparent).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from viewer.model.slice_geometry import AXIS_NAMES, SliceGeometry

AXIAL, CORONAL, SAGITTAL = 0, 1, 2
PLANE_TITLES = {AXIAL: "Axial", CORONAL: "Coronal", SAGITTAL: "Sagittal"}
# the usual MPR colour code (3D Slicer): axial red, coronal green, sagittal yellow -- a line drawn in one view
# for another plane carries that plane's colour, and so does the plane's own pane title
PLANE_COLORS = {AXIAL: "#f05a5a", CORONAL: "#5ad25a", SAGITTAL: "#f0d250"}

LAYOUTS = ("1x1", "1x3", "2x2")
LAYOUT_LABELS = {"1x1": "1 × 1 (one plane)", "1x3": "1 × 3 (axial, coronal, sagittal)",
                 "2x2": "2 × 2 (three planes + crosshair readout)"}


@dataclass(frozen=True)
class Cell:
    """One pane of a layout: ``axis`` (None = the free fourth pane) at grid ``row``/``col``."""

    axis: int | None
    row: int
    col: int


def parse_layout(text: str) -> str:
    """``"1x3"``, ``"1×3"``, ``"1X3"`` or ``"13"`` -> ``"1x3"``; ValueError naming the choices otherwise."""
    key = str(text).strip().lower().replace("×", "x").replace("*", "x").replace(" ", "")
    if len(key) == 2 and key.isdigit():
        key = f"{key[0]}x{key[1]}"
    if key not in LAYOUTS:
        raise ValueError(f"unknown layout {text!r}; choose one of {', '.join(LAYOUTS)}")
    return key


def layout_cells(layout: str, main_axis: int = AXIAL) -> list[Cell]:
    """The panes of ``layout``: 1x1 shows ``main_axis`` alone; 1x3 axial | coronal | sagittal; 2x2 axial and
    coronal on top, sagittal and the free pane (crosshair readout) below."""
    layout = parse_layout(layout)
    if main_axis not in AXIS_NAMES:
        raise ValueError(f"main_axis must be 0 (axial), 1 (coronal) or 2 (sagittal), got {main_axis}")
    if layout == "1x1":
        return [Cell(main_axis, 0, 0)]
    if layout == "1x3":
        return [Cell(AXIAL, 0, 0), Cell(CORONAL, 0, 1), Cell(SAGITTAL, 0, 2)]
    return [Cell(AXIAL, 0, 0), Cell(CORONAL, 0, 1), Cell(SAGITTAL, 1, 0), Cell(None, 1, 1)]


def in_plane_axes(axis: int) -> tuple[int, int]:
    """(row axis, column axis) of the slices along ``axis``, in numpy order: axial (y, x), coronal (z, x),
    sagittal (z, y) -- the layout of ``np.take(volume, i, axis)``."""
    rows, cols = (a for a in (0, 1, 2) if a != axis)
    return rows, cols


@dataclass(frozen=True)
class CrosshairLine:
    """The trace of plane ``axis`` in a view: ``vertical`` (at scene x = ``value``) or horizontal (scene y)."""

    axis: int
    vertical: bool
    value: float


def crosshair_point(geometry: SliceGeometry, position: tuple[int, int, int]) -> tuple[float, float]:
    """Scene (x, y) in mm of the centre of the crosshair voxel in the view of ``geometry``."""
    rows, cols = in_plane_axes(geometry.axis)
    return geometry.to_scene(position[rows] + 0.5, position[cols] + 0.5)


def crosshair_lines(geometry: SliceGeometry, position: tuple[int, int, int]) -> list[CrosshairLine]:
    """The two other planes through ``position`` as lines in this view (through voxel centres)."""
    rows, cols = in_plane_axes(geometry.axis)
    x, y = crosshair_point(geometry, position)
    # the plane of constant row index is a horizontal line unless the slice is drawn transposed
    row_vertical = geometry.transpose
    return [CrosshairLine(rows, row_vertical, x if row_vertical else y),
            CrosshairLine(cols, not row_vertical, y if row_vertical else x)]


def position_at(geometry: SliceGeometry, position: tuple[int, int, int], x: float, y: float
                ) -> tuple[int, int, int] | None:
    """The crosshair voxel after a click at scene (x, y) in this view (its own slice index kept), or None
    when the point lies outside the slice."""
    pixel = geometry.pixel_at(x, y)
    if pixel is None:
        return None
    rows, cols = in_plane_axes(geometry.axis)
    new = list(position)
    new[rows], new[cols] = pixel
    return (int(new[0]), int(new[1]), int(new[2]))


def position_on_line(geometry: SliceGeometry, position: tuple[int, int, int], line_axis: int, value: float,
                     shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The crosshair voxel after the line of plane ``line_axis`` was dragged to scene coordinate ``value``
    (x for a vertical line, y for a horizontal one), clamped into the volume."""
    rows, cols = in_plane_axes(geometry.axis)
    if line_axis not in (rows, cols):
        raise ValueError(f"plane {line_axis} has no line in the {AXIS_NAMES[geometry.axis]} view")
    cx, cy = crosshair_point(geometry, position)
    vertical = geometry.transpose if line_axis == rows else not geometry.transpose
    row, col = geometry.to_pixel(value if vertical else cx, cy if vertical else value)
    index = int(np.floor(row if line_axis == rows else col))
    new = list(position)
    new[line_axis] = max(0, min(int(shape[line_axis]) - 1, index))
    return (int(new[0]), int(new[1]), int(new[2]))


def aspect_ratio(geometry: SliceGeometry) -> float:
    """Width / height of a slice on screen in mm (what the view must keep, whatever the pixel grid)."""
    width, height = geometry.scene_size
    return width / height


@dataclass(frozen=True)
class CrosshairReadout:
    """What lies under the crosshair: voxel, patient position, value, and each heatmap's value there."""

    voxel: tuple[int, int, int]
    lps: tuple[float, float, float]
    value: float
    is_hu: bool
    heatmaps: tuple[tuple[str, float | None], ...]   # (layer name, value or None when not computed there)
    spacing: tuple[float, float, float]

    def lines(self) -> list[str]:
        z, y, x = self.voxel
        unit = "HU" if self.is_hu else "(not HU)"
        lx, ly, lz = self.lps
        out = [f"Crosshair  x {x}, y {y}, z {z}",
               f"LPS  {lx:.1f}, {ly:.1f}, {lz:.1f} mm",
               f"Value  {self.value:.0f} {unit}",
               "Voxel  {:.2f} × {:.2f} × {:.2f} mm".format(self.spacing[2], self.spacing[1], self.spacing[0])]
        for name, value in self.heatmaps:
            out.append(f"{name}: {'not computed here' if value is None else f'{value:.2f}'}")
        return out


def crosshair_readout(state) -> CrosshairReadout | None:
    """The readout of ``state`` (a :class:`~viewer.model.viewer_state.ViewerState`) at its crosshair."""
    volume = state.volume
    if volume is None:
        return None
    voxel = tuple(int(i) for i in state.position)
    heatmaps = []
    for layer in state.heatmap_layers:
        value = float(layer.data[voxel])
        heatmaps.append((layer.name, value if np.isfinite(value) else None))
    return CrosshairReadout(voxel, state.voxel_to_lps(voxel), float(volume.array[voxel]), volume.is_hu,
                            tuple(heatmaps), tuple(float(s) for s in volume.spacing))
