"""MPR pieces that sit on a :class:`~viewer.qt.slice_view.SliceView`: the linked crosshair, plane panes, and the
crosshair readout of the free fourth pane.

A ``SliceView(state, axis=1 | 2)`` already draws coronal/sagittal slices of every layer with the right mm aspect
and orientation labels (its :class:`SliceGeometry`); :class:`Crosshair` adds the two other planes as coloured lines
through ``state.position``:

* left click in a view moves the crosshair there (the two other views jump to the clicked voxel);
* dragging a line moves that plane (its view scrolls along);
* double click asks the layout to maximise / restore the pane (``double_clicked`` signal).

Lines use the plane colours of :data:`viewer.model.mpr.PLANE_COLORS` (axial red, coronal green, sagittal
yellow), the same colours as the pane frames, so a line says which view it drives.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, Qt, Signal
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from viewer.model.events import Event
from viewer.model.layers import HeatmapLayer
from viewer.model.mpr import PLANE_COLORS, PLANE_TITLES, crosshair_lines, crosshair_readout, position_at, \
    position_on_line
from viewer.model.viewer_state import ViewerState
from viewer.qt.slice_view import SliceView

LINE_Z = 1_000_000          # above every layer item
LINE_ALPHA = 190
CLICK_SLOP_PX = 3           # a press and release this close together is a click, not a drag


class Crosshair(QObject):
    """The linked crosshair of one view.  ``enabled`` False hides the lines and ignores clicks."""

    double_clicked = Signal(int)     # the view's axis

    def __init__(self, view: SliceView, parent: QObject | None = None):
        super().__init__(parent or view)
        self.view = view
        self.state: ViewerState = view.state
        self._enabled = True
        self.lines: dict[int, pg.InfiniteLine] = {}   # plane axis -> its line in this view
        self._vertical: dict[int, bool] = {}
        self._pressed_at: QPoint | None = None
        # clicks are read on the viewport, before pyqtgraph: a press on a crosshair line (right after the first
        # click of a double click put it under the mouse) is grabbed by the line and never becomes a scene click
        view.graphics.viewport().installEventFilter(self)
        self.state.events.volume.connect(self._on_volume)
        self.state.events.position.connect(self._on_position)
        self._on_volume(None)

    # --- public -------------------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self._enabled

    def set_enabled(self, on: bool) -> None:
        self._enabled = bool(on)
        self._update_lines()

    def line_values(self) -> dict[int, tuple[bool, float]]:
        """Plane axis -> (vertical?, scene coordinate) of the lines as drawn now (for tests)."""
        return {axis: (self._vertical[axis], float(line.value())) for axis, line in self.lines.items()}

    def detach(self) -> None:
        self.state.events.disconnect(self._on_volume)
        self.state.events.disconnect(self._on_position)
        try:
            self.view.graphics.viewport().removeEventFilter(self)
        except RuntimeError:
            pass
        self._remove_lines()

    # --- state -> lines -----------------------------------------------------------------------------------
    def _remove_lines(self) -> None:
        for line in self.lines.values():
            self.view.viewbox.removeItem(line)
        self.lines.clear()
        self._vertical.clear()

    def _on_volume(self, _event: Event | None) -> None:
        self._remove_lines()
        geometry = self.view.geometry_of_slices
        if geometry is None:
            return
        for spec in crosshair_lines(geometry, self.state.position):
            color = pg.mkColor(PLANE_COLORS[spec.axis])
            color.setAlpha(LINE_ALPHA)
            hover = pg.mkColor(PLANE_COLORS[spec.axis])
            line = pg.InfiniteLine(pos=spec.value, angle=90 if spec.vertical else 0, movable=True,
                                   pen=pg.mkPen(color, width=1), hoverPen=pg.mkPen(hover, width=3))
            line.setZValue(LINE_Z)
            line.setToolTip(f"{PLANE_TITLES[spec.axis]} plane: drag to move it")
            line.sigDragged.connect(lambda item, axis=spec.axis: self._on_line_dragged(axis, item))
            self.view.viewbox.addItem(line, ignoreBounds=True)
            self.lines[spec.axis] = line
            self._vertical[spec.axis] = spec.vertical
        self._update_lines()

    def _on_position(self, _event: Event) -> None:
        self._update_lines()

    def _update_lines(self) -> None:
        geometry = self.view.geometry_of_slices
        if geometry is None or not self.lines:
            return
        for spec in crosshair_lines(geometry, self.state.position):
            line = self.lines[spec.axis]
            line.setVisible(self._enabled)
            if abs(float(line.value()) - spec.value) > 1e-9 and not line.moving:
                line.setValue(spec.value)

    # --- mouse -> state -----------------------------------------------------------------------------------
    def _on_line_dragged(self, axis: int, line: pg.InfiniteLine) -> None:
        geometry = self.view.geometry_of_slices
        volume = self.state.volume
        if geometry is None or volume is None:
            return
        self.state.position = position_on_line(geometry, self.state.position, axis, float(line.value()),
                                               volume.shape)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt naming)
        kind = event.type()
        if kind not in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease,
                        QEvent.Type.MouseButtonDblClick) or event.button() != Qt.MouseButton.LeftButton:
            return False
        pos = event.position().toPoint()
        if kind == QEvent.Type.MouseButtonDblClick:
            self._pressed_at = None
            if self.view.geometry_of_slices is not None:
                self.double_clicked.emit(self.view.axis)
        elif kind == QEvent.Type.MouseButtonPress:
            plain = not event.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
                                             | Qt.KeyboardModifier.ShiftModifier)
            self._pressed_at = pos if plain else None
        else:   # release: a click (not the end of a pan or a line drag) moves the crosshair there
            pressed, self._pressed_at = self._pressed_at, None
            if pressed is not None and (pos - pressed).manhattanLength() <= CLICK_SLOP_PX and self._enabled:
                self.move_to_scene(self.view.viewbox.mapSceneToView(self.view.graphics.mapToScene(pos)))
        return False     # pyqtgraph still sees every event (pan, line drags)

    def move_to_scene(self, point: QPointF) -> bool:
        """Put the crosshair on the voxel under scene point ``point`` (view/mm coordinates) of this view."""
        geometry = self.view.geometry_of_slices
        if geometry is None:
            return False
        new = position_at(geometry, self.state.position, point.x(), point.y())
        if new is None:
            return False
        self.state.position = new
        return True


class PlanePane(QFrame):
    """A view in a thin frame of its plane's colour (multi-pane layouts), so lines and panes match."""

    def __init__(self, view: SliceView, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = view
        self.setObjectName(f"planePane{view.axis}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(0)
        layout.addWidget(view)
        self.set_framed(True)

    def set_framed(self, on: bool) -> None:
        color = PLANE_COLORS[self.view.axis] if on else "transparent"
        self.setStyleSheet(f"QFrame#{self.objectName()} {{ border: 2px solid {color}; background: black; }}")
        self.layout().setContentsMargins(*(2, 2, 2, 2) if on else (0, 0, 0, 0))


class CrosshairPanel(QLabel):
    """The free fourth pane of the 2×2 layout: what lies under the crosshair (value, LPS, heatmaps there)."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.setObjectName("crosshairPanel")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.setMinimumSize(200, 120)
        self.setStyleSheet("QLabel#crosshairPanel { background: #101010; color: #dcdcdc; font-size: 13px; "
                           "border: 2px solid #303030; padding: 8px; }")
        self._layers: list[HeatmapLayer] = []
        for name in ("volume", "position", "layers", "heatmap"):
            getattr(state.events, name).connect(self._on_state)
        self._on_state(None)

    def detach(self) -> None:
        self.state.events.disconnect(self._on_state)
        for layer in self._layers:
            layer.events.disconnect(self._on_layer)
        self._layers = []

    def _on_state(self, event: Event | None) -> None:
        if event is None or event.type in ("volume", "layers"):
            for layer in self._layers:
                layer.events.disconnect(self._on_layer)
            self._layers = list(self.state.heatmap_layers)
            for layer in self._layers:
                layer.events.data.connect(self._on_layer)
                layer.events.name.connect(self._on_layer)
        self.refresh()

    def _on_layer(self, _event: Event) -> None:
        self.refresh()

    def refresh(self) -> None:
        readout = crosshair_readout(self.state)
        if readout is None:
            self.setText("")
            return
        swatches = " ".join(f"<span style='color:{PLANE_COLORS[a]}'>■ {PLANE_TITLES[a]}</span>" for a in (0, 1, 2))
        body = "<br>".join(_escape(line) for line in readout.lines())
        self.setText(f"<div>{swatches}</div><div style='margin-top:6px'>{body}</div>"
                     "<div style='color:#8a8a8a; margin-top:6px'>Click a view to move the crosshair · drag a line "
                     "to move its plane · double-click a view to maximise it</div>")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
