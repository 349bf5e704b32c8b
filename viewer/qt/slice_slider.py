"""``SliceSlider``: a slider plus "Slice k / N" label bound to a state's axial slice index.

Kept as its own widget so the AI workflow can put a per-slice score strip right next to it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QWidget

from viewer.model.events import Event
from viewer.model.viewer_state import ViewerState


class SliceSlider(QWidget):
    def __init__(self, state: ViewerState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setObjectName("sliceSlider")
        self.slider.setToolTip("Slice (wheel, Up/Down, PageUp/PageDown over the image)")
        self.slider.setPageStep(10)
        self.label = QLabel(self)
        self.label.setMinimumWidth(110)
        self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)
        self.slider.valueChanged.connect(self._on_slider)
        state.events.volume.connect(self._on_volume)
        state.events.position.connect(self._on_position)
        self._on_volume(None)

    def detach(self) -> None:
        self.state.events.disconnect(self._on_volume)
        self.state.events.disconnect(self._on_position)

    def _on_volume(self, _event: Event | None) -> None:
        n = self.state.n_slices
        self.setEnabled(n > 1)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n - 1))
        self.slider.setValue(self.state.slice_index)
        self.slider.blockSignals(False)
        self._update_label()

    def _on_position(self, _event: Event) -> None:
        if self.slider.value() != self.state.slice_index:
            self.slider.blockSignals(True)
            self.slider.setValue(self.state.slice_index)
            self.slider.blockSignals(False)
        self._update_label()

    def _on_slider(self, value: int) -> None:
        self.state.slice_index = value

    def _update_label(self) -> None:
        n = self.state.n_slices
        self.label.setText(f"Slice {self.state.slice_index + 1} / {n}" if n else "No scan")
