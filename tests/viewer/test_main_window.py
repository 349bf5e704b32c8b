"""The main window with real files: open (argument, drop, series browser), progress, cancel, close while
loading, the GUI staying responsive, and clear error dialogs for bad input."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox

from tests.viewer.conftest import hover
from tests.viewer.volumes import MARKER_HU, marker_voxel
from viewer.workers import JobContext

pytestmark = pytest.mark.gui


def _wait_done(qtbot, worker, timeout=20000):
    """Wait until the job returned and its queued signals reached the GUI thread.

    (``waitSignal`` after ``start()`` could miss a fast job's signal: it is emitted in the worker thread.)
    """
    qtbot.waitUntil(lambda: worker.is_done, timeout=timeout)
    qtbot.wait(20)
    return worker


def _open_and_wait(qtbot, main_window, path, **kwargs):
    return _wait_done(qtbot, main_window.open_path(path, **kwargs))


def test_open_a_dicom_folder(qtbot, window, scan_folders) -> None:
    worker = _open_and_wait(qtbot, window, scan_folders["one"], slice_index=3, window="bone")
    assert worker.outcome == "result"
    state = window.state
    np.testing.assert_array_equal(state.volume.array, scan_folders["chest"].array)   # HU through the real reader
    assert state.slice_index == 3 and state.window_preset == "bone"
    assert window.windowTitle().startswith("Chest one")
    assert not window.series_dock.isVisible()            # one series: no browser needed
    rows = window.info_panel.rows()
    assert rows["Series"] == "Chest one" and rows["Matrix (x × y × slices)"] == "160 × 120 × 24"
    assert not any("Phantom" in value for value in rows.values())   # patient name/ID never shown
    assert not window.job_status.isVisible()


def test_real_files_keep_radiological_orientation(qtbot, window, scan_folders) -> None:
    _open_and_wait(qtbot, window, scan_folders["one"])
    chest = scan_folders["chest"]
    z, y, x = marker_voxel(chest)
    window.state.slice_index = z
    view = window.slice_view
    assert [view.orientation_labels[s].text() for s in ("left", "right", "top", "bottom")] == ["R", "L", "A", "P"]
    point = view.viewport_point_of_pixel(y, x)
    assert point.x() < view.graphics.viewport().width() / 2 and point.y() < view.graphics.viewport().height() / 2
    hover(qtbot, view, point)
    qtbot.waitUntil(lambda: window.state.cursor is not None, timeout=2000)
    assert window.state.cursor.value == MARKER_HU


def test_folder_with_two_series_shows_the_browser(qtbot, window, scan_folders) -> None:
    _open_and_wait(qtbot, window, scan_folders["two"])
    assert window.series_dock.isVisible()
    items = window.series_browser.items()
    assert [item.data(0, Qt.ItemDataRole.UserRole).description for item in items] == ["Series B", "Series A"]
    assert window.state.volume.meta["SeriesDescription"] == "Series B"        # the largest opens first
    assert items[0].font(0).bold() and not items[1].font(0).bold()
    with qtbot.waitSignal(window.series_browser.series_activated, timeout=5000):
        window.series_browser.tree.itemActivated.emit(items[1], 0)
    qtbot.waitUntil(lambda: window.state.volume.meta["SeriesDescription"] == "Series A", timeout=10000)
    assert window.state.volume.shape == (10, 60, 80)
    assert window.series_browser.items()[1].font(0).bold()


def test_drop_a_folder_onto_the_window(qtbot, window, scan_folders) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(scan_folders["one"]))])
    event = QDropEvent(QPointF(100, 100), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert event.isAccepted()
    qtbot.waitUntil(lambda: window.state.volume is not None, timeout=20000)
    assert window.state.volume.meta["SeriesDescription"] == "Chest one"
    ignored = QMimeData()
    ignored.setText("not a file")
    window.dropEvent(QDropEvent(QPointF(1, 1), Qt.DropAction.CopyAction, ignored, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier))
    assert window.running_jobs == []


@pytest.fixture
def slow_progress(monkeypatch):
    """Slow the real reader down from inside (each progress report waits), so a test can act mid-load.

    ``seen`` collects the fractions the reader reported, in the worker thread.
    """
    seen: list[float] = []
    original = JobContext.progress

    def progress(self, done=None, total=None, message=None):
        if done is not None and total is None and message is None:
            seen.append(float(done))
            time.sleep(0.01)
        return original(self, done, total, message)

    monkeypatch.setattr(JobContext, "progress", progress)
    return seen


def test_progress_bar_and_cancel_mid_load(qtbot, window, scan_folders, slow_progress) -> None:
    worker = window.open_path(scan_folders["big"])
    assert window.job_status.isVisible() and window.job_status.worker is worker
    qtbot.waitUntil(lambda: any(0.2 < f < 0.8 for f in slow_progress), timeout=20000)
    qtbot.waitUntil(lambda: window.job_status.bar.maximum() == 100 and window.job_status.bar.value() > 0,
                    timeout=5000)
    with qtbot.waitSignal(worker.finished, timeout=10000):
        qtbot.mouseClick(window.job_status.cancel_button, Qt.MouseButton.LeftButton)
    assert worker.outcome == "cancelled"
    assert max(slow_progress) < 1.0                # stopped before the last slice
    assert window.state.volume is None and window.error_dialog is None
    assert not window.job_status.isVisible()


def test_gui_keeps_running_while_loading(qtbot, window, scan_folders, slow_progress) -> None:
    ticks = []
    timer = QTimer(window)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    worker = _wait_done(qtbot, window.open_path(scan_folders["big"]), timeout=30000)
    timer.stop()
    assert worker.outcome == "result" and window.state.volume.shape == (120, 120, 160)
    gaps = np.diff(ticks)
    assert len(ticks) > 20
    assert float(np.median(gaps)) < 0.05           # the event loop kept ticking while slices were read


def test_close_while_loading_stops_the_thread(qtbot, make_window, scan_folders, slow_progress) -> None:
    window = make_window()
    worker = window.open_path(scan_folders["big"])
    qtbot.waitUntil(lambda: len(slow_progress) > 5, timeout=20000)
    started = time.perf_counter()
    window.close()
    assert worker.is_done and worker.outcome == "cancelled"
    assert time.perf_counter() - started < 5      # the leak guard then checks no thread is left


def test_new_open_replaces_a_running_load(qtbot, window, scan_folders, slow_progress) -> None:
    first = window.open_path(scan_folders["big"])
    qtbot.waitUntil(lambda: len(slow_progress) > 2, timeout=20000)
    second = _wait_done(qtbot, window.open_path(scan_folders["one"]))
    assert first.wait(5) and first.outcome == "cancelled"
    assert window.state.volume.meta["SeriesDescription"] == "Chest one"


def _empty_file(d):
    (d / "empty.dcm").write_bytes(b"")
    return d / "empty.dcm"


def _folder_without_images(d):
    (d / "notes.txt").write_text("hello")
    return d


def _garbage_dicom(d):
    (d / "garbage.dcm").write_bytes(b"DICM" * 1000)
    return d / "garbage.dcm"


@pytest.mark.parametrize("make_bad, expected", [
    (_empty_file, ["empty", "empty.dcm"]),
    (_folder_without_images, ["No loadable images", "Skipped 1 file"]),
    (lambda d: d / "does-not-exist", ["does-not-exist"]),
    (_garbage_dicom, ["garbage.dcm"]),
])
def test_bad_input_gives_a_specific_error_dialog(qtbot, window, tmp_path, make_bad, expected) -> None:
    bad = make_bad(tmp_path)
    worker = _open_and_wait(qtbot, window, bad)
    assert worker.outcome == "error"
    dialog = window.error_dialog
    assert isinstance(dialog, QMessageBox) and dialog.isVisible()
    text = dialog.text() + " " + dialog.informativeText()
    for fragment in expected:
        assert fragment.lower() in text.lower(), text
    assert "Unexpected error" not in text
    assert window.state.volume is None
    dialog.close()


def test_error_keeps_the_scan_already_open(qtbot, window, scan_folders, tmp_path) -> None:
    _open_and_wait(qtbot, window, scan_folders["one"])
    _open_and_wait(qtbot, window, tmp_path / "missing")
    assert window.error_dialog is not None
    assert window.state.volume.meta["SeriesDescription"] == "Chest one"
    window.error_dialog.close()


@pytest.mark.slow
def test_open_demo_generates_in_the_background(qtbot, window, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LUNGLENS_CACHE_DIR", str(tmp_path / "cache"))
    worker = window.open_demo(window="mediastinum")
    assert window.job_status.isVisible() and "demo" in window.job_status.message.text()
    _wait_done(qtbot, worker, timeout=300_000)
    assert worker.outcome == "result", window.error_dialog and window.error_dialog.text()
    assert window.state.volume.shape == (112, 512, 512) and window.state.window_preset == "mediastinum"
    assert "demo" in window.windowTitle().lower()
