"""Viewer fixtures: a main window that fails the test if it leaks windows or threads.

Qt runs offscreen (``QT_QPA_PLATFORM=offscreen``, set here if the caller did not).  Every window is closed,
deleted and its deferred deletions flushed at teardown -- leaving pyqtgraph items alive at interpreter exit
aborts PySide6 6.12 with exit code 134 -- and then the fixture checks that no top-level widget, worker or
Python thread created by the test survived.
"""

from __future__ import annotations

import os
import threading

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _flush_deletions() -> None:
    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    for _ in range(3):
        app.processEvents()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def hover(qtbot, view, point) -> None:
    """Move the mouse onto ``point`` of a SliceView's viewport.

    Qt drops a move to the position the cursor already has (maybe left there by an earlier test), so step
    next to it first; pyqtgraph also ignores moves closer than 10 ms, hence the short waits.
    """
    from PySide6.QtCore import QPoint

    viewport = view.graphics.viewport()
    qtbot.mouseMove(viewport, point + QPoint(7, 5))
    qtbot.wait(15)
    qtbot.mouseMove(viewport, point)
    qtbot.wait(15)


@pytest.fixture
def leak_guard(qapp):
    """Fails the test if it leaves top-level widgets, running workers or new Python threads behind."""
    from PySide6.QtWidgets import QApplication

    from viewer.workers import active_workers, worker_pool

    widgets_before = {id(w) for w in QApplication.topLevelWidgets()}
    threads_before = set(threading.enumerate())
    yield
    _flush_deletions()
    problems = []
    running = active_workers()
    if running:
        for worker in running:
            worker.cancel()
        problems.append(f"workers still running after the window closed: {[w.name for w in running]}")
    if not worker_pool().waitForDone(3000):
        problems.append("the worker pool still has running threads 3 s after teardown")
    _flush_deletions()
    leaked = [w for w in QApplication.topLevelWidgets() if id(w) not in widgets_before]
    if leaked:
        problems.append("leaked top-level widgets: " + ", ".join(
            f"{type(w).__name__}({w.objectName() or w.windowTitle()!r})" for w in leaked))
        for widget in leaked:
            widget.close()
            widget.deleteLater()
        _flush_deletions()
    new_threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()
                   and not isinstance(t, threading._DummyThread)]
    if new_threads:
        problems.append(f"leaked Python threads: {[t.name for t in new_threads]}")
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def make_window(qtbot, leak_guard):
    """Factory for :class:`MainWindow` objects that are closed and deleted at teardown."""
    from viewer.qt.main_window import MainWindow

    windows = []

    def factory(state=None, show: bool = True) -> MainWindow:
        window = MainWindow(state)
        qtbot.addWidget(window)     # pytest-qt closes + deleteLater()s it before our leak check
        if show:
            window.resize(1000, 760)
            window.show()
            qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield factory
    for window in windows:
        try:
            window.close()
        except RuntimeError:        # already deleted
            pass
    windows.clear()


@pytest.fixture
def window(make_window):
    return make_window()


@pytest.fixture
def chest():
    from tests.viewer.volumes import chest_volume
    return chest_volume(shape=(24, 120, 160), spacing=(2.5, 0.8, 0.6))


@pytest.fixture(scope="session")
def scan_folders(tmp_path_factory):
    """Real DICOM files on disk, written by engine.phantom's writer from the synthetic chest volumes.

    ``one``: a single series (24 slices); ``two``: a folder holding two series (sub-folders A and B);
    ``big``: 120 slices of 160x120 for progress / cancel tests.
    """
    from engine.phantom import write_dicom_series
    from tests.viewer.volumes import chest_volume

    root = tmp_path_factory.mktemp("scans")
    chest = chest_volume(shape=(24, 120, 160), spacing=(2.5, 0.8, 0.6))
    write_dicom_series(chest, root / "one", uid_seed="viewer-one", series_description="Chest one")
    write_dicom_series(chest_volume(shape=(10, 60, 80)), root / "two" / "A", uid_seed="viewer-two-a",
                       series_description="Series A", series_number=1)
    write_dicom_series(chest_volume(shape=(16, 60, 80), spacing=(1.0, 0.8, 0.8)), root / "two" / "B",
                       uid_seed="viewer-two-b", series_description="Series B", series_number=2)
    write_dicom_series(chest_volume(shape=(120, 120, 160)), root / "big", uid_seed="viewer-big",
                       series_description="Big")
    return {"one": root / "one", "two": root / "two", "big": root / "big", "root": root, "chest": chest}
