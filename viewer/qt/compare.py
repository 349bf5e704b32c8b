"""Compare mode: two (or more) panes, each bound to a model + explainer, on one scan, in one sync group.

Every pane is a ``ViewerState`` of the same ``Volume`` (no copy) with its own :class:`ModelSession`.  The panes
share a :class:`~viewer.model.sync.SyncGroup`: slice, window/level, zoom/pan, heatmap colour scale and
threshold are linked by default, each toggled by a check box (heatmap opacity can be linked too).  The
*difference* pane shows the first model's map minus the second's on the same [0, 1] scale (red: the first model
sees more evidence there, blue: the second); it follows the first pane's slice, window and camera through a
second, fixed sync group.  Scores of every model are shown on the pane headers and as curves in one score strip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from engine.io.volume import Volume
from viewer.model.ai import EXPLAINER_LABELS, RESEARCH_LABEL, ModelEntry, score_text
from viewer.model.camera import Camera
from viewer.model.events import Event
from viewer.model.layers import DIVERGING_COLORMAPS
from viewer.model.sync import SyncGroup
from viewer.model.viewer_state import ViewerState
from viewer.model.window_level import PRESET_LABELS, PRESET_SHORTCUTS, WindowLevel
from viewer.qt.error_dialog import show_error
from viewer.qt.heatmap_controls import HeatmapControls
from viewer.qt.job_status import JobStatus
from viewer.qt.model_session import JobRunner, ModelSession
from viewer.qt.score_strip import SERIES_COLOURS, ScoreStrip
from viewer.qt.slice_slider import SliceSlider
from viewer.qt.slice_view import SliceView
from viewer.workers.worker import Worker

SYNC_LABELS = {"slice": "Slice", "window": "Window/level", "camera": "Zoom/pan", "heatmap_scale": "Heatmap scale",
               "heatmap_threshold": "Threshold", "heatmap_opacity": "Opacity"}
DEFAULT_SYNC = ("slice", "window", "camera", "heatmap_scale", "heatmap_threshold")
DIFFERENCE_THRESHOLD = 0.1


class ComparePane(QWidget):
    """Header (model, explainer, score) over a slice view of one state."""

    model_chosen = Signal(object, str)        # pane, model name
    explainer_chosen = Signal(object, str)    # pane, explainer

    def __init__(self, state: ViewerState, entries: Sequence[ModelEntry], colour: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.session: ModelSession | None = None
        self.model_box = QComboBox(self)
        self.model_box.setObjectName("paneModel")
        self.model_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_box.setMinimumContentsLength(16)
        for entry in entries:
            self.model_box.addItem(entry.label, entry.key)
        self.model_box.activated.connect(lambda _i: self.model_chosen.emit(self, self.model_box.currentData()))
        self.explainer_box = QComboBox(self)
        self.explainer_box.setObjectName("paneExplainer")
        for key, label in EXPLAINER_LABELS.items():
            self.explainer_box.addItem(label, key)
        self.explainer_box.activated.connect(
            lambda _i: self.explainer_chosen.emit(self, self.explainer_box.currentData()))
        self.score_label = QLabel("…", self)
        self.score_label.setObjectName("paneScore")
        self.score_label.setStyleSheet(f"font-weight: 600; color: {colour};")
        header = QHBoxLayout()                   # two rows: model / explainer + score
        header.setContentsMargins(4, 2, 4, 0)
        swatch = QLabel("■", self)
        swatch.setStyleSheet(f"color: {colour};")
        header.addWidget(swatch)
        header.addWidget(self.model_box, 1)
        second = QHBoxLayout()
        second.setContentsMargins(4, 0, 4, 2)
        second.addWidget(self.explainer_box)
        second.addStretch(1)
        second.addWidget(self.score_label)
        self.view = SliceView(state)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(header)
        layout.addLayout(second)
        layout.addWidget(self.view, 1)

    def bind(self, session: ModelSession) -> None:
        self.session = session
        self.model_box.setCurrentIndex(max(0, self.model_box.findData(session.name)))
        self.explainer_box.setCurrentIndex(max(0, self.explainer_box.findData(session.explainer)))
        self.show_score()

    def show_score(self) -> None:
        session = self.session
        if session is None:
            self.score_label.setText("")
        elif session.result is not None:
            self.score_label.setText(score_text(session.result.probability, session.result.positive_class))
        elif session.is_screening:
            self.score_label.setText("screening …")
        else:
            self.score_label.setText("not screened")

    def detach(self) -> None:
        self.view.detach()


class DifferencePane(QWidget):
    """A − B of the first two panes' maps, on the first pane's slice."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.title = QLabel("Difference", self)
        self.title.setObjectName("differenceTitle")
        self.title.setWordWrap(True)
        self.title.setMinimumWidth(120)
        self.title.setFixedHeight(46)          # the same height as a model pane's two header rows
        self.title.setToolTip("First model's map minus the second's (both scaled to 0..1): red where the first "
                              "sees more evidence, blue where the second does; |difference| below "
                              f"{DIFFERENCE_THRESHOLD} is not drawn")
        self.view = SliceView(state)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        header = QHBoxLayout()
        header.setContentsMargins(4, 2, 4, 2)
        header.addWidget(self.title)
        layout.addLayout(header)
        layout.addWidget(self.view, 1)
        self.layer = state.add_heatmap(None, "difference", colormap=DIVERGING_COLORMAPS[0], scale=(-1.0, 1.0),
                                       threshold=DIFFERENCE_THRESHOLD, opacity=0.6, signed=True)

    def detach(self) -> None:
        self.view.detach()


