"""``SliceView``: the axial view of a :class:`ViewerState` -- layers, orientation labels and corner texts.

Everything shown is read from the state and every interaction writes to the state; the view keeps no copy of
slice, window or zoom, so linked panes (sync groups) and the slider stay consistent for free.

Mouse: wheel = next/previous slice, Ctrl+wheel = zoom about the cursor, left-drag = pan, right-drag =
window/level (horizontal: width, vertical: level), middle-drag = zoom.  Keys (when the view has focus):
Up/Down/PageUp/PageDown = +-1 slice, Shift = +-10, Home/End = first/last slice.

Slices are drawn with pyqtgraph ``ImageItem`` (row-major: ``image[row, col]``) whose transform, from
:class:`SliceGeometry`, scales pixels to mm and applies the radiological flips, so scene units are mm and the
patient's right is on the screen's left.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt
from PySide6.QtGui import QKeyEvent, QTransform
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from viewer.model.camera import Camera
from viewer.model.events import Event
from viewer.model.layers import HeatmapLayer, ImageLayer, Layer
from viewer.model.slice_geometry import SliceGeometry, has_patient_geometry
from viewer.model.viewer_state import ViewerState
from viewer.model.window_level import PRESET_LABELS, apply_window, grey_to_rgbx
from viewer.qt.colormaps import heatmap_lut

WHEEL_STEP = 120          # one notch of a mouse wheel in Qt angle units
DRAG_ZOOM_RATE = 0.01     # zoom factor per pixel of middle-drag: exp(-dy * rate)
KEY_STEPS = {Qt.Key.Key_Up: 1, Qt.Key.Key_PageUp: 1, Qt.Key.Key_Down: -1, Qt.Key.Key_PageDown: -1}

# semi-transparent dark backing keeps overlay text legible over bright bone or a zoomed-in soft tissue
_OVERLAY_STYLE = "color: #e8e8e8; background: rgba(0, 0, 0, 120); font-size: 12px; padding: 1px 3px;"
_ORIENTATION_STYLE = ("color: #ffd24a; background: rgba(0, 0, 0, 120); font-size: 15px; font-weight: bold; "
                      "padding: 1px 4px;")
_EMPTY_TEXT = ("Open a CT series: File ▸ Open File / Open Folder,\n"
               "drop a file or folder here, or run  lunglens PATH")


class SliceViewBox(pg.ViewBox):
    """A ViewBox whose mouse gestures drive the :class:`ViewerState` (radiology conventions, no context menu)."""

    def __init__(self, view: SliceView):
        super().__init__(lockAspect=True, invertY=True, enableMenu=False, defaultPadding=0.0)
        self._view = view
        self._wheel_rest = 0
        self.enableAutoRange(enable=False)

    def wheelEvent(self, ev, axis=None):  # noqa: N802 (Qt naming)
        state = self._view.state
        if state.volume is None:
            ev.ignore()
            return
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            anchor = self.mapToView(ev.pos())
            self._view.zoom_by(1.0015 ** ev.delta(), (anchor.x(), anchor.y()))
        else:
            self._wheel_rest += ev.delta()
            steps = int(self._wheel_rest / WHEEL_STEP)
            self._wheel_rest -= steps * WHEEL_STEP
            if steps:
                self._view.step(steps)   # along this view's axis (the state's axial scroll for axis 0)
        ev.accept()

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802
        state = self._view.state
        ev.accept()
        if state.volume is None:
            return
        button = ev.button()
        if button == Qt.MouseButton.LeftButton and ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            button = Qt.MouseButton.MiddleButton
        if button == Qt.MouseButton.LeftButton:
            before, after = self.mapToView(ev.lastPos()), self.mapToView(ev.pos())
            self._view.pan_by(before.x() - after.x(), before.y() - after.y())
        elif button == Qt.MouseButton.RightButton:
            dx = ev.pos().x() - ev.lastPos().x()
            dy = ev.pos().y() - ev.lastPos().y()
            self._view.adjust_window(dx, dy)
        elif button == Qt.MouseButton.MiddleButton:
            dy = ev.pos().y() - ev.lastPos().y()
            anchor = self.mapToView(ev.buttonDownPos())
            self._view.zoom_by(float(np.exp(-dy * DRAG_ZOOM_RATE)), (anchor.x(), anchor.y()))

    def mouseClickEvent(self, ev):  # noqa: N802 - no context menu: right button is window/level
        ev.accept()


class SliceView(QWidget):
    """Shows slices of ``state`` along numpy ``axis`` (0 = axial) with all of its layers."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None, axis: int = 0):
        super().__init__(parent)
        self.state = state
        self.axis = axis
        self._geometry: SliceGeometry | None = None
        self._items: dict[int, tuple[Layer, pg.ImageItem]] = {}   # id(layer) -> (layer, item)
        self._own_camera = Camera()       # zoom/pan of a coronal/sagittal view (axial: the state's camera)
        self._shown_index: int | None = None   # slice drawn now: a crosshair move elsewhere redraws nothing
        self._mouse_inside = False        # only the view under the mouse updates the cursor readout
        self.compact = False              # narrow MPR panes: shorter corner texts (set_compact)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(200, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

        self.graphics = pg.GraphicsView(self, background="k")
        self.graphics.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.graphics.viewport().setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.viewbox = SliceViewBox(self)
        self.graphics.setCentralItem(self.viewbox)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)

        self.orientation_labels = {side: self._overlay_label(_ORIENTATION_STYLE) for side in
                                   ("left", "right", "top", "bottom")}
        self.corner_labels = {corner: self._overlay_label(_OVERLAY_STYLE) for corner in
                              ("top_left", "top_right", "bottom_left", "bottom_right")}
        self.empty_label = self._overlay_label("color: #9a9a9a; background: transparent; font-size: 14px;")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setText(_EMPTY_TEXT)

        events = state.events
        events.volume.connect(self._on_volume)
        events.position.connect(self._on_position)
        events.window.connect(self._on_window)
        events.camera.connect(self._on_camera)
        events.layers.connect(self._on_layers)
        events.cursor.connect(self._on_cursor)
        self._on_volume(None)

    # --- public -------------------------------------------------------------------------------------------
    @property
    def geometry_of_slices(self) -> SliceGeometry | None:
        return self._geometry

    @property
    def slice_index(self) -> int:
        return self.state.position[self.axis]

    def set_slice_index(self, index: int) -> None:
        position = list(self.state.position)
        position[self.axis] = int(index)
        self.state.position = tuple(position)  # type: ignore[assignment]

    def step(self, steps: int) -> None:
        self.set_slice_index(self.slice_index + steps)

    # --- camera: the state's (shared, synced) for the axial view; its own for coronal/sagittal (MPR) -------
    @property
    def camera(self) -> Camera:
        return self.state.camera if self.axis == 0 else self._own_camera

    @camera.setter
    def camera(self, value: Camera) -> None:
        if self.axis == 0:
            self.state.camera = value
        elif value != self._own_camera:
            self._own_camera = value
            self._apply_camera()
            self._update_texts()

    def zoom_by(self, factor: float, anchor: tuple[float, float] | None = None) -> None:
        center = self._geometry.scene_center if self._geometry is not None else (0.0, 0.0)
        self.camera = self.camera.zoomed(factor, anchor, center)

    def pan_by(self, dx_mm: float, dy_mm: float) -> None:
        center = self._geometry.scene_center if self._geometry is not None else (0.0, 0.0)
        self.camera = self.camera.panned(dx_mm, dy_mm, center)

    def reset_camera(self) -> None:
        self.camera = Camera()

    def set_compact(self, on: bool) -> None:
        """Short corner texts (plane name, slice, W/L) for the narrow panes of an MPR layout."""
        self.compact = bool(on)
        self._update_texts()

    def adjust_window(self, dx_pixels: float, dy_pixels: float) -> None:
        """Right-drag window/level: right = wider, up = brighter (lower level), proportional to the width."""
        window = self.state.window
        rate = max(window.width, 50.0) / 400.0
        self.state.window = window.adjusted(d_width=dx_pixels * rate, d_level=dy_pixels * rate / 2)

    def image_item(self, layer: Layer) -> pg.ImageItem | None:
        entry = self._items.get(id(layer))
        return entry[1] if entry else None

    def viewport_point_of_pixel(self, row: float, col: float) -> QPoint:
        """Where the centre of slice pixel (row, col) is drawn, in the graphics viewport's coordinates."""
        if self._geometry is None:
            raise ValueError("no volume open")
        x, y = self._geometry.to_scene(row + 0.5, col + 0.5)
        return self.graphics.mapFromScene(self.viewbox.mapViewToScene(QPointF(x, y)))

    def detach(self) -> None:
        """Stop observing the state (call before the widget is deleted)."""
        for callback in (self._on_volume, self._on_position, self._on_window, self._on_camera, self._on_layers, self._on_cursor):
            self.state.events.disconnect(callback)
        for layer, _item in list(self._items.values()):
            layer.events.disconnect(self._on_layer_changed)
        try:
            self.graphics.scene().sigMouseMoved.disconnect(self._on_mouse_moved)
        except (RuntimeError, TypeError):
            pass

    # --- Qt events ----------------------------------------------------------------------------------------
    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        key = event.key()
        big = 10 if event.modifiers() & Qt.KeyboardModifier.ShiftModifier else 1
        if self.state.volume is None:
            super().keyPressEvent(event)
        elif key in KEY_STEPS:
            self.step(KEY_STEPS[key] * big)
        elif key == Qt.Key.Key_Home:
            self.set_slice_index(0)
        elif key == Qt.Key.Key_End:
            self.set_slice_index(self.state.volume.shape[self.axis] - 1)
        else:
            super().keyPressEvent(event)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._place_overlays()
        self._apply_camera()

    def leaveEvent(self, event) -> None:  # noqa: N802
        super().leaveEvent(event)
        self._mouse_inside = False
        self.state.set_cursor(None)

    # --- state -> view ------------------------------------------------------------------------------------
    def _on_volume(self, _event: Event | None) -> None:
        self._geometry = self.state.slice_geometry(self.axis)
        self._own_camera = Camera()
        self._rebuild_items()
        has_volume = self._geometry is not None
        self.empty_label.setVisible(not has_volume)
        known = has_volume and has_patient_geometry(self.state.volume)
        for label in self.corner_labels.values():
            label.setVisible(has_volume)
        for label in self.orientation_labels.values():
            label.setVisible(known)     # no R/L, A/P guesses for PNG/JPEG slices
        self.corner_labels["top_right"].setVisible(has_volume and self.state.cursor is not None)
        if has_volume:
            labels = self._geometry.labels
            for side in ("left", "right", "top", "bottom"):
                self.orientation_labels[side].setText(getattr(labels, side))
        self._render_all()
        self._update_texts()
        self._place_overlays()
        self._apply_camera()

    def _on_position(self, _event: Event) -> None:
        if self.slice_index != self._shown_index:   # MPR: a move along another axis leaves this slice as is
            self._render_all()
        self._update_texts()
        cursor = self.state.cursor
        if cursor is not None and self._mouse_inside:   # keep the HU readout true for the voxel under the mouse
            voxel = list(cursor.voxel)
            voxel[self.axis] = self.slice_index
            self.state.set_cursor(tuple(voxel))  # type: ignore[arg-type]

    def _on_window(self, _event: Event) -> None:
        for layer, item in self._items.values():
            if isinstance(layer, ImageLayer):
                self._render_layer(layer, item)
        self._update_texts()

    def _on_camera(self, _event: Event) -> None:
        self._apply_camera()
        self._update_texts()

    def _on_layers(self, _event: Event) -> None:
        self._rebuild_items()
        self._render_all()

    def _on_layer_changed(self, event: Event) -> None:
        layer = event.source
        if event.type == "data" and event.value is not None and event.value != self.slice_index \
                and self.axis == 0:
            return   # another axial slice of a heatmap was filled in: nothing visible changed (it crosses
            #          every coronal/sagittal slice, so those views redraw)
        entry = self._items.get(id(layer))
        if entry is not None:
            self._render_layer(*entry)

    def _on_cursor(self, _event: Event) -> None:
        cursor = self.state.cursor
        label = self.corner_labels["top_right"]
        label.setText(_readout_text(cursor))
        label.setVisible(cursor is not None and self._geometry is not None)
        self._place_overlays()

    # --- drawing ------------------------------------------------------------------------------------------
    def _rebuild_items(self) -> None:
        for layer, item in self._items.values():
            layer.events.disconnect(self._on_layer_changed)
            self.viewbox.removeItem(item)
        self._items.clear()
        if self._geometry is None:
            return
        transform = QTransform(*self._geometry.affine)
        for z, layer in enumerate(self.state.layers):
            item = pg.ImageItem(axisOrder="row-major")
            item.setTransform(transform)
            item.setZValue(z)
            self.viewbox.addItem(item)
            self._items[id(layer)] = (layer, item)
            layer.events.connect(self._on_layer_changed)

    def _render_all(self) -> None:
        self._shown_index = self.slice_index if self._geometry is not None else None
        for layer, item in self._items.values():
            self._render_layer(layer, item)

    def _render_layer(self, layer: Layer, item: pg.ImageItem) -> None:
        if self._geometry is None:
            return
        item.setVisible(layer.visible)
        if isinstance(layer, ImageLayer):
            # windowed here to opaque RGBX: Qt paints that ~3x faster than the grey image pyqtgraph would make
            grey = apply_window(layer.slice(self.slice_index, self.axis), self.state.window)
            item.setImage(grey_to_rgbx(grey), autoLevels=False, levels=None)
            item.setOpacity(layer.opacity)
        elif isinstance(layer, HeatmapLayer):
            item.setImage(layer.rgba_slice(self.slice_index, heatmap_lut(layer.colormap), self.axis),
                          autoLevels=False, levels=(0, 255))

    def _apply_camera(self) -> None:
        g = self._geometry
        if g is None:
            return
        camera = self.camera
        width, height = g.scene_size
        cx, cy = camera.center if camera.center is not None else g.scene_center
        vw, vh = width / camera.zoom, height / camera.zoom
        self.viewbox.setRange(QRectF(cx - vw / 2, cy - vh / 2, vw, vh), padding=0)

    def _update_texts(self) -> None:
        volume = self.state.volume
        if volume is None or self._geometry is None:
            return
        n = volume.shape[self.axis]
        meta = volume.meta
        title = meta.get("SeriesDescription") or (volume.source[0].name if volume.source else "")
        plane = {0: "Axial", 1: "Coronal", 2: "Sagittal"}[self.axis]
        compact = self.compact
        self.corner_labels["top_left"].setText(f"{title}\n{plane}" if title and not compact else plane)
        thickness = volume.spacing[self.axis]
        lps = self.state.voxel_to_lps(self.state.position)
        where = f"{lps[2 - self.axis]:.1f} mm" if compact else \
            f"{thickness:.2f} mm · position {lps[2 - self.axis]:.1f} mm"
        self.corner_labels["bottom_left"].setText(f"Slice {self.slice_index + 1} / {n}\n{where}")
        window = self.state.window
        preset = self.state.window_preset
        name = f" ({PRESET_LABELS.get(preset, preset.title())})" if preset and not compact else ""
        values = "" if volume.is_hu else "\n8-bit image · not HU"
        if not has_patient_geometry(volume):
            values += "\norientation unknown (no geometry)"
        self.corner_labels["bottom_right"].setText(
            f"W {window.width:.0f}  L {window.level:.0f}{name}\nZoom {self.camera.zoom * 100:.0f}%{values}")
        for label in self.corner_labels.values():
            label.adjustSize()
        self._place_overlays()

    # --- overlays -----------------------------------------------------------------------------------------
    def _overlay_label(self, style: str) -> QLabel:
        label = QLabel(self)
        label.setStyleSheet(style)
        label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        label.raise_()
        return label

    def _place_overlays(self) -> None:
        w, h, m = self.width(), self.height(), 8
        for label in (*self.orientation_labels.values(), *self.corner_labels.values()):
            label.adjustSize()
        o = self.orientation_labels
        o["left"].move(m, (h - o["left"].height()) // 2)
        o["right"].move(w - o["right"].width() - m, (h - o["right"].height()) // 2)
        o["top"].move((w - o["top"].width()) // 2, m)
        o["bottom"].move((w - o["bottom"].width()) // 2, h - o["bottom"].height() - m)
        c = self.corner_labels
        c["top_left"].move(m, m)
        c["top_right"].move(w - c["top_right"].width() - m, m)
        c["bottom_left"].move(m, h - c["bottom_left"].height() - m)
        c["bottom_right"].move(w - c["bottom_right"].width() - m, h - c["bottom_right"].height() - m)
        self.empty_label.setGeometry(0, 0, w, h)

    # --- mouse -> cursor readout --------------------------------------------------------------------------
    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        if self._geometry is None:
            return
        point = self.viewbox.mapSceneToView(scene_pos)
        pixel = self._geometry.pixel_at(point.x(), point.y())
        self._mouse_inside = pixel is not None
        if pixel is None:
            self.state.set_cursor(None)
            return
        voxel = list(pixel)
        voxel.insert(self.axis, self.slice_index)
        self.state.set_cursor(tuple(voxel))  # type: ignore[arg-type]


def _readout_text(cursor) -> str:
    if cursor is None:
        return ""
    z, y, x = cursor.voxel
    value = f"{cursor.value:.0f} HU" if cursor.is_hu else f"value {cursor.value:.0f} (not HU)"
    return f"{value}\n(x {x}, y {y}, z {z})"
