"""Screen one series, anywhere: in the job's process, in a worker process, or on a Dask worker.

``screen_series(task, spec, options)`` loads the series with ``engine.io``, scores it with
``engine.screen.pipeline.ScanModel`` (the same road the viewer walks — no second preprocessing path), explains
its key slices and renders the heatmap PNGs *in memory*.  It returns a ``TaskOutcome`` (a results row plus
PNG bytes) and never touches the output folder or the database: the coordinating process writes both, so a
worker may run on another machine (Dask) and a crash in a worker can never leave a half-written row.

A bad series never raises: it comes back as a ``failed`` row whose ``reason`` says what, which file and what to
do.  Only cancellation (``ScreeningCancelled`` / ``LoadCancelled``) propagates.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.io import SeriesInfo, VolumeError
from engine.screen.pipeline import ScanModel, ScreeningCancelled, ScreeningError

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]

NOT_A_DIAGNOSIS = "LungLens research output - not a diagnosis"


@dataclass(frozen=True)
class ModelSpec:
    """Which model to open, in a form that pickles to worker processes and Dask workers.

    ``weights``: "default" (the shipped weights of ``name`` on the worker's search path) or an absolute path to
    a weights folder/manifest readable by the worker.  ``threads``: inference threads per worker (None: all
    cores this process may use, ``engine.runtime.session.default_threads``)."""

    name: str
    weights: str = "default"
    backend: str = "auto"
    threads: int | None = None

    def open(self) -> ScanModel:
        return ScanModel.open(self.name, self.weights, backend=self.backend)


@dataclass(frozen=True)
class ScreenOptions:
    explainer: str = "cam"          # "none" skips heatmaps
    key_slices: int = 3             # heatmap PNGs per scan (most suspicious slices)
    threshold: float = 0.5          # flagged = probability >= threshold
    batch_size: int = 16
    colormap: str = "inferno"


@dataclass(frozen=True)
class SeriesTask:
    """One unit of work: a discovered series (or a file discovery could not read, ``error`` set)."""

    key: str
    info: SeriesInfo | None
    input_root: str
    path: str                       # what to open: the series folder (DICOM in one folder) or the file
    error: str | None = None        # discovery already failed on this file: record it, do not load
    error_type: str | None = None

    @property
    def n_slices(self) -> int:
        return int(self.info.n_slices) if self.info is not None else 0


@dataclass
class TaskOutcome:
    row: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)   # relative path under the out dir -> PNG bytes


# ---------------------------------------------------------------------------------------------- identities
def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def series_key(info: SeriesInfo) -> str:
    """Stable identity of a series within a job: kind, UID and the exact files (two copies of one series in
    two folders are two rows; rerunning the same command finds the same keys)."""
    files = "\n".join(sorted(str(Path(p).resolve()) for p in info.paths))
    return f"{info.kind}:{_short_hash(info.uid + chr(10) + files, 24)}"


def scan_pseudonym(key: str) -> str:
    """Patient-safe short id shown in reports and file names, e.g. ``S-3f2a9c1b``."""
    return "S-" + _short_hash(key)


def study_pseudonym(study_uid: str) -> str | None:
    return ("T-" + _short_hash(study_uid)) if study_uid else None


def series_open_path(info: SeriesInfo) -> str:
    """The folder holding a DICOM series (when its files share one) or the file itself."""
    if info.kind == "dicom" and len(info.paths) > 1:
        parents = {Path(p).parent for p in info.paths}
        if len(parents) == 1:
            return str(parents.pop())
    return str(info.paths[0])


# ---------------------------------------------------------------------------------------------- model cache
_MODELS: dict[ModelSpec, ScanModel] = {}
_MODELS_LOCK = threading.Lock()


def get_model(spec: ModelSpec) -> ScanModel:
    """One ``ScanModel`` per spec per process (worker processes and Dask workers keep it between series)."""
    with _MODELS_LOCK:
        model = _MODELS.get(spec)
        if model is None:
            if spec.threads:
                os.environ["LUNGLENS_THREADS"] = str(int(spec.threads))
                import torch
                torch.set_num_threads(int(spec.threads))
            model = spec.open()
            _MODELS[spec] = model
        return model


def init_worker(spec: ModelSpec) -> None:
    """Process-pool initializer: exit with the parent, then open the model once before the first series."""
    _exit_with_parent()
    get_model(spec)


def _exit_with_parent() -> None:
    """A pool worker whose coordinating process was killed (SIGKILL, crash) would wait forever on its task
    queue, holding a core's worth of memory: watch the parent's sentinel and leave when it goes."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()            # returns once the parent process has ended
        os._exit(70)

    threading.Thread(target=watch, name="lunglens-parent-watch", daemon=True).start()


# ---------------------------------------------------------------------------------------------- the task
def _base_row(task: SeriesTask) -> dict[str, Any]:
    info = task.info
    row: dict[str, Any] = {
        "series_key": task.key, "scan_id": scan_pseudonym(task.key), "input_root": task.input_root,
        "path": task.path, "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    if info is None:
        row.update(kind="file", first_file=task.path, n_files=1, n_slices=0)
        return row
    row.update(kind=info.kind, series_uid=info.uid, study_uid=info.study_uid or None,
               study_id=study_pseudonym(info.study_uid), first_file=str(info.paths[0]), n_files=len(info.paths),
               n_slices=int(info.n_slices), modality=info.modality or None,
               description=info.description or Path(info.paths[0]).name, warnings=list(info.warnings))
    return row


def _fail(row: dict[str, Any], reason: str, error_type: str) -> TaskOutcome:
    row.update(status="failed", reason=reason, error_type=error_type)
    return TaskOutcome(row=row)


def screen_series(task: SeriesTask, spec: ModelSpec, options: ScreenOptions, *,
                  progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> TaskOutcome:
    """Load, screen and explain one series; a results row + heatmap PNG bytes.  Never raises for a bad scan."""
    t0 = time.perf_counter()
    row = _base_row(task)
    if task.error is not None:
        return _fail(row, task.error, task.error_type or "UnreadableFileError")
    info = task.info
    assert info is not None
    if info.kind == "dicom" and info.modality and info.modality.upper() != "CT":
        return _fail(row, f"not a CT series (Modality {info.modality}): LungLens screens chest CT only "
                          f"[{row['first_file']}]", "NotCTError")
    try:
        model = get_model(spec)
    except Exception as exc:  # noqa: BLE001 - the job checks the model up front; this is a worker's own problem
        return _fail(row, f"the model could not be opened on worker {row['worker']}: {exc}", type(exc).__name__)
    row.update(model=model.name, weights_sha256=model.weights_sha256, backend=model.backend,
               explainer=options.explainer, positive_class=model.positive_class)

    from engine.io import LoadCancelled, load_volume

    def load_progress(f: float) -> None:
        if progress is not None:
            progress(0.3 * float(f), "loading")

    def screen_progress(f: float, message: str) -> None:
        if progress is not None:
            progress(0.3 + 0.6 * float(f), message)

    try:
        volume = load_volume(info, progress=load_progress, cancel=cancel)
    except LoadCancelled:
        raise ScreeningCancelled("screening cancelled") from None
    except VolumeError as exc:
        return _fail(row, str(exc), type(exc).__name__)
    except MemoryError:
        return _fail(row, f"not enough memory to load this series ({info.n_slices} slices); close other "
                          f"programs or screen it on a larger machine [{row['first_file']}]", "MemoryError")
    except Exception as exc:  # noqa: BLE001 - a reader bug on one odd file must not stop the batch
        return _fail(row, f"could not load the series ({type(exc).__name__}: {exc}) [{row['first_file']}]",
                     type(exc).__name__)
    t_load = time.perf_counter() - t0
    row.update(shape=list(volume.shape), spacing=[float(s) for s in volume.spacing], is_hu=bool(volume.is_hu),
               study_date=str(volume.meta.get("StudyDate") or "") or None,
               warnings=list(dict.fromkeys([*info.warnings, *volume.warnings])))
    if volume.meta.get("SeriesDescription"):
        row["description"] = str(volume.meta["SeriesDescription"])
    try:
        result = model.screen(volume, batch_size=options.batch_size, progress=screen_progress, cancel=cancel)
        t1 = time.perf_counter()
        heatmaps, files = _explain(model, volume, result, row["scan_id"], options)
        t_explain = time.perf_counter() - t1
    except ScreeningCancelled:
        raise
    except ScreeningError as exc:
        return _fail(row, f"{exc} [{row['first_file']}]", type(exc).__name__)
    except MemoryError:
        return _fail(row, f"not enough memory to screen this series {volume.shape} [{row['first_file']}]",
                     "MemoryError")
    except Exception as exc:  # noqa: BLE001 - record and go on; the traceback's last line helps a bug report
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return _fail(row, f"screening failed ({type(exc).__name__}: {exc}; at {Path(where.filename).name}:"
                          f"{where.lineno}) [{row['first_file']}]", type(exc).__name__)
    top = list(result.top_slices) or [h["z"] for h in heatmaps]     # 3-D models: where the heatmap is hottest
    scores = result.slice_scores
    row.update(
        status="ok", reason=None, error_type=None, probability=float(result.probability),
        flagged=bool(result.probability >= options.threshold), aggregation=result.aggregation,
        top_slices=top, top_slice=top[0] if top else None,
        top_scores=[float(scores[z]) for z in top] if scores is not None else None,
        slice_scores=[round(float(s), 5) for s in scores] if scores is not None else None,
        lung_slices=[int(b) for b in result.lung_slices] if result.lung_slices is not None else None,
        heatmaps=heatmaps, t_load=t_load, t_preprocess=float(result.seconds.get("preprocess", 0.0)),
        t_inference=float(result.seconds.get("inference", 0.0)), t_explain=t_explain,
        t_total=time.perf_counter() - t0,
    )
    if progress is not None:
        progress(1.0, "done")
    del volume
    return TaskOutcome(row=row, files=files)


def _key_slices(model: ScanModel, volume: Any, result: Any, options: ScreenOptions) -> tuple[list[int], Any]:
    """(z indices, heat maps (n, y, x) or None) of the slices to illustrate."""
    k = max(0, int(options.key_slices))
    if k == 0:
        return [], None
    if model.spatial_dims == 2:
        zs = list(result.top_slices[:k])
        if options.explainer == "none" or not zs:
            return zs, None
        return zs, model.explain_slices(volume, zs, options.explainer)
    # 3-D model: the slices holding the most positive evidence in its volume heatmap
    if options.explainer == "none":
        zs = [volume.shape[0] // 2]
        return zs, None
    heat = model.explain_volume(volume, options.explainer)
    per_slice = np.maximum(heat, 0).reshape(heat.shape[0], -1).max(axis=1)
    if not np.ptp(per_slice) > 0 and volume.is_hu:
        # a flat map says nothing about where: show the slices with the most lung instead
        from engine.screen.pipeline import lung_fraction
        per_slice = lung_fraction(volume.array)
    zs = [int(z) for z in np.argsort(-per_slice, kind="stable")[:k]]
    return zs, heat[zs]


def _explain(model: ScanModel, volume: Any, result: Any, scan_id: str,
             options: ScreenOptions) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    from engine.export.secondary_capture import burn_in, render_overlay, window_to_uint8

    zs, maps = _key_slices(model, volume, result, options)
    entries: list[dict[str, Any]] = []
    files: dict[str, bytes] = {}
    if not zs:
        return entries, files
    if maps is not None:
        maps = np.maximum(np.asarray(maps, dtype=np.float32), 0.0)
        peak = float(maps.max()) if maps.size else 0.0
        maps = maps / peak if peak > 0 else maps          # one scale per scan: key slices stay comparable
    scores = result.slice_scores
    for i, z in enumerate(zs):
        image = volume.array[z]
        grey = window_to_uint8(image, -600.0, 1500.0) if volume.is_hu else np.clip(image, 0, 255).astype(np.uint8)
        base = f"heatmaps/{scan_id}/z{z:04d}"
        entry: dict[str, Any] = {"z": int(z), "ct": f"{base}_ct.png"}
        if scores is not None:
            entry["score"] = float(scores[z])
        files[entry["ct"]] = _png(grey)
        if maps is not None:
            entry["map"] = f"{base}_{options.explainer}_map.png"      # the raw map, 0..255 = 0..scan peak
            files[entry["map"]] = _png(np.rint(np.clip(maps[i], 0, 1) * 255).astype(np.uint8))
            rgb = render_overlay(image, maps[i], colormap=options.colormap, opacity=0.5, threshold=0.2,
                                 is_hu=bool(volume.is_hu))
            label = f"{scan_id}  z={z}  {options.explainer}"
            if scores is not None:
                label += f"  slice P={float(scores[z]):.2f}"
            rgb = burn_in(rgb, [NOT_A_DIAGNOSIS, label], colorbar=options.colormap)
            entry["overlay"] = f"{base}_{options.explainer}.png"
            files[entry["overlay"]] = _png(rgb)
        entries.append(entry)
    return entries, files


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
