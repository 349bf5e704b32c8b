"""``BenchPanel`` (Tools ▸ Benchmark…): the efficiency benchmark of the registered networks, in a worker.

Choose networks (the registry's list; giant ones -- VGG, ResNet152V2, EfficientNet-B6/B7, ResNet3D-101 -- only
with "Include giant models"), back-ends, batch sizes and threads; Run measures, for each network and back-end,
parameters, MACs over all kernel dimensions, CPU latency p50/p90 per batch size, throughput and peak memory,
and this machine's fp32 GEMM peak in the same run -- exactly ``lunglens-engine bench`` (``engine.bench``).
Results fill a sortable table as they are measured, next to the papers' own figures (reference rows, italic on
a blue-grey ground, "paper" in the Source column).  The Plots tab shows the benchmark's figures (accuracy vs
MACs vs latency scatter, latency bars, parameters, GEMM fraction).  Export: CSV (rows + reference rows), the
shown plot as PNG, or everything (JSON + CSV + PNGs) into a folder; a saved ``bench.json`` opens again.

Timing on a machine doing other work measures that work too: the status line shows the load average before and
after the run, and the CPU-time estimates in the CSV (``cpu_est_ms_per_item``) are the idle-machine figures.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, \
    QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QBrush, QCloseEvent, QColor, QFont, QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from viewer.qt.error_dialog import show_error
from viewer.workers.bench_jobs import (
    FIGURE_TITLES,
    BenchOutcome,
    BenchSettings,
    ModelInfo,
    benchmark_job,
    export_csv,
    list_models_job,
    load_report_job,
    parse_batch_sizes,
    render_job,
    save_figure_png,
)
from viewer.workers.tool_pool import tool_pool
from viewer.workers.worker import ProgressReport, Worker

if TYPE_CHECKING:  # pragma: no cover
    from viewer.qt.main_window import MainWindow

CLOSE_WAIT_S = 10.0
BUSY_RATIO = 0.7        # wall-clock GEMM peak below this share of its CPU-time estimate: the machine was busy
DEFAULT_MODELS = ("lightsqueeze_proposed",)   # plus every model with shipped weights
SORT_ROLE = Qt.ItemDataRole.UserRole
KIND_ROLE = Qt.ItemDataRole.UserRole + 1      # "ours" | "paper"
REFERENCE_BACKGROUND = QColor(232, 238, 247)
ERROR_FOREGROUND = QColor(160, 20, 20)


# --------------------------------------------------------------------------------------------- table
def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _fmt(v: Any, digits: int = 2) -> str:
    v = _num(v)
    return "" if v is None else f"{v:.{digits}f}"


def _fmt_params(v: Any) -> str:
    v = _num(v)
    if v is None:
        return ""
    return f"{v / 1e6:.2f} M" if v >= 1e5 else f"{int(v):,}"


class BenchTableModel(QAbstractTableModel):
    """Our measured rows (``BenchRow``) and the papers' reference rows (``ReferenceRow``) in one table.

    Columns depend on the batch sizes measured: one "ms/item" column per batch size, then throughput and the
    fraction of the GEMM peak at the largest batch.
    """

    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self.rows: list[Any] = []          # BenchRow
        self.references: list[Any] = []   # ReferenceRow
        self.batch_sizes: list[int] = []
        self.columns: list[tuple[str, str]] = []
        self._build_columns()

    def _build_columns(self) -> None:
        cols = [("source", "Source"), ("model", "Model"), ("backend", "Back-end"), ("input", "Input"),
                ("params", "Params"), ("size_mb", "Size MB"), ("gmacs", "GMACs")]
        for b in self.batch_sizes:
            cols.append((f"ms{b}", f"ms/item b{b}"))
        big = max(self.batch_sizes) if self.batch_sizes else None
        if big is not None:
            cols += [("throughput", f"items/s b{big}"), ("gemm", f"% GEMM peak b{big}")]
        cols += [("mem", "Peak mem MB"), ("accuracy", "Accuracy"), ("sensitivity", "Sensitivity"),
                 ("sens_per_mparam", "Sens/M params"), ("paper_time", "Paper s/image"), ("notes", "Notes")]
        self.columns = cols

    def set_content(self, rows: Sequence[Any], references: Sequence[Any], batch_sizes: Sequence[int]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.references = list(references)
        self.batch_sizes = sorted(set(int(b) for b in batch_sizes))
        self._build_columns()
        self.endResetModel()

    def add_row(self, row: Any) -> None:
        new_sizes = sorted(set(self.batch_sizes) | set(row.latency))
        if new_sizes != self.batch_sizes:
            self.set_content(self.rows + [row], self.references, new_sizes)
            return
        n = len(self.rows)
        self.beginInsertRows(QModelIndex(), n, n)
        self.rows.append(row)
        self.endInsertRows()

    def item(self, r: int) -> tuple[str, Any]:
        return ("ours", self.rows[r]) if r < len(self.rows) else ("paper", self.references[r - len(self.rows)])

    def column_key(self, col: int) -> str:
        return self.columns[col][0]

    def column_of(self, key: str) -> int:
        return next(i for i, (k, _t) in enumerate(self.columns) if k == key)

    # --- Qt -----------------------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.rows) + len(self.references)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole \
                and 0 <= section < len(self.columns):
            return self.columns[section][1]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        kind, item = self.item(index.row())
        key = self.columns[index.column()][0]
        if role == KIND_ROLE:
            return kind
        if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE, Qt.ItemDataRole.ToolTipRole):
            value, text = self._ours(item, key) if kind == "ours" else self._paper(item, key)
            if role == Qt.ItemDataRole.DisplayRole:
                return text
            if role == SORT_ROLE:
                if key == "model":       # group a model's rows: ours first, then the papers'
                    return f"{(value or '~').lower()} {0 if kind == 'ours' else 1}"
                return value if isinstance(value, (int, float)) else (-math.inf if value is None else str(value))
            if key == "notes" and text:
                return text
            if kind == "paper":
                return (f"{item.paper}: {item.label} — the paper's own figure"
                        + (f" ({item.dataset})" if item.dataset else "") + (f"; {item.source}" if item.source else ""))
            return getattr(item, "error", None) or None
        if role == Qt.ItemDataRole.BackgroundRole and kind == "paper":
            return QBrush(REFERENCE_BACKGROUND)
        if role == Qt.ItemDataRole.ForegroundRole and kind == "ours" and item.error:
            return QBrush(ERROR_FOREGROUND)
        if role == Qt.ItemDataRole.FontRole and kind == "paper":
            font = QFont()
            font.setItalic(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and key not in ("source", "model", "backend", "input", "notes"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _ours(self, r: Any, key: str) -> tuple[Any, str]:
        big = max(self.batch_sizes) if self.batch_sizes else None
        if key == "source":
            return "LungLens", "LungLens"
        if key == "model":
            return r.model, r.model
        if key == "backend":
            return r.backend, r.backend + (f" · {r.threads} thr" if r.threads else "")
        if key == "input":
            return "x".join(map(str, r.input_shape)), "×".join(map(str, r.input_shape))
        if key == "params":
            return r.params_trainable, _fmt_params(r.params_trainable)
        if key == "size_mb":
            return r.size_mb, _fmt(r.size_mb, 1)
        if key == "gmacs":
            return r.gmacs, _fmt(r.gmacs, 3)
        if key.startswith("ms") and key[2:].isdigit():
            v = r.ms_per_item(int(key[2:]))
            return v, _fmt(v, 2)
        if key == "throughput":
            v = r.throughput(big) if big is not None else None
            return v, _fmt(v, 0)
        if key == "gemm":
            v = r.gemm_fraction.get(big) if big is not None else None
            return (None, "") if v is None else (100 * v, f"{100 * v:.0f} %")
        if key == "mem":
            return r.peak_mem_mb, _fmt(r.peak_mem_mb, 0)
        if key in ("accuracy", "sensitivity"):
            v = getattr(r, key)
            return v, "" if v is None else f"{100 * v:.1f} %"
        if key == "sens_per_mparam":
            return r.sens_per_mparam, _fmt(r.sens_per_mparam, 1)
        if key == "paper_time":
            return None, ""
        if key == "notes":
            text = f"ERROR: {r.error}" if r.error else "; ".join(r.notes)
            if r.weights == "default" and not r.error:
                text = ("evaluated weights; " + text).rstrip("; ")
            return text, text
        return None, ""

    @staticmethod
    def _paper(ref: Any, key: str) -> tuple[Any, str]:
        if key == "source":
            return f"paper {ref.paper}", f"paper {ref.paper}"
        if key == "model":
            return ref.model, ref.model or ref.label
        if key == "backend":
            return ref.hardware, ref.hardware or ""
        if key == "input":
            return ref.input, ref.input or ""
        if key == "params":
            return ref.params, _fmt_params(ref.params)
        if key == "size_mb":
            return ref.size_mb, _fmt(ref.size_mb, 1)
        if key == "gmacs":
            v = None if ref.macs is None else ref.macs / 1e9
            return v, _fmt(v, 3)
        if key in ("accuracy", "sensitivity"):
            v = getattr(ref, key)
            return v, "" if v is None else f"{100 * v:.1f} %"
        if key == "sens_per_mparam":
            return ref.sens_per_mparam, _fmt(ref.sens_per_mparam, 1)
        if key == "paper_time":
            return ref.time_per_image_s, _fmt(ref.time_per_image_s, 3)
        if key == "notes":
            text = "; ".join(x for x in (ref.label, ref.dataset, ref.note) if x)
            return text, text
        return None, ""


class _Filter(QSortFilterProxyModel):
    """Reference rows: all, those of the benchmarked models, or none."""

    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self.mode = 1
        self.setSortRole(SORT_ROLE)

    def set_mode(self, mode: int) -> None:
        if hasattr(self, "beginFilterChange"):
            self.beginFilterChange()
            self.mode = int(mode)
            self.endFilterChange()
        else:  # pragma: no cover - older Qt
            self.mode = int(mode)
            self.invalidateFilter()

    def refresh(self) -> None:
        self.set_mode(self.mode)

    def filterAcceptsRow(self, source_row: int,  # noqa: N802
                         source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        model: BenchTableModel = self.sourceModel()
        kind, item = model.item(source_row)
        if kind == "ours" or self.mode == 0:
            return True
        if self.mode == 2:
            return False
        benchmarked = {r.model for r in model.rows}
        return not benchmarked or item.model in benchmarked


REFERENCE_FILTERS = ("Papers' figures: all", "Papers' figures: benchmarked models", "Papers' figures: hide")


class _Bridge(QObject):
    """Rows and the final report from the job's thread to the GUI (queued); parentless, held by the job."""

    row = Signal(object)
    report = Signal(object)


