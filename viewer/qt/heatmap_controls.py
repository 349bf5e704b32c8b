"""``HeatmapControls``: on/off, opacity, colour map, colour scale, threshold and colour bar of a state's heatmap.

They act on the *active* heatmap layer of one ``ViewerState`` (the top one) and follow it: whatever changes the
layer (these controls, a sync group in compare mode, code) is reflected here.  Turning the overlay on is a
request (``show_requested``) because the map may first have to be computed by the model session.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QSizePolicy,
    QSlider,
    QWidget,
)

from viewer.model.events import Event
from viewer.model.layers import HEATMAP_COLORMAPS, HeatmapLayer
from viewer.model.viewer_state import ViewerState
from viewer.qt.colormaps import heatmap_lut


class ColourBar(QWidget):
    """A horizontal colour bar of a heatmap layer: the map from vmin to vmax, the threshold marked, labels."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("heatmapColourBar")
        self.setMinimumSize(120, 34)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.colormap = "inferno"
        self.scale = (0.0, 1.0)
        self.threshold = 0.0
        self.signed = False
        self.caption = "evidence for the positive class (0: none … 1: the strongest in the slice / volume)"

    def show_layer(self, layer: HeatmapLayer | None) -> None:
        if layer is not None:
            self.colormap, self.scale, self.threshold = layer.colormap, layer.scale, layer.threshold
            self.signed = layer.signed
            how = layer.info.get("scale")
            self.setToolTip(f"{layer.name}: {self.caption}" + (f"; maps: {how}" if how else ""))
        self.setEnabled(layer is not None)
        self.update()

    def paintEvent(self, _event) -> None:  # noqa: N802
        painter = QPainter(self)
        w, h = self.width(), self.height()
        bar = QRectF(4, 2, w - 8, 12)
        lut = np.ascontiguousarray(heatmap_lut(self.colormap))
        row = np.empty((1, len(lut), 4), dtype=np.uint8)
        row[0, :, :3] = lut
        row[0, :, 3] = 255
        image = QImage(row.data, len(lut), 1, len(lut) * 4, QImage.Format.Format_RGBA8888)
        if not self.isEnabled():
            painter.setOpacity(0.3)
        painter.drawImage(bar, image)
        lo, hi = self.scale
        painter.setPen(QPen(QColor("#d0d0d0")))
        font = painter.font()
        font.setPointSizeF(7.5)
        painter.setFont(font)
        if hi > lo:
            for value in ((self.threshold, -self.threshold) if self.signed else (self.threshold,)):
                if lo < value < hi:
                    x = bar.left() + bar.width() * (value - lo) / (hi - lo)
                    painter.setPen(QPen(QColor("#ffffff"), 2))
                    painter.drawLine(int(x), int(bar.top()) - 1, int(x), int(bar.bottom()) + 2)
        painter.setPen(QPen(QColor("#d0d0d0")))
        painter.drawText(QRectF(2, 16, 60, 16), Qt.AlignmentFlag.AlignLeft, f"{lo:g}")
        painter.drawText(QRectF(w - 62, 16, 60, 16), Qt.AlignmentFlag.AlignRight, f"{hi:g}")
        painter.drawText(QRectF(40, 16, w - 80, 16), Qt.AlignmentFlag.AlignHCenter,
                         f"threshold {'±' if self.signed else ''}{self.threshold:.2f}")
        painter.end()


