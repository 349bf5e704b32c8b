"""The Qt-free viewer state: events, window/level, slice/camera, layers, orientation and sync groups."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.viewer.volumes import MARKER_HU, chest_volume, marker_voxel
from viewer.model import (
    Camera,
    EmitterGroup,
    HeatmapLayer,
    SliceGeometry,
    SyncGroup,
    ViewerState,
    WindowLevel,
    anatomical_label,
    dicom_window,
)
from viewer.model.window_level import FULL_8BIT, PRESETS

FLIP_X = (-1, 0, 0, 0, 1, 0, 0, 0, 1)       # array x grows to the patient's RIGHT
FLIP_Y = (1, 0, 0, 0, -1, 0, 0, 0, 1)       # array y grows to ANTERIOR
SWAPPED = (0, 1, 0, 1, 0, 0, 0, 0, 1)       # array x grows posterior, array y grows left (rows/cols swapped)


def test_model_package_does_not_import_qt() -> None:
    import subprocess
    code = ("import sys, viewer.model, viewer.model.sync; "
            "bad=[m for m in sys.modules if m.split('.')[0] in ('PySide6','pyqtgraph','shiboken6')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- events -------------------------------------------------------------------------------------------------
def test_events_connect_emit_block_disconnect() -> None:
    group = EmitterGroup(object(), ("changed",))
    seen = []
    group.changed.connect(lambda e: seen.append((e.type, e.value)))
    group.changed.emit(1)
    with group.changed.blocked():
        group.changed.emit(2)
    group.changed.emit(3)
    assert seen == [("changed", 1), ("changed", 3)]
    group.disconnect()
    group.changed.emit(4)
    assert seen[-1] == ("changed", 3)
    with pytest.raises(AttributeError, match="no event named"):
        group.nonexistent  # noqa: B018


def test_bound_method_callbacks_are_weak() -> None:
    class Listener:
        def __init__(self):
            self.calls = 0

        def on(self, _event):
            self.calls += 1

    group = EmitterGroup(object(), ("x",))
    listener = Listener()
    group.x.connect(listener.on)
    group.x.connect(listener.on)          # connecting twice calls once
    group.x.emit()
    assert listener.calls == 1
    del listener
    group.x.emit()                        # the dead listener is dropped, nothing raises
    assert group.x.callbacks == []


# --- window / level -----------------------------------------------------------------------------------------
def test_presets_and_window_arithmetic() -> None:
    assert PRESETS["lung"] == WindowLevel(1500, -600)
    assert PRESETS["mediastinum"] == WindowLevel(350, 50)
    assert PRESETS["bone"] == WindowLevel(2000, 400)
    w = WindowLevel(1500, -600)
    assert (w.low, w.high) == (-1350, 150)
    assert WindowLevel.from_range(-1350, 150) == w
    assert WindowLevel(-5, 0).width == 1.0          # never zero or negative


@pytest.mark.parametrize("meta, expected", [
    ({"WindowCenter": 40, "WindowWidth": 400}, WindowLevel(400, 40)),
    ({"WindowCenter": [-600, 40], "WindowWidth": [1500, 400]}, WindowLevel(1500, -600)),
    ({"WindowCenter": "-600\\40", "WindowWidth": "1500\\400"}, WindowLevel(1500, -600)),
    ({"WindowCenter": "", "WindowWidth": "400"}, None),
    ({"WindowCenter": "abc", "WindowWidth": 400}, None),
    ({"WindowCenter": 40, "WindowWidth": 0}, None),
    ({}, None),
])
def test_dicom_window_parsing(meta, expected) -> None:
    assert dicom_window(meta) == expected


def test_apply_window_maps_low_to_black_high_to_white() -> None:
    from viewer.model.window_level import apply_window, grey_to_rgbx

    hu = np.array([[-2000, -1350, -600, 150, 3000]], dtype=np.float32)
    grey = apply_window(hu, PRESETS["lung"])
    assert grey.dtype == np.uint8 and list(grey[0]) == [0, 0, 128, 255, 255]
    assert list(apply_window(hu.astype(np.int16), WindowLevel(2, -600))[0]) == [0, 0, 128, 255, 255]
    rgbx = grey_to_rgbx(grey)
    assert rgbx.shape == (1, 5, 4) and list(rgbx[0, 2]) == [128, 128, 128, 255]


def test_state_window_presets_include_dicom_only_when_present() -> None:
    plain = ViewerState(chest_volume())
    assert set(plain.window_presets()) == {"lung", "mediastinum", "bone"}
    assert plain.window == PRESETS["lung"] and plain.window_preset == "lung"
    with pytest.raises(KeyError, match="dicom"):
        plain.apply_window_preset("dicom")
    with_header = ViewerState(chest_volume(meta={"WindowCenter": 40, "WindowWidth": 400}), window="dicom")
    assert with_header.window == WindowLevel(400, 40) and with_header.window_preset == "dicom"
    seen = []
    with_header.events.window.connect(lambda e: seen.append(e.value))
    with_header.apply_window_preset("bone")
    with_header.window = with_header.window.adjusted(10, 0)
    assert seen == [PRESETS["bone"], WindowLevel(2010, 400)] and with_header.window_preset is None


def test_eight_bit_volume_uses_full_range_window() -> None:
    volume = chest_volume(dtype=np.uint8)
    volume.is_hu = False
    state = ViewerState(volume)
    assert state.window == FULL_8BIT and set(state.window_presets()) == {"full"}


# --- slice / position / cursor ------------------------------------------------------------------------------
def test_slice_scrolling_clamps_and_emits() -> None:
    state = ViewerState(chest_volume(shape=(10, 20, 30)))
    assert state.slice_index == 5 and state.position == (5, 10, 15)
    seen = []
    state.events.position.connect(lambda e: seen.append(e.value[0]))
    state.scroll(3)
    state.scroll(100)
    state.scroll(100)          # already at the end: no event
    state.slice_index = -4
    assert seen == [8, 9, 0]
    assert ViewerState(chest_volume(shape=(10, 20, 30)), window="bone").window == PRESETS["bone"]


def test_set_volume_with_requested_slice_and_reset() -> None:
    state = ViewerState()
    assert state.n_slices == 0 and state.slice_geometry() is None
    state.scroll(1)            # no volume: harmless
    state.set_volume(chest_volume(shape=(10, 20, 30)), slice_index=42)
    assert state.slice_index == 9
    state.zoom_by(2)
    state.set_volume(chest_volume(shape=(6, 20, 30)))
    assert state.camera == Camera() and state.slice_index == 3
    state.set_volume(None)
    assert state.volume is None and len(state.layers) == 0


def test_cursor_readout_reports_hu_and_patient_position() -> None:
    volume = chest_volume()
    state = ViewerState(volume)
    z, y, x = marker_voxel(volume)
    readouts = []
    state.events.cursor.connect(lambda e: readouts.append(e.value))
    state.set_cursor((z, y, x))
    assert readouts[-1].value == MARKER_HU and readouts[-1].is_hu
    sz, sy, sx = volume.spacing
    assert readouts[-1].lps == pytest.approx((-100 + x * sx, -80 + y * sy, -300 + z * sz))
    assert "1500 HU" in str(readouts[-1])
    state.set_cursor((0, 0, 0))
    assert readouts[-1].value == -1000
    state.set_cursor((3, 0, 0))
    assert readouts[-1].value == -970           # the corner voxel encodes z
    state.set_cursor((999, 0, 0))
    assert readouts[-1] is None


# --- camera -------------------------------------------------------------------------------------------------
def test_zoom_about_anchor_keeps_anchor_fixed() -> None:
    camera = Camera(1.0, (50.0, 40.0))
    zoomed = camera.zoomed(2.0, anchor=(70.0, 40.0))
    # the anchor stays at the same offset from the centre in screen units: (70-50)*1 == (70-cx)*2
    assert zoomed.zoom == 2.0
    assert (70.0 - zoomed.center[0]) * 2.0 == pytest.approx((70.0 - 50.0) * 1.0)
    assert Camera(1000).zoom == 64.0 and Camera(0).zoom == 0.1
    state = ViewerState(chest_volume(shape=(4, 60, 80), spacing=(2.5, 0.8, 0.6)))
    state.pan_by(5, -3)
    assert state.camera.center == pytest.approx((80 * 0.6 / 2 + 5, 60 * 0.8 / 2 - 3))
    state.reset_camera()
    assert state.camera == Camera()


# --- orientation --------------------------------------------------------------------------------------------
def test_anatomical_labels() -> None:
    assert anatomical_label(np.array([1, 0, 0])) == "L"
    assert anatomical_label(np.array([-1, 0, 0])) == "R"
    assert anatomical_label(np.array([0, -1, 0])) == "A"
    assert anatomical_label(np.array([0, 0, 1])) == "S"
    assert anatomical_label(np.array([0.8, -0.6, 0])) == "LA"


@pytest.mark.parametrize("direction, flips", [
    ((1, 0, 0, 0, 1, 0, 0, 0, 1), (False, False, False)),
    (FLIP_X, (False, True, False)),
    (FLIP_Y, (False, False, True)),
    (SWAPPED, (True, False, False)),
])
def test_axial_view_is_radiological_for_any_direction(direction, flips) -> None:
    volume = chest_volume(direction=direction)
    g = SliceGeometry.for_axis(volume.shape, volume.spacing, volume.direction, axis=0)
    assert (g.transpose, g.flip_x, g.flip_y) == flips
    labels = g.labels
    assert (labels.left, labels.right, labels.top, labels.bottom) == ("R", "L", "A", "P")


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), FLIP_X, FLIP_Y, SWAPPED])
def test_marker_in_patients_right_anterior_lands_screen_left_top(direction) -> None:
    # where is the patient's right-anterior marker drawn? Screen left half and upper half, always.
    volume = chest_volume(direction=direction)
    z, y, x = marker_voxel(volume)
    g = SliceGeometry.for_axis(volume.shape, volume.spacing, volume.direction, axis=0)
    sx, sy = g.to_scene(y + 0.5, x + 0.5)
    width, height = g.scene_size
    if direction == (1, 0, 0, 0, 1, 0, 0, 0, 1):   # the marker is right-anterior only in the standard frame
        assert sx < width / 2 and sy < height / 2
    # for every frame: the slice corner nearest the patient's right-anterior lands top-left on screen
    m = np.asarray(direction, float).reshape(3, 3)
    ny, nx = volume.shape[1:]
    best = max(((r, c) for r in (0, ny - 1) for c in (0, nx - 1)),
               key=lambda rc: -(m @ np.array([rc[1], rc[0], 0]))[0] - (m @ np.array([rc[1], rc[0], 0]))[1])
    px, py = g.to_scene(best[0] + 0.5, best[1] + 0.5)
    assert px < width / 2 and py < height / 2


def test_pixel_scene_round_trip_and_mm_scaling() -> None:
    for direction in ((1, 0, 0, 0, 1, 0, 0, 0, 1), FLIP_X, FLIP_Y, SWAPPED):
        volume = chest_volume(shape=(5, 60, 80), spacing=(2.5, 0.8, 0.6), direction=direction)
        g = SliceGeometry.for_axis(volume.shape, volume.spacing, volume.direction)
        for row, col in ((0, 0), (59, 79), (10, 70)):
            x, y = g.to_scene(row + 0.5, col + 0.5)
            assert g.pixel_at(x, y) == (row, col)
        assert g.pixel_at(-1, -1) is None
        w, h = g.scene_size
        assert sorted((w, h)) == sorted((80 * 0.6, 60 * 0.8))


def test_coronal_and_sagittal_geometry_for_mpr() -> None:
    volume = chest_volume()   # z grows superior
    coronal = SliceGeometry.for_axis(volume.shape, volume.spacing, volume.direction, axis=1)
    assert coronal.flip_y and (coronal.labels.left, coronal.labels.top) == ("R", "S")
    sagittal = SliceGeometry.for_axis(volume.shape, volume.spacing, volume.direction, axis=2)
    assert (sagittal.labels.left, sagittal.labels.right, sagittal.labels.top) == ("A", "P", "S")
    assert sagittal.scene_size == pytest.approx((60 * 0.8, 24 * 2.5))


# --- layers -------------------------------------------------------------------------------------------------
def test_heatmap_layer_properties_validate_and_emit() -> None:
    state = ViewerState(chest_volume(shape=(4, 6, 8)))
    layer = state.add_heatmap(name="gradcam", colormap="magma", info={"model": "m"})
    assert state.active_heatmap is layer and layer.data.shape == (4, 6, 8) and not layer.has_slice(1)
    seen = []
    state.events.heatmap.connect(lambda e: seen.append(e.value[1]))
    layer.threshold = 0.3
    layer.scale = (0.0, 2.0)
    layer.opacity = 0.7
    layer.visible = False
    layer.colormap = "viridis"
    assert seen == ["threshold", "scale", "opacity", "visible", "colormap"]
    with pytest.raises(ValueError, match="colour map"):
        layer.colormap = "jet"
    with pytest.raises(ValueError, match="vmin < vmax"):
        layer.scale = (1, 1)
    with pytest.raises(ValueError, match="0..1"):
        layer.opacity = 2
    filled = []
    layer.events.data.connect(lambda e: filled.append(e.value))
    layer.set_slice(1, np.ones((6, 8)))
    assert filled == [1] and layer.has_slice(1)
    with pytest.raises(ValueError, match="shape"):
        layer.set_slice(1, np.ones((8, 6)))
    with pytest.raises(ValueError, match="shape"):
        state.add_heatmap(np.zeros((4, 6, 9)))
    assert state.layers.of_type(HeatmapLayer) == [layer]
    state.layers.remove(layer)
    layer.threshold = 0.9          # no longer part of the state: no event
    assert seen[-1] == "colormap" and state.active_heatmap is None


def test_heatmap_rgba_applies_scale_threshold_opacity() -> None:
    data = np.zeros((1, 2, 3), np.float32)
    data[0] = [[0.0, 0.5, 1.0], [np.nan, 0.2, 5.0]]
    layer = HeatmapLayer(data, scale=(0.0, 1.0), threshold=0.25, opacity=0.5)
    lut = np.stack([np.arange(256)] * 3, axis=1).astype(np.uint8)   # grey ramp
    rgba = layer.rgba_slice(0, lut)
    assert rgba.shape == (2, 3, 4)
    assert list(rgba[0, :, 0]) == [0, 128, 255] and rgba[1, 2, 0] == 255   # clipped above vmax
    assert list(rgba[..., 3].ravel()) == [0, 128, 128, 0, 0, 128]          # below threshold / NaN: clear


# --- sync groups --------------------------------------------------------------------------------------------
def test_sync_group_links_selected_properties_both_ways() -> None:
    volume = chest_volume()
    a, b, c = ViewerState(volume), ViewerState(volume), ViewerState(volume)
    group = SyncGroup([a, b, c])
    a.scroll(2)
    assert b.slice_index == c.slice_index == a.slice_index
    c.apply_window_preset("bone")
    assert a.window == b.window == PRESETS["bone"]
    b.zoom_by(2.0, (10.0, 10.0))
    assert a.camera == b.camera == c.camera
    group.set_linked("camera", False)
    a.zoom_by(2.0)
    assert a.camera.zoom == 4.0 and b.camera.zoom == 2.0
    group.set_linked("camera", True)               # re-linking aligns to the first member
    assert b.camera == a.camera == c.camera
    group.remove(c)
    a.scroll(-1)
    assert b.slice_index == a.slice_index != c.slice_index


def test_sync_group_heatmaps_and_late_joiners() -> None:
    volume = chest_volume(shape=(6, 10, 12))
    a, b = ViewerState(volume), ViewerState(volume)
    group = SyncGroup([a, b], linked=("heatmap_scale", "heatmap_threshold"))
    ha, hb = a.add_heatmap(), b.add_heatmap()
    ha.threshold = 0.4
    hb.scale, hb.colormap = (0.0, 3.0), "plasma"
    assert hb.threshold == 0.4 and ha.scale == (0.0, 3.0) and ha.colormap == "plasma"
    ha.opacity = 0.9
    assert hb.opacity == 0.5                       # opacity not linked here
    a.scroll(1)
    assert b.slice_index != a.slice_index         # slice not linked here
    late = ViewerState(volume)
    late.scroll(-2)
    group.set_linked("slice", True)
    group.add(late)
    assert late.slice_index == a.slice_index and b.slice_index == a.slice_index
    late_map = late.add_heatmap()                  # a heatmap appearing later takes the group's look
    assert late_map.threshold == 0.4 and late_map.colormap == "plasma"
    with pytest.raises(ValueError, match="unknown sync property"):
        group.set_linked("colour", True)


def test_sync_slice_clamps_to_shorter_volume_and_position_links_all_axes() -> None:
    long, short = ViewerState(chest_volume(shape=(30, 20, 20))), ViewerState(chest_volume(shape=(10, 20, 20)))
    SyncGroup([long, short], linked=("slice",))
    long.slice_index = 25
    assert short.slice_index == 9
    p, q = ViewerState(chest_volume(shape=(8, 20, 20))), ViewerState(chest_volume(shape=(8, 20, 20)))
    SyncGroup([p, q], linked=("position",))
    p.position = (1, 2, 3)
    assert q.position == (1, 2, 3)
