"""Jobs of the AI workflow (run them in a :class:`~viewer.workers.Worker`): load a model, screen the open scan,
explain a slice or the volume, list layers and look inside one.

Everything goes through ``engine.screen.pipeline.ScanModel`` -- the one road from a ``Volume`` to scores and
heatmaps that batch screening walks too -- so the viewer has no preprocessing of its own.  Loaded models are
kept in a small process-wide cache (loading means reading and hashing the weights, and for the ONNX back-end
an export the first time), keyed by weights folder, sha256 and back-end.

Priorities: the model's native *compute* threads (ONNX Runtime's pool, created with the session) run at a lower
OS priority than the GUI (Linux: the nice value of the threads that appeared while the model loaded is raised),
so on a busy two-core machine the event loop still gets a core first.  Threads that run Python keep the normal
priority: they hold Python's GIL in bursts, and a low-priority thread pre-empted while holding it would freeze
the GUI thread waiting for it (priority inversion -- measured: 55-60 ms stalls while a niced thread loaded a
model, under 10 ms at normal priority).

The first use of a model's weights with the ONNX back-end needs an export (``engine.runtime``), and exporting
holds Python's GIL for up to several hundred milliseconds at a time -- long enough to freeze the window.  So the
export runs in a short-lived helper *process* (which only fills the on-disk export cache); this process then
opens the cached export, which does not block.  If the helper cannot run, the export happens here as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.io.volume import Volume
from viewer.model.ai import ModelEntry, display_map, explainer_name
from viewer.workers.worker import JobCancelled, JobContext

BACKGROUND_NICE = 10          # nice value of model compute threads and export helpers (0 = normal, 19 = lowest)
MODEL_CACHE_SIZE = 4          # loaded models kept (a compare session holds two or three)
MAX_ACTIVATION_MAPS = 64      # filters shown by "look inside" (the first ones, in filter order)

_MODELS: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
_MODELS_LOCK = threading.Lock()
_LOADING: dict[tuple[str, str, str], threading.Lock] = {}


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
        before = _native_thread_ids()
        model = ScanModel.open(entry.name, entry.folder, backend=backend)
        _lower_threads(_native_thread_ids() - before)
        with _MODELS_LOCK:
            _MODELS[key] = model
            while len(_MODELS) > MODEL_CACHE_SIZE:
                _MODELS.popitem(last=False)
            _LOADING.pop(key, None)
        return model


def _native_thread_ids() -> set[int]:
    """OS ids of this process's threads (Linux ``/proc``; empty elsewhere)."""
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except (OSError, ValueError):
        return set()


def _lower_threads(tids: set[int], nice: int | None = None) -> None:
    """Lower the priority of threads that a runtime started (never of threads running Python: see above)."""
    nice = BACKGROUND_NICE if nice is None else nice
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    python_threads = {t.native_id for t in threading.enumerate()}
    for tid in tids - python_threads:
        try:
            with open(f"/proc/self/task/{tid}/comm", encoding="ascii", errors="replace") as fh:
                if fh.read().startswith(("Thread (pooled", "QThread")):   # Qt's pool: may run Python jobs
                    continue
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except (OSError, AttributeError):     # thread gone, or no permission: leave it
            pass


def clear_model_cache() -> None:
    with _MODELS_LOCK:
        _MODELS.clear()


def onnx_export_cached(entry: ModelEntry) -> bool:
    """Whether the on-disk ONNX cache holds an fp32 export of ``entry``'s weights for this engine and torch."""
    import torch

    from engine.runtime.export import default_cache_dir, engine_version

    root = default_cache_dir()
    if not root.is_dir() or not entry.sha256:
        return False
    for meta in root.glob("*.json"):
        try:
            spec = json.loads(meta.read_text(encoding="utf-8")).get("spec") or {}
        except (OSError, ValueError):
            continue
        if (spec.get("weights_sha256") == entry.sha256 and spec.get("variant", "fp32") == "fp32"
                and spec.get("engine_version") == engine_version() and spec.get("torch_version") == torch.__version__
                and meta.with_suffix(".onnx").is_file()):
            return True
    return False


# The helper process: open the model with the ONNX back-end once, which exports it into the on-disk cache.
_EXPORT_HELPER = ("import sys, os\n"
                  "os.nice(int(os.environ.get('LUNGLENS_HELPER_NICE', '10'))) if hasattr(os, 'nice') else None\n"
                  "from engine.screen.pipeline import ScanModel\n"
                  "ScanModel.open(sys.argv[1], sys.argv[2], backend=sys.argv[3])\n")


