"""``AIWorkflow``: the AI side of the main window -- model dock, score strip, heatmap overlay, look inside,
compare mode and exports.  Created by ``MainWindow`` (one line) and shut down when it closes.

What it adds to the window:

* an "AI screening" dock (:class:`~viewer.qt.model_panel.ModelPanel` + :class:`HeatmapControls`) under the
  series info;
* a :class:`~viewer.qt.score_strip.ScoreStrip` right above the slice slider (2-D models);
* an "AI" menu: Screen (Ctrl+Return), Cancel, Toggle heatmap (H), Look inside (Ctrl+I), Compare models
  (Ctrl+M), Export view as PNG (Ctrl+E), Export heatmap as DICOM (Ctrl+Shift+E), Add weights folder.

Screening and heatmaps run in workers (:mod:`viewer.workers.ai_jobs`) started through ``MainWindow.run_job``
(status-bar progress, ETA, Cancel, error dialogs, cancelled on close); per-slice heatmaps run quietly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDockWidget,
    QFileDialog,
    QFrame,
    QInputDialog,
    QMessageBox,
    QScrollArea,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from viewer.model.ai import DEFAULT_EXPLAINER, ModelCatalog, ModelEntry, explainer_name, score_text
from viewer.model.events import Event
from viewer.model.export import ExportRefused, check_export_target, default_export_dir, heatmap_capture
from viewer.qt.compare import CompareWindow
from viewer.qt.heatmap_controls import HeatmapControls
from viewer.qt.look_inside import LookInsideDialog
from viewer.qt.model_panel import ModelPanel
from viewer.qt.model_session import JobRunner, ModelSession
from viewer.qt.score_strip import ScoreStrip
from viewer.workers.ai_jobs import warm_up_job
from viewer.workers.worker import ProgressReport, Worker

if TYPE_CHECKING:  # pragma: no cover
    from viewer.qt.main_window import MainWindow


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Process Qt events until ``predicate()`` holds (True) or ``timeout`` seconds pass (False)."""
    app = QApplication.instance()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        app.processEvents()
        time.sleep(0.005)
    app.processEvents()
    return True