class CompareWindow(QMainWindow):
    """Panes for ``models`` (two or more names from ``entries``) on ``volume``.

    ``results``: ScanResults already known per model name (not screened again).  ``start``: screen every pane
    and show heatmaps right away.
    """

    def __init__(self, volume: Volume, entries: Sequence[ModelEntry], models: Sequence[str], *,
                 explainer: str = "gradcam", backend: str = "auto", results: dict[str, Any] | None = None,
                 slice_index: int | None = None, window: WindowLevel | None = None, camera: Camera | None = None,
                 start: bool = True, parent: QWidget | None = None):
        super().__init__(parent)
        if len(models) < 2:
            raise ValueError("compare mode needs at least two models")
        self.setWindowFlag(Qt.WindowType.Window, True)
        self.setObjectName("compareWindow")
        self.setWindowTitle("Compare models — LungLens")
        self.resize(1400, 860)
        self.volume = volume
        self.entries = {e.key: e for e in entries}
        missing = [m for m in models if m not in self.entries]
        if missing:
            raise KeyError(f"no weights for {missing}; available: {', '.join(self.entries)}")
        self.backend = backend
        self.results = dict(results or {})
        self.job_status = JobStatus(self)
        self.statusBar().addPermanentWidget(self.job_status)
        self.runner = JobRunner(self._run_visible, self)
        self.runner.error.connect(self._on_quiet_error)
        self.error_dialog = None
        self._closed = False

        self.states: list[ViewerState] = []
        self.panes: list[ComparePane] = []
        self.sync = SyncGroup(linked=DEFAULT_SYNC)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.setChildrenCollapsible(False)

        # the reference state: the first pane (created first, so the sync group aligns the others to it)
        for name in models:
            self._add_pane(name, explainer, slice_index, window, camera)
        self.diff_state = ViewerState(volume)
        self.diff_sync = SyncGroup([self.states[0], self.diff_state], linked=("slice", "window", "camera"))
        self.diff_pane = DifferencePane(self.diff_state)
        self.splitter.addWidget(self.diff_pane)
        self.diff_state.events.position.connect(self._on_diff_position)
        for i in range(self.splitter.count()):        # equal panes
            self.splitter.setStretchFactor(i, 1)
        self.splitter.setSizes([1000] * self.splitter.count())

        # sync toggles, heatmap controls (one set per pane), strip, slider
        self.sync_boxes: dict[str, QCheckBox] = {}
        toggles = QHBoxLayout()
        toggles.addWidget(QLabel("Link:", self))
        for prop, label in SYNC_LABELS.items():
            box = QCheckBox(label, self)
            box.setObjectName(f"sync_{prop}")
            box.setChecked(self.sync.is_linked(prop))
            box.toggled.connect(lambda on, p=prop: self.sync.set_linked(p, on))
            toggles.addWidget(box)
            self.sync_boxes[prop] = box
        self.sync.events.linked.connect(self._on_linked)
        toggles.addStretch(1)
        self.difference_box = QCheckBox("Difference view", self)
        self.difference_box.setChecked(True)
        self.difference_box.toggled.connect(self.diff_pane.setVisible)
        toggles.addWidget(self.difference_box)
        add = QPushButton("Add model", self)
        add.clicked.connect(self._add_model_clicked)
        toggles.addWidget(add)
        self.research_label = QLabel(RESEARCH_LABEL, self)
        self.research_label.setStyleSheet("color: #ffcc66; font-weight: 600;")

        self.controls_for = QComboBox(self)
        self.controls_stack = QStackedWidget(self)
        self.controls_for.currentIndexChanged.connect(self.controls_stack.setCurrentIndex)
        for i, pane in enumerate(self.panes):
            self._add_controls(i, pane)
        controls_column = QVBoxLayout()
        controls_column.addWidget(QLabel("Heatmap of", self))
        controls_column.addWidget(self.controls_for)
        controls_column.addWidget(self.controls_stack)
        controls_column.addStretch(1)
        self.research_label.setWordWrap(True)
        controls_column.addWidget(self.research_label)
        controls_widget = QWidget(self)
        controls_widget.setLayout(controls_column)
        controls_widget.setFixedWidth(270)

        self.score_strip = ScoreStrip(self.states[0])
        self.slider = SliceSlider(self.states[0])
        for pane in self.panes:
            if pane.session is not None and pane.session.result is not None:
                self._on_screened(pane, pane.session.result)
        central = QWidget(self)
        grid = QVBoxLayout(central)
        grid.setContentsMargins(4, 4, 4, 4)
        grid.addLayout(toggles)
        middle = QHBoxLayout()
        middle.addWidget(self.splitter, 1)
        middle.addWidget(controls_widget)
        grid.addLayout(middle, 1)
        grid.addWidget(self.score_strip)
        grid.addWidget(self.slider)
        self.setCentralWidget(central)

        self.toggle_action = QAction("Toggle heatmaps", self)
        self.toggle_action.setShortcut(QKeySequence("H"))
        self.toggle_action.triggered.connect(self.toggle_heatmaps)
        self.addAction(self.toggle_action)
        for name, key in PRESET_SHORTCUTS.items():        # the main window's keys: 1-4 presets, R reset zoom/pan
            action = QAction(PRESET_LABELS[name], self)
            action.setShortcut(QKeySequence(key))
            action.triggered.connect(lambda _checked=False, n=name: self.apply_window_preset(n))
            self.addAction(action)
        reset = QAction("Reset zoom/pan", self)
        reset.setShortcut(QKeySequence("R"))
        reset.triggered.connect(lambda: [state.reset_camera() for state in self.states])
        self.addAction(reset)
        self._heatmaps_on = False
        self._update_difference_title()
        if start:
            self.start()

    # --- panes ------------------------------------------------------------------------------------------
    @property
    def sessions(self) -> list[ModelSession]:
        return [pane.session for pane in self.panes if pane.session is not None]

    def _add_pane(self, name: str, explainer: str, slice_index: int | None = None,
                  window: WindowLevel | None = None, camera: Camera | None = None) -> ComparePane:
        state = ViewerState(self.volume, window=window)
        if not self.states:
            if slice_index is not None:
                state.slice_index = slice_index
            if camera is not None:
                state.camera = camera
        colour = SERIES_COLOURS[len(self.panes) % len(SERIES_COLOURS)]
        pane = ComparePane(state, list(self.entries.values()), colour)
        pane.model_chosen.connect(self._on_model_chosen)
        pane.explainer_chosen.connect(self._on_explainer_chosen)
        self.states.append(state)
        self.sync.add(state)
        insert_at = len(self.panes)
        self.panes.append(pane)
        self.splitter.insertWidget(insert_at, pane)
        self._bind(pane, name, explainer)
        return pane

    def _bind(self, pane: ComparePane, name: str, explainer: str) -> ModelSession:
        old = pane.session
        if old is not None:
            old.close(remove_layer=True)
            if hasattr(self, "score_strip"):
                self.score_strip.remove_scores(f"{old.name}#{self.panes.index(pane)}")
        session = ModelSession(pane.state, self.entries[name], self.runner, explainer=explainer,
                               backend=self.backend, parent=self)
        known = self.results.get(name)
        if known is not None:
            session.result = known
        session.screened.connect(lambda result, p=pane: self._on_screened(p, result))
        session.screening.connect(lambda _running, p=pane: p.show_score())
        session.heatmap_changed.connect(self._refresh_difference)
        pane.bind(session)
        if known is not None and hasattr(self, "score_strip"):
            self._on_screened(pane, known)
        return session

    def _add_controls(self, index: int, pane: ComparePane) -> None:
        controls = HeatmapControls(pane.state)
        controls.show_requested.connect(lambda on: self.show_heatmaps(on))
        self.controls_stack.addWidget(controls)
        self.controls_for.addItem(f"{index + 1}: {pane.session.name if pane.session else ''}")

    def add_model(self, name: str, explainer: str | None = None) -> ComparePane:
        """Another pane (before the difference pane); it joins the sync group and starts like the others."""
        explainer = explainer or (self.panes[0].session.explainer if self.panes[0].session else "gradcam")
        pane = self._add_pane(name, explainer)
        self._add_controls(len(self.panes) - 1, pane)
        if pane.session.result is None:
            pane.session.screen()
        if self._heatmaps_on:
            pane.session.show_heatmaps(True)
        return pane

    def _add_model_clicked(self) -> None:
        used = {p.session.name for p in self.panes if p.session}
        unused = [n for n in self.entries if n not in used] or list(self.entries)
        self.add_model(unused[0])

    def _on_model_chosen(self, pane: ComparePane, name: str) -> None:
        if pane.session is not None and pane.session.name == name:
            return
        explainer = pane.session.explainer if pane.session else "gradcam"
        session = self._bind(pane, name, explainer)
        index = self.panes.index(pane)
        self.controls_for.setItemText(index, f"{index + 1}: {name}")
        if session.result is None:
            session.screen()
        if self._heatmaps_on:
            session.show_heatmaps(True)
        self._update_difference_title()
        self._refresh_difference()

    def _on_explainer_chosen(self, pane: ComparePane, method: str) -> None:
        if pane.session is not None:
            pane.session.explainer = method
        self._update_difference_title()

    # --- running ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Screen every pane's model that has no result yet and turn the heatmaps on."""
        for pane in self.panes:
            if pane.session.result is None:
                pane.session.screen()
        self.show_heatmaps(True)

    def show_heatmaps(self, on: bool = True) -> None:
        self._heatmaps_on = bool(on)
        for session in self.sessions:
            session.show_heatmaps(on)
        self.diff_pane.layer.visible = bool(on)
        self._refresh_difference()

    def apply_window_preset(self, name: str) -> None:
        """A window preset on every pane (linked or not: a key press means all of them)."""
        for state in [*self.states, self.diff_state]:
            if name in state.window_presets():
                state.apply_window_preset(name)

    def toggle_heatmaps(self) -> None:
        self.show_heatmaps(not self._heatmaps_on)

    @property
    def busy(self) -> bool:
        return bool(self.runner.running)

    def _on_screened(self, pane: ComparePane, result) -> None:
        if self._closed:
            return
        key = pane.session.name
        self.results[key] = result
        pane.show_score()
        index = self.panes.index(pane)
        if result.slice_scores is not None:
            colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
            self.score_strip.set_scores(f"{key}#{index}", result.slice_scores,
                                        eligible=result.lung_slices, top=result.top_slices[:5],
                                        label=f"{index + 1}: {key}", colour=colour)

    # --- difference -------------------------------------------------------------------------------------
    def _update_difference_title(self) -> None:
        if len(self.panes) < 2 or not hasattr(self, "diff_pane"):
            return
        a, b = self.panes[0].session, self.panes[1].session
        self.diff_pane.title.setText("Difference 1 − 2\n(red: 1 stronger, blue: 2 stronger)")
        self.diff_pane.title.setToolTip(f"{a.name} {EXPLAINER_LABELS[a.explainer]} minus {b.name} "
                                        f"{EXPLAINER_LABELS[b.explainer]}, both scaled to 0..1; differences "
                                        f"below ±{DIFFERENCE_THRESHOLD} are not drawn")

    def _on_diff_position(self, _event: Event) -> None:
        self._refresh_difference()

    def _refresh_difference(self) -> None:
        if self._closed or not hasattr(self, "diff_pane"):
            return
        a, b = self.panes[0].session, self.panes[1].session
        if a is None or b is None or a.layer is None or b.layer is None:
            return
        z = self.diff_state.slice_index
        diff = a.layer.slice(z) - b.layer.slice(z)          # NaN (transparent) where either is missing
        self.diff_pane.layer.set_slice(z, diff.astype(np.float32))

    def difference_slice(self) -> np.ndarray:
        return self.diff_pane.layer.slice(self.diff_state.slice_index)

    # --- jobs -------------------------------------------------------------------------------------------
    def _run_visible(self, worker: Worker, message: str, *, error_title: str = "Model job failed") -> Worker:
        self.job_status.track(worker, message)
        worker.error.connect(lambda exc, text, t=error_title: self._show_error(t, exc, text))
        return worker.start()

    def _on_quiet_error(self, title: str, exc: BaseException) -> None:
        self._show_error(title, exc, "")

    def _show_error(self, title: str, exc: BaseException, text: str) -> None:
        if not self._closed:
            self.error_dialog = show_error(self, title, exc, text)

    def _on_linked(self, _event: Event) -> None:
        for prop, box in self.sync_boxes.items():
            box.blockSignals(True)
            box.setChecked(self.sync.is_linked(prop))
            box.blockSignals(False)

    # --- closing ----------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel and wait for this window's jobs, stop observing the states (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for session in self.sessions:
            session.close()
        self.runner.shutdown()
        self.sync.clear()
        self.diff_sync.clear()
        self.diff_state.events.disconnect(self._on_diff_position)
        for pane in self.panes:
            pane.detach()
        self.diff_pane.detach()
        self.score_strip.detach()
        self.slider.detach()
        for i in range(self.controls_stack.count()):
            self.controls_stack.widget(i).detach()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.hide()
        self.shutdown()
        super().closeEvent(event)

