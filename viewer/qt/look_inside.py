""""Look inside": the activation maps of one layer of a 2-D model for the slice on screen, tiled.

Pick a layer (default: the CAM layer, i.e. the last spatial features); the first ``MAX_ACTIVATION_MAPS``
filters are shown, each tile scaled to its own [0, 1] (``engine.xai.tile_maps``).  The maps follow the slice
on screen (recomputed in a worker when the slice or the layer changes; one request in flight, newest wins).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QDialog, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from viewer.model.events import Event
from viewer.qt.colormaps import heatmap_lut
from viewer.qt.model_session import JobRunner, ModelSession
from viewer.workers.ai_jobs import ActivationOutcome, activations_job, layers_job
from viewer.workers.worker import Worker


class LookInsideDialog(QDialog):
    def __init__(self, session: ModelSession, runner: JobRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("lookInside")
        self.session = session
        self.runner = runner
        self.setWindowTitle(f"Look inside {session.name}")
        self.resize(760, 640)
        self.layer_box = QComboBox(self)
        self.layer_box.setObjectName("lookInsideLayer")
        self.layer_box.setMinimumWidth(260)
        self.layer_box.setEnabled(False)
        self.layer_box.currentIndexChanged.connect(lambda _i: self.request())
        self.caption = QLabel("Listing the network's layers …", self)
        self.caption.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("Layer", self))
        top.addWidget(self.layer_box, 1)
        self.graphics = pg.GraphicsLayoutWidget(self)
        self.graphics.setBackground("k")
        self.viewbox = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLookupTable(heatmap_lut("viridis"))
        self.viewbox.addItem(self.image)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.caption)
        layout.addWidget(self.graphics, 1)

        self.outcome: ActivationOutcome | None = None
        self._worker: Worker | None = None
        self._wanted = False
        self._closed = False
        session.state.events.position.connect(self._on_position)
        worker = Worker(layers_job, session.entry, backend=session.backend, name="layers")
        worker.result.connect(self._on_layers)
        self._layers_worker = runner.run(worker, f"Reading the layers of {session.name} …", visible=False,
                                         error_title="Cannot list the model's layers")

    @property
    def current_layer(self) -> str | None:
        return self.layer_box.currentData()

    def _on_layers(self, found) -> None:
        if self._closed:
            return
        layers, default = found
        self.layer_box.blockSignals(True)
        for info in layers:
            self.layer_box.addItem(f"{info.name}  ({info.kind}, {info.channels} × "
                                   f"{'×'.join(map(str, info.shape[2:]))})", info.name)
        index = self.layer_box.findData(default)
        self.layer_box.setCurrentIndex(max(0, index))
        self.layer_box.blockSignals(False)
        self.layer_box.setEnabled(bool(layers))
        self.request()

    def _on_position(self, _event: Event) -> None:
        self.request()

    def request(self) -> None:
        """Compute the maps of the chosen layer for the slice on screen (after the running request, if any)."""
        layer = self.current_layer
        if self._closed or layer is None:
            return
        if self._worker is not None and not self._worker.is_done:
            self._wanted = True
            return
        self._wanted = False
        z = self.session.state.slice_index
        if self.outcome is not None and (self.outcome.layer, self.outcome.z) == (layer, z):
            return
        self.caption.setText(f"Computing {layer} for slice {z + 1} …")
        worker = Worker(activations_job, self.session.entry, self.session.volume, z, layer,
                        backend=self.session.backend, name="activations")
        worker.result.connect(self._on_maps)
        worker.finished.connect(self._on_finished)
        self._worker = self.runner.run(worker, "Activations …", visible=False,
                                       error_title="Cannot compute activations")

    def _on_maps(self, outcome: ActivationOutcome) -> None:
        if self._closed:
            return
        self.outcome = outcome
        self.image.setImage(outcome.mosaic, autoLevels=False, levels=(0.0, 1.0))
        self.viewbox.autoRange(padding=0.01)
        k, h, w = outcome.maps.shape
        shown = f"the first {k} of {outcome.total}" if k < outcome.total else f"all {k}"
        self.caption.setText(f"{outcome.layer}: {shown} filters, {h}×{w} each, slice {outcome.z + 1} — "
                             f"each tile scaled to its own range (dark = low, yellow = high activation)")

    def _on_finished(self) -> None:
        if not self._closed and self._wanted:
            self.request()

    def mosaic(self) -> np.ndarray | None:
        return None if self.outcome is None else self.outcome.mosaic

    def closeEvent(self, event) -> None:  # noqa: N802
        self._closed = True
        self.session.state.events.disconnect(self._on_position)
        for worker in (self._worker, self._layers_worker):
            if worker is not None:
                worker.cancel()
        super().closeEvent(event)

    def done(self, result: int) -> None:
        self._closed = True
        self.session.state.events.disconnect(self._on_position)
        super().done(result)

