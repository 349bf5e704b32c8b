"""The axial view: drawing, scrolling, zoom/pan, window/level, HU readout, orientation, heatmap layers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QWheelEvent
from PySide6.QtWidgets import QApplication

from tests.viewer.conftest import hover
from tests.viewer.volumes import MARKER_HU, chest_volume, marker_voxel
from viewer.model import Camera, SyncGroup, ViewerState, WindowLevel
from viewer.model.window_level import PRESETS, apply_window

pytestmark = pytest.mark.gui


def assert_shows(item, hu_slice: np.ndarray, window: WindowLevel) -> None:
    """The image item holds exactly ``hu_slice`` through ``window`` (opaque grey RGBX)."""
    grey = apply_window(hu_slice, window)
    assert item.image.shape == hu_slice.shape + (4,)
    for channel in range(3):
        np.testing.assert_array_equal(item.image[..., channel], grey)
    assert (item.image[..., 3] == 255).all()


def _wheel(view, delta: int, modifiers=Qt.KeyboardModifier.NoModifier, at: QPointF | None = None) -> None:
    viewport = view.graphics.viewport()
    pos = at or QPointF(viewport.width() / 2, viewport.height() / 2)
    event = QWheelEvent(pos, viewport.mapToGlobal(pos), QPoint(0, 0), QPoint(0, delta),
                        Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(viewport, event)


def _drag(qtbot, view, button, start: QPoint, end: QPoint, steps: int = 6) -> None:
    viewport = view.graphics.viewport()
    qtbot.mousePress(viewport, button, pos=start)
    for i in range(1, steps + 1):
        p = start + (end - start) * (i / steps)
        qtbot.wait(15)           # pyqtgraph drops mouse moves closer than 10 ms (mouseRateLimit)
        qtbot.mouseMove(viewport, QPoint(int(p.x()), int(p.y())))
    qtbot.mouseRelease(viewport, button, pos=end)


def _grab(view) -> np.ndarray:
    image = view.graphics.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    width, height = image.width(), image.height()
    buffer = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.bytesPerLine() * height)
    return buffer.reshape(height, image.bytesPerLine())[:, : width * 3].reshape(height, width, 3).copy()


def test_shows_the_current_slice_with_the_window_levels(window, chest) -> None:
    window.show_volume(chest, slice_index=20)
    view, state = window.slice_view, window.state
    item = view.image_item(state.image_layer)
    assert_shows(item, chest.array[20], PRESETS["lung"])
    state.apply_window_preset("mediastinum")
    assert_shows(item, chest.array[20], WindowLevel(350, 50))
    assert "W 350  L 50 (Mediastinum)" in view.corner_labels["bottom_right"].text()
    assert "Slice 21 / 24" in view.corner_labels["bottom_left"].text()
    assert window.preset_actions["mediastinum"].isChecked() and not window.preset_actions["lung"].isChecked()


def test_wheel_keys_and_slider_scroll(window, chest, qtbot) -> None:
    window.show_volume(chest)
    view, state, slider = window.slice_view, window.state, window.slice_slider.slider
    start = state.slice_index
    _wheel(view, 120)
    assert state.slice_index == start + 1
    _wheel(view, -240)
    assert state.slice_index == start - 1
    _wheel(view, 60)                       # half a notch (touchpad): nothing yet ...
    assert state.slice_index == start - 1
    _wheel(view, 60)                       # ... a whole notch in total: one slice
    assert state.slice_index == start
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_PageUp)
    assert state.slice_index == start + 1
    qtbot.keyClick(view, Qt.Key.Key_PageDown)
    qtbot.keyClick(view, Qt.Key.Key_PageDown)
    assert state.slice_index == start - 1
    qtbot.keyClick(view, Qt.Key.Key_Up, Qt.KeyboardModifier.ShiftModifier)
    assert state.slice_index == start + 9
    qtbot.keyClick(view, Qt.Key.Key_End)
    assert state.slice_index == chest.shape[0] - 1 and slider.value() == chest.shape[0] - 1
    qtbot.keyClick(view, Qt.Key.Key_Home)
    assert state.slice_index == 0
    slider.setValue(7)
    assert state.slice_index == 7
    assert_shows(view.image_item(state.image_layer), chest.array[7], state.window)
    assert window.slice_slider.label.text() == f"Slice 8 / {chest.shape[0]}"


def test_zoom_and_pan(window, chest, qtbot) -> None:
    window.show_volume(chest)
    view, state = window.slice_view, window.state
    full = view.viewbox.viewRect()
    _wheel(view, 480, Qt.KeyboardModifier.ControlModifier)
    assert state.camera.zoom > 1.5
    zoomed = view.viewbox.viewRect()
    assert zoomed.width() == pytest.approx(full.width() / state.camera.zoom, rel=1e-3)
    before = view.viewbox.viewRect().center()
    _drag(qtbot, view, Qt.MouseButton.LeftButton, QPoint(300, 300), QPoint(400, 300))
    after = view.viewbox.viewRect().center()
    assert after.x() < before.x() - 1 and after.y() == pytest.approx(before.y(), abs=0.5)   # image follows hand
    zoom = state.camera.zoom
    _drag(qtbot, view, Qt.MouseButton.MiddleButton, QPoint(300, 300), QPoint(300, 250))
    assert state.camera.zoom > zoom
    window.reset_view_action.trigger()
    assert state.camera == Camera()
    assert view.viewbox.viewRect().width() == pytest.approx(full.width(), rel=1e-3)


def test_right_drag_changes_window_level(window, chest, qtbot) -> None:
    window.show_volume(chest)
    state = window.state
    before = state.window
    _drag(qtbot, window.slice_view, Qt.MouseButton.RightButton, QPoint(300, 300), QPoint(400, 300))
    assert state.window.width > before.width and state.window.level == before.level
    wider = state.window
    _drag(qtbot, window.slice_view, Qt.MouseButton.RightButton, QPoint(300, 300), QPoint(300, 360))
    assert state.window.level > wider.level and state.window.width == wider.width
    assert state.window_preset is None and not any(a.isChecked() for a in window.preset_actions.values())
    window.preset_actions["bone"].trigger()
    assert state.window == PRESETS["bone"]


def test_hu_readout_under_the_cursor(window, chest, qtbot) -> None:
    window.show_volume(chest)
    z, y, x = marker_voxel(chest)
    window.state.slice_index = z
    view = window.slice_view
    hover(qtbot, view, view.viewport_point_of_pixel(y, x))
    qtbot.waitUntil(lambda: window.state.cursor is not None, timeout=2000)
    assert window.state.cursor.voxel == (z, y, x)
    assert window.state.cursor.value == MARKER_HU
    assert window.readout_label.text().startswith("1500 HU")
    assert view.corner_labels["top_right"].text().startswith("1500 HU")
    qtbot.keyClick(view, Qt.Key.Key_Home)             # scrolling updates the readout under a still mouse
    assert window.state.cursor.voxel == (0, y, x) and window.state.cursor.value == -850
    window.state.zoom_by(0.5)             # the slice now fills half the view: its corner is black border
    hover(qtbot, view, QPoint(2, 2))
    qtbot.waitUntil(lambda: window.state.cursor is None, timeout=2000)


def _same_patient_other_storage(volume):
    """The same anatomy stored mirrored left-right: array x now grows to the patient's RIGHT."""
    nx, sx = volume.shape[2], volume.spacing[2]
    origin = (volume.origin[0] + (nx - 1) * sx, volume.origin[1], volume.origin[2])
    return dataclasses.replace(volume, array=volume.array[:, :, ::-1].copy(), origin=origin,
                               direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))