def _export_helper_main(name: str, folder: str, backend: str, nice: int) -> None:
    """The helper's work in a frozen build (installer), started as a spawned multiprocessing child: a frozen
    program has no ``python -c``; its entry point calls ``multiprocessing.freeze_support()`` to run this."""
    if hasattr(os, "nice"):
        os.nice(nice)
    from engine.screen.pipeline import ScanModel
    ScanModel.open(name, folder, backend=backend)


def _start_helper(entry: ModelEntry, backend: str) -> Any:
    """(poll, kill, wait) of a started helper process, or None where none can start."""
    nice = max(0, BACKGROUND_NICE)
    if getattr(sys, "frozen", False):
        import multiprocessing

        child = multiprocessing.get_context("spawn").Process(
            target=_export_helper_main, args=(entry.name, str(entry.folder), backend, nice), daemon=True)
        try:
            child.start()
        except OSError:
            return None
        return (lambda: child.exitcode), child.kill, lambda: child.join(10)
    if not sys.executable:
        return None
    env = dict(os.environ)
    env["LUNGLENS_HELPER_NICE"] = str(nice)
    root = str(Path(__file__).resolve().parents[2])           # the tree holding engine/ and viewer/
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    try:
        process = subprocess.Popen([sys.executable, "-c", _EXPORT_HELPER, entry.name, str(entry.folder), backend],
                                   env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    except OSError:
        return None
    return process.poll, process.kill, lambda: process.wait(10)


def export_in_helper_process(entry: ModelEntry, backend: str, context: JobContext | None = None,
                             timeout: float = 900.0) -> bool:
    """Run the first-use ONNX export in a helper Python process (True if it finished; cancel ends it).

    A source run starts ``python -c``; a frozen build (installer) a spawned copy of itself.  False where no
    helper can run (a sandbox): the caller then exports in-process.
    """
    started = _start_helper(entry, backend)
    if started is None:
        return False
    poll, kill, wait = started
    deadline = time.monotonic() + timeout
    try:
        while poll() is None:
            if context is not None and context.cancelled:
                raise JobCancelled()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)          # few wake-ups: each one takes the GIL the GUI thread may want
        return poll() == 0
    finally:
        if poll() is None:
            kill()
        wait()


def _loaded(context: JobContext, entry: ModelEntry, backend: str) -> Any:
    if cached_model(entry, backend) is None:
        if backend in ("auto", "onnx") and not onnx_export_cached(entry):
            context.progress(None, None, f"Preparing the fast back-end for {entry.name} (first use of these "
                                         f"weights) …")
            export_in_helper_process(entry, backend, context)
        context.check()
        context.progress(None, None, f"Loading {entry.name} …")
    model = load_model(entry, backend)
    context.check()
    return model


# --------------------------------------------------------------------------------------------- warm-up
def warm_up_job(context: JobContext, catalog: Any) -> tuple[list[ModelEntry], list[str]]:
    """Import the engine (torch, ONNX Runtime, explainers) and list the models with weights, in the background.

    Importing holds the GIL in long stretches; doing it once, right after the window opened and before any model
    runs, keeps it out of the first screening (and out of window creation).
    """
    import torch  # noqa: F401

    import engine.screen.pipeline  # noqa: F401
    import engine.weights  # noqa: F401
    import engine.xai  # noqa: F401
    try:
        import onnxruntime  # noqa: F401

        import engine.runtime  # noqa: F401
        import engine.runtime.quantize  # noqa: F401
    except ImportError:        # the torch back-end still works
        pass
    entries = catalog.entries()
    return entries, list(catalog.problems)


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
    volume_array: np.ndarray | None = None   # a fresh all-NaN (z, y, x) array when asked for (``allocate``)


def explain_job(context: JobContext, entry: ModelEntry, volume: Volume, z: int | None, method: str, *,
                backend: str = "auto", allocate: bool = False) -> HeatmapOutcome:
    """One explainer map on the voxel grid: slice ``z`` for 2-D models, the whole volume for 3-D models.

    ``allocate``: also return an all-NaN volume-sized array to cache this explainer's slices in -- made here
    because allocating and filling hundreds of MB on the GUI thread would freeze it.
    """
    method = explainer_name(method)
    model = _loaded(context, entry, backend)
    if model.spatial_dims == 3:
        context.progress(None, None, f"{entry.name}: {method} heatmap of the volume …")
        raw = model.explain_volume(volume, method)
        z = None
    else:
        raw = model.explain_slice(volume, int(z), method)
    context.check()
    array = np.full(volume.shape, np.nan, dtype=np.float32) if allocate and z is not None else None
    return HeatmapOutcome(entry, method, z, display_map(raw), float(np.nanmax(raw)) if np.size(raw) else 0.0,
                          array)


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
