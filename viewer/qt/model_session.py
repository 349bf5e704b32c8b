"""``ModelSession``: one model bound to one ``ViewerState`` -- screen the scan, keep its heatmaps in sync.

The session owns the heatmap layer of its model on that state.  Heatmaps are computed on demand in a worker
and cached per explainer (:class:`~viewer.model.ai.HeatmapCache`): for a 2-D model the map of the slice on
screen is requested whenever the slice changes (one request in flight; while it runs only the newest wish is
remembered, so scrolling fast never queues a backlog); a 3-D model's map covers the whole volume at once.

Jobs are started through a :class:`JobRunner` -- the main window's, so every job shows up in one place and is
cancelled when the window closes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from viewer.model.ai import EXPLAINER_LABELS, HeatmapCache, ModelEntry, explainer_name
from viewer.model.events import Event
from viewer.model.layers import HeatmapLayer
from viewer.model.viewer_state import ViewerState
from viewer.workers.ai_jobs import HeatmapOutcome, ScreenOutcome, explain_job, screen_job
from viewer.workers.worker import Worker

DEFAULT_OPACITY = 0.45
DEFAULT_THRESHOLD = 0.2      # display maps are 0..1: hide the weakest fifth by default
DEFAULT_COLORMAP = "inferno"


class JobRunner(QObject):
    """Starts workers, tracks them, cancels and waits for them on :meth:`shutdown`.

    ``visible`` jobs go through ``show`` (e.g. ``MainWindow.run_job``: status-bar progress, ETA, Cancel, error
    dialog); quiet ones (per-slice heatmaps) only report errors through ``on_error``.
    """

    error = Signal(str, object)     # title, exception (quiet jobs)

    def __init__(self, show: Callable[..., Worker] | None = None, parent: QObject | None = None, *,
                 owns_visible: bool = True):
        super().__init__(parent)
        self._show = show
        self._owns_visible = owns_visible    # False: ``show``'s owner (the main window) cleans those up itself
        self._workers: list[Worker] = []
        self._pending: list[Worker] = []       # started, and their outcome not yet handled on the GUI thread
        self._quiet: set[int] = set()

    def run(self, worker: Worker, message: str, *, visible: bool = True, error_title: str = "Model job failed") -> Worker:
        self._workers = [w for w in self._workers if not w.is_done]
        self._quiet = {id(w) for w in self._workers} & self._quiet
        self._workers.append(worker)
        self._pending.append(worker)
        worker.finished.connect(lambda w=worker: self._delivered(w))
        if visible and self._show is not None:
            return self._show(worker, message, error_title=error_title)
        self._quiet.add(id(worker))
        worker.error.connect(lambda exc, _text, t=error_title: self.error.emit(t, exc))
        return worker.start()

    def _delivered(self, worker: Worker) -> None:
        self._pending = [w for w in self._pending if w is not worker]

    @property
    def running(self) -> list[Worker]:
        """Jobs started whose results the GUI thread has not handled yet (so "not running" means settled)."""
        return list(self._pending)

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Cancel every job, wait for them, and cut their signals so late results touch nothing."""
        import time
        import warnings

        workers = list(self._workers)
        for worker in workers:
            worker.cancel()
        deadline = time.monotonic() + timeout
        stopped = all(w.wait(max(0.0, deadline - time.monotonic())) for w in workers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)     # "failed to disconnect": nothing was connected
            for worker in workers:
                if not self._owns_visible and id(worker) not in self._quiet:
                    continue
                for signal in (worker.result, worker.error, worker.progress, worker.cancelled, worker.finished):
                    try:
                        signal.disconnect()
                    except (RuntimeError, TypeError):
                        pass
        self._workers.clear()
        self._pending.clear()
        self._quiet.clear()
        return stopped