class HeatmapControls(QWidget):
    """Controls for ``state.active_heatmap``.  ``show_requested(bool)``: the user toggled the overlay."""

    show_requested = Signal(bool)

    def __init__(self, state: ViewerState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self._layer: HeatmapLayer | None = None
        self._requested = False       # overlay asked for, first map still being computed
        self._updating = False

        self.show_box = QCheckBox("Show heatmap (H)", self)
        self.show_box.setObjectName("heatmapShow")
        self.show_box.toggled.connect(self._on_show)
        self.opacity = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity.setObjectName("heatmapOpacity")
        self.opacity.setRange(0, 100)
        self.opacity.valueChanged.connect(self._on_opacity)
        self.colormap = QComboBox(self)
        self.colormap.setObjectName("heatmapColormap")
        self.colormap.addItems(list(HEATMAP_COLORMAPS))
        self.colormap.setToolTip("Perceptually uniform colour maps (turbo is not, but some readers prefer it)")
        self.colormap.currentTextChanged.connect(self._on_colormap)
        self.threshold = QSlider(Qt.Orientation.Horizontal, self)
        self.threshold.setObjectName("heatmapThreshold")
        self.threshold.setRange(0, 100)
        self.threshold.setToolTip("Values below the threshold are not drawn")
        self.threshold.valueChanged.connect(self._on_threshold)
        self.vmin = QDoubleSpinBox(self)
        self.vmax = QDoubleSpinBox(self)
        for box in (self.vmin, self.vmax):
            box.setDecimals(2)
            box.setSingleStep(0.05)
            box.setRange(-1.0, 2.0)
            box.valueChanged.connect(self._on_scale)
        self.vmin.setObjectName("heatmapVmin")
        self.vmax.setObjectName("heatmapVmax")
        self.colour_bar = ColourBar(self)

        scale_row = QWidget(self)
        scale_layout = QHBoxLayout(scale_row)
        scale_layout.setContentsMargins(0, 0, 0, 0)
        scale_layout.addWidget(self.vmin)
        scale_layout.addWidget(self.vmax)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow(self.show_box)
        form.addRow("Opacity", self.opacity)
        form.addRow("Colour map", self.colormap)
        form.addRow("Scale", scale_row)
        form.addRow("Threshold", self.threshold)
        form.addRow(self.colour_bar)

        state.events.layers.connect(self._on_layers)
        state.events.heatmap.connect(self._on_heatmap)
        state.events.volume.connect(self._on_layers)
        self._on_layers(None)

    # --- state -> controls ------------------------------------------------------------------------------
    @property
    def layer(self) -> HeatmapLayer | None:
        return self._layer

    def _on_layers(self, _event: Event | None) -> None:
        layer = self.state.active_heatmap
        if layer is not self._layer:
            if self._layer is not None:
                self._layer.events.visible.disconnect(self._on_visible)
            self._layer = layer
            if layer is not None:
                layer.events.visible.connect(self._on_visible)
        self._refresh()

    def _on_heatmap(self, _event: Event) -> None:
        self._refresh()

    def _on_visible(self, _event: Event) -> None:
        self._refresh()

    def _refresh(self) -> None:
        layer = self._layer
        self._updating = True
        try:
            for widget in (self.opacity, self.colormap, self.threshold, self.vmin, self.vmax):
                widget.setEnabled(layer is not None)
            self.show_box.setChecked(layer.visible if layer is not None else self._requested)
            if layer is not None:
                self.opacity.setValue(round(layer.opacity * 100))
                if self.colormap.findText(layer.colormap) < 0:
                    self.colormap.addItem(layer.colormap)
                self.colormap.setCurrentText(layer.colormap)
                lo, hi = layer.scale
                self.vmin.setValue(lo)
                self.vmax.setValue(hi)
                self.threshold.setValue(round(100 * _fraction(layer.threshold, lo, hi, layer.signed)))
            self.colour_bar.show_layer(layer)
        finally:
            self._updating = False

    def set_requested(self, on: bool) -> None:
        """The overlay was asked for (checked) or turned off, before its layer exists."""
        self._requested = bool(on)
        self._refresh()

    # --- controls -> layer ------------------------------------------------------------------------------
    def _on_show(self, on: bool) -> None:
        if self._updating:
            return
        self.show_requested.emit(bool(on))

    def _on_opacity(self, value: int) -> None:
        if not self._updating and self._layer is not None:
            self._layer.opacity = value / 100.0

    def _on_colormap(self, name: str) -> None:
        if not self._updating and self._layer is not None and name:
            self._layer.colormap = name

    def _on_threshold(self, value: int) -> None:
        if self._updating or self._layer is None:
            return
        lo, hi = self._layer.scale
        base = 0.0 if self._layer.signed else lo
        self._layer.threshold = base + (hi - base) * value / 100.0

    def _on_scale(self, _value: float) -> None:
        if self._updating or self._layer is None:
            return
        lo, hi = self.vmin.value(), self.vmax.value()
        if hi > lo:
            self._layer.scale = (lo, hi)

    def detach(self) -> None:
        for callback in (self._on_layers, self._on_heatmap):
            self.state.events.disconnect(callback)
        if self._layer is not None:
            self._layer.events.visible.disconnect(self._on_visible)
        self._layer = None


def _fraction(threshold: float, lo: float, hi: float, signed: bool) -> float:
    base = 0.0 if signed else lo
    if hi <= base:
        return 0.0
    return float(min(1.0, max(0.0, (threshold - base) / (hi - base))))
