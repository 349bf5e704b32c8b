"""``BatchDialog`` (Tools ▸ Batch screen…): screen every series under some folders/files with one model.

It runs the engine's batch job -- the one ``lunglens-screen`` runs (``engine.screen.ScreeningJob``) -- in a
worker: progress (series done/total, failures, ETA, the series in flight) in the dialog and the status bar,
Cancel at any time, and a rerun into the same output folder resumes (finished series are skipped).  Results
arrive in a sortable table as each series finishes; failed series are tinted red with their reason.
Double-click a row to open that scan in the main window at its most suspicious slice; buttons open the PDF
report and the output folder.

The output folder may not lie inside an input (LungLens never writes next to a user's scans): the engine
refuses, the dialog shows its message and offers to use the folder anyway (the engine's ``force``, which then
excludes the output folder from screening).  Closing the dialog hides it; the job goes on (the status bar shows
it) until it finishes, is cancelled, or the main window closes.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from viewer.model.ai import EXPLAINER_LABELS, RESEARCH_LABEL, ModelCatalog, ModelEntry
from viewer.qt.error_dialog import show_error
from viewer.qt.results_table import ResultsTable
from viewer.workers.tool_pool import tool_pool
from viewer.workers.batch_jobs import BATCH_EXPLAINERS, BatchRequest, batch_screen_job, clock, read_results_job
from viewer.workers.worker import ProgressReport, Worker

if TYPE_CHECKING:  # pragma: no cover
    from viewer.qt.main_window import MainWindow

CLOSE_WAIT_S = 10.0
DB_NAME = "results.sqlite"      # engine.screen.store.DB_NAME (not imported: that would import torch)
REPORT_NAME = "report.pdf"


def default_output_for(inputs: Sequence[Path]) -> Path:
    """``~/LungLens batch/<first input's name>``: outside the inputs, one folder per screened set."""
    first = Path(inputs[0]) if inputs else Path("scans")
    stem = (first.name or "scans").split(".")[0] or "scans"
    return Path.home() / "LungLens batch" / stem


class _Bridge(QObject):
    """Carries the engine's ``JobProgress`` from the job's thread to the GUI (queued).  It has no parent: the
    job holds it, so it outlives the dialog if it must, and emitting never touches a deleted object."""

    update = Signal(object)


