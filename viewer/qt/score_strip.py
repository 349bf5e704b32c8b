"""``ScoreStrip``: per-slice model scores along the scan, drawn right above the slice slider; click to jump.

x = axial slice index (0 at the left, like the slider), y = the model's P(positive class) for that slice.  The
slices that entered the scan score (lung-bearing ones) are drawn solid, the others faint; the most suspicious
slices are marked; a vertical line follows the slice on screen.  Several models can be drawn (compare mode),
each in its own colour.  3-D models have no per-slice scores: they do not appear here.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QSizePolicy

from viewer.model.events import Event
from viewer.model.viewer_state import ViewerState

SERIES_COLOURS = ("#ffb000", "#4fc3f7", "#e57373", "#81c784")   # one per model (amber, sky, red, green)
STRIP_HEIGHT = 96


class ScoreStrip(pg.PlotWidget):
    """Emits ``slice_clicked(int)`` and moves ``state`` to the clicked slice."""

    slice_clicked = Signal(int)

    def __init__(self, state: ViewerState, parent=None):
        super().__init__(parent, background="#161616", viewBox=pg.ViewBox(enableMenu=False))
        self.state = state
        self.setObjectName("scoreStrip")
        self.setFixedHeight(STRIP_HEIGHT)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Per-slice score of the model (P of the positive class); click to go to a slice")
        plot = self.getPlotItem()
        plot.setMenuEnabled(False)
        plot.hideButtons()
        plot.setMouseEnabled(x=False, y=False)
        plot.showGrid(x=False, y=True, alpha=0.15)
        plot.setContentsMargins(0, 0, 0, 0)
        left = plot.getAxis("left")
        left.setTicks([[(0.0, "0"), (0.5, "0.5"), (1.0, "1")]])
        left.setWidth(28)
        plot.getAxis("bottom").setHeight(18)
        plot.setYRange(-0.02, 1.02, padding=0)
        self.half_line = pg.InfiniteLine(0.5, angle=0, pen=pg.mkPen("#666666", style=Qt.PenStyle.DashLine))
        plot.addItem(self.half_line)
        self.cursor_line = pg.InfiniteLine(0, angle=90, pen=pg.mkPen("#ffffff", width=1))
        plot.addItem(self.cursor_line)
        self.legend = plot.addLegend(offset=(-4, 2), labelTextSize="8pt", colCount=4)
        self._series: dict[str, dict] = {}
        self.scene().sigMouseClicked.connect(self._on_click)
        state.events.volume.connect(self._on_volume)
        state.events.position.connect(self._on_position)
        self._on_volume(None)

    # --- data -------------------------------------------------------------------------------------------
    @property
    def series(self) -> list[str]:
        return list(self._series)

    def set_scores(self, key: str, scores: np.ndarray, *, eligible: np.ndarray | None = None,
                   top: list[int] | None = None, label: str | None = None, colour: str | None = None) -> None:
        """Draw (or replace) the per-slice scores of one model."""
        self.remove_scores(key)
        scores = np.asarray(scores, dtype=float)
        x = np.arange(scores.size, dtype=float)
        colour = colour or SERIES_COLOURS[len(self._series) % len(SERIES_COLOURS)]
        plot = self.getPlotItem()
        faint = pg.PlotDataItem(x, scores, pen=pg.mkPen(pg.mkColor(colour).darker(250), width=1))
        plot.addItem(faint)
        used = scores.copy()
        if eligible is not None and np.asarray(eligible).shape == scores.shape:
            used[~np.asarray(eligible, dtype=bool)] = np.nan   # slices outside the aggregation: faint only
        curve = pg.PlotDataItem(x, used, pen=pg.mkPen(colour, width=2), name=label or key, connect="finite")
        plot.addItem(curve)       # named: the legend lists it
        top = [int(t) for t in (top or []) if 0 <= int(t) < scores.size]
        marks = pg.ScatterPlotItem(np.asarray(top, dtype=float), scores[top] if top else np.zeros(0), size=7,
                                   symbol="t", pen=pg.mkPen("#000000"), brush=pg.mkBrush(colour))
        plot.addItem(marks)
        self._series[key] = {"items": (faint, curve, marks), "scores": scores, "top": top, "label": label}
        self._on_volume(None)

    def remove_scores(self, key: str) -> None:
        entry = self._series.pop(key, None)
        if entry is None:
            return
        plot = self.getPlotItem()
        for item in entry["items"]:
            plot.removeItem(item)
        try:
            self.legend.removeItem(entry["items"][1])
        except Exception:  # noqa: BLE001 - not in the legend
            pass

    def clear_scores(self) -> None:
        for key in list(self._series):
            self.remove_scores(key)

    def scores(self, key: str) -> np.ndarray:
        return self._series[key]["scores"]

    # --- interaction ------------------------------------------------------------------------------------
    def slice_at(self, x_view: float) -> int | None:
        n = self.state.n_slices
        if n == 0:
            return None
        return int(min(n - 1, max(0, round(x_view))))

    def _on_click(self, event) -> None:
        if self.state.volume is None or event.button() != Qt.MouseButton.LeftButton:
            return
        point = self.getPlotItem().vb.mapSceneToView(event.scenePos())
        index = self.slice_at(point.x())
        if index is not None:
            self.state.slice_index = index
            self.slice_clicked.emit(index)
            event.accept()

    def _on_volume(self, _event: Event | None) -> None:
        n = max(1, self.state.n_slices)
        self.getPlotItem().setXRange(-0.5, n - 0.5, padding=0)
        self._on_position(None)

    def _on_position(self, _event: Event | None) -> None:
        self.cursor_line.setValue(self.state.slice_index)

    def detach(self) -> None:
        """Stop observing the state; delete the plot's (unused) options menu, a parentless top-level QMenu."""
        plot = self.getPlotItem()
        if plot is not None and plot.ctrlMenu is not None:
            plot.ctrlMenu.deleteLater()
        self.state.events.disconnect(self._on_volume)
        self.state.events.disconnect(self._on_position)
        try:
            self.scene().sigMouseClicked.disconnect(self._on_click)
        except (RuntimeError, TypeError):
            pass
