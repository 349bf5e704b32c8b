"""``MprLayout``: the main window's view area as 1×1, 1×3 or 2×2 panes of axial, coronal and sagittal views.

Created by ``MainWindow`` (one line).  It takes the window's axial ``slice_view`` into a grid and adds, while a
multi-pane layout is shown, a coronal and a sagittal :class:`~viewer.qt.slice_view.SliceView` of the same
``ViewerState`` -- so the three share the volume, crosshair position, window/level and every layer (heatmaps
included), each with its own zoom/pan -- plus a :class:`~viewer.qt.mpr_view.Crosshair` on each and, in 2×2,
the crosshair readout as the fourth pane.

* View ▸ Layout: 1×1 (Ctrl+1), 1×3 (Ctrl+3), 2×2 (Ctrl+4); View ▸ Show crosshair (C).
* Double click a pane: maximise it (1×1 of that plane); double click again: back to the previous layout.
* R (reset zoom/pan) resets every pane.

The coronal/sagittal views exist only while shown (a hidden view would redraw on every window/level drag).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QGridLayout, QMenu, QWidget

from viewer.model.mpr import AXIAL, LAYOUT_LABELS, LAYOUTS, PLANE_TITLES, layout_cells, parse_layout
from viewer.qt.mpr_view import Crosshair, CrosshairPanel, PlanePane
from viewer.qt.slice_view import SliceView

if TYPE_CHECKING:  # pragma: no cover
    from viewer.qt.main_window import MainWindow

LAYOUT_SHORTCUTS = {"1x1": "Ctrl+1", "1x3": "Ctrl+3", "2x2": "Ctrl+4"}


class MprLayout(QObject):
    """Signals: ``layout_changed(layout, main_axis)``."""

    layout_changed = Signal(str, int)

    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.window = window
        self.state = window.state
        self.layout_name = "1x1"
        self.main_axis = AXIAL
        self._restore: tuple[str, int] | None = None     # layout to go back to after a maximised pane
        self._crosshair_on = True
        self._closed = False

        axial = window.slice_view
        self.views: dict[int, SliceView] = {AXIAL: axial}
        self.crosshairs: dict[int, Crosshair] = {}
        self.panes: dict[int, PlanePane] = {}
        self.panel: CrosshairPanel | None = None

        # the grid takes the axial view's place in the window's central layout
        self.container = QWidget()
        self.container.setObjectName("mprGrid")
        self.grid = QGridLayout(self.container)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        central = axial.parentWidget().layout() if axial.parentWidget() is not None else None
        if central is None or central.replaceWidget(axial, self.container) is None:
            raise RuntimeError("MprLayout needs the window's slice view inside the central widget's layout")
        self.panes[AXIAL] = PlanePane(axial, self.container)
        self._attach_crosshair(AXIAL)

        self._build_actions()
        window.reset_view_action.triggered.connect(self.reset_cameras)
        self.set_layout("1x1")

    # --- public -------------------------------------------------------------------------------------------
    def set_layout(self, layout: str, main_axis: int | None = None) -> None:
        """Show ``layout`` ("1x1", "1x3", "2x2"); for 1x1 ``main_axis`` picks the plane (default: axial)."""
        layout = parse_layout(layout)
        main_axis = AXIAL if main_axis is None else int(main_axis)
        cells = layout_cells(layout, main_axis)
        self._restore = None                # a maximised pane forgets where it came from on any choice
        wanted = {c.axis for c in cells if c.axis is not None}
        for axis in (1, 2):
            if axis in wanted:
                self._ensure_view(axis)
        # empty the grid, then place the wanted panes
        while self.grid.count():
            self.grid.takeAt(0)
        for axis, pane in self.panes.items():
            if axis not in wanted:
                pane.hide()
        if self.panel is not None and not any(c.axis is None for c in cells):
            self.panel.hide()
        rows = max(c.row for c in cells) + 1
        cols = max(c.col for c in cells) + 1
        for i in range(3):
            self.grid.setRowStretch(i, 1 if i < rows else 0)
            self.grid.setColumnStretch(i, 1 if i < cols else 0)
        multi = len(cells) > 1
        for cell in cells:
            if cell.axis is None:
                if self.panel is None:
                    self.panel = CrosshairPanel(self.state, self.container)
                widget = self.panel
            else:
                widget = self.panes[cell.axis]
                widget.set_framed(multi)
                widget.view.set_compact(multi)
            self.grid.addWidget(widget, cell.row, cell.col)
            widget.show()
        for axis in (1, 2):             # views not shown are dropped (they would redraw for nothing)
            if axis not in wanted:
                self._drop_view(axis)
        if self.panel is not None and not any(c.axis is None for c in cells):
            self.panel.detach()
            self.panel.deleteLater()
            self.panel = None
        self.layout_name, self.main_axis = layout, main_axis
        self._update_crosshairs()
        for name, action in self.layout_actions.items():
            action.setChecked(name == layout)
        self.layout_changed.emit(layout, main_axis)

    def toggle_maximised(self, axis: int) -> None:
        """Double click on a pane: show that plane alone, or go back to the layout it was maximised from."""
        if self.layout_name == "1x1" and self._restore is not None:
            layout, _ = self._restore
            self._restore = None
            self.set_layout(layout)
        elif self.layout_name != "1x1":
            previous = (self.layout_name, self.main_axis)
            self.set_layout("1x1", axis)
            self._restore = previous

    def set_crosshair_visible(self, on: bool) -> None:
        self._crosshair_on = bool(on)
        self.crosshair_action.setChecked(self._crosshair_on)
        self._update_crosshairs()

    @property
    def visible_views(self) -> list[SliceView]:
        return [self.views[c.axis] for c in layout_cells(self.layout_name, self.main_axis) if c.axis is not None]

    def view(self, axis: int) -> SliceView | None:
        return self.views.get(axis)

    def reset_cameras(self) -> None:
        for view in self.views.values():
            view.reset_camera()

    def shutdown(self) -> None:
        """Stop observing the state (the window is closing); the axial view is detached by the window."""
        if self._closed:
            return
        self._closed = True
        for axis in (1, 2):
            self._drop_view(axis)
        crosshair = self.crosshairs.pop(AXIAL, None)
        if crosshair is not None:
            crosshair.detach()
        if self.panel is not None:
            self.panel.detach()

    # --- internals ----------------------------------------------------------------------------------------
    def _attach_crosshair(self, axis: int) -> None:
        crosshair = Crosshair(self.views[axis], self)
        crosshair.double_clicked.connect(self.toggle_maximised)
        self.crosshairs[axis] = crosshair

    def _ensure_view(self, axis: int) -> None:
        if axis in self.views:
            return
        view = SliceView(self.state, axis=axis)
        view.setObjectName(f"{PLANE_TITLES[axis].lower()}View")
        for widget in (view.graphics, view.graphics.viewport()):
            widget.setAcceptDrops(False)     # drops go to the window
        self.views[axis] = view
        self.panes[axis] = PlanePane(view, self.container)
        self._attach_crosshair(axis)

    def _drop_view(self, axis: int) -> None:
        view = self.views.pop(axis, None)
        if view is None:
            return
        self.crosshairs.pop(axis).detach()
        view.detach()
        pane = self.panes.pop(axis)
        pane.hide()
        pane.setParent(None)
        pane.deleteLater()

    def _update_crosshairs(self) -> None:
        on = self._crosshair_on and self.layout_name != "1x1"
        for crosshair in self.crosshairs.values():
            crosshair.set_enabled(on)

    def _build_actions(self) -> None:
        window = self.window
        view_menu = _menu(window, "View")
        self.layout_menu = QMenu("&Layout", window)
        group = QActionGroup(self)
        self.layout_actions: dict[str, QAction] = {}
        for name in LAYOUTS:
            action = QAction(LAYOUT_LABELS[name], window)
            action.setCheckable(True)
            action.setShortcut(QKeySequence(LAYOUT_SHORTCUTS[name]))
            action.triggered.connect(lambda _checked=False, n=name: self.set_layout(n))
            group.addAction(action)
            window.addAction(action)
            self.layout_menu.addAction(action)
            self.layout_actions[name] = action
        self.crosshair_action = QAction("Show &crosshair", window)
        self.crosshair_action.setCheckable(True)
        self.crosshair_action.setChecked(True)
        self.crosshair_action.setShortcut(QKeySequence("C"))
        self.crosshair_action.setToolTip("Show the linked crosshair in the 1×3 / 2×2 layouts (C)")
        self.crosshair_action.toggled.connect(self.set_crosshair_visible)
        window.addAction(self.crosshair_action)
        self.layout_menu.addSeparator()
        self.layout_menu.addAction(self.crosshair_action)
        if view_menu is not None:
            view_menu.addSeparator()
            view_menu.addMenu(self.layout_menu)
        else:
            window.menuBar().addMenu(self.layout_menu)


def _menu(window, title: str) -> QMenu | None:
    for action in window.menuBar().actions():
        if action.text().replace("&", "") == title and action.menu() is not None:
            return action.menu()
    return None
