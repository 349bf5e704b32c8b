"""The AI workflow in the main window: screen in a worker (progress, cancel, close while running), score strip
and suspicious slices, heatmap overlay on exactly the right voxels, look inside, compare mode in sync, exports.

Models are the probe networks of ``probe_model``: hand-set ground-glass detectors, so where their heatmaps
must light up is known (a phantom's lesion) and a misplaced overlay fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt

from tests.viewer.probe_model import (
    PROBE_2D,
    PROBE_2D_B,
    PROBE_3D,
    LesionProbe,
    lesion_phantom,
    registered_probes,
    save_probe,
)
from viewer.model.ai import RESEARCH_LABEL, ModelCatalog
from viewer.model.export import ExportRefused

pytestmark = pytest.mark.gui
TIMEOUT = 60000


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    fast = tmp_path_factory.mktemp("weights")
    slow = tmp_path_factory.mktemp("slow")
    with registered_probes():
        for name in (PROBE_2D, PROBE_2D_B, PROBE_3D):
            save_probe(fast, name)
        save_probe(slow, PROBE_2D, delay_s=0.15)
        phantom, centre = lesion_phantom()
        yield {"fast": fast, "slow": slow, "phantom": phantom, "centre": centre}


def _ai_window(make_window, probes, root="fast"):
    window = make_window()
    ai = window.ai
    ai.catalog = ModelCatalog(roots=[probes[root]])
    ai.backend = "torch"
    ai.refresh_models()
    window.show_volume(probes["phantom"].volume)
    return window


def _screen(qtbot, window, model=PROBE_2D):
    window.ai.select_model(model)
    worker = window.ai.screen()
    qtbot.waitUntil(lambda: worker.is_done and not window.ai.busy, timeout=TIMEOUT)
    qtbot.wait(20)
    assert worker.outcome == "result"
    return window.ai.results[model]


def _viewport_rgb(view, row: float, col: float) -> tuple[int, int, int]:
    """Colour drawn on screen at the centre of slice pixel (row, col)."""
    image = view.graphics.viewport().grab().toImage()
    point = view.viewport_point_of_pixel(row, col)
    colour = image.pixelColor(point)
    return colour.red(), colour.green(), colour.blue()


def _is_grey(rgb, tolerance=3) -> bool:
    return max(rgb) - min(rgb) <= tolerance


def test_screen_shows_score_strip_and_suspicious_slices(qtbot, make_window, probes) -> None:
    window = _ai_window(make_window, probes)
    panel, ai = window.ai.panel, window.ai
    assert panel.current_entry().name == PROBE_2D and panel.screen_button.isEnabled()
    reports = []
    ai.select_model(PROBE_2D)
    qtbot.mouseClick(panel.screen_button, Qt.MouseButton.LeftButton)
    worker = ai.session.screen_worker
    worker.progress.connect(reports.append)
    qtbot.waitUntil(lambda: worker.is_done and not ai.busy, timeout=TIMEOUT)
    qtbot.wait(20)
    result = ai.results[PROBE_2D]
    lesion_z = probes["centre"][0]

    assert panel.score_label.text() == f"P(COVID) = {result.probability:.2f}"
    assert panel.research_label.isVisible() and panel.research_label.text() == RESEARCH_LABEL
    assert "top-" in panel.detail_label.text() and "lung-bearing" in panel.detail_label.text()
    assert not panel.progress.isVisible() and panel.screen_button.isEnabled()
    assert result.top_slices[0] == lesion_z                      # the ground-glass slice is the most suspicious
    assert panel.top_list.item(0).text().startswith(f"Slice {lesion_z + 1} · P ")
    strip = ai.strip
    assert strip.isVisible() and strip.series == [PROBE_2D]
    np.testing.assert_array_equal(strip.scores(PROBE_2D), result.slice_scores)

    panel.top_list.itemClicked.emit(panel.top_list.item(0))        # click a suspicious slice: jump there
    assert window.state.slice_index == lesion_z
    vb = strip.getPlotItem().vb                                   # click the strip at slice 3
    scene = vb.mapViewToScene(QPointF(3.0, 0.5))
    qtbot.mouseClick(strip.viewport(), Qt.MouseButton.LeftButton, pos=strip.mapFromScene(scene))
    qtbot.waitUntil(lambda: window.state.slice_index == 3, timeout=3000)
    assert strip.cursor_line.value() == 3


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_heatmap_lights_up_the_lesion_on_screen(qtbot, make_window, probes, method) -> None:
    window = _ai_window(make_window, probes)
    ai, phantom = window.ai, probes["phantom"]
    z, y, x = probes["centre"]
    _screen(qtbot, window)
    ai.set_explainer(method)
    ai.go_to_slice(z)
    layer = ai.heatmap_layer
    qtbot.waitUntil(lambda: layer.has_slice(z) and not ai.busy, timeout=TIMEOUT)
    qtbot.wait(50)
    assert layer.info["explainer"] == method and layer.visible

    heat = layer.slice(z)
    lesion = phantom.lesion_mask[z].astype(bool)
    peak = np.unravel_index(int(np.nanargmax(heat)), heat.shape)
    assert lesion[peak], f"heatmap peak {peak} is not on the lesion (centre {(y, x)})"
    lung = phantom.lung_mask[z].astype(bool) & ~lesion
    assert np.nanmean(heat[lesion]) > 4 * np.nanmean(heat[lung])

    # on screen: coloured over the lesion, plain grey over the other lung at the same height
    view = window.slice_view
    mirror_x = phantom.volume.shape[2] - 1 - x
    assert phantom.lung_mask[z, y, mirror_x]
    assert not _is_grey(_viewport_rgb(view, y, x))
    assert _is_grey(_viewport_rgb(view, y, mirror_x))
    # H toggles the overlay
    window.activateWindow()
    qtbot.keyClick(window.slice_view, Qt.Key.Key_H)
    qtbot.waitUntil(lambda: not layer.visible, timeout=3000)
    qtbot.wait(20)
    assert _is_grey(_viewport_rgb(view, y, x))
    assert not window.ai.controls.show_box.isChecked()


def test_explainers_are_cached_per_slice(qtbot, make_window, probes) -> None:
    window = _ai_window(make_window, probes)
    ai = window.ai
    _screen(qtbot, window)
    z = probes["centre"][0]
    ai.go_to_slice(z)
    layer = ai.heatmap_layer
    qtbot.waitUntil(lambda: layer.has_slice(z) and not ai.busy, timeout=TIMEOUT)
    gradcam = layer.slice(z).copy()
    ai.set_explainer("gradcampp")            # the layer keeps showing (and naming) Grad-CAM until Grad-CAM++ comes
    assert layer.info["explainer"] == "gradcam" or not np.array_equal(layer.slice(z), gradcam, equal_nan=True)
    qtbot.waitUntil(lambda: layer.info["explainer"] == "gradcampp" and layer.has_slice(z) and not ai.busy,
                    timeout=TIMEOUT)
    assert not np.isfinite(layer.slice(z + 1)).any()              # a new store: only this slice is computed
    calls = LesionProbe.calls
    ai.set_explainer("gradcam")                                   # back: from the cache, no new job
    assert not ai.busy and LesionProbe.calls == calls
    np.testing.assert_array_equal(layer.slice(z), gradcam)
    ai.go_to_slice(z + 1)                                         # another slice: computed on demand
    qtbot.waitUntil(lambda: layer.has_slice(z + 1) and not ai.busy, timeout=TIMEOUT)
    assert not np.isfinite(layer.slice(z + 3)).any()              # never asked for: not computed


def test_heatmap_controls_drive_the_layer(qtbot, make_window, probes) -> None:
    window = _ai_window(make_window, probes)
    ai = window.ai
    ai.show_heatmap(True)                                         # before screening: the map still comes
    controls = ai.controls
    assert controls.show_box.isChecked()                          # asked for, while the first map is computed
    qtbot.waitUntil(lambda: ai.heatmap_layer is not None and not ai.busy, timeout=TIMEOUT)
    layer = ai.heatmap_layer
    assert layer.has_slice(window.state.slice_index) and controls.layer is layer
    controls.opacity.setValue(80)
    controls.threshold.setValue(50)
    controls.colormap.setCurrentText("viridis")
    assert (layer.opacity, layer.threshold, layer.colormap) == (0.8, 0.5, "viridis")
    assert controls.colour_bar.colormap == "viridis" and controls.colour_bar.threshold == 0.5
    layer.scale = (0.0, 0.5)                                      # the controls follow the layer
    assert controls.vmax.value() == 0.5


def test_cancel_stops_screening(qtbot, make_window, probes) -> None:
    window = _ai_window(make_window, probes, root="slow")          # 150 ms per forward pass
    ai = window.ai
    ai.session.batch_size = 1
    calls = LesionProbe.calls
    worker = ai.screen()
    qtbot.waitUntil(lambda: "slice" in ai.panel.progress_label.text(), timeout=TIMEOUT)
    assert ai.panel.progress.isVisible() and ai.panel.cancel_button.isEnabled()
    qtbot.mouseClick(ai.panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: worker.is_done, timeout=TIMEOUT)
    qtbot.wait(20)
    assert worker.outcome == "cancelled"
    assert LesionProbe.calls - calls < probes["phantom"].volume.shape[0]
    assert ai.session.result is None and ai.panel.score_label.text() == "Not screened yet"
    assert not ai.panel.progress.isVisible() and ai.panel.screen_button.isEnabled()


def test_closing_the_window_while_a_model_runs(qtbot, make_window, probes) -> None:
    window = _ai_window(make_window, probes, root="slow")
    ai = window.ai
    ai.session.batch_size = 1
    worker = ai.screen()
    ai.show_heatmap(True)
    qtbot.waitUntil(lambda: worker.is_running and LesionProbe.calls > 0, timeout=TIMEOUT)
    window.close()                   # cancels and waits; the leak guard checks that nothing survives
    assert worker.is_done and worker.outcome == "cancelled"
    assert not ai.runner.running


def test_3d_model_heatmap_covers_the_volume(qtbot, make_window, probes) -> None:
    window = _ai_window(make_window, probes)
    ai, phantom = window.ai, probes["phantom"]
    result = _screen(qtbot, window, PROBE_3D)
    assert result.spatial_dims == 3 and result.slice_scores is None
    assert not ai.strip.isVisible() and "3-D model" in ai.panel.top_list.item(0).text()
    layer = ai.heatmap_layer
    qtbot.waitUntil(lambda: not ai.busy and np.isfinite(layer.data).all(), timeout=TIMEOUT)
    peak = np.unravel_index(int(np.argmax(layer.data)), layer.data.shape)
    assert phantom.lesion_mask[peak], f"3-D heatmap peak {peak} is not on the lesion {probes['centre']}"


def test_look_inside_tiles_the_layer_activations(qtbot, make_window, probes) -> None:
    window = _ai_window(make_window, probes)
    ai = window.ai
    ai.go_to_slice(probes["centre"][0])
    dialog = ai.open_look_inside()
    qtbot.waitUntil(lambda: dialog.outcome is not None and not ai.busy, timeout=TIMEOUT)
    names = [dialog.layer_box.itemData(i) for i in range(dialog.layer_box.count())]
    assert names[:5] == ["features.0", "features.1", "features.2", "features.3", "features.4"]
    assert "features" in names and dialog.current_layer == "features"      # default: the CAM layer
    assert dialog.outcome.maps.shape == (1, 48, 64) and dialog.outcome.z == probes["centre"][0]
    dialog.layer_box.setCurrentIndex(names.index("features.0"))      # 3 filters: tiled 2 x 2
    qtbot.waitUntil(lambda: dialog.outcome.layer == "features.0" and not ai.busy, timeout=TIMEOUT)
    assert dialog.mosaic().shape == (2 * 48 + 1, 2 * 64 + 1) and "all 3 filters" in dialog.caption.text()
    ai.go_to_slice(0)                                              # follows the slice on screen
    qtbot.waitUntil(lambda: dialog.outcome.z == 0 and not ai.busy, timeout=TIMEOUT)


def test_compare_mode_keeps_panes_in_sync(qtbot, make_window, probes) -> None:
    window = _ai_window(make_window, probes)
    ai = window.ai
    z = probes["centre"][0]
    ai.go_to_slice(z)
    compare = ai.open_compare([PROBE_2D, PROBE_2D_B])
    qtbot.waitUntil(lambda: not compare.busy and all(s.result is not None for s in compare.sessions), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: all(s.layer is not None and s.layer.has_slice(z) for s in compare.sessions) and
                    not compare.busy, timeout=TIMEOUT)
    a, b = compare.states
    assert a.slice_index == b.slice_index == compare.diff_state.slice_index == z
    assert [p.score_label.text()[:9] for p in compare.panes] == ["P(COVID) ", "P(COVID) "]
    assert sorted(compare.score_strip.series) == [f"{PROBE_2D}#0", f"{PROBE_2D_B}#1"]
    np.testing.assert_allclose(compare.difference_slice(), a.active_heatmap.slice(z) - b.active_heatmap.slice(z))

    a.slice_index = z - 2                                          # slice, window, zoom: linked
    assert b.slice_index == compare.diff_state.slice_index == z - 2
    b.apply_window_preset("mediastinum")
    assert a.window == b.window == compare.diff_state.window
    compare.apply_window_preset("bone")                            # the 1-4 keys: every pane
    assert a.window_preset == b.window_preset == compare.diff_state.window_preset == "bone"
    a.zoom_by(2.0)
    assert b.camera == a.camera
    qtbot.waitUntil(lambda: all(s.layer.has_slice(z - 2) for s in compare.sessions) and not compare.busy,
                    timeout=TIMEOUT)
    a.active_heatmap.threshold = 0.6                               # heatmap threshold and scale: linked
    a.active_heatmap.scale = (0.0, 0.8)
    assert b.active_heatmap.threshold == 0.6 and b.active_heatmap.scale == (0.0, 0.8)
    compare.sync_boxes["heatmap_threshold"].setChecked(False)      # toggled off per property
    a.active_heatmap.threshold = 0.3
    assert b.active_heatmap.threshold == 0.6
    compare.sync_boxes["slice"].setChecked(False)
    a.slice_index = 1
    assert b.slice_index == z - 2 and compare.diff_state.slice_index == 1
    a.active_heatmap.opacity = 0.9                                 # opacity is not linked by default
    assert b.active_heatmap.opacity != 0.9
    compare.close()


def test_export_png_and_dicom_secondary_capture(qtbot, make_window, probes, tmp_path) -> None:
    import pydicom

    from engine.phantom import write_dicom_series

    # finer pixels than the other tests: the burned-in text (top left) must not cover the lesion
    phantom, (z, y, x) = lesion_phantom(shape=(6, 168, 240), spacing=(3.5, 0.65, 0.45), z=3)
    scan = tmp_path / "scan"
    write_dicom_series(phantom.volume, scan, uid_seed="ai-export", series_description="Lesion")
    window = make_window()
    ai = window.ai
    ai.catalog = ModelCatalog(roots=[probes["fast"]])
    ai.backend = "torch"
    ai.refresh_models()
    opened = window.open_path(scan)
    qtbot.waitUntil(lambda: opened.is_done and window.state.volume is not None, timeout=TIMEOUT)
    _screen(qtbot, window)
    ai.go_to_slice(z)
    qtbot.waitUntil(lambda: ai.heatmap_layer.has_slice(z) and not ai.busy, timeout=TIMEOUT)

    out = tmp_path / "out"
    out.mkdir()
    png = ai.export_view_png(out / "view.png")
    assert png.is_file() and png.stat().st_size > 1000
    from tests.viewer.test_app import _png
    banner = _png(png)[-20:].astype(int)                          # "research use, not a diagnosis" stamp
    assert ((banner[..., 0] > 200) & (banner[..., 1] > 150) & (banner[..., 2] < 150)).sum() > 50
    with pytest.raises(ExportRefused, match="already exists"):
        ai.export_view_png(out / "view.png")
    assert ai.export_view_png(out / "view.png", overwrite=True) == png
    with pytest.raises(ExportRefused, match="inside the folder of the scan"):
        ai.export_view_png(scan / "view.png")
    with pytest.raises(ExportRefused, match="inside the folder of the scan"):
        ai.export_heatmap_dicom(scan / "heat.dcm")
    written = ai.export_heatmap_dicom(out / "heat.dcm")
    sc = pydicom.dcmread(written)
    source = pydicom.dcmread(window.state.volume.source[z], stop_before_pixels=True)
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.BurnedInAnnotation == "YES"
    assert sc.StudyInstanceUID == source.StudyInstanceUID and sc.SeriesInstanceUID != source.SeriesInstanceUID
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert "lesion_probe" in sc.SeriesDescription and "NOT FOR DIAGNOSIS" in sc.SeriesDescription
    rgb = sc.pixel_array
    assert rgb.shape == phantom.volume.shape[1:] + (3,)
    assert not _is_grey(rgb[y, x], 10)                             # the lesion is coloured in the capture too
    mirror_x = phantom.volume.shape[2] - 1 - x
    assert _is_grey(rgb[y, mirror_x], 2)                           # the other lung is not
    assert sorted(p.name for p in scan.iterdir()) == sorted(p.name for p in window.state.volume.source)


def test_cli_screenshot_with_a_model_and_compare(qapp, leak_guard, probes, tmp_path, capsys) -> None:
    from tests.viewer.test_app import _png
    from viewer.app import main

    volume = probes["phantom"].volume
    from engine.phantom import write_dicom_series
    scan = tmp_path / "scan"
    write_dicom_series(volume, scan, uid_seed="ai-cli", series_description="Lesion")
    out = tmp_path / "shot.png"
    args = [str(scan), "--model", PROBE_2D, "--explainer", "cam", "--weights", str(probes["fast"]),
            "--backend", "torch", "--screenshot", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"slice {probes['centre'][0] + 1}/{volume.shape[0]}" in printed       # went to the top slice
    assert "lesion_probe: P(COVID) = " in printed and "not a diagnosis" in printed
    pixels = _png(out)
    colourful = (pixels.max(axis=2).astype(int) - pixels.min(axis=2)) > 60
    assert colourful.sum() > 50                                    # heatmap (and score strip) on the picture

    both = tmp_path / "compare.png"
    assert main(args[:-1] + [str(both), "--compare", PROBE_2D_B]) == 0
    printed = capsys.readouterr().out
    assert "lesion_probe_b: P(COVID) = " in printed
    assert _png(both).shape == (900, 1680, 3)                      # compare: a wider picture

    assert main([str(scan), "--model", "nope", "--weights", str(probes["fast"]), "--screenshot",
                 str(tmp_path / "x.png")]) == 2
    assert "no weights for model 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(scan), "--compare", PROBE_2D, "--screenshot", str(tmp_path / "x.png")])
    assert "--compare and --explainer need --model" in capsys.readouterr().err


def test_compare_two_weights_of_one_network(qtbot, make_window, probes) -> None:
    window = _ai_window(make_window, probes)
    ai = window.ai
    ai.add_weights(probes["slow"])                       # a second set of lesion_probe weights
    keys = ai.catalog.names()
    second = next(k for k in keys if k.startswith(f"{PROBE_2D}@"))
    assert ai.panel.model_box.findData(second) >= 0
    compare = ai.open_compare([PROBE_2D, second])
    qtbot.waitUntil(lambda: not compare.busy and len(compare.results) == 2, timeout=TIMEOUT)
    assert sorted(compare.results) == sorted([PROBE_2D, second])
    assert [p.session.entry.folder for p in compare.panes] == [probes["slow"] / PROBE_2D, probes["fast"] / PROBE_2D]
    assert compare.panes[1].model_box.currentData() == second
    compare.close()


def test_closing_compare_mode_while_its_models_run(qtbot, make_window, probes) -> None:
    from viewer.qt.compare import CompareWindow

    window = _ai_window(make_window, probes, root="slow")
    ai = window.ai
    ai.add_weights(probes["fast"])
    second = next(k for k in ai.catalog.names() if k.startswith(f"{PROBE_2D}@"))
    compare = CompareWindow(window.state.volume, ai.catalog.entries(), [PROBE_2D, second], backend="torch",
                            start=False, parent=window)
    ai.compare_windows.append(compare)
    for session in compare.sessions:
        session.batch_size = 1                # the slow weights: 150 ms per slice
    calls = LesionProbe.calls
    compare.show()
    compare.start()
    qtbot.waitUntil(lambda: LesionProbe.calls > calls, timeout=TIMEOUT)
    workers = [s.screen_worker for s in compare.sessions]
    assert any(w.is_running for w in workers)
    compare.close()                           # cancels and waits for its own jobs
    assert all(w.is_done for w in workers) and not compare.busy
    assert "cancelled" in {w.outcome for w in workers}