class AIWorkflow(QObject):
    def __init__(self, window: MainWindow, catalog: ModelCatalog | None = None, *, backend: str = "auto"):
        super().__init__(window)
        self.window = window
        self.state = window.state
        self.catalog = catalog or ModelCatalog()
        self.backend = backend
        self.runner = JobRunner(window.run_job, self, owns_visible=False)
        self.runner.error.connect(self._on_quiet_error)
        self.session: ModelSession | None = None
        self.results: dict[str, Any] = {}          # ScanResult per model name, for the open scan
        self.compare_windows: list[CompareWindow] = []
        self.look_inside: LookInsideDialog | None = None
        self.card_dialog: QDialog | None = None
        self.autorun: dict[str, Any] | None = None
        self.last_export: Path | None = None
        self._deferred = 0                         # GUI steps queued for the next event-loop turn
        self._closed = False

        # widgets
        self.panel = ModelPanel()
        self.controls = HeatmapControls(self.state)
        self.panel.set_heatmap_controls(self.controls)
        self.dock = QDockWidget("AI screening", window)
        self.dock.setObjectName("aiDock")
        scroll = QScrollArea(self.dock)            # small screens: the panel scrolls instead of growing the window
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self.panel)
        scroll.setMinimumWidth(self.panel.minimumSizeHint().width() + 16)
        self.dock.setWidget(scroll)
        self.dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable
                              | QDockWidget.DockWidgetFeature.DockWidgetMovable)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        info_dock = getattr(window, "info_dock", None)
        if info_dock is not None:           # a tab next to the series info: the panel needs the full height
            window.tabifyDockWidget(info_dock, self.dock)
            self.dock.raise_()
        self.strip = ScoreStrip(self.state)
        self.strip.setVisible(False)
        self._insert_strip()
        self._build_actions()

        panel = self.panel
        panel.screen_requested.connect(self.screen)
        panel.cancel_requested.connect(self.cancel)
        panel.model_changed.connect(self.select_model)
        panel.explainer_changed.connect(self.set_explainer)
        panel.slice_requested.connect(self.go_to_slice)
        panel.refresh_requested.connect(self.refresh_models)
        panel.card_requested.connect(self.show_full_card)
        panel.look_inside_requested.connect(self.open_look_inside)
        panel.compare_requested.connect(self.compare_dialog)
        panel.export_png_requested.connect(self.export_png_dialog)
        panel.export_dicom_requested.connect(self.export_dicom_dialog)
        self.controls.show_requested.connect(self.show_heatmap)
        self.state.events.volume.connect(self._on_volume)
        panel.set_explainer(DEFAULT_EXPLAINER)
        self._models_listed = False
        self._warm_up()

    def _warm_up(self) -> None:
        """Import the engine and list the models in a worker: the window does not wait for torch."""
        self.panel.set_searching()
        catalog = self.catalog
        worker = Worker(warm_up_job, catalog, name="ai-warm-up")
        worker.result.connect(lambda found, c=catalog: self._on_warmed_up(c, found))
        self.runner.run(worker, "Preparing the AI engine …", visible=False, error_title="Cannot list the models")

    def _on_warmed_up(self, catalog: ModelCatalog, found) -> None:
        if self._closed or catalog is not self.catalog or self._models_listed:
            return      # the catalogue was replaced or listed explicitly meanwhile
        entries, problems = found
        self.panel.set_entries(entries, problems)
        self._models_listed = True
        self._update_actions()
        if self.state.volume is not None and self.session is None and self.panel.current_entry() is not None:
            self.select_model(self.panel.current_entry().key)

    # --- layout ---------------------------------------------------------------------------------------
    def _insert_strip(self) -> None:
        """Put the score strip right above the slice slider in the window's central layout."""
        slider = getattr(self.window, "slice_slider", None)
        parent = slider.parentWidget() if slider is not None else None
        layout = parent.layout() if parent is not None else None
        if layout is not None and layout.indexOf(slider) >= 0:
            layout.insertWidget(layout.indexOf(slider), self.strip)
        else:   # the window's layout changed: fall back to a bottom dock
            dock = QDockWidget("Slice scores", self.window)
            dock.setObjectName("scoreStripDock")
            dock.setWidget(self.strip)
            self.window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)

    def _build_actions(self) -> None:
        window = self.window
        menu = window.menuBar().addMenu("&AI")
        help_action = next((a for a in window.menuBar().actions() if a.text().replace("&", "") == "Help"), None)
        if help_action is not None:     # keep Help last
            window.menuBar().removeAction(menu.menuAction())
            window.menuBar().insertMenu(help_action, menu)
        self.menu = menu

        def action(text: str, shortcut: str | None, slot: Callable, tip: str = "") -> QAction:
            a = QAction(text, window)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            a.setToolTip(tip or text)
            a.triggered.connect(slot)
            window.addAction(a)
            menu.addAction(a)
            return a

        self.screen_action = action("&Screen with the chosen model", "Ctrl+Return", self.screen)
        self.cancel_action = action("&Cancel screening", None, self.cancel)
        menu.addSeparator()
        self.toggle_action = action("Toggle &heatmap", "H", self.toggle_heatmap, "Show/hide the heatmap (H)")
        self.look_action = action("&Look inside…", "Ctrl+I", self.open_look_inside)
        self.compare_action = action("Co&mpare models…", "Ctrl+M", self.compare_dialog)
        menu.addSeparator()
        self.export_png_action = action("Export view as &PNG…", "Ctrl+E", self.export_png_dialog)
        self.export_dicom_action = action("Export heatmap as &DICOM…", "Ctrl+Shift+E", self.export_dicom_dialog)
        menu.addSeparator()
        self.add_weights_action = action("Add &weights folder…", None, self.add_weights_dialog)
        self._update_actions()

    def _update_actions(self) -> None:
        has_scan = self.state.volume is not None
        has_model = self.panel.current_entry() is not None
        for a in (self.screen_action, self.toggle_action, self.look_action, self.compare_action):
            a.setEnabled(has_scan and has_model)
        self.cancel_action.setEnabled(self.session is not None and self.session.is_screening)
        self.export_png_action.setEnabled(has_scan)
        self.export_dicom_action.setEnabled(has_scan)
        self.panel.set_scan_open(has_scan)

    # --- models ---------------------------------------------------------------------------------------
    def refresh_models(self) -> list[ModelEntry]:
        entries = self.catalog.entries()
        self._models_listed = True
        self.panel.set_entries(entries, self.catalog.problems)
        self._update_actions()
        return entries

    def add_weights(self, path: str | Path) -> list[ModelEntry]:
        found = self.catalog.add(path)
        self.refresh_models()
        return found

    def add_weights_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Folder with LungLens weights (manifest.json)")
        if not folder:
            return
        try:
            found = self.add_weights(folder)
        except (ValueError, OSError) as exc:
            self.window._show_error("Cannot use these weights", exc, "")
            return
        self.panel.select_model(found[0].key)

    @property
    def entry(self) -> ModelEntry | None:
        return self.panel.current_entry()

    def select_model(self, name: str) -> ModelSession | None:
        """Bind the chosen model (a key of the list, or a model name) to the view (its known result shown;
        heatmaps stay on if they were)."""
        if not self._models_listed:
            self.refresh_models()
        key = self.catalog.get(name).key if self.panel.model_box.findData(name) < 0 else name
        if self.panel.current_entry() is None or self.panel.current_entry().key != key:
            self.panel.select_model(key)     # emits model_changed -> back here
            return self.session
        name = key
        was_on = self.session is not None and self.session.heatmaps_on
        self._drop_session()
        self._update_actions()
        if self.state.volume is None:
            return None
        self.session = self._new_session(self.panel.current_entry())
        known = self.results.get(name)
        if known is not None:
            self.session.result = known
            self._show_result(known, None)
        else:
            self.panel.clear_result()
            self.strip.clear_scores()
            self.strip.setVisible(False)
        if was_on:
            self.show_heatmap(True)
        return self.session

    def _new_session(self, entry: ModelEntry) -> ModelSession:
        session = ModelSession(self.state, entry, self.runner, explainer=self.panel.explainer,
                               backend=self.backend, parent=self)
        session.screened.connect(lambda result, key=entry.key: self._on_screened(key, result))
        session.screening.connect(self._on_screening)
        return session

    def _ensure_session(self) -> ModelSession | None:
        if self.session is None and self.state.volume is not None and self.panel.current_entry() is not None:
            self.session = self._new_session(self.panel.current_entry())
        return self.session

    def _drop_session(self) -> None:
        if self.session is not None:
            self.session.close(remove_layer=True)
            self.session.deleteLater()
            self.session = None

    def set_explainer(self, method: str) -> None:
        method = explainer_name(method)
        if self.panel.explainer != method:
            self.panel.set_explainer(method)    # emits explainer_changed -> back here
            return
        if self.session is not None:
            self.session.explainer = method

    # --- screening ------------------------------------------------------------------------------------
    def screen(self):
        """Screen the open scan with the chosen model (returns the worker; None without scan or model)."""
        session = self._ensure_session()
        if session is None:
            return None
        worker = session.screen()
        worker.progress.connect(self._on_progress)
        return worker

    def cancel(self) -> None:
        if self.session is not None:
            self.session.cancel()

    def _on_screening(self, running: bool) -> None:
        self.panel.set_running(running)
        self._update_actions()

    def _on_progress(self, report: ProgressReport) -> None:
        if not self._closed:
            self.panel.show_progress(report)

    def _on_screened(self, key: str, result) -> None:
        if self._closed:
            return
        self.results[key] = result
        self._show_result(result, self.session.ran_on if self.session is not None else None)
        self.window.statusBar().showMessage(result.summary(), 15000)
        if self.session is not None:            # the heatmap of the slice on screen follows the score (in the next
            self._deferred += 1                                    # event-loop turn: short GUI-thread slices)
            QTimer.singleShot(0, self._heatmap_after_screening)
        auto = self.autorun
        if auto is not None and auto.get("model") == key:
            self.autorun = None
            if result.top_slices and auto.get("slice") is None:
                self.go_to_slice(result.top_slices[0])
            if auto.get("compare"):
                self.open_compare([key, *auto["compare"]])

    def _heatmap_after_screening(self) -> None:
        self._deferred -= 1
        if not self._closed and self.session is not None:
            self.show_heatmap(True)

    def _show_result(self, result, backend: str | None) -> None:
        self.panel.show_result(result, backend)
        key = self.session.name if self.session is not None else result.model_name
        if result.slice_scores is not None:
            self.strip.clear_scores()
            self.strip.set_scores(key, result.slice_scores, eligible=result.lung_slices,
                                  top=result.top_slices[:5], label=f"{key} "
                                  f"({score_text(result.probability, result.positive_class)})")
            self.strip.setVisible(True)
        else:
            self.strip.setVisible(False)

    def go_to_slice(self, z: int) -> None:
        self.state.slice_index = int(z)

    # --- heatmap --------------------------------------------------------------------------------------
    def show_heatmap(self, on: bool = True) -> None:
        session = self._ensure_session()
        if session is not None:
            session.show_heatmaps(on)
        self.controls.set_requested(on)

    def toggle_heatmap(self) -> None:
        session = self._ensure_session()
        if session is not None:
            shown = session.heatmaps_on and (session.layer is None or session.layer.visible)
            self.show_heatmap(not shown)

    @property
    def heatmap_layer(self):
        return None if self.session is None else self.session.layer

    # --- look inside ----------------------------------------------------------------------------------
    def open_look_inside(self) -> LookInsideDialog | None:
        session = self._ensure_session()
        if session is None:
            return None
        if session.spatial_dims != 2:
            QMessageBox.information(self.window, "Look inside", f"{session.name} is a 3-D model; 'look inside' "
                                    "shows the filters of 2-D models for one slice.")
            return None
        if self.look_inside is not None:
            self.look_inside.close()
            self.look_inside.deleteLater()
        self.look_inside = LookInsideDialog(session, self.runner, self.window)
        self.look_inside.show()
        return self.look_inside

    # --- compare --------------------------------------------------------------------------------------
    def compare_dialog(self) -> CompareWindow | None:
        entries = self.catalog.entries()
        current = self.panel.current_entry()
        if current is None or self.state.volume is None:
            return None
        others = [e.key for e in entries if e.key != current.key]
        if not others:
            QMessageBox.information(self.window, "Compare models", "Comparing needs weights for at least two "
                                    "models; only " f"{current.key} has weights here.")
            return None
        name, ok = QInputDialog.getItem(self.window, "Compare models", f"Compare {current.key} with:", others, 0,
                                        False)
        if not ok:
            return None
        return self.open_compare([current.key, name])

    def open_compare(self, models: Sequence[str], explainer: str | None = None) -> CompareWindow:
        """Open compare mode on the scan on screen, starting from this view's slice, window and zoom."""
        if self.state.volume is None:
            raise ValueError("open a scan before comparing models")
        entries = self.catalog.entries()
        names = [self.catalog.get(m).key for m in models]      # KeyError naming what exists
        compare = CompareWindow(self.state.volume, entries, names,
                                explainer=explainer or self.panel.explainer, backend=self.backend,
                                results=self.results, slice_index=self.state.slice_index,
                                window=self.state.window, camera=self.state.camera, parent=self.window)
        self.compare_windows.append(compare)
        compare.show()
        return compare

    # --- export ---------------------------------------------------------------------------------------
    def _suggested_name(self, suffix: str) -> Path:
        volume = self.state.volume
        what = (volume.meta.get("SeriesDescription") or "scan") if volume is not None else "scan"
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(what))[:40] or "scan"
        model = f"_{self.session.name}" if self.session is not None else ""
        return default_export_dir() / f"{safe}{model}_slice{self.state.slice_index + 1}{suffix}"

    def _ask_path(self, title: str, suffix: str, filters: str) -> Path | None:
        suggested = self._suggested_name(suffix)
        suggested.parent.mkdir(parents=True, exist_ok=True)
        path, _ = QFileDialog.getSaveFileName(self.window, title, str(suggested), filters)
        return Path(path) if path else None

    def export_view_png(self, path: str | Path, widget: QWidget | None = None, *, overwrite: bool = False) -> Path:
        """Save what the slice view shows (image, heatmap, labels) as PNG; never into the scan's folder."""
        target = check_export_target(path, self.state.volume)
        if target.suffix.lower() != ".png":
            target = target.with_suffix(".png")
        if target.exists() and not overwrite:
            raise ExportRefused(f"{target} already exists; choose another name")
        image = (widget or self.window.slice_view).grab()
        if not image.isNull() and self.heatmap_layer is not None and self.heatmap_layer.visible:
            image = self._stamped(image)
        if image.isNull() or not image.save(str(target), "PNG"):
            raise ExportRefused(f"could not write {target} (is the folder writable?)")
        self.last_export = target
        return target

    def _stamped(self, image):
        """The exported view with a band below it: "research use, not a diagnosis" and what made the heatmap."""
        from PySide6.QtGui import QColor, QPainter, QPixmap

        info = self.heatmap_layer.info
        result = self.session.result if self.session is not None else None
        score = f" · {score_text(result.probability, result.positive_class)}" if result is not None else ""
        text = (f"LungLens research output — not a diagnosis · {info.get('model', '')} "
                f"{info.get('explainer_label', '')}{score}")
        band = 22
        out = QPixmap(image.width(), image.height() + band)
        out.fill(QColor("black"))
        painter = QPainter(out)
        painter.drawPixmap(0, 0, image)
        painter.setPen(QColor("#ffcc66"))
        painter.drawText(6, image.height() + band - 7, text)
        painter.end()
        return out

    def export_heatmap_dicom(self, path: str | Path, slices: Sequence[int] | None = None, *,
                             overwrite: bool = False) -> Path:
        """Save the heatmap of the slice on screen (or ``slices``) as a DICOM Secondary Capture."""
        layer = self.heatmap_layer
        if layer is None or self.state.volume is None:
            raise ExportRefused("show a heatmap first (Screen, then H)")
        target = Path(path).expanduser()
        if target.is_dir():
            check_export_target(target / "x.dcm", self.state.volume)
        else:
            target = check_export_target(target, self.state.volume)
        score = self.session.result.probability if self.session.result is not None else None
        capture = heatmap_capture(self.state.volume, layer, self.state.window,
                                  slices if slices is not None else [self.state.slice_index], score=score)
        written = capture.save(target, overwrite=overwrite)
        self.last_export = written
        return written

    def export_png_dialog(self) -> None:
        if self.state.volume is None:
            return
        path = self._ask_path("Export view as PNG", ".png", "PNG image (*.png)")
        if path is not None:
            self._export(lambda: self.export_view_png(path, overwrite=True))   # the dialog asked already

    def export_dicom_dialog(self) -> None:
        if self.state.volume is None:
            return
        path = self._ask_path("Export heatmap as DICOM Secondary Capture", ".dcm", "DICOM (*.dcm)")
        if path is not None:
            self._export(lambda: self.export_heatmap_dicom(path, overwrite=True))

    def _export(self, do: Callable[[], Path]) -> None:
        try:
            written = do()
        except Exception as exc:  # noqa: BLE001 - ExportRefused / ExportError / OSError: say what and why
            self.window._show_error("Export failed", exc, "")
            return
        self.window.statusBar().showMessage(f"Exported {written}", 10000)

    # --- misc -----------------------------------------------------------------------------------------
    def show_full_card(self) -> None:
        entry = self.panel.current_entry()
        if entry is None:
            return
        if self.card_dialog is not None:
            self.card_dialog.close()
        dialog = QDialog(self.window)
        dialog.setWindowTitle(f"Model card — {entry.key}")
        dialog.resize(640, 720)
        text = QTextBrowser(dialog)
        text.setMarkdown(entry.card_markdown())
        QVBoxLayout(dialog).addWidget(text)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.card_dialog = dialog

    def request_autorun(self, model: str, *, explainer: str | None = None, compare: Sequence[str] = (),
                        slice_index: int | None = None) -> None:
        """Once a scan is on screen: choose ``model`` (and explainer), screen, go to the most suspicious slice
        (unless ``slice_index`` was asked for), show the heatmap, and open compare mode with ``compare``."""
        if not self._models_listed:
            self.refresh_models()
        self.catalog.get(model)          # fail early, naming the models that exist
        for other in compare:
            self.catalog.get(other)
        self.autorun = {"model": self.catalog.get(model).key, "compare": list(compare), "slice": slice_index}
        self.panel.select_model(self.autorun["model"])
        if explainer:
            self.set_explainer(explainer)
        if self.state.volume is not None:
            self.screen()

    def _on_volume(self, _event: Event) -> None:
        self._drop_session()
        self.results.clear()
        self.strip.clear_scores()
        self.strip.setVisible(False)
        self.panel.clear_result()
        if self.look_inside is not None:
            self.look_inside.close()
            self.look_inside = None
        self._update_actions()
        if self.state.volume is not None and self.panel.current_entry() is not None:
            self.session = self._new_session(self.panel.current_entry())
            if self.autorun is not None:
                self.screen()

    def _on_quiet_error(self, title: str, exc: BaseException) -> None:
        if not self._closed:
            self.window._show_error(title, exc, "")

    @property
    def busy(self) -> bool:
        return bool(self.runner.running) or self._deferred > 0 or any(c.busy for c in self.compare_windows)

    def wait_idle(self, timeout: float = 300.0) -> bool:
        """Process events until no AI job runs (screenshots, tests); False on timeout."""
        return wait_until(lambda: not self.busy, timeout)

    # --- teardown -------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Close compare windows and dialogs, cancel and wait for every AI job (called by the window's close)."""
        if self._closed:
            return
        self._closed = True
        for compare in self.compare_windows:
            compare.close()
        self.compare_windows.clear()
        for dialog in (self.look_inside, self.card_dialog):
            if dialog is not None:
                try:
                    dialog.close()
                except RuntimeError:
                    pass
        if self.session is not None:
            self.session.close()
        self.runner.shutdown()
        self.state.events.disconnect(self._on_volume)
        self.controls.detach()
        self.strip.detach()
