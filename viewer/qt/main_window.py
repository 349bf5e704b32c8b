"""``MainWindow``: open scans (dialog, drag-and-drop, command line), browse series, read the axial view.

Layout: the slice view with its slice slider in the centre, the series browser docked left (shown when a
folder holds several series), the series info panel docked right, window/level presets in the toolbar, and
the status bar with the HU readout and the running job (progress, ETA, Cancel).

Long work runs in :class:`~viewer.workers.Worker` jobs started through :meth:`MainWindow.run_job`, which wires
progress/cancel into the status bar and error dialogs; closing the window cancels and waits for them, so no
thread outlives the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from engine.io.volume import SeriesInfo, Volume
from viewer.model.events import Event
from viewer.model.viewer_state import ViewerState
from viewer.model.window_level import PRESET_LABELS, PRESET_SHORTCUTS, WindowLevel
from viewer.qt.error_dialog import show_error
from viewer.qt.info_panel import InfoPanel
from viewer.qt.job_status import JobStatus
from viewer.qt.series_browser import SeriesBrowser
from viewer.qt.slice_slider import SliceSlider
from viewer.qt.slice_view import SliceView
from viewer.workers.loading import Discovery, OpenResult, load_series_job, open_demo_job, open_paths_job
from viewer.workers.worker import Worker

APP_TITLE = "LungLens"
CLOSE_WAIT_S = 10.0   # how long closing waits for cancelled jobs to stop
FILE_FILTER = "Scans (*.dcm *.DCM *.ima *.IMA *.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.png *.jpg *.jpeg " \
              "DICOMDIR);;All files (*)"


class MainWindow(QMainWindow):
    def __init__(self, state: ViewerState | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state or ViewerState()
        self.setWindowTitle(APP_TITLE)
        self.setAcceptDrops(True)
        self.resize(1280, 860)
        self.current_series: SeriesInfo | None = None
        self.error_dialog: QMessageBox | None = None
        self._jobs: list[Worker] = []
        self._load_worker: Worker | None = None
        self._pending_view: dict[str, Any] = {}

        # centre: slice view + slider
        self.slice_view = SliceView(self.state)
        self.slice_slider = SliceSlider(self.state)
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.slice_view, 1)
        layout.addWidget(self.slice_slider)
        self.setCentralWidget(central)
        for widget in (self.slice_view.graphics, self.slice_view.graphics.viewport()):
            widget.setAcceptDrops(False)   # drops go to the window

        # docks
        self.series_browser = SeriesBrowser()
        self.series_browser.series_activated.connect(self.open_series)
        self.series_dock = self._dock("Series", "seriesDock", self.series_browser, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.series_dock.hide()
        self.info_panel = InfoPanel()
        self.info_dock = self._dock("Series info", "infoDock", self.info_panel, Qt.DockWidgetArea.RightDockWidgetArea)

        # status bar
        self.readout_label = QLabel(self)
        self.readout_label.setObjectName("huReadout")
        self.readout_label.setMinimumWidth(360)
        self.job_status = JobStatus(self)
        self.statusBar().addWidget(self.readout_label, 1)
        self.statusBar().addPermanentWidget(self.job_status)

        self._build_actions()
        # AI workflow (issue 5): model dock, score strip, heatmaps, look inside, compare, export
        from viewer.qt.ai_workflow import AIWorkflow
        self.ai = AIWorkflow(self)
        # MPR layouts (issue 10): axial/coronal/sagittal panes with a linked crosshair, View ▸ Layout
        from viewer.qt.layout import MprLayout
        self.mpr = MprLayout(self)
        # PACS (issue 10): File ▸ Query/Retrieve from PACS…, AI ▸ Send heatmap to PACS…
        from viewer.qt.pacs_dialog import PacsActions
        self.pacs = PacsActions(self)
        # Tools (issues 6, 8): Tools ▸ Batch screen…, Tools ▸ Benchmark…
        from viewer.qt.tools_menu import ToolsActions
        self.tools = ToolsActions(self)
        self.state.events.volume.connect(self._on_volume)
        self.state.events.window.connect(self._on_window)
        self.state.events.cursor.connect(self._on_cursor)
        self._on_volume(None)

    # --- opening ------------------------------------------------------------------------------------------
    def open_path(self, paths: str | Path | Sequence[str | Path], *, slice_index: int | None = None,
                  window: str | WindowLevel | None = None) -> Worker:
        """Discover and load in the background; the default (largest CT) series is shown when ready."""
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        self._pending_view = {"slice_index": slice_index, "window": window}
        names = ", ".join(Path(p).name or str(p) for p in paths)
        worker = Worker(open_paths_job, [Path(p) for p in paths], name="open")
        worker.result.connect(self._on_opened)
        return self._start_load(worker, f"Opening {names} …")

    def open_demo(self, *, slice_index: int | None = None, window: str | WindowLevel | None = None) -> Worker:
        """Open the synthetic demo chest CT (generated in the background on first use)."""
        self._pending_view = {"slice_index": slice_index, "window": window}
        worker = Worker(open_demo_job, name="demo")
        worker.result.connect(self._on_opened)
        return self._start_load(worker, "Preparing the demo scan …")

    def open_series(self, series: SeriesInfo) -> Worker:
        """Load one series (e.g. picked in the series browser) in the background."""
        worker = Worker(load_series_job, series, name="load-series")
        worker.result.connect(lambda volume, s=series: self.show_volume(volume, s))
        return self._start_load(worker, f"Loading {series.label} …")

    def show_volume(self, volume: Volume, series: SeriesInfo | None = None, *, slice_index: int | None = None,
                    window: str | WindowLevel | None = None) -> None:
        """Display an already loaded volume (also used by ``--screenshot``, which loads synchronously)."""
        pending, self._pending_view = self._pending_view, {}
        slice_index = slice_index if slice_index is not None else pending.get("slice_index")
        window = window if window is not None else pending.get("window")
        self.current_series = series
        try:
            self.state.set_volume(volume, window=window, slice_index=slice_index)
        except KeyError as exc:   # a preset this series lacks (e.g. --window dicom without a header window)
            self.state.set_volume(volume, slice_index=slice_index)
            self.statusBar().showMessage(str(exc.args[0]), 8000)
        self.series_browser.mark_current(series)
        if volume.warnings:
            self.statusBar().showMessage("Loaded with warnings: " + "; ".join(volume.warnings), 15000)

    def cancel_loading(self) -> None:
        if self._load_worker is not None:
            self._load_worker.cancel()

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open scan file", "", FILE_FILTER)
        if path:
            self.open_path(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open folder with a CT series")
        if path:
            self.open_path(path)

    # --- generic background jobs (loading now; screening, explaining, benchmarking later) ---------------
    def run_job(self, worker: Worker, message: str, *, on_error: Callable[[BaseException, str], None] | None = None,
                error_title: str = "Job failed") -> Worker:
        """Start ``worker`` with status-bar progress/cancel and an error dialog; it is cancelled on close."""
        self._jobs.append(worker)
        self.job_status.track(worker, message)
        worker.error.connect(on_error or (lambda exc, text: self._show_error(error_title, exc, text)))
        worker.cancelled.connect(lambda: self.statusBar().showMessage(f"{message.rstrip(' …')}: cancelled", 5000))
        worker.finished.connect(lambda w=worker: self._forget_job(w))
        return worker.start()

    @property
    def running_jobs(self) -> list[Worker]:
        return [w for w in self._jobs if not w.is_done]

    def _start_load(self, worker: Worker, message: str) -> Worker:
        if self._load_worker is not None:
            self._load_worker.cancel()        # the newest request wins
        self._load_worker = worker
        started = time.perf_counter()
        worker.result.connect(lambda _r: self.statusBar().showMessage(
            f"Loaded in {time.perf_counter() - started:.1f} s", 5000))
        worker.finished.connect(lambda w=worker: self._load_finished(w))
        return self.run_job(worker, message, error_title="Cannot open scan")

    def _load_finished(self, worker: Worker) -> None:
        if self._load_worker is worker:
            self._load_worker = None

    def _forget_job(self, worker: Worker) -> None:
        self._jobs = [w for w in self._jobs if w is not worker]

    def _on_opened(self, result: OpenResult) -> None:
        self.show_discovery(result.discovery, ", ".join(str(p) for p in result.paths))
        self.show_volume(result.volume, result.chosen)

    def show_discovery(self, found: Discovery, where: str) -> None:
        """List the series found under ``where``; the browser docks in when there is a choice to make."""
        self.series_browser.set_series(found.series, where, skipped=found.skipped)
        self.series_dock.setVisible(len(found.series) > 1)

    def _show_error(self, title: str, error: BaseException, details: str) -> None:
        self.error_dialog = show_error(self, title, error, details)

    # --- state -> window ----------------------------------------------------------------------------------
    def _on_volume(self, _event: Event | None) -> None:
        volume = self.state.volume
        self.info_panel.show_volume(volume)
        presets = self.state.window_presets() if volume is not None else {}
        for name, action in self.preset_actions.items():
            action.setEnabled(name in presets)
            if name in presets:
                window = presets[name]
                action.setToolTip(f"{PRESET_LABELS[name]} window: W {window.width:g} / L {window.level:g} "
                                  f"({action.shortcut().toString()})")
        self.reset_view_action.setEnabled(volume is not None)
        title = APP_TITLE
        if volume is not None:
            what = volume.meta.get("SeriesDescription") or (volume.source[0].parent.name if volume.source else "")
            title = f"{what} — {APP_TITLE}" if what else APP_TITLE
        self.setWindowTitle(title)
        self._on_window(None)

    def _on_window(self, _event: Event | None) -> None:
        current = self.state.window_preset if self.state.volume is not None else None
        for name, action in self.preset_actions.items():
            action.setChecked(name == current)

    def _on_cursor(self, _event: Event) -> None:
        cursor = self.state.cursor
        self.readout_label.setText(str(cursor) if cursor is not None else "")

    # --- actions ------------------------------------------------------------------------------------------
    def _build_actions(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        self.open_file_action = self._action("&Open File…", QKeySequence.StandardKey.Open, self.open_file_dialog)
        self.open_folder_action = self._action("Open &Folder…", "Ctrl+Shift+O", self.open_folder_dialog)
        self.cancel_action = self._action("&Cancel Loading", "Esc", self.cancel_loading)
        quit_action = self._action("&Quit", QKeySequence.StandardKey.Quit, self.close)
        for action in (self.open_file_action, self.open_folder_action, self.cancel_action):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)
        toolbar.addAction(self.open_file_action)
        toolbar.addAction(self.open_folder_action)
        toolbar.addSeparator()

        view_menu = self.menuBar().addMenu("&View")
        self.preset_group = QActionGroup(self)
        self.preset_group.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
        self.preset_actions: dict[str, QAction] = {}
        for name in ("lung", "mediastinum", "bone", "dicom"):
            action = self._action(PRESET_LABELS[name], PRESET_SHORTCUTS[name],
                                  lambda _checked=False, n=name: self.apply_window_preset(n))
            action.setCheckable(True)
            self.preset_group.addAction(action)
            self.preset_actions[name] = action
            view_menu.addAction(action)
            toolbar.addAction(action)
        toolbar.addSeparator()
        self.reset_view_action = self._action("&Reset Zoom/Pan", "R", self.state.reset_camera)
        view_menu.addSeparator()
        view_menu.addAction(self.reset_view_action)
        toolbar.addAction(self.reset_view_action)
        view_menu.addSeparator()
        view_menu.addAction(self.series_dock.toggleViewAction())
        view_menu.addAction(self.info_dock.toggleViewAction())

        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(self._action("&Mouse and Keys", None, self._show_controls))
        help_menu.addAction(self._action("&About LungLens", None, self._show_about))

    def apply_window_preset(self, name: str) -> None:
        if self.state.volume is not None and name in self.state.window_presets():
            self.state.apply_window_preset(name)

    def _action(self, text: str, shortcut: Any, slot: Callable) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        self.addAction(action)   # shortcuts work even with menus/toolbars hidden
        return action

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(area, dock)
        return dock

    def _show_controls(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "Mouse and keys",
                          "Wheel, Up/Down, PageUp/PageDown: previous/next slice (Shift: 10 slices)\n"
                          "Home/End: first/last slice\n"
                          "Left-drag: pan · Ctrl+wheel or middle-drag: zoom · R: reset zoom/pan\n"
                          "Right-drag: window/level (left/right: width, up/down: level)\n"
                          "1-4: lung, mediastinum, bone, DICOM window\n"
                          "Esc: cancel loading\n"
                          "Ctrl+1 / Ctrl+3 / Ctrl+4: one view, axial|coronal|sagittal, 2×2 with readout\n"
                          "Click: move the crosshair there · drag a crosshair line: move that plane\n"
                          "Double-click a view: maximise/restore it · C: show/hide the crosshair",
                          QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def _show_about(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "About LungLens",
                          "LungLens — open-source chest-CT viewer with COVID-19 screening models and CAM heatmaps.\n\n"
                          "Research use only. Not a medical device; results are not a diagnosis.",
                          QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # --- drag and drop ------------------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if _local_paths(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if _local_paths(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = _local_paths(event)
        if paths:
            event.acceptProposedAction()
            self.open_path(paths)

    # --- closing ------------------------------------------------------------------------------------------
    def shutdown_jobs(self, timeout: float = CLOSE_WAIT_S) -> bool:
        """Cancel every job and wait for them; True if all stopped in time."""
        jobs = list(self._jobs)
        for worker in jobs:
            worker.cancel()
        deadline = time.monotonic() + timeout
        return all(worker.wait(max(0.0, deadline - time.monotonic())) for worker in jobs)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.hide()                          # disappear at once, even if a job needs a moment to stop
        self.ai.shutdown()                   # compare windows, dialogs and model jobs first
        self.mpr.shutdown()                  # coronal/sagittal views and crosshairs (issue 10)
        self.pacs.shutdown()                 # the PACS browser's searches (a running retrieve is a job below)
        self.tools.shutdown()                # batch screening / benchmark windows and their jobs (issues 6, 8)
        self.shutdown_jobs()
        for worker in self._jobs:            # results arriving after close must not touch dead widgets
            for signal in (worker.result, worker.error, worker.progress, worker.cancelled, worker.finished):
                try:
                    signal.disconnect()
                except (RuntimeError, TypeError):
                    pass
        self.slice_view.detach()
        self.slice_slider.detach()
        self.state.events.disconnect(self._on_volume)
        self.state.events.disconnect(self._on_window)
        self.state.events.disconnect(self._on_cursor)
        super().closeEvent(event)


def _local_paths(event: QDragEnterEvent | QDropEvent) -> list[Path]:
    mime = event.mimeData()
    if mime is None or not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]