class ModelSession(QObject):
    """Signals: ``screened(ScanResult)``, ``screening(bool running)``, ``heatmap_changed()`` (a map arrived or
    the explainer changed), ``explaining(bool)``, ``failed(str)``."""

    screened = Signal(object)
    screening = Signal(bool)
    heatmap_changed = Signal()
    explaining = Signal(bool)
    failed = Signal(str)

    def __init__(self, state: ViewerState, entry: ModelEntry, runner: JobRunner, *, explainer: str = "gradcam",
                 backend: str = "auto", batch_size: int = 16, parent: QObject | None = None):
        super().__init__(parent)
        if state.volume is None:
            raise ValueError("open a scan before binding a model to the view")
        self.state = state
        self.entry = entry
        self.runner = runner
        self.backend = backend
        self.batch_size = int(batch_size)
        self.volume = state.volume
        self.result: Any = None              # ScanResult once screened
        self.ran_on: str | None = None       # back-end that screened
        self.cache = HeatmapCache(self.volume.shape, entry.spatial_dims)
        self._explainer = explainer_name(explainer)
        self._heatmaps_on = False
        self.layer: HeatmapLayer | None = None
        self.screen_worker: Worker | None = None
        self._explain_worker: Worker | None = None
        self._wanted: tuple[str, int | None] | None = None
        self._explain_method = ""
        self._failed: set[str] = set()       # explainers that failed on this model: not asked again by scrolling
        self._closed = False
        state.events.position.connect(self._on_position)

    # --- properties -------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The weights' key (the model name, or ``name@folder`` for a second set of weights of one network)."""
        return self.entry.key

    @property
    def spatial_dims(self) -> int:
        return self.entry.spatial_dims

    @property
    def explainer(self) -> str:
        return self._explainer

    @explainer.setter
    def explainer(self, method: str) -> None:
        method = explainer_name(method)
        if method == self._explainer:
            return
        self._explainer = method
        if self.layer is not None and self.cache.exists(method):
            self.layer.data = self.cache.array(method)   # the cached maps of that explainer (NaN: not yet)
            self._describe_layer()
        # otherwise the layer switches when the first map of the new explainer arrives (its store is allocated
        # in the worker), so what is drawn always matches the layer's label
        self.heatmap_changed.emit()
        self.request_heatmap()

    @property
    def is_screening(self) -> bool:
        return self.screen_worker is not None and not self.screen_worker.is_done

    @property
    def is_explaining(self) -> bool:
        return self._explain_worker is not None and not self._explain_worker.is_done

    @property
    def heatmaps_on(self) -> bool:
        return self._heatmaps_on

    # --- screening --------------------------------------------------------------------------------------
    def screen(self) -> Worker:
        """Screen the scan in a worker (returns the running worker if one is already screening)."""
        if self.is_screening:
            return self.screen_worker  # type: ignore[return-value]
        worker = Worker(screen_job, self.entry, self.volume, backend=self.backend, batch_size=self.batch_size,
                        name=f"screen-{self.name}")
        worker.result.connect(self._on_screened)
        worker.finished.connect(self._on_screen_finished)
        self.screen_worker = worker
        self.runner.run(worker, f"Screening with {self.name} …", error_title=f"Screening with {self.name} failed")
        self.screening.emit(True)
        return worker

    def cancel(self) -> None:
        for worker in (self.screen_worker, self._explain_worker):
            if worker is not None and not worker.is_done:
                worker.cancel()
        self._wanted = None

    def _on_screened(self, outcome: ScreenOutcome) -> None:
        if self._closed:
            return
        self.result = outcome.result
        self.ran_on = outcome.backend
        if self.layer is not None:
            self._describe_layer()
        self.screened.emit(outcome.result)

    def _on_screen_finished(self) -> None:
        if not self._closed:
            self.screening.emit(False)

    # --- heatmaps ---------------------------------------------------------------------------------------
    def show_heatmaps(self, on: bool = True) -> HeatmapLayer | None:
        """Turn the overlay on (creating the layer and computing the current map) or off (hidden, kept)."""
        self._heatmaps_on = bool(on)
        if on:
            self._failed.clear()            # an explicit request retries
        if on and self.layer is None and self.cache.exists(self._explainer):
            self._make_layer()              # else made when the first map (and its store) arrives
        if self.layer is not None:
            self.layer.visible = bool(on)
        if on:
            self.request_heatmap()
        return self.layer

    def request_heatmap(self) -> None:
        """Compute the map needed on screen now (current slice / the volume), unless cached or already asked."""
        if self._closed or not self._heatmaps_on:
            return
        z = None if self.spatial_dims == 3 else int(self.state.slice_index)
        method = self._explainer
        if self.cache.has(method, z) or method in self._failed:
            return
        if self.is_explaining:
            self._wanted = (method, z)
            return
        self._wanted = None
        what = "volume" if z is None else f"slice {z + 1}"
        worker = Worker(explain_job, self.entry, self.volume, z, method, backend=self.backend,
                        allocate=not self.cache.exists(method), name=f"explain-{self.name}")
        worker.result.connect(self._on_heatmap)
        worker.finished.connect(self._on_explain_finished)
        self._explain_worker = worker
        self._explain_method = method
        # a whole-volume map takes a while: show it with progress and Cancel; per-slice maps stay quiet
        self.runner.run(worker, f"{EXPLAINER_LABELS[method]} of {self.name}, {what} …", visible=z is None,
                        error_title=f"{EXPLAINER_LABELS[method]} of {self.name} failed")
        self.explaining.emit(True)

    def _on_heatmap(self, outcome: HeatmapOutcome) -> None:
        if self._closed:
            return
        method = outcome.method
        if outcome.z is None:                                     # 3-D: the whole volume, made in the worker
            self.cache.adopt(method, outcome.values, complete=True)
        elif not self.cache.exists(method) and outcome.volume_array is not None:
            self.cache.adopt(method, outcome.volume_array)
        if outcome.z is not None:
            stored = self.cache.put_slice(method, outcome.z, outcome.values)
        if method == self._explainer:
            if self.layer is None:
                if self._heatmaps_on:
                    self._make_layer()
            elif self.layer.data is not self.cache.array(method):
                self.layer.data = self.cache.array(method)        # the explainer changed: swap stores
                self._describe_layer()
            elif outcome.z is not None:
                self.layer.set_slice(outcome.z, stored)           # same memory as the cache; announces it
            else:
                self.layer.data = self.layer.data                 # 3-D: announce the new volume
        self.heatmap_changed.emit()

    def _on_explain_finished(self) -> None:
        if self._closed:
            return
        worker, self._explain_worker = self._explain_worker, None
        failed = worker is not None and worker.outcome == "error"
        if failed:
            self._failed.add(self._explain_method)
            self._wanted = None
        self.explaining.emit(False)
        if worker is not None and worker.outcome == "result":
            self.request_heatmap()          # the slice may have moved on while this one was computed

    def _on_position(self, _event: Event) -> None:
        if self._heatmaps_on and self.spatial_dims == 2:
            self.request_heatmap()

    def _make_layer(self) -> None:
        self.layer = self.state.add_heatmap(self.cache.array(self._explainer), self._layer_name(),
                                            colormap=DEFAULT_COLORMAP, opacity=DEFAULT_OPACITY,
                                            threshold=DEFAULT_THRESHOLD, scale=(0.0, 1.0))
        self._describe_layer()

    def _layer_name(self) -> str:
        return f"{self.name} · {EXPLAINER_LABELS[self._explainer]}"

    def _describe_layer(self) -> None:
        if self.layer is None:
            return
        self.layer.name = self._layer_name()
        self.layer.info.update({"model": self.name, "network": self.entry.name, "explainer": self._explainer,
                                "explainer_label": EXPLAINER_LABELS[self._explainer],
                                "target": self.entry.positive_class, "weights_sha256": self.entry.sha256,
                                "probability": None if self.result is None else float(self.result.probability),
                                "scale": "relu, divided by the slice's maximum" if self.spatial_dims == 2
                                else "relu, divided by the volume's maximum"})

    # --- teardown ---------------------------------------------------------------------------------------
    def close(self, remove_layer: bool = False) -> None:
        """Stop listening and cancel this session's jobs (their late results are ignored)."""
        if self._closed:
            return
        self.cancel()
        self._closed = True
        self.state.events.disconnect(self._on_position)
        if remove_layer and self.layer is not None and self.layer in self.state.layers:
            self.state.layers.remove(self.layer)
        self.layer = None