def test_orientation_labels_and_radiological_display(window, qtbot) -> None:
    volume = chest_volume(shape=(24, 120, 160), spacing=(2.5, 0.8, 0.6))
    z, _, _ = marker_voxel(volume)
    window.show_volume(volume, slice_index=z)
    view = window.slice_view
    labels = {side: label.text() for side, label in view.orientation_labels.items()}
    assert labels == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    standard = _grab(view)
    white = np.argwhere(standard.min(axis=2) > 250)    # the 1500 HU marker is white at lung window
    assert len(white) > 50
    cy, cx = white.mean(axis=0)
    assert cx < standard.shape[1] / 2 and cy < standard.shape[0] / 2   # patient's right-anterior: screen top-left

    mirrored = _same_patient_other_storage(volume)
    window.show_volume(mirrored, slice_index=z)
    assert {s: l.text() for s, l in view.orientation_labels.items()} == labels
    np.testing.assert_array_equal(_grab(view), standard)     # same patient, same picture


def test_heatmap_layer_is_drawn_on_its_voxels(window, chest) -> None:
    window.show_volume(chest)
    state, view = window.state, window.slice_view
    z, y, x = marker_voxel(chest)
    state.slice_index = z
    layer = state.add_heatmap(name="test map", colormap="inferno", threshold=0.5, opacity=1.0)
    heat = np.zeros(chest.shape[1:], np.float32)
    heat[y - 3:y + 4, x - 3:x + 4] = 1.0
    layer.set_slice(z, heat)
    item = view.image_item(layer)
    assert item is not None and item.zValue() > view.image_item(state.image_layer).zValue()
    alpha = item.image[..., 3]
    assert alpha[y, x] == 255 and alpha[0, 0] == 0 and alpha.sum() == 255 * 49
    colour = item.image[y, x, :3]
    assert tuple(colour) == tuple(layer.rgba_slice(z, np.asarray(_lut("inferno")))[y, x, :3])
    layer.visible = False
    assert not item.isVisible()
    state.layers.remove(layer)
    assert view.image_item(layer) is None