class _ImageLabel(QLabel):
    """Shows a pixmap scaled to fit (keeping its aspect ratio)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(320, 200)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)

    def set_image(self, pixmap: QPixmap | None, text: str = "") -> None:
        self._pixmap = pixmap
        if pixmap is None:
            self.setPixmap(QPixmap())
            self.setText(text)
        else:
            self.setText("")
            self._rescale()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap is not None and not self._pixmap.isNull():
            self.setPixmap(self._pixmap.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                               Qt.TransformationMode.SmoothTransformation))


def rgba_to_pixmap(pixels: Any) -> QPixmap:
    h, w = int(pixels.shape[0]), int(pixels.shape[1])
    image = QImage(pixels.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
    return QPixmap.fromImage(image.copy())      # copy: the numpy buffer may go away


# --------------------------------------------------------------------------------------------- panel
class BenchPanel(QWidget):
    """See the module docstring."""

    models_listed = Signal()
    report_shown = Signal(bool)        # True: a complete report; False: partial (cancelled)
    figure_drawn = Signal(str)         # a figure drawn after the report was shown (its name)
    job_finished = Signal(str)         # the benchmark worker's outcome: "result" | "error" | "cancelled"

    def __init__(self, window: MainWindow | None = None):
        super().__init__(window)
        self.main_window = window
        self.setWindowFlag(Qt.WindowType.Window, True)
        self.setWindowTitle("Benchmark — LungLens")
        self.setObjectName("benchPanel")
        self.resize(1280, 800)
        self.infos: list[ModelInfo] = []
        self.references: list[Any] = []
        self.report: Any = None
        self.images: dict[str, Any] = {}
        self.worker: Worker | None = None
        self.settings: BenchSettings | None = None
        self.extra: dict[str, Any] = {}          # more run_benchmark keywords (tests: cache_dir, gemm sizes, ...)
        self._helpers: list[Worker] = []
        self._rendering: set[str] = set()
        self._closed = False
        self._build()
        self._list_models()

    # --- layout -------------------------------------------------------------------------------------------
    def _build(self) -> None:
        models_box = QGroupBox("Networks (registry)")
        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("filter, e.g. mobilenet")
        self.filter_edit.textChanged.connect(self._apply_model_filter)
        self.model_list = QListWidget(self)
        self.model_list.setObjectName("benchModels")
        self.model_list.itemChanged.connect(self._update_buttons)
        self.giant_check = QCheckBox("Include giant models")
        self.giant_check.setToolTip("VGG16/19, ResNet152V2, EfficientNet-B6/B7, ResNet3D-101, COVID-Net: minutes "
                                    "and gigabytes each on a laptop CPU")
        self.giant_check.toggled.connect(self._apply_model_filter)
        quick_select = QHBoxLayout()
        self.select_buttons: list[QPushButton] = []
        for text, slot, tip in (("Light", self.select_light, "The light networks of P0 (SqueezeNet family)"),
                                ("With weights", self.select_weighted, "Networks with trained weights: their "
                                                                       "accuracy is reported too"),
                                ("All", self.select_all, "Every network shown"), ("None", self.select_none, "")):
            b = QPushButton(text, self)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            quick_select.addWidget(b)
            self.select_buttons.append(b)
        mb = QVBoxLayout(models_box)
        mb.addWidget(self.filter_edit)
        mb.addWidget(self.model_list, 1)
        mb.addWidget(self.giant_check)
        mb.addLayout(quick_select)

        self.onnx_check = QCheckBox("ONNX Runtime (the app's fast path)", self)
        self.torch_check = QCheckBox("torch", self)
        self.onnx_check.setChecked(True)
        self.torch_check.setChecked(True)
        self.batch_edit = QLineEdit("1, 16", self)
        self.batch_edit.setObjectName("benchBatchSizes")
        self.batch_edit.setToolTip("Batch sizes to time, e.g. 1, 16")
        self.threads_spin = QSpinBox(self)
        self.threads_spin.setRange(1, max(1, os.cpu_count() or 1))
        self.threads_spin.setValue(min(2, self.threads_spin.maximum()))
        self.threads_spin.setToolTip("Threads for torch and ONNX Runtime alike (and the GEMM peak)")
        self.quick_check = QCheckBox("Quick (reduced inputs, short timings)", self)
        self.gemm_check = QCheckBox("Measure the fp32 GEMM peak", self)
        self.gemm_check.setChecked(True)
        form = QFormLayout()
        backends = QVBoxLayout()
        backends.addWidget(self.onnx_check)
        backends.addWidget(self.torch_check)
        form.addRow("Back-ends:", backends)
        form.addRow("Batch sizes:", self.batch_edit)
        form.addRow("Threads:", self.threads_spin)
        form.addRow("", self.quick_check)
        form.addRow("", self.gemm_check)
        for w in (self.onnx_check, self.torch_check, self.quick_check, self.gemm_check):
            w.toggled.connect(self._update_buttons)
        self.batch_edit.textChanged.connect(self._update_buttons)
        self.threads_spin.valueChanged.connect(self._update_buttons)

        self.run_button = QPushButton("Run benchmark", self)
        self.run_button.setObjectName("benchRun")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("benchCancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.bar = QProgressBar(self)
        self.bar.setObjectName("benchProgress")
        self.bar.setRange(0, 100)
        self.bar.setValue(0)
        self.status_label = QLabel("Listing the registered networks …", self)
        self.status_label.setObjectName("benchStatus")
        self.status_label.setWordWrap(True)
        self.command_label = QLabel(self)
        self.command_label.setWordWrap(True)
        self.command_label.setStyleSheet("color: #666; font-size: 11px;")
        self.command_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)

        left = QWidget(self)
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(models_box, 1)
        ll.addLayout(form)
        ll.addLayout(run_row)
        ll.addWidget(self.bar)
        ll.addWidget(self.status_label)
        ll.addWidget(self.command_label)
        left.setMinimumWidth(330)

        self.gemm_label = QLabel("fp32 GEMM peak: not measured yet.", self)
        self.gemm_label.setObjectName("benchGemm")
        self.gemm_label.setWordWrap(True)
        self.gemm_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table_model = BenchTableModel(self)
        self.proxy = _Filter(self)
        self.proxy.setSourceModel(self.table_model)
        self.table = QTableView(self)
        self.table.setObjectName("benchTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.sortByColumn(1, Qt.SortOrder.AscendingOrder)
        self.ref_filter = QComboBox(self)
        self.ref_filter.addItems(REFERENCE_FILTERS)
        self.ref_filter.setCurrentIndex(1)
        self.ref_filter.currentIndexChanged.connect(self.proxy.set_mode)
        legend = QLabel("<span style='background:#e8eef7'><i>&nbsp;italic, blue-grey: the papers' own "
                        "figures&nbsp;</i></span> &nbsp; <span style='color:#a01414'>red: failed</span>", self)
        table_tab = QWidget(self)
        tl = QVBoxLayout(table_tab)
        top = QHBoxLayout()
        top.addWidget(legend, 1)
        top.addWidget(self.ref_filter)
        tl.addLayout(top)
        tl.addWidget(self.table, 1)

        self.figure_box = QComboBox(self)
        self.figure_box.setObjectName("benchFigure")
        for name, title in FIGURE_TITLES.items():
            self.figure_box.addItem(title, name)
        self.figure_box.currentIndexChanged.connect(self._show_figure)
        self.plot_label = _ImageLabel(self)
        self.plot_label.setObjectName("benchPlot")
        self.plot_label.set_image(None, "Run the benchmark to see the plots.")
        plots_tab = QWidget(self)
        pl = QVBoxLayout(plots_tab)
        pl.addWidget(self.figure_box)
        pl.addWidget(self.plot_label, 1)

        self.tabs = QTabWidget(self)
        self.tabs.addTab(table_tab, "Table")
        self.tabs.addTab(plots_tab, "Plots")

        self.csv_button = QPushButton("Export CSV…", self)
        self.csv_button.clicked.connect(self.export_csv_dialog)
        self.png_button = QPushButton("Save plot PNG…", self)
        self.png_button.clicked.connect(self.export_png_dialog)
        self.save_button = QPushButton("Save all…", self)
        self.save_button.setToolTip("bench.json, bench.csv, references.csv and every plot as PNG into a folder")
        self.save_button.clicked.connect(self.save_all_dialog)
        self.open_button = QPushButton("Open bench.json…", self)
        self.open_button.setToolTip("Show a saved report (from this panel or `lunglens-engine bench --out`)")
        self.open_button.clicked.connect(self.open_report_dialog)
        export_row = QHBoxLayout()
        export_row.addWidget(self.open_button)
        export_row.addStretch(1)
        for b in (self.csv_button, self.png_button, self.save_button):
            export_row.addWidget(b)

        right = QWidget(self)
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.gemm_label)
        rl.addWidget(self.tabs, 1)
        rl.addLayout(export_row)

        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([360, 920])
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self._update_buttons()

    # --- models -------------------------------------------------------------------------------------------
    def _list_models(self) -> None:
        worker = Worker(list_models_job, name="bench-list-models")
        worker.result.connect(self._on_models)
        worker.error.connect(lambda exc, _t: self._say(f"Cannot list the networks: {exc}", error=True))
        self._start_helper(worker)

    def _on_models(self, found: tuple[list[ModelInfo], list[Any]]) -> None:
        if self._closed:
            return
        self.infos, self.references = found
        self.model_list.blockSignals(True)
        self.model_list.clear()
        weighted = {i.name for i in self.infos if i.has_weights}
        for info in self.infos:
            item = QListWidgetItem(info.label)
            item.setData(Qt.ItemDataRole.UserRole, info.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            checked = info.name in DEFAULT_MODELS or info.name in weighted
            item.setCheckState(Qt.CheckState.Checked if checked and not info.giant else Qt.CheckState.Unchecked)
            item.setToolTip(f"{info.family} · paper {info.paper}" if info.paper else info.family)
            self.model_list.addItem(item)
        self.model_list.blockSignals(False)
        self._apply_model_filter()
        if self.report is None:
            self.table_model.set_content([], self.references, [])
            self.proxy.refresh()
        self._say(f"{len(self.infos)} networks registered ({sum(i.giant for i in self.infos)} giant). Choose "
                  f"networks and press Run benchmark.")
        self.models_listed.emit()

    def _apply_model_filter(self, *_args: Any) -> None:
        text = self.filter_edit.text().strip().lower()
        giant = self.giant_check.isChecked()
        by_name = {i.name: i for i in self.infos}
        for i in range(self.model_list.count()):
            item = self.model_list.item(i)
            info = by_name.get(item.data(Qt.ItemDataRole.UserRole))
            hidden = info is None or (info.giant and not giant) or (bool(text) and text not in info.name.lower())
            item.setHidden(hidden)
        self._update_buttons()

    def _items(self) -> list[QListWidgetItem]:
        return [self.model_list.item(i) for i in range(self.model_list.count())]

    def _set_checked(self, predicate: Callable[[ModelInfo], bool]) -> None:
        by_name = {i.name: i for i in self.infos}
        self.model_list.blockSignals(True)
        for item in self._items():
            info = by_name[item.data(Qt.ItemDataRole.UserRole)]
            ok = predicate(info) and not item.isHidden()
            item.setCheckState(Qt.CheckState.Checked if ok else Qt.CheckState.Unchecked)
        self.model_list.blockSignals(False)
        self._update_buttons()

    def select_models(self, names: Sequence[str]) -> None:
        """Check exactly ``names`` (giant ones need "Include giant models")."""
        wanted = set(names)
        unknown = wanted - {i.name for i in self.infos}
        if unknown:
            raise KeyError(f"not registered: {', '.join(sorted(unknown))}")
        self._set_checked(lambda i: i.name in wanted)

    def select_light(self) -> None:
        self._set_checked(lambda i: i.family == "squeezenet" or i.paper == "P0")

    def select_weighted(self) -> None:
        self._set_checked(lambda i: i.has_weights)

    def select_all(self) -> None:
        self._set_checked(lambda i: True)

    def select_none(self) -> None:
        self._set_checked(lambda i: False)

    def chosen_models(self) -> list[str]:
        """Checked and visible (a giant model hidden by the checkbox is not run)."""
        return [item.data(Qt.ItemDataRole.UserRole) for item in self._items()
                if item.checkState() == Qt.CheckState.Checked and not item.isHidden()]

    # --- settings -----------------------------------------------------------------------------------------
    def build_settings(self) -> BenchSettings:
        models = self.chosen_models()
        if not models:
            raise ValueError("Choose at least one network to benchmark.")
        backends = tuple(b for b, c in (("onnx", self.onnx_check), ("torch", self.torch_check)) if c.isChecked())
        if not backends:
            raise ValueError("Choose at least one back-end (ONNX Runtime or torch).")
        return BenchSettings(models=tuple(models), backends=backends,
                             batch_sizes=parse_batch_sizes(self.batch_edit.text()),
                             threads=int(self.threads_spin.value()), quick=self.quick_check.isChecked(),
                             measure_gemm=self.gemm_check.isChecked(), include_giant=self.giant_check.isChecked(),
                             extra=dict(self.extra))

    def _update_buttons(self, *_args: Any) -> None:
        running = self.worker is not None and not self.worker.is_done
        try:
            settings = self.build_settings()
            problem = ""
        except ValueError as exc:
            settings, problem = None, str(exc)
        self.run_button.setEnabled(not running and settings is not None and bool(self.infos))
        self.cancel_button.setEnabled(running and not self.worker.is_cancel_requested)
        has_report = self.report is not None
        for b in (self.csv_button, self.save_button):
            b.setEnabled(has_report and not running)
        self.png_button.setEnabled(has_report and not running and bool(self.images))
        self.open_button.setEnabled(not running)
        for w in (self.model_list, self.filter_edit, self.giant_check, self.onnx_check, self.torch_check,
                  self.batch_edit, self.threads_spin, self.quick_check, self.gemm_check, *self.select_buttons):
            w.setEnabled(not running)
        if settings is not None:
            n = len(settings.models) * len(settings.backends)
            self.command_label.setText(f"{n} measurement(s). Same as: <code>{_html(settings.command_text())}</code>")
        elif self.infos and not running:
            self.command_label.setText(f"<span style='color:#a01010'>{_html(problem)}</span>")

    # --- running ------------------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self.worker is not None and not self.worker.is_done

    def start(self) -> Worker | None:
        if self.is_running:
            return self.worker
        try:
            settings = self.build_settings()
        except ValueError as exc:
            self._say(str(exc), error=True)
            return None
        self.settings = settings
        self.report = None
        self.images = {}
        self._rendering = set()
        self.table_model.set_content([], self.references, settings.batch_sizes)
        self.proxy.refresh()
        self.plot_label.set_image(None, "The plots are drawn when the benchmark finishes.")
        self.gemm_label.setText("fp32 GEMM peak: measured first, shown with the achieved fractions when the run "
                                "ends." if settings.measure_gemm else
                                "fp32 GEMM peak: not measured (switched off).")
        bridge = _Bridge()
        bridge.row.connect(self._on_row)
        bridge.report.connect(self._on_report)
        worker = Worker(benchmark_job, settings, on_row=bridge.row.emit, on_report=bridge.report.emit,
                        figures=[self.current_figure()], name="benchmark")
        worker._bridge = bridge
        worker.progress.connect(self._on_progress)
        worker.error.connect(self._on_error)
        worker.finished.connect(lambda w=worker: self._on_finished(w))
        self.worker = worker
        self.bar.setRange(0, 0)
        self._say(f"Benchmarking {len(settings.models)} network(s) on {', '.join(settings.backends)} …")
        status = getattr(self.main_window, "job_status", None)
        if status is not None:
            status.track(worker, "Benchmark …")
        worker.start(tool_pool())
        self._update_buttons()
        return worker

    def cancel(self) -> None:
        if self.is_running:
            self.worker.cancel()
            self._say("Cancelling (after the timing in progress) …")
            self._update_buttons()

    def _on_progress(self, report: ProgressReport) -> None:
        if self._closed or self.worker is None or self.worker.is_cancel_requested:
            return
        if report.fraction is None:
            self.bar.setRange(0, 0)
        else:
            self.bar.setRange(0, 100)
            self.bar.setValue(report.percent or 0)
        eta = f" · about {report.eta:.0f} s left" if report.eta is not None and report.eta >= 1 else ""
        if report.message:
            self._say(report.message + eta)

    def _on_row(self, row: Any) -> None:
        if self._closed:
            return
        self.table_model.add_row(row)
        self.proxy.refresh()
        self._fit_columns()

    def _on_report(self, outcome: BenchOutcome) -> None:
        if self._closed:
            return
        self.show_report(outcome.report, outcome.images)

    def _render(self, name: str) -> Worker | None:
        """Draw figure ``name`` of the shown report in a worker (each figure once)."""
        report = self.report
        if report is None or name in self._rendering:
            return None
        self._rendering.add(name)
        worker = Worker(render_job, report, [name], name="bench-render")
        worker.result.connect(lambda images, r=report: self._on_images(r, images))
        worker.finished.connect(lambda n=name: self._rendering.discard(n))
        return self._start_helper(worker)

    def _on_images(self, report: Any, images: dict[str, Any]) -> None:
        if not self._closed and report is self.report:
            self.images.update(images)
            self._show_figure()
            self._update_buttons()
            self.figure_drawn.emit(next(iter(images), ""))

    def _on_error(self, error: BaseException, details: str) -> None:
        if self._closed:
            return
        if isinstance(error, (ValueError, KeyError)):
            self._say(f"Cannot run: {error}", error=True)
        else:
            self._say(f"The benchmark failed: {type(error).__name__}: {error}", error=True)
            if self.main_window is not None:
                self.main_window.error_dialog = show_error(self, "Benchmark failed", error, details)

    def _on_finished(self, worker: Worker) -> None:
        if worker is not self.worker or self._closed:
            return
        self.bar.setRange(0, 100)
        self.bar.setValue(100 if worker.outcome == "result" else 0)
        self._update_buttons()
        self.job_finished.emit(worker.outcome or "")

    # --- showing ------------------------------------------------------------------------------------------
    def show_report(self, report: Any, images: dict[str, Any] | None = None) -> None:
        """Table, GEMM line and plots of ``report`` (a ``BenchReport``)."""
        self.report = report
        self.images = dict(images or {})
        self._rendering = set()
        refs = report.references or self.references
        self.table_model.set_content(report.rows, refs, report.batch_sizes)
        self.proxy.refresh()
        self._fit_columns()
        self.gemm_label.setText(gemm_text(report))
        self._show_figure()
        failed = [r for r in report.rows if r.error]
        state = "Cancelled — partial results" if report.cancelled else "Done"
        text = f"{state}: {len(report.rows)} row(s) in {report.seconds:.0f} s"
        if failed:
            text += f"; {len(failed)} failed ({', '.join(f'{r.model}/{r.backend}' for r in failed[:3])})"
        load = report.machine.get("loadavg_before"), report.machine.get("loadavg_after")
        if load[0] is not None:
            text += (f". Load average before/after: {load[0][0]:.1f} / {load[1][0] if load[1] else '?'} on "
                     f"{report.machine.get('cpus')} CPUs (other work on the machine slows the timings)")
        self._say(text + ".", error=bool(failed))
        self._update_buttons()
        self.report_shown.emit(not report.cancelled)

    def _fit_columns(self) -> None:
        self.table.resizeColumnsToContents()
        for col in range(self.table_model.columnCount()):
            self.table.setColumnWidth(col, min(self.table.columnWidth(col), 240))

    def _show_figure(self, *_args: Any) -> None:
        name = self.figure_box.currentData()
        pixels = self.images.get(name) if name else None
        if pixels is not None:
            self.plot_label.set_image(rgba_to_pixmap(pixels))
        elif self.report is None:
            self.plot_label.set_image(None, "Run the benchmark (or open a bench.json) to see the plots.")
        elif self.is_running:
            self.plot_label.set_image(None, "The plots are drawn when the benchmark finishes.")
        else:
            self.plot_label.set_image(None, "Drawing the plot …")
            self._render(name)

    def current_figure(self) -> str | None:
        return self.figure_box.currentData()

    def show_figure(self, name: str) -> None:
        index = self.figure_box.findData(name)
        if index < 0:
            raise KeyError(f"no figure {name!r}")
        self.figure_box.setCurrentIndex(index)
        self.tabs.setCurrentIndex(1)

    # --- export -------------------------------------------------------------------------------------------
    def export_csv(self, path: str | Path) -> tuple[Path, Path]:
        if self.report is None:
            raise ValueError("Nothing to export yet: run the benchmark first.")
        rows, refs = export_csv(self.report, path)
        self._say(f"Wrote {rows} and {refs.name}.")
        return rows, refs

    def export_png(self, path: str | Path, name: str | None = None) -> Worker | None:
        """Save the shown plot (or ``name``) as a PNG at print resolution, in a worker."""
        if self.report is None:
            self._say("Nothing to export yet: run the benchmark first.", error=True)
            return None
        name = name or self.current_figure()
        worker = Worker.call(save_figure_png, self.report, name, Path(path), name="bench-save-png")
        worker.result.connect(lambda p: self._say(f"Wrote {p}."))
        worker.error.connect(lambda exc, _t: self._say(f"Cannot write the PNG: {exc}", error=True))
        return self._start_helper(worker)

    def save_all(self, folder: str | Path) -> Worker | None:
        if self.report is None:
            self._say("Nothing to save yet: run the benchmark first.", error=True)
            return None
        worker = Worker.call(self.report.save, Path(folder), name="bench-save-all")
        worker.result.connect(lambda files: self._say(f"Wrote {len(files)} files into {folder}."))
        worker.error.connect(lambda exc, _t: self._say(f"Cannot save into {folder}: {exc}", error=True))
        return self._start_helper(worker)

    def open_report(self, path: str | Path) -> Worker:
        worker = Worker(load_report_job, Path(path), [self.current_figure()], name="bench-open-report")
        worker.result.connect(lambda outcome: self.show_report(outcome.report, outcome.images))
        worker.error.connect(lambda exc, _t: self._say(str(exc), error=True))
        return self._start_helper(worker)

    def export_csv_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the benchmark as CSV", str(_default_dir() / "bench.csv"),
                                              "CSV (*.csv)")
        if path:
            try:
                self.export_csv(path)
            except (OSError, ValueError) as exc:
                self._say(f"Cannot write {path}: {exc}", error=True)

    def export_png_dialog(self) -> None:
        name = self.current_figure() or "plot"
        path, _ = QFileDialog.getSaveFileName(self, "Save the plot as PNG", str(_default_dir() / f"{name}.png"),
                                              "PNG (*.png)")
        if path:
            self.export_png(path if path.lower().endswith(".png") else path + ".png")

    def save_all_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for bench.json, CSV and PNG plots",
                                                  str(_default_dir()))
        if folder:
            self.save_all(folder)

    def open_report_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a benchmark report", str(_default_dir()),
                                              "Benchmark report (*.json)")
        if path:
            self.open_report(path)

    # --- plumbing -----------------------------------------------------------------------------------------
    def _start_helper(self, worker: Worker) -> Worker:
        self._helpers = [w for w in self._helpers if not w.is_done] + [worker]
        return worker.start(tool_pool())

    def _say(self, text: str, *, error: bool = False) -> None:
        self.status_label.setStyleSheet("color: #a01010;" if error else "")
        self.status_label.setText(text)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        event.accept()            # hide only: a running benchmark goes on (the status bar shows it)
        self.hide()

    def shutdown(self, timeout: float = CLOSE_WAIT_S) -> bool:
        """Cancel and wait for the benchmark and helpers (the main window is closing), then delete the panel."""
        self._closed = True
        workers = [w for w in [self.worker, *self._helpers] if w is not None]
        for w in workers:
            w.cancel()
        deadline = time.monotonic() + timeout
        stopped = all(w.wait(max(0.0, deadline - time.monotonic())) for w in workers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for w in workers:
                bridge = getattr(w, "_bridge", None)
                signals = [w.result, w.error, w.progress, w.cancelled, w.finished]
                if bridge is not None:
                    signals += [bridge.row, bridge.report]
                for signal in signals:
                    try:
                        signal.disconnect()
                    except (RuntimeError, TypeError):
                        pass
        self.hide()
        self.deleteLater()
        return stopped


def gemm_text(report: Any) -> str:
    """The GEMM line: this machine's fp32 peak and the best achieved fraction of it."""
    g = report.gemm
    if g is None:
        return "fp32 GEMM peak: not measured in this run (so no achieved fraction)."
    text = (f"<b>fp32 GEMM peak: {g.gflops:.1f} GFLOP/s</b> (best of {g.repeats}, n = {g.n}, {g.threads} "
            f"thread(s), {g.library}; median {g.gflops_p50:.1f}")
    if g.gflops_cpu:
        text += f"; idle-machine estimate {g.gflops_cpu:.1f}"
    text += ")."
    best = None
    for r in report.rows:
        for b, f in r.gemm_fraction.items():
            if best is None or f > best[0]:
                best = (f, r, b)
    if best is not None:
        f, r, b = best
        text += (f" Best achieved: <b>{100 * f:.0f} %</b> ({r.model} on {r.backend}, batch {b}, "
                 f"{r.ms_per_item(b):.2f} ms/item).")
    busy = g.gflops_cpu is not None and g.gflops < BUSY_RATIO * g.gflops_cpu
    if busy or (best is not None and best[0] > 1.0):
        text += (" <span style='color:#a01010'>The machine was busy during the run (the wall-clock peak is "
                 "well below its CPU-time estimate): the peak is understated, fractions above 100 % are "
                 "artefacts of it. Rerun on an idle machine for numbers to quote.</span>")
    return text


def _default_dir() -> Path:
    return Path.home() / "LungLens exports"


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
