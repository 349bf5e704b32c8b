"""MPR: axial/coronal/sagittal views of a non-isotropic, non-square volume -- aspect, orientation labels, linked
crosshair, shared window/level, heatmaps in every plane at the right voxels, layouts."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QImage

from engine.phantom import make_phantom
from engine.phantom.anatomy import LesionSpec
from viewer.model import Camera, ViewerState, WindowLevel
from viewer.model.mpr import (
    crosshair_lines, crosshair_point, crosshair_readout, in_plane_axes, layout_cells, parse_layout, position_at,
    position_on_line,
)
from viewer.model.slice_geometry import SliceGeometry
from viewer.model.window_level import apply_window
from viewer.qt.colormaps import heatmap_lut

pytestmark = pytest.mark.gui

SHAPE = (14, 72, 96)              # z, y, x: non-square slices
SPACING = (5.0, 1.1, 0.8)         # thick slices, non-square pixels
HOT = (4, 22, 66)                 # heatmap hot spot (z, y, x): right of centre (patient's left), anterior, low
FLIP_Z = (1, 0, 0, 0, 1, 0, 0, 0, -1)   # slices stored head-first (z grows towards the feet)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(SHAPE, SPACING, seed=7, lesions=[LesionSpec(center=HOT, radii_mm=(6.0, 8.0, 8.0))])


def _hot_volume(shape=SHAPE, hot=HOT, radius=1) -> np.ndarray:
    data = np.zeros(shape, np.float32)
    z, y, x = hot
    data[max(0, z - radius):z + radius + 1, y - radius:y + radius + 1, x - radius:x + radius + 1] = 1.0
    return data


def _grab(view) -> np.ndarray:
    image = view.graphics.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    width, height = image.width(), image.height()
    buffer = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.bytesPerLine() * height)
    return buffer.reshape(height, image.bytesPerLine())[:, : width * 3].reshape(height, width, 3).copy()


def _in_plane(axis: int, voxel) -> tuple[int, int]:
    rows, cols = in_plane_axes(axis)
    return voxel[rows], voxel[cols]


# --- Qt-free geometry ---------------------------------------------------------------------------------------
def test_layouts_parse_and_place_panes() -> None:
    assert parse_layout("1×3") == parse_layout("1X3") == parse_layout("13") == "1x3"
    with pytest.raises(ValueError, match="choose one of 1x1, 1x3, 2x2"):
        parse_layout("3x3")
    assert [c.axis for c in layout_cells("1x1", main_axis=2)] == [2]
    assert [(c.axis, c.row, c.col) for c in layout_cells("1x3")] == [(0, 0, 0), (1, 0, 1), (2, 0, 2)]
    assert [(c.axis, c.row, c.col) for c in layout_cells("2x2")] == [(0, 0, 0), (1, 0, 1), (2, 1, 0), (None, 1, 1)]


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), FLIP_Z])
def test_plane_geometry_aspect_and_labels(phantom, direction) -> None:
    volume = phantom.volume
    nz, ny, nx = volume.shape
    sz, sy, sx = volume.spacing
    axial, coronal, sagittal = (SliceGeometry.for_axis(volume.shape, volume.spacing, direction, a) for a in range(3))
    # mm on screen, not pixels: the thick slices make the coronal/sagittal planes tall, not squashed
    assert axial.scene_size == pytest.approx((nx * sx, ny * sy))
    assert coronal.scene_size == pytest.approx((nx * sx, nz * sz))
    assert sagittal.scene_size == pytest.approx((ny * sy, nz * sz))
    labels = [(g.labels.left, g.labels.right, g.labels.top, g.labels.bottom) for g in (axial, coronal, sagittal)]
    assert labels == [("R", "L", "A", "P"), ("R", "L", "S", "I"), ("A", "P", "S", "I")]
    # superior is up in both vertical planes whichever way the slices were stored
    for g in (coronal, sagittal):
        top_row = g.pixel_at(1.0, 0.1)[0]
        assert top_row == (nz - 1 if direction != FLIP_Z else 0)


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), FLIP_Z])
def test_crosshair_maths_round_trips(phantom, direction) -> None:
    volume = phantom.volume
    position = (3, 40, 17)
    for axis in range(3):
        g = SliceGeometry.for_axis(volume.shape, volume.spacing, direction, axis)
        x, y = crosshair_point(g, position)
        assert position_at(g, (9, 9, 9), x, y)[axis] == 9                 # the view's own slice is kept
        moved = list(position)
        moved[axis] = 9
        assert position_at(g, (9, 9, 9), x, y) == tuple(moved)
        assert position_at(g, position, -5.0, -5.0) is None               # outside the slice
        lines = crosshair_lines(g, position)
        assert sorted(line.axis for line in lines) == sorted(in_plane_axes(axis))
        for line in lines:
            # dragging a line to where it is changes nothing; one voxel further moves that plane by one
            assert position_on_line(g, position, line.axis, line.value, volume.shape) == position
            step = g.spacing[0 if line.axis == in_plane_axes(axis)[0] else 1]
            for sign in (1, -1):
                got = position_on_line(g, position, line.axis, line.value + sign * step, volume.shape)
                assert abs(got[line.axis] - position[line.axis]) == 1
                assert [got[a] for a in range(3) if a != line.axis] == [position[a] for a in range(3) if a != line.axis]
            far = position_on_line(g, position, line.axis, line.value + 1e6, volume.shape)   # clamped
            assert far[line.axis] in (0, volume.shape[line.axis] - 1)


def test_crosshair_readout_reports_value_and_heatmaps(phantom) -> None:
    state = ViewerState(phantom.volume)
    layer = state.add_heatmap(None, "probe")
    state.position = HOT
    readout = crosshair_readout(state)
    assert readout.voxel == HOT and readout.value == pytest.approx(float(phantom.volume.array[HOT]))
    assert readout.heatmaps == (("probe", None),)              # NaN: not computed there
    layer.set_slice(HOT[0], _hot_volume()[HOT[0]])
    assert crosshair_readout(state).heatmaps == (("probe", 1.0),)
    assert any("not computed" in line for line in readout.lines())


# --- the widgets ----------------------------------------------------------------------------------------------
def _mpr(window, volume, layout="1x3"):
    window.show_volume(volume)
    window.mpr.set_layout(layout)
    window.resize(1500, 760)
    from viewer.qt.screenshot import settle
    settle()
    return window.mpr


def test_three_planes_with_mm_aspect_and_labels(window, phantom) -> None:
    mpr = _mpr(window, phantom.volume)
    views = mpr.visible_views
    assert [v.axis for v in views] == [0, 1, 2] and all(v.isVisible() for v in views)
    sz, sy, sx = phantom.volume.spacing
    for view in views:
        # screen pixels per voxel along rows and along columns: their ratio is the mm ratio of the voxel
        rows, cols = in_plane_axes(view.axis)
        n_rows, n_cols = phantom.volume.shape[rows] - 1, phantom.volume.shape[cols] - 1
        origin = view.viewport_point_of_pixel(0, 0)
        down = view.viewport_point_of_pixel(n_rows, 0) - origin
        right = view.viewport_point_of_pixel(0, n_cols) - origin
        per_row = np.hypot(down.x(), down.y()) / n_rows
        per_col = np.hypot(right.x(), right.y()) / n_cols
        row_mm, col_mm = phantom.volume.spacing[rows], phantom.volume.spacing[cols]
        assert per_row / per_col == pytest.approx(row_mm / col_mm, rel=0.03)
        assert view.graphics.viewport().width() > 200
    texts = [[v.orientation_labels[s].text() for s in ("left", "right", "top", "bottom")] for v in views]
    assert texts == [["R", "L", "A", "P"], ["R", "L", "S", "I"], ["A", "P", "S", "I"]]
    assert views[1].corner_labels["top_left"].text() == "Coronal"


def test_click_in_one_view_moves_the_others(window, phantom, qtbot) -> None:
    mpr = _mpr(window, phantom.volume)
    state = window.state
    axial, coronal, sagittal = (mpr.view(a) for a in range(3))
    state.position = (7, 36, 48)
    # click on coronal pixel (row z=2, col x=80): z and x move, y (the coronal slice) stays
    qtbot.mouseClick(coronal.graphics.viewport(), Qt.MouseButton.LeftButton,
                     pos=coronal.viewport_point_of_pixel(*_in_plane(1, (2, 36, 80))))
    assert state.position == (2, 36, 80)
    assert axial.slice_index == 2 and sagittal.slice_index == 80 and coronal.slice_index == 36
    # the axial view now shows slice 2, and its lines cross at (y 36, x 80)
    assert "Slice 3 / 14" in axial.corner_labels["bottom_left"].text()
    g = axial.geometry_of_slices
    x, y = g.to_scene(36 + 0.5, 80 + 0.5)
    lines = mpr.crosshairs[0].line_values()
    assert lines == {1: (False, pytest.approx(y)), 2: (True, pytest.approx(x))}
    # click in the sagittal view (row z, col y)
    qtbot.mouseClick(sagittal.graphics.viewport(), Qt.MouseButton.LeftButton,
                     pos=sagittal.viewport_point_of_pixel(*_in_plane(2, (11, 60, 80))))
    assert state.position == (11, 60, 80)
    # dragging the coronal line in the axial view moves the coronal plane
    line = mpr.crosshairs[0].lines[1]
    line.setValue(g.to_scene(20.5, 0.5)[1])
    line.sigDragged.emit(line)
    assert state.position == (11, 20, 80) and coronal.slice_index == 20


def test_scrolling_a_plane_and_per_view_zoom(window, phantom, qtbot) -> None:
    mpr = _mpr(window, phantom.volume)
    state = window.state
    sagittal = mpr.view(2)
    start = state.position
    sagittal.setFocus()
    qtbot.keyClick(sagittal, Qt.Key.Key_Up)
    assert state.position == (start[0], start[1], start[2] + 1)
    coronal = mpr.view(1)
    coronal.zoom_by(2.0)
    assert coronal.camera.zoom == 2.0 and state.camera == Camera() and sagittal.camera == Camera()
    assert "Zoom 200%" in coronal.corner_labels["bottom_right"].text()
    window.reset_view_action.trigger()
    assert coronal.camera == Camera()


def test_shared_window_level_in_every_plane(window, phantom) -> None:
    mpr = _mpr(window, phantom.volume)
    state = window.state
    state.position = (5, 30, 40)
    state.window = WindowLevel(400, 40)
    for view in mpr.visible_views:
        item = view.image_item(state.image_layer)
        expected = apply_window(np.take(phantom.volume.array, state.position[view.axis], axis=view.axis),
                                state.window)
        np.testing.assert_array_equal(item.image[..., 0], expected)
    mpr.view(2).adjust_window(40, 0)           # right-drag in the sagittal view widens everyone's window
    assert state.window.width > 400
    assert all(f"W {state.window.width:.0f}" in v.corner_labels["bottom_right"].text() for v in mpr.visible_views)


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), FLIP_Z])
def test_3d_heatmap_in_all_three_planes_at_the_right_voxels(window, phantom, direction) -> None:
    import dataclasses
    volume = dataclasses.replace(phantom.volume, direction=direction)
    mpr = _mpr(window, volume)
    state = window.state
    layer = state.add_heatmap(_hot_volume(), "hot", threshold=0.5, opacity=1.0, colormap="inferno")
    state.position = HOT
    window.resize(1500, 760)
    yellow = heatmap_lut("inferno")[-1]
    for view in mpr.visible_views:
        item = view.image_item(layer)
        alpha = item.image[..., 3]
        rows, cols = np.nonzero(alpha)
        r, c = _in_plane(view.axis, HOT)
        assert set(rows) == {r - 1, r, r + 1} and set(cols) == {c - 1, c, c + 1}
        # and on screen: the hot block is drawn in the heatmap colour (next to the crosshair lines through its
        # centre), a voxel 6 away in grey
        pixels = _grab(view)
        ratio = view.graphics.devicePixelRatioF()
        point = view.viewport_point_of_pixel(r + 1, c + 1)
        colour = pixels[int(point.y() * ratio), int(point.x() * ratio)]
        assert np.abs(colour.astype(int) - yellow.astype(int)).max() <= 12, (view.axis, colour)
        away = view.viewport_point_of_pixel(r + 1, min(c + 6, item.image.shape[1] - 1))   # off the lines
        grey = pixels[int(away.y() * ratio), int(away.x() * ratio)].astype(int)
        assert grey.max() - grey.min() <= 2, (view.axis, grey)


def test_2d_heatmap_stacks_slice_by_slice(window, phantom) -> None:
    mpr = _mpr(window, phantom.volume)
    state = window.state
    state.position = HOT
    layer = state.add_heatmap(None, "2-D model", threshold=0.5)       # nothing computed yet
    coronal, sagittal = mpr.view(1), mpr.view(2)
    assert not coronal.image_item(layer).image[..., 3].any()
    hot = _hot_volume()
    for z in (HOT[0], HOT[0] + 1):                      # a 2-D model fills the axial slices one at a time
        layer.set_slice(z, hot[z])
        for view in (coronal, sagittal):
            rows = set(np.nonzero(view.image_item(layer).image[..., 3])[0])
            assert rows == set(range(HOT[0], z + 1)), (view.axis, z)
    assert mpr.panes[0].view is window.slice_view


def test_layouts_maximise_and_readout_pane(window, phantom, qtbot) -> None:
    mpr = _mpr(window, phantom.volume, "2x2")
    state = window.state
    assert mpr.panel is not None and mpr.panel.isVisible()
    state.position = (3, 10, 20)
    assert "x 20, y 10, z 3" in mpr.panel.text()
    state.add_heatmap(_hot_volume(), "probe")
    state.position = HOT
    assert "probe: 1.00" in mpr.panel.text()
    coronal = mpr.view(1)
    viewport, at = coronal.graphics.viewport(), coronal.viewport_point_of_pixel(3, 3)
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=at)     # a real double click: click, then
    qtbot.mouseDClick(viewport, Qt.MouseButton.LeftButton, pos=at)    # press-double-release
    assert (mpr.layout_name, mpr.main_axis) == ("1x1", 1)
    assert coronal.isVisible() and not window.slice_view.isVisible()
    assert all(not c.lines[a].isVisible() for c in mpr.crosshairs.values() for a in c.lines)   # 1x1: no lines
    mpr.toggle_maximised(1)
    assert mpr.layout_name == "2x2" and mpr.panel is not None
    window.mpr.layout_actions["1x1"].trigger()
    assert mpr.layout_name == "1x1" and set(mpr.views) == {0} and mpr.panel is None  # hidden planes are dropped
    assert window.slice_view.isVisible()
    window.mpr.layout_actions["1x3"].trigger()
    assert set(mpr.views) == {0, 1, 2}
    mpr.set_crosshair_visible(False)
    assert all(not line.isVisible() for c in mpr.crosshairs.values() for line in c.lines.values())


def test_cursor_readout_follows_the_view_under_the_mouse(window, phantom, qtbot) -> None:
    from tests.viewer.conftest import hover
    mpr = _mpr(window, phantom.volume)
    state = window.state
    state.position = (7, 36, 48)
    coronal = mpr.view(1)
    hover(qtbot, coronal, coronal.viewport_point_of_pixel(*_in_plane(1, (5, 36, 30))))
    assert state.cursor.voxel == (5, 36, 30)
    state.position = (9, 36, 48)           # the axial and sagittal views move; under the mouse nothing changed
    assert state.cursor.voxel == (5, 36, 30)
    state.position = (9, 37, 48)           # the coronal slice moved: the voxel under the mouse did too
    assert state.cursor.voxel == (5, 37, 30)


def test_lunglens_layout_screenshot(qapp, leak_guard, scan_folders, tmp_path, capsys) -> None:
    from viewer.app import main
    out = tmp_path / "mpr.png"
    assert main([str(scan_folders["one"]), "--layout", "2x2", "--screenshot", str(out)]) == 0
    image = QImage(str(out))
    assert image.width() == 1280 and image.height() == 860
    with pytest.raises(SystemExit):
        main([str(scan_folders["one"]), "--layout", "3x3", "--screenshot", str(out)])
    assert "invalid choice: '3x3'" in capsys.readouterr().err


@pytest.mark.parametrize("threshold, signed", [(0.95, False), (0.1, False), (0.3, True)])
def test_heatmap_colours_are_the_same_for_sparse_and_dense_slices(threshold, signed) -> None:
    """rgba_slice colours a dense slice (an MPR plane of a 3-D map) with a table look-up and a sparse one pixel
    by pixel: both must give exactly the reference colours (NaN and below-threshold pixels transparent)."""
    from viewer.model.layers import HeatmapLayer
    rng = np.random.default_rng(3)
    data = rng.uniform(-1 if signed else 0, 1, (6, 40, 52)).astype(np.float32)
    data[2, :10] = np.nan
    layer = HeatmapLayer(data, threshold=threshold, opacity=0.6, scale=(-1.0, 1.0) if signed else (0.0, 1.0),
                         colormap="CET-D1" if signed else "magma", signed=signed)
    lut = heatmap_lut(layer.colormap)
    lo, hi = layer.scale
    for axis in range(3):
        for index in (0, 2):
            values = layer.slice(index, axis)
            with np.errstate(invalid="ignore"):
                shown = (np.abs(values) if signed else values) >= threshold
            level = np.clip((np.nan_to_num(values) - lo) * len(lut) / (hi - lo), 0, len(lut) - 1).astype(int)
            expected = np.zeros(values.shape + (4,), np.uint8)
            expected[shown, :3] = lut[level[shown]]
            expected[shown, 3] = round(255 * 0.6)
            np.testing.assert_array_equal(layer.rgba_slice(index, lut, axis), expected)