def _lut(name):
    from viewer.qt.colormaps import heatmap_lut
    return heatmap_lut(name)


def test_two_views_in_a_sync_group_follow_each_other(make_window) -> None:
    volume = chest_volume(shape=(24, 120, 160), spacing=(2.5, 0.8, 0.6))
    left, right = make_window(), make_window()
    left.show_volume(volume)
    right.show_volume(volume)
    group = SyncGroup([left.state, right.state])
    _wheel(left.slice_view, 360)
    assert right.state.slice_index == left.state.slice_index
    assert_shows(right.slice_view.image_item(right.state.image_layer), volume.array[left.state.slice_index],
                 right.state.window)
    right.state.window = WindowLevel(800, -400)
    assert left.state.window == WindowLevel(800, -400)
    left.state.zoom_by(3.0)
    assert right.slice_view.viewbox.viewRect().width() == pytest.approx(
        left.slice_view.viewbox.viewRect().width(), rel=1e-3)
    group.clear()


def test_eight_bit_images_are_flagged_not_hu_without_orientation_guesses(window) -> None:
    from pathlib import Path

    volume = chest_volume(shape=(1, 40, 50), dtype=np.uint8)
    volume.is_hu = False
    volume.source = (Path("slices/001.jpg"),)
    window.show_volume(volume)
    corner = window.slice_view.corner_labels["bottom_right"].text()
    assert "not HU" in corner and "orientation unknown" in corner
    assert not any(label.isVisible() for label in window.slice_view.orientation_labels.values())
    assert not window.preset_actions["lung"].isEnabled()
    assert window.info_panel.rows()["Values"].startswith("not HU")
    window.show_volume(chest_volume())               # a CT again: labels come back
    assert all(label.isVisible() for label in window.slice_view.orientation_labels.values())


def test_empty_view_invites_to_open_something(window) -> None:
    assert window.state.volume is None
    assert window.slice_view.empty_label.isVisible()
    assert "Open" in window.slice_view.empty_label.text()
    window.slice_view.step(3)      # nothing open: harmless
    assert ViewerState().slice_index == 0
