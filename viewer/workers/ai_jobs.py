"""Jobs of the AI workflow (run them in a :class:`~viewer.workers.Worker`): load a model, screen the open scan,
explain a slice or the volume, list layers and look inside one.

Everything goes through ``engine.screen.pipeline.ScanModel`` -- the one road from a ``Volume`` to scores and
heatmaps that batch screening walks too -- so the viewer has no preprocessing of its own.  Loaded models are
kept in a small process-wide cache (loading means reading and hashing the weights, and for the ONNX back-end
an export the first time), keyed by weights folder, sha256 and back-end.

Background work runs at a lower OS priority than the GUI thread (Linux/macOS: the worker thread's nice value is
raised), so on a busy two-core machine the event loop still gets the CPU first while a model runs.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.io.volume import Volume
from viewer.model.ai import ModelEntry, display_map, explainer_name
from viewer.workers.worker import JobCancelled, JobContext

BACKGROUND_NICE = 10          # nice value of threads running models (0 = normal, 19 = lowest)
MODEL_CACHE_SIZE = 4          # loaded models kept (a compare session holds two or three)
MAX_ACTIVATION_MAPS = 64      # filters shown by "look inside" (the first ones, in filter order)

_MODELS: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
_MODELS_LOCK = threading.Lock()
_LOADING: dict[tuple[str, str, str], threading.Lock] = {}


def lower_thread_priority(nice: int = BACKGROUND_NICE) -> None:
    """Make the calling thread (and threads it starts later, e.g. a runtime's pool) yield the CPU to the GUI.

    Only ever lowers the priority (raising it back would need privileges); a no-op where unsupported.
    """
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except (OSError, AttributeError):   # pragma: no cover - sandboxes without the permission
        pass


def _key(entry: ModelEntry, backend: str) -> tuple[str, str, str]:
    return (str(entry.folder.resolve()), entry.sha256, backend)


def cached_model(entry: ModelEntry, backend: str = "auto") -> Any | None:
    """The loaded ``ScanModel`` of ``entry`` if one is in the cache (no loading)."""
    with _MODELS_LOCK:
        return _MODELS.get(_key(entry, backend))


def load_model(entry: ModelEntry, backend: str = "auto") -> Any:
    """``ScanModel.open`` for ``entry``'s weights folder, cached; two threads asking at once load it once."""
    from engine.screen.pipeline import ScanModel

    key = _key(entry, backend)
    with _MODELS_LOCK:
        if key in _MODELS:
            _MODELS.move_to_end(key)
            return _MODELS[key]
        lock = _LOADING.setdefault(key, threading.Lock())
    with lock:
        with _MODELS_LOCK:
            if key in _MODELS:
                return _MODELS[key]
        model = ScanModel.open(entry.name, entry.folder, backend=backend)
        with _MODELS_LOCK:
            _MODELS[key] = model
            while len(_MODELS) > MODEL_CACHE_SIZE:
                _MODELS.popitem(last=False)
            _LOADING.pop(key, None)
        return model


def clear_model_cache() -> None:
    with _MODELS_LOCK:
        _MODELS.clear()


def _loaded(context: JobContext, entry: ModelEntry, backend: str) -> Any:
    lower_thread_priority()
    if cached_model(entry, backend) is None:
        context.progress(None, None, f"Loading {entry.name} …")
    model = load_model(entry, backend)
    context.check()
    return model


# --------------------------------------------------------------------------------------------- screening
@dataclass
class ScreenOutcome:
    entry: ModelEntry
    result: Any               # engine.screen.pipeline.ScanResult
    backend: str              # the back-end that actually ran (onnx, onnx-int8, torch)


def screen_job(context: JobContext, entry: ModelEntry, volume: Volume, *, backend: str = "auto",
               batch_size: int = 16) -> ScreenOutcome:
    """Screen ``volume``: 2-D models score every axial slice in batches, 3-D models the resampled volume."""
    from engine.screen.pipeline import ScreeningCancelled

    model = _loaded(context, entry, backend)
    context.progress(0.0, None, f"Screening with {entry.name} …")

    def progress(fraction: float, message: str) -> None:
        context.progress(fraction, None, f"Screening with {entry.name}: {message}")

    try:
        result = model.screen(volume, batch_size=batch_size, progress=progress, cancel=context.is_cancelled)
    except ScreeningCancelled as exc:
        raise JobCancelled() from exc
    return ScreenOutcome(entry, result, model.backend)


# --------------------------------------------------------------------------------------------- heatmaps
@dataclass
class HeatmapOutcome:
    entry: ModelEntry
    method: str
    z: int | None             # the slice (2-D models) or None (whole volume, 3-D models)
    values: np.ndarray        # display map (see viewer.model.ai.display_map): (y, x) or (z, y, x)
    raw_max: float            # largest raw value before scaling (0: the model saw no positive evidence)


def explain_job(context: JobContext, entry: ModelEntry, volume: Volume, z: int | None, method: str, *,
                backend: str = "auto") -> HeatmapOutcome:
    """One explainer map on the voxel grid: slice ``z`` for 2-D models, the whole volume for 3-D models."""
    method = explainer_name(method)
    model = _loaded(context, entry, backend)
    if model.spatial_dims == 3:
        context.progress(None, None, f"{entry.name}: {method} heatmap of the volume …")
        raw = model.explain_volume(volume, method)
        z = None
    else:
        raw = model.explain_slice(volume, int(z), method)
    context.check()
    return HeatmapOutcome(entry, method, z, display_map(raw), float(np.nanmax(raw)) if np.size(raw) else 0.0)


# --------------------------------------------------------------------------------------------- look inside
@dataclass
class ActivationOutcome:
    entry: ModelEntry
    layer: str
    z: int
    maps: np.ndarray          # (K, h, w) raw activations of the first K filters
    total: int                # filters the layer has
    mosaic: np.ndarray        # engine.xai.tile_maps of ``maps`` (each tile scaled to [0, 1])


def layers_job(context: JobContext, entry: ModelEntry, *, backend: str = "auto") -> tuple[list[Any], str]:
    """(spatial layers of the network in forward order, the default one = the CAM layer)."""
    from engine.xai import cam_target, default_layer, list_layers

    model = _loaded(context, entry, backend)
    network = model.loaded.model
    with model._torch_lock:      # the torch module is shared with gradient explainers
        layers = [info for info in list_layers(network) if len(info.shape) == 4]
        default = cam_target(network)[0] or default_layer(network)
    return layers, default


def activations_job(context: JobContext, entry: ModelEntry, volume: Volume, z: int, layer: str, *,
                    backend: str = "auto", max_maps: int = MAX_ACTIVATION_MAPS) -> ActivationOutcome:
    """Per-filter activation maps of ``layer`` for axial slice ``z`` (2-D models), tiled into one mosaic."""
    from engine.xai import tile_maps

    model = _loaded(context, entry, backend)
    if model.spatial_dims != 2:
        raise ValueError(f"{entry.name} is a 3-D model: 'look inside' shows the filters of 2-D models for one slice")
    maps = model.activations(volume, int(z), layer)
    context.check()
    total = int(maps.shape[0])
    shown = np.ascontiguousarray(maps[:max_maps], dtype=np.float32)
    return ActivationOutcome(entry, layer, int(z), shown, total, tile_maps(shown))
