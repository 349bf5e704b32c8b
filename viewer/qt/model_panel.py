"""``ModelPanel``: the AI dock -- pick a model (with its card), Screen / Cancel with progress and ETA, the scan
score with its "research use, not a diagnosis" label, the most suspicious slices, the explainer and heatmap
controls, and the doors to "look inside", compare and export.

A view only: it shows what it is given and emits what the user asked for; ``AIWorkflow`` does the work.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from viewer.model.ai import EXPLAINER_LABELS, RESEARCH_LABEL, ModelEntry, score_text
from viewer.workers.worker import ProgressReport

_SCORE_STYLE = "font-size: 22px; font-weight: 600; color: %s;"
_RESEARCH_STYLE = "color: #ffcc66; font-weight: 600;"


class ModelPanel(QWidget):
    screen_requested = Signal()
    cancel_requested = Signal()
    model_changed = Signal(str)
    explainer_changed = Signal(str)
    slice_requested = Signal(int)
    refresh_requested = Signal()
    card_requested = Signal()
    look_inside_requested = Signal()
    compare_requested = Signal()
    export_png_requested = Signal()
    export_dicom_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("modelPanel")
        self._entries: list[ModelEntry] = []

        # --- model choice + card
        self.model_box = QComboBox(self)
        self.model_box.setObjectName("modelChoice")
        self.model_box.setToolTip("Models with trained weights (2-D: every axial slice; 3-D: the whole volume)")
        self.model_box.currentIndexChanged.connect(self._on_model_index)
        refresh = QToolButton(self)
        refresh.setText("↻")
        refresh.setToolTip("Look for weights again")
        refresh.clicked.connect(self.refresh_requested)
        row = QHBoxLayout()
        row.addWidget(self.model_box, 1)
        row.addWidget(refresh)
        self.card = QTextBrowser(self)
        self.card.setObjectName("modelCard")
        self.card.setOpenLinks(False)
        self.card.setMinimumHeight(120)
        self.card.setMaximumHeight(210)
        self.card_button = QPushButton("Full model card…", self)
        self.card_button.clicked.connect(self.card_requested)

        # --- run
        self.screen_button = QPushButton("Screen", self)
        self.screen_button.setObjectName("screenButton")
        self.screen_button.setToolTip("Run the model on the open scan (Ctrl+Return)")
        self.screen_button.clicked.connect(self.screen_requested)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("screenCancel")
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.progress = QProgressBar(self)
        self.progress.setObjectName("screenProgress")
        self.progress.setRange(0, 100)
        self.progress.setTextVisible(True)
        self.progress_label = QLabel(self)
        self.progress_label.setObjectName("screenProgressText")
        self.progress_label.setMinimumWidth(1)       # no word wrap, no re-layout of the panel per report
        self.progress_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        run_row = QHBoxLayout()
        run_row.addWidget(self.screen_button, 1)
        run_row.addWidget(self.cancel_button)

        # --- result
        self.score_label = QLabel("Not screened yet", self)
        self.score_label.setObjectName("scanScore")
        self.research_label = QLabel(RESEARCH_LABEL, self)
        self.research_label.setObjectName("researchLabel")
        self.research_label.setStyleSheet(_RESEARCH_STYLE)
        self.research_label.setWordWrap(True)
        self.detail_label = QLabel(self)
        self.detail_label.setObjectName("scoreDetail")
        self.detail_label.setWordWrap(True)
        self.detail_label.setStyleSheet("color: #b0b0b0;")
        self.top_list = QListWidget(self)
        self.top_list.setObjectName("topSlices")
        self.top_list.setToolTip("Most suspicious slices, most suspicious first; click to go there")
        self.top_list.setMaximumHeight(110)
        self.top_list.itemClicked.connect(self._on_top_item)
        self.top_list.itemActivated.connect(self._on_top_item)
        result_box = QGroupBox("Result", self)
        result_layout = QVBoxLayout(result_box)
        result_layout.addWidget(self.score_label)
        result_layout.addWidget(self.research_label)
        result_layout.addWidget(self.detail_label)
        result_layout.addWidget(QLabel("Most suspicious slices", self))
        result_layout.addWidget(self.top_list)

        # --- heatmap
        self.explainer_box = QComboBox(self)
        self.explainer_box.setObjectName("explainerChoice")
        for key, label in EXPLAINER_LABELS.items():
            self.explainer_box.addItem(label, key)
        self.explainer_box.setToolTip("CAM: class activation map of the last features (fast); Grad-CAM, "
                                      "Grad-CAM++ and Layer-CAM use gradients (one backward pass per map)")
        self.explainer_box.currentIndexChanged.connect(
            lambda _i: self.explainer_changed.emit(self.explainer_box.currentData()))
        self.heatmap_box = QGroupBox("Heatmap", self)
        self._heatmap_layout = QVBoxLayout(self.heatmap_box)
        explainer_row = QHBoxLayout()
        explainer_row.addWidget(QLabel("Explainer", self))
        explainer_row.addWidget(self.explainer_box, 1)
        self._heatmap_layout.addLayout(explainer_row)

        # --- more
        self.look_button = QPushButton("Look inside…", self)
        self.look_button.setObjectName("lookInsideButton")
        self.look_button.setToolTip("Activation maps of one layer for this slice (2-D models)")
        self.look_button.clicked.connect(self.look_inside_requested)
        self.compare_button = QPushButton("Compare models…", self)
        self.compare_button.setObjectName("compareButton")
        self.compare_button.clicked.connect(self.compare_requested)
        self.export_png_button = QPushButton("Export view (PNG)…", self)
        self.export_png_button.clicked.connect(self.export_png_requested)
        self.export_dicom_button = QPushButton("Export heatmap (DICOM)…", self)
        self.export_dicom_button.setToolTip("Secondary Capture with the heatmap burned in, marked NOT FOR "
                                            "DIAGNOSIS, in the source study (never written into the scan's folder)")
        self.export_dicom_button.clicked.connect(self.export_dicom_requested)
        more = QGridLayout()
        more.addWidget(self.look_button, 0, 0)
        more.addWidget(self.compare_button, 0, 1)
        more.addWidget(self.export_png_button, 1, 0)
        more.addWidget(self.export_dicom_button, 1, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(row)
        layout.addWidget(self.card)
        layout.addWidget(self.card_button, 0, Qt.AlignmentFlag.AlignRight)
        layout.addLayout(run_row)
        layout.addWidget(self.progress)
        layout.addWidget(self.progress_label)
        layout.addWidget(result_box)
        layout.addWidget(self.heatmap_box)
        layout.addLayout(more)
        layout.addStretch(1)
        self.set_running(False)
        self.set_scan_open(False)

    # --- models -----------------------------------------------------------------------------------------
    def set_entries(self, entries: Sequence[ModelEntry], problems: Sequence[str] = (), keep: str | None = None) -> None:
        keep = keep or (self.current_entry().key if self.current_entry() is not None else None)
        self._entries = list(entries)
        self.model_box.blockSignals(True)
        self.model_box.clear()
        for entry in self._entries:
            self.model_box.addItem(entry.label, entry.key)
        index = self.model_box.findData(keep) if keep else -1
        self.model_box.setCurrentIndex(index if index >= 0 else (0 if self._entries else -1))
        self.model_box.blockSignals(False)
        self.model_box.setEnabled(bool(self._entries))
        self._show_card(problems)
        entry = self.current_entry()
        if entry is not None and entry.key != keep:
            self.model_changed.emit(entry.key)

    def set_searching(self) -> None:
        """Before the first listing: say that models are being looked for."""
        self.model_box.setEnabled(False)
        self.card.setHtml("<p>Looking for models with weights …</p>")
        self._update_buttons()

    def current_entry(self) -> ModelEntry | None:
        index = self.model_box.currentIndex()
        return self._entries[index] if 0 <= index < len(self._entries) else None

    def select_model(self, key: str) -> None:
        index = self.model_box.findData(key)
        if index < 0:
            raise KeyError(f"no model {name!r} in the list")
        self.model_box.setCurrentIndex(index)

    def _on_model_index(self, _index: int) -> None:
        self._show_card()
        entry = self.current_entry()
        if entry is not None:
            self.model_changed.emit(entry.key)

    def _show_card(self, problems: Sequence[str] = ()) -> None:
        entry = self.current_entry()
        self.card_button.setEnabled(entry is not None)
        if entry is None:
            text = ("<p><b>No model with weights found.</b></p><p>Shipped weights live in "
                    "<code>resources/weights/&lt;model&gt;/</code>; add your own with "
                    "<code>lunglens --weights DIR</code> or <code>LUNGLENS_WEIGHTS_PATH</code>.</p>")
        else:
            rows = "".join(f"<tr><td valign='top'><b>{html.escape(k)}</b>&nbsp;</td><td>{html.escape(v)}</td></tr>"
                           for k, v in entry.card().items())
            text = f"<table cellspacing='1'>{rows}</table>"
        if problems:
            text += "<p style='color:#e57373'>" + "<br>".join(html.escape(p) for p in problems[:3]) + "</p>"
        self.card.setHtml(text)
        self._update_buttons()

    # --- run state --------------------------------------------------------------------------------------
    def set_scan_open(self, is_open: bool) -> None:
        self._scan_open = bool(is_open)
        self._update_buttons()

    def set_running(self, running: bool) -> None:
        self._running = bool(running)
        self.progress.setVisible(running)
        if running:
            self.progress.setRange(0, 0)
            self.progress_label.setText("Starting …")
        else:
            self.progress_label.setText("")
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = getattr(self, "_running", False)
        ready = getattr(self, "_scan_open", False) and self.current_entry() is not None
        self.screen_button.setEnabled(ready and not running)
        self.cancel_button.setEnabled(running)
        for button in (self.look_button, self.compare_button, self.export_png_button, self.export_dicom_button):
            button.setEnabled(ready)

    def show_progress(self, report: ProgressReport) -> None:
        if report.fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 100)
            self.progress.setValue(report.percent or 0)
        eta = f" · about {report.eta:.0f} s left" if report.eta is not None and report.eta >= 1 else ""
        self.progress_label.setText(f"{report.message}{eta}")

    # --- results ----------------------------------------------------------------------------------------
    def clear_result(self, text: str = "Not screened yet") -> None:
        self.score_label.setText(text)
        self.score_label.setStyleSheet(_SCORE_STYLE % "#d0d0d0")
        self.detail_label.setText("")
        self.top_list.clear()

    def show_result(self, result, backend: str | None = None) -> None:
        colour = "#ff7043" if result.probability >= 0.5 else "#9ccc65"
        self.score_label.setText(score_text(result.probability, result.positive_class))
        self.score_label.setStyleSheet(_SCORE_STYLE % colour)
        seconds = result.seconds.get("total")
        timing = f" in {seconds:.1f} s" if seconds is not None else ""
        self.detail_label.setText(f"{result.model_name}: {result.aggregation}; {backend or result.backend}"
                                  f"{timing}.")
        self.top_list.clear()
        scores = result.slice_scores
        for z in result.top_slices:
            score = f" · P {scores[z]:.2f}" if scores is not None else ""
            item = QListWidgetItem(f"Slice {z + 1}{score}")
            item.setData(Qt.ItemDataRole.UserRole, int(z))
            self.top_list.addItem(item)
        if not result.top_slices:
            self.top_list.addItem("— (3-D model: one score for the whole scan)")

    def _on_top_item(self, item: QListWidgetItem) -> None:
        z = item.data(Qt.ItemDataRole.UserRole)
        if z is not None:
            self.slice_requested.emit(int(z))

    # --- heatmap ----------------------------------------------------------------------------------------
    def set_heatmap_controls(self, widget: QWidget) -> None:
        self._heatmap_layout.addWidget(widget)

    @property
    def explainer(self) -> str:
        return self.explainer_box.currentData()

    def set_explainer(self, method: str) -> None:
        index = self.explainer_box.findData(method)
        if index >= 0:
            self.explainer_box.setCurrentIndex(index)