class BatchDialog(QDialog):
    """See the module docstring.  ``catalog`` / ``backend`` default to the main window's AI workflow's."""

    job_finished = Signal(str)          # "result" | "error" | "cancelled", after the table was refreshed

    def __init__(self, window: MainWindow, *, catalog: ModelCatalog | None = None, backend: str | None = None):
        super().__init__(window)
        self.main_window = window
        self._catalog = catalog
        self._backend = backend
        self.setWindowTitle("Batch screen — LungLens")
        self.setObjectName("batchDialog")
        self.setWindowFlag(Qt.WindowType.Window, True)
        self.setModal(False)
        self.setAcceptDrops(True)
        self.resize(1040, 760)
        self.worker: Worker | None = None
        self.request: BatchRequest | None = None
        self.summary: Any = None
        self.last_outcome: str | None = None
        self.open_url: Callable[[QUrl], Any] = QDesktopServices.openUrl   # replaced in tests
        self._entries: list[ModelEntry] = []
        self._readers: list[Worker] = []
        self._opening: Worker | None = None
        self._closed = False
        self._t_start = 0.0
        self._begun = False
        self._build()
        self.refresh_models()
        self._update_buttons()

    # --- layout -----------------------------------------------------------------------------------------
    def _build(self) -> None:
        inputs_box = QGroupBox("Scans to screen (folders are searched recursively; drop folders or files here)")
        self.inputs_list = QListWidget(self)
        self.inputs_list.setObjectName("batchInputs")
        self.inputs_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.inputs_list.setMinimumHeight(56)
        self.inputs_list.setMaximumHeight(104)
        self.add_folder_button = QPushButton("Add folder…", self)
        self.add_files_button = QPushButton("Add files…", self)
        self.remove_button = QPushButton("Remove", self)
        self.add_folder_button.clicked.connect(self.add_folder_dialog)
        self.add_files_button.clicked.connect(self.add_files_dialog)
        self.remove_button.clicked.connect(self.remove_selected_inputs)
        buttons = QVBoxLayout()
        for b in (self.add_folder_button, self.add_files_button, self.remove_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        row = QHBoxLayout(inputs_box)
        row.addWidget(self.inputs_list, 1)
        row.addLayout(buttons)

        self.model_box = QComboBox(self)
        self.model_box.setObjectName("batchModel")
        self.model_box.setToolTip("Models with trained weights (as in the AI screening panel)")
        self.model_box.setMinimumContentsLength(28)
        refresh = QPushButton("↻", self)
        refresh.setFixedWidth(30)
        refresh.setToolTip("Look for weights again")
        refresh.clicked.connect(self.refresh_models)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_box, 1)
        model_row.addWidget(refresh)
        self.explainer_box = QComboBox(self)
        for key in BATCH_EXPLAINERS:
            label = EXPLAINER_LABELS.get(key, "None (scores only, fastest)")
            if key == "cam":
                label += " (cheapest heatmap)"
            self.explainer_box.addItem(label, key)
        self.explainer_box.setToolTip("Heatmaps of the key slices in report.pdf and heatmaps/")
        self.out_edit = QLineEdit(self)
        self.out_edit.setObjectName("batchOut")
        self.out_edit.setPlaceholderText("a folder outside the scanned folders (created if missing)")
        self.out_edit.editingFinished.connect(self._on_out_changed)
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self.browse_output)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)
        self.workers_spin = QSpinBox(self)
        self.workers_spin.setRange(1, max(1, os.cpu_count() or 1))
        self.workers_spin.setValue(1)
        self.workers_spin.setToolTip("1: screen in this process (finest progress, shares the viewer's model); "
                                     "N: N worker processes on this machine")
        self.threshold_spin = QDoubleSpinBox(self)
        self.threshold_spin.setRange(0.0, 1.0)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setDecimals(2)
        self.threshold_spin.setValue(0.5)
        self.threshold_spin.setToolTip("Flag scans whose probability is at or above this")
        self.retry_check = QCheckBox("Retry failed series when resuming", self)
        form = QFormLayout()
        form.addRow("Model:", model_row)
        form.addRow("Heatmaps:", self.explainer_box)
        form.addRow("Output folder:", out_row)
        small = QHBoxLayout()
        small.addWidget(self.workers_spin)
        small.addSpacing(18)
        small.addWidget(QLabel("Flag at P ≥", self))
        small.addWidget(self.threshold_spin)
        small.addSpacing(18)
        small.addWidget(self.retry_check)
        small.addStretch(1)
        form.addRow("Workers:", small)
        self.out_hint = QLabel(self)
        self.out_hint.setObjectName("batchOutHint")
        self.out_hint.setWordWrap(True)
        self.out_hint.setVisible(False)
        form.addRow("", self.out_hint)

        # the engine refused the output folder: its message + "use it anyway"
        self.refusal = QFrame(self)
        self.refusal.setObjectName("batchRefusal")
        self.refusal.setFrameShape(QFrame.Shape.StyledPanel)
        self.refusal.setStyleSheet("#batchRefusal { background: #fff4e0; border: 1px solid #e0a040; }")
        self.refusal_label = QLabel(self.refusal)
        self.refusal_label.setWordWrap(True)
        self.refusal_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.force_button = QPushButton("Use this folder anyway", self.refusal)
        self.force_button.setToolTip("The output folder is then excluded from screening; nothing else in the "
                                     "input folder is written")
        self.force_button.clicked.connect(self.start_forced)
        self.choose_other_button = QPushButton("Choose another folder…", self.refusal)
        self.choose_other_button.clicked.connect(self.browse_output)
        refusal_layout = QHBoxLayout(self.refusal)
        refusal_layout.addWidget(self.refusal_label, 1)
        refusal_layout.addWidget(self.force_button)
        refusal_layout.addWidget(self.choose_other_button)
        self.refusal.setVisible(False)

        self.start_button = QPushButton("Screen", self)
        self.start_button.setObjectName("batchStart")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("batchCancel")
        self.cancel_button.setToolTip("Stop after the series in flight; finished series are kept and skipped "
                                      "when you resume")
        self.cancel_button.clicked.connect(self.cancel)
        self.load_button = QPushButton("Open results…", self)
        self.load_button.setToolTip("Show the results of an earlier batch (a folder holding results.sqlite)")
        self.load_button.clicked.connect(self.open_results_dialog)
        self.bar = QProgressBar(self)
        self.bar.setObjectName("batchProgress")
        self.bar.setRange(0, 100)
        self.bar.setValue(0)
        self.status_label = QLabel("Choose scans, a model and an output folder, then press Screen.", self)
        self.status_label.setObjectName("batchStatus")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.current_label = QLabel(self)
        self.current_label.setObjectName("batchCurrent")
        self.current_label.setStyleSheet("color: #555;")
        run_row = QHBoxLayout()
        run_row.addWidget(self.start_button)
        run_row.addWidget(self.cancel_button)
        run_row.addWidget(self.bar, 1)
        run_row.addWidget(self.load_button)
        self.command_label = QLabel(self)
        self.command_label.setObjectName("batchCommand")
        self.command_label.setWordWrap(True)
        self.command_label.setStyleSheet("color: #666; font-size: 11px;")
        self.command_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.table = ResultsTable(self)
        self.table.scan_activated.connect(self.open_scan)
        self.report_button = QPushButton("Open report (PDF)", self)
        self.report_button.setObjectName("batchOpenReport")
        self.report_button.clicked.connect(self.open_report)
        self.folder_button = QPushButton("Open output folder", self)
        self.folder_button.setObjectName("batchOpenFolder")
        self.folder_button.clicked.connect(self.open_output_folder)
        close = QPushButton("Close", self)
        close.clicked.connect(self.close)
        notice = QLabel(f"<i>{RESEARCH_LABEL}</i>", self)
        notice.setStyleSheet("color: #8a4b00;")
        bottom = QHBoxLayout()
        bottom.addWidget(notice, 1)
        bottom.addWidget(self.report_button)
        bottom.addWidget(self.folder_button)
        bottom.addWidget(close)

        settings = QWidget(self)
        top = QVBoxLayout(settings)
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(inputs_box)
        top.addLayout(form)
        top.addWidget(self.refusal)
        top.addLayout(run_row)
        top.addWidget(self.status_label)
        top.addWidget(self.current_label)
        top.addWidget(self.command_label)
        results = QWidget(self)
        lower = QVBoxLayout(results)
        lower.setContentsMargins(0, 0, 0, 0)
        lower.addWidget(self.table, 1)
        lower.addLayout(bottom)
        splitter = QSplitter(Qt.Orientation.Vertical, self)
        splitter.addWidget(settings)
        splitter.addWidget(results)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        for signal in (self.model_box.currentIndexChanged, self.explainer_box.currentIndexChanged,
                       self.workers_spin.valueChanged, self.threshold_spin.valueChanged,
                       self.retry_check.toggled, self.out_edit.textChanged):
            signal.connect(self._update_command)

    # --- settings ---------------------------------------------------------------------------------------
    @property
    def catalog(self) -> ModelCatalog:
        if self._catalog is None:
            ai = getattr(self.main_window, "ai", None)
            self._catalog = getattr(ai, "catalog", None) or ModelCatalog()
        return self._catalog

    @catalog.setter
    def catalog(self, value: ModelCatalog) -> None:
        self._catalog = value
        self.refresh_models()

    @property
    def backend(self) -> str:
        if self._backend is not None:
            return self._backend
        return str(getattr(getattr(self.main_window, "ai", None), "backend", "auto") or "auto")

    @backend.setter
    def backend(self, value: str) -> None:
        self._backend = value

    def refresh_models(self) -> list[ModelEntry]:
        """List the models with weights (manifests only: cheap); keeps the current choice, else the AI panel's."""
        current = self.current_entry()
        wanted = current.key if current is not None else None
        if wanted is None:
            panel = getattr(getattr(self.main_window, "ai", None), "panel", None)
            entry = panel.current_entry() if panel is not None and hasattr(panel, "current_entry") else None
            wanted = entry.key if entry is not None else None
        try:
            entries = self.catalog.entries()
        except Exception as exc:  # noqa: BLE001 - a broken weights folder must not stop the dialog
            entries = []
            self._say(f"Cannot list the models: {exc}", error=True)
        self._entries = list(entries)
        self.model_box.blockSignals(True)
        self.model_box.clear()
        for entry in self._entries:
            self.model_box.addItem(entry.label, entry.key)
        if not self._entries:
            self.model_box.addItem("No model with weights found (AI ▸ Add weights folder…)", None)
        index = self.model_box.findData(wanted) if wanted else -1
        self.model_box.setCurrentIndex(max(0, index))
        self.model_box.blockSignals(False)
        self._update_command()
        self._update_buttons()
        return self._entries

    def current_entry(self) -> ModelEntry | None:
        index = self.model_box.currentIndex() if hasattr(self, "model_box") else -1
        return self._entries[index] if 0 <= index < len(self._entries) else None

    def select_model(self, key: str) -> None:
        index = self.model_box.findData(key)
        if index < 0:
            index = next((i for i, e in enumerate(self._entries) if e.name == key), -1)
        if index < 0:
            have = ", ".join(e.key for e in self._entries) or "none"
            raise KeyError(f"no model {key!r} with weights in the list (have: {have})")
        self.model_box.setCurrentIndex(index)

    def set_explainer(self, key: str) -> None:
        index = self.explainer_box.findData(key)
        if index < 0:
            raise KeyError(f"unknown explainer {key!r}; choose one of {', '.join(BATCH_EXPLAINERS)}")
        self.explainer_box.setCurrentIndex(index)

    @property
    def inputs(self) -> list[Path]:
        return [Path(self.inputs_list.item(i).text()) for i in range(self.inputs_list.count())]

    def add_inputs(self, paths: Sequence[str | Path]) -> None:
        have = {str(p) for p in self.inputs}
        for p in paths:
            text = str(Path(p))
            if text not in have:
                self.inputs_list.addItem(text)
                have.add(text)
        if self.inputs and not self.out_edit.text().strip():
            self.set_output(default_output_for(self.inputs))
        self._update_command()
        self._update_buttons()

    def set_inputs(self, paths: Sequence[str | Path]) -> None:
        self.inputs_list.clear()
        self.add_inputs(paths)

    def remove_selected_inputs(self) -> None:
        for item in self.inputs_list.selectedItems():
            self.inputs_list.takeItem(self.inputs_list.row(item))
        self._update_command()
        self._update_buttons()

    @property
    def output(self) -> Path | None:
        text = self.out_edit.text().strip()
        return Path(os.path.expanduser(text)) if text else None

    def set_output(self, path: str | Path) -> None:
        self.out_edit.setText(str(path))
        self._on_out_changed()

    def add_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of scans to screen")
        if folder:
            self.add_inputs([folder])

    def add_files_dialog(self) -> None:
        from viewer.qt.main_window import FILE_FILTER

        files, _ = QFileDialog.getOpenFileNames(self, "Scan files to screen", "", FILE_FILTER)
        if files:
            self.add_inputs(files)

    def browse_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder for results.sqlite, CSV, PDF and heatmaps",
                                                  str(self.output or Path.home()))
        if folder:
            self.set_output(folder)
            self.refusal.setVisible(False)

    def _on_out_changed(self) -> None:
        out = self.output
        has_results = out is not None and (out / DB_NAME).is_file()
        self.out_hint.setVisible(has_results)
        if has_results:
            self.out_hint.setText("This folder holds earlier results: Screen resumes them (finished series are "
                                  "skipped) — with the same model, heatmaps and threshold.")
        self._update_buttons()
        self._update_command()

    def build_request(self, *, force: bool = False) -> BatchRequest:
        """The job the dialog's settings describe; ValueError saying what is missing."""
        entry = self.current_entry()
        if not self.inputs:
            raise ValueError("Add at least one folder or file to screen.")
        if entry is None:
            raise ValueError("No model with trained weights is available: add a weights folder (AI ▸ Add weights "
                             "folder…) or ship weights under resources/weights.")
        if self.output is None:
            raise ValueError("Choose an output folder for the results (outside the scanned folders).")
        return BatchRequest(inputs=tuple(self.inputs), entry=entry, out_dir=self.output,
                            explainer=str(self.explainer_box.currentData()), workers=int(self.workers_spin.value()),
                            threshold=float(self.threshold_spin.value()), force=force,
                            retry_failed=self.retry_check.isChecked(), backend=self.backend)

    def _update_command(self, *_args: Any) -> None:
        try:
            request = self.build_request()
        except ValueError:
            self.command_label.setText("")
            return
        self.command_label.setText("Same as the command line: <code>" + _html(request.command_text()) + "</code>")

    def _update_buttons(self) -> None:
        running = self.is_running
        self.start_button.setEnabled(not running and bool(self.inputs) and self.current_entry() is not None
                                     and self.output is not None)
        out = self.output
        resumable = out is not None and (out / DB_NAME).is_file()
        if running or not resumable:
            self.start_button.setText("Screen")
            self.start_button.setToolTip("Screen every series under the inputs into the output folder")
        elif self.last_outcome == "result" and self.request is not None and self.request.out_dir == out:
            self.start_button.setText("Screen new series")
            self.start_button.setToolTip("Everything found was screened; run again to screen series added to the "
                                         "inputs since (finished ones are skipped)")
        else:
            self.start_button.setText("Resume")
            self.start_button.setToolTip("Continue the batch in this output folder: finished series are skipped")
        self.cancel_button.setEnabled(running and not (self.worker and self.worker.is_cancel_requested))
        for w in (self.inputs_list, self.add_folder_button, self.add_files_button, self.remove_button,
                  self.model_box, self.explainer_box, self.out_edit, self.workers_spin, self.threshold_spin,
                  self.retry_check, self.load_button):
            w.setEnabled(not running)
        self.report_button.setEnabled(out is not None and (out / REPORT_NAME).is_file())
        self.folder_button.setEnabled(out is not None and out.is_dir())

    # --- running ----------------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self.worker is not None and not self.worker.is_done

    def start(self, *, force: bool = False) -> Worker | None:
        """Start (or resume) the batch with the dialog's settings; None if something is missing."""
        if self.is_running:
            return self.worker
        try:
            request = self.build_request(force=force)
        except ValueError as exc:
            self._say(str(exc), error=True)
            return None
        self.refusal.setVisible(False)
        self.request = request
        self.summary = None
        self.last_outcome = None
        bridge = _Bridge()
        bridge.update.connect(self._on_update)
        worker = Worker(batch_screen_job, request, on_update=bridge.update.emit, name="batch-screen")
        worker._bridge = bridge          # kept alive exactly as long as the worker
        worker.progress.connect(self._on_worker_progress)
        worker.result.connect(self._on_result)
        worker.error.connect(self._on_error)
        worker.cancelled.connect(self._on_cancelled)
        worker.finished.connect(lambda w=worker: self._on_finished(w))
        self.worker = worker
        self._t_start = time.monotonic()
        self.bar.setRange(0, 0)
        self.current_label.setText("")
        resumed = (request.out_dir / DB_NAME).is_file()
        self._say(("Resuming" if resumed else "Starting") + f" batch screening with {request.entry.key} …")
        self._begun = False              # the table is replaced once the engine accepted the job
        status = getattr(self.main_window, "job_status", None)
        if status is not None:
            status.track(worker, "Batch screening …")
        worker.start(tool_pool())
        self._update_buttons()
        return worker

    def start_forced(self) -> Worker | None:
        return self.start(force=True)

    def cancel(self) -> None:
        if self.is_running:
            self.worker.cancel()
            self._say("Cancelling after the series in flight …")
            self._update_buttons()

    def _on_worker_progress(self, report: ProgressReport) -> None:
        if report.fraction is None and report.message and not self.table.model.rows:
            self._say(report.message)      # loading the model / preparing the back-end

    def _on_update(self, p: Any) -> None:
        """The engine's ``JobProgress`` (throttled by the engine): bar, counts, ETA, current series, new rows."""
        if self._closed:
            return
        if not self._begun and self.request is not None:
            self._begun = True           # the engine passed its checks: show this folder's rows only
            self.table.clear()
            if (self.request.out_dir / DB_NAME).is_file():
                self.load_results(self.request.out_dir, after="progress")   # rows of earlier runs (resume)
        if p.total:
            self.bar.setRange(0, 100)
            self.bar.setValue(p.percent)
            self.bar.setFormat(f"%p% · {p.done}/{p.total} series")
        parts = [f"{p.done} of {p.total} series" if p.total else p.message]
        if p.total:
            parts += [f"{p.flagged} flagged", f"{p.failed} failed", f"elapsed {clock(p.elapsed_s)}"]
            if p.done < p.total:
                parts.append(f"ETA {clock(p.eta_s)}")
            if p.message in ("writing report.pdf", "finished", "stopped"):
                parts.append(p.message)
        self._say(" · ".join(parts))
        self.current_label.setText(f"Now: {p.current}" if p.current and p.done < p.total else "")
        if p.finished:
            self.table.add_rows(list(p.finished))
        self._update_buttons()

    def _on_result(self, summary: Any) -> None:
        self.summary = summary
        self.last_outcome = "result"
        resumed = f", {summary.resumed} from earlier runs" if summary.resumed else ""
        skipped = (f" {summary.skipped_files} non-image file(s) skipped (listed in the report)."
                   if summary.skipped_files else "")
        text = (f"Finished: {summary.total} series — {summary.ok} screened, {summary.flagged} flagged, "
                f"{summary.failed} failed{resumed} — in {clock(summary.seconds)}.{skipped}")
        if summary.report_error:
            text += f" The PDF report could not be written ({summary.report_error}); results.csv is complete."
        self._say(text, error=bool(summary.report_error))

    def _on_error(self, error: BaseException, details: str) -> None:
        self.last_outcome = "error"
        kinds = {c.__name__ for c in type(error).__mro__}     # engine.screen.job's errors, without importing it
        if "OutputInsideInputError" in kinds:
            text = str(error).replace("an --out", "an output folder").replace("--out", "the output folder")
            text = text.replace("(or pass --force to allow it;", "(or use it anyway;")
            self.refusal_label.setText(text[:1].upper() + text[1:])
            self.refusal.setVisible(True)
            self._say("The output folder was refused: nothing was written.", error=True)
        elif "JobError" in kinds:
            self._say(f"Cannot start: {error}", error=True)
        else:
            self._say(f"The batch stopped: {type(error).__name__}: {error}", error=True)
            self.main_window.error_dialog = show_error(self, "Batch screening failed", error, details)

    def _on_cancelled(self) -> None:
        self.last_outcome = "cancelled"

    def _on_finished(self, worker: Worker) -> None:
        if worker is not self.worker or self._closed:
            return
        self.bar.setRange(0, 100)
        self.current_label.setText("")
        outcome = worker.outcome
        if outcome == "result" and self.summary is not None:
            self.bar.setValue(100)
        self._update_buttons()
        if outcome in ("result", "cancelled") and self.request is not None:
            self.load_results(self.request.out_dir, after=outcome)
        else:
            self.job_finished.emit(outcome or "")

    # --- results ------------------------------------------------------------------------------------------
    def load_results(self, out_dir: str | Path, *, after: str | None = None) -> Worker:
        """Read ``out_dir/results.sqlite`` (in a worker) into the table."""
        worker = Worker(read_results_job, Path(out_dir), name="batch-read-results")
        worker.result.connect(lambda found, a=after, o=Path(out_dir): self._on_results(found, o, a))
        worker.error.connect(lambda exc, _t, a=after: self._on_results_error(exc, a))
        self._readers = [w for w in self._readers if not w.is_done] + [worker]
        return worker.start(tool_pool())

    def _on_results(self, found: tuple[list[dict[str, Any]], dict[str, str]], out_dir: Path,
                    after: str | None) -> None:
        if self._closed:
            return
        rows, meta = found
        if after == "progress":          # a resumed job's earlier rows, while new ones keep arriving
            self.table.add_rows(rows)
            return
        self.table.set_rows(rows)
        if after == "cancelled":
            done = len(rows)
            self._say(f"Cancelled: {done} series are done and saved in {out_dir}. Press Resume to continue — "
                      f"finished series are skipped.")
            self.bar.setValue(0)
        elif after is None:
            model = meta.get("model", "?")
            self._say(f"Results of {out_dir} ({len(rows)} series, model {model}, heatmaps "
                      f"{meta.get('explainer', '?')}, threshold {meta.get('threshold', '?')}).")
        self._update_buttons()
        self.job_finished.emit(after or "loaded")

    def _on_results_error(self, error: BaseException, after: str | None) -> None:
        if self._closed:
            return
        self._say(f"Cannot read the results: {error}", error=True)
        if after != "progress":
            self.job_finished.emit(after or "error")

    def open_results_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder with batch results (results.sqlite)")
        if folder:
            self.show_results_of(folder)

    def show_results_of(self, folder: str | Path) -> Worker | None:
        folder = Path(folder)
        if not (folder / DB_NAME).is_file():
            self._say(f"No batch results in {folder} (no {DB_NAME}).", error=True)
            return None
        self.set_output(folder)
        return self.load_results(folder)

    def open_report(self) -> bool:
        out = self.output
        if out is None or not (out / REPORT_NAME).is_file():
            self._say("There is no report.pdf in the output folder yet.", error=True)
            return False
        return bool(self.open_url(QUrl.fromLocalFile(str(out / REPORT_NAME))))

    def open_output_folder(self) -> bool:
        out = self.output
        if out is None or not out.is_dir():
            self._say("The output folder does not exist yet.", error=True)
            return False
        return bool(self.open_url(QUrl.fromLocalFile(str(out))))

    def open_scan(self, row: dict[str, Any]) -> Worker | None:
        """Open the series of a results row in the main window, at its most suspicious slice."""
        path = row.get("path")
        if not path:
            return None
        if not Path(path).exists():
            self._say(f"{path} is no longer there (moved or deleted since the batch ran).", error=True)
            return None
        window = self.main_window
        top = row.get("top_slice")
        worker = window.open_path(path, slice_index=None if top is None else int(top))
        uid = row.get("series_uid")
        if uid and row.get("kind") == "dicom":
            worker.result.connect(lambda result, u=uid, z=top: self._pick_series(result, u, z))
        self._opening = worker
        window.raise_()
        window.activateWindow()
        return worker

    def _pick_series(self, result: Any, uid: str, z: int | None) -> None:
        """The folder held several series and the viewer chose another one: open the screened one."""
        chosen = getattr(result, "chosen", None)
        if chosen is None or chosen.uid == uid:
            return
        match = next((s for s in result.discovery.series if s.uid == uid), None)
        if match is None:
            return
        worker = self.main_window.open_series(match)
        if z is not None:
            state = self.main_window.state
            worker.result.connect(lambda _volume, zz=int(z): setattr(state, "slice_index", zz))
        self._opening = worker

    # --- messages, drops, closing -------------------------------------------------------------------------
    def _say(self, text: str, *, error: bool = False) -> None:
        self.status_label.setStyleSheet("color: #a01010;" if error else "")
        self.status_label.setText(text)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if not self.is_running and _local_paths(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = _local_paths(event)
        if paths and not self.is_running:
            event.acceptProposedAction()
            self.add_inputs(paths)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        # hide only: a running batch goes on (the status bar shows it); the main window shuts it down
        event.accept()
        self.hide()

    def shutdown(self, timeout: float = CLOSE_WAIT_S) -> bool:
        """Cancel the batch and wait for it (the main window is closing); True if it stopped in time."""
        self._closed = True
        stopped = True
        workers = [self.worker, *self._readers]
        for worker in workers:
            if worker is not None and not worker.is_done:
                worker.cancel()
                stopped = worker.wait(timeout) and stopped
        for worker in workers:
            if worker is None:
                continue
            bridge = getattr(worker, "_bridge", None)
            signals = [worker.result, worker.error, worker.progress, worker.cancelled, worker.finished]
            _disconnect_all(signals + ([bridge.update] if bridge is not None else []))
        self.hide()
        self.deleteLater()
        return stopped


def _disconnect_all(signals: Sequence[Any]) -> None:
    """Drop every connection of ``signals`` (results arriving after close must not touch dead widgets)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # "failed to disconnect": nothing was connected
        for signal in signals:
            try:
                signal.disconnect()
            except (RuntimeError, TypeError):
                pass


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _local_paths(event: QDragEnterEvent | QDropEvent) -> list[Path]:
    mime = event.mimeData()
    if mime is None or not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]
