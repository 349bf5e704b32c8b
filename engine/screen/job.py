"""``ScreeningJob``: batch-screen every series under some folders/files into one output folder.

    job = ScreeningJob(["/scans/ward7"], "lightsqueeze_proposed", "/results/ward7", explainer="cam", workers=1)
    summary = job.run(progress=lambda p: print(p.done, p.total, p.eta_s, p.current), cancel=lambda: False)
    rows = read_results("/results/ward7")      # most suspicious first; path + series_uid + top_slice per row

Output folder: ``results.sqlite`` (one row per series, see ``engine.screen.store``), ``results.csv``,
``report.pdf`` (``engine.screen.report``) and ``heatmaps/<scan_id>/z<z>_<explainer>.png``.

Guarantees
----------
* **Read-only inputs.**  Nothing is written into an input folder; an output folder inside an input is refused
  unless ``force=True`` (and then the output folder is excluded from discovery).
* **One bad series never stops the batch**: it is recorded as ``failed`` with its reason.  Files that discovery
  could not read but look like scans (``.dcm``, ``.nii.gz``, ...) are failures too; other non-image files (text,
  DICOM reports) are listed in the ``skipped`` table.
* **Resumable and crash-safe.**  Each finished series is one SQLite transaction (WAL, ``synchronous=FULL``),
  committed after its PNGs were written atomically; a rerun of the same command skips finished series
  (``retry_failed=True`` retries the failed ones).  Killing the process at any moment loses at most the series
  in flight and never duplicates or corrupts a row.  CSV and PDF are rebuilt from the database at the end of
  every run (atomically), so they are complete after any rerun.
* **Memory stays flat**: one volume per worker at a time, a bounded number of series in flight, rows go to the
  database as they finish.
* **Same road as the viewer**: every series goes through ``engine.screen.pipeline.ScanModel``.

Execution engines (all run the same function, ``engine.screen.task.screen_series``):
``workers=1`` in this process (fine-grained progress, what the GUI uses); ``workers=N`` a
``concurrent.futures.ProcessPoolExecutor`` (spawned processes, each opening the model once, ``cores // N``
inference threads each); ``scheduler="tcp://host:8786"`` (or a ``distributed.Client``) a Dask distributed
cluster — workers need LungLens installed and the inputs (and a ``weights`` path, if given) readable at the same
paths; they return rows and PNG bytes, and only this process writes the output folder.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from engine.screen.pipeline import ScanModel, ScreeningCancelled
from engine.screen.store import CSV_NAME, DB_NAME, REPORT_NAME, ResultsStore, StoreError, atomic_write_bytes, \
    write_csv
from engine.screen.task import ModelSpec, ScreenOptions, SeriesTask, TaskOutcome, _MODELS, _MODELS_LOCK, \
    get_model, init_worker, scan_pseudonym, screen_series, series_key, series_open_path

CancelFn = Callable[[], bool]

# Discovery "skips" that are ordinary non-image files, not broken scans.
_BENIGN_SKIPS = ("not DICOM or a supported image format", "system file", "DICOMDIR index",
                 "DICOM object without pixel data", "not a regular file")
# A file with one of these endings that cannot be read is a broken scan (recorded as failed), not clutter.
SCAN_SUFFIXES = (".dcm", ".dicom", ".ima", ".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".jpg",
                 ".jpeg", ".tif", ".tiff", ".bmp")
EXPLAINER_CHOICES = ("cam", "gradcam", "gradcampp", "layercam", "none")


class JobError(ValueError):
    """The job cannot start as asked (missing input, output inside an input, another model's results...)."""


class OutputInsideInputError(JobError):
    """The output folder lies inside an input folder (refused unless ``force``)."""


@dataclass(frozen=True)
class JobProgress:
    """What a progress bar / the GUI shows.  ``done``/``total`` count series (including ones finished by an
    earlier, interrupted run); ``fraction`` is slice-weighted and includes the series in flight."""

    done: int
    total: int
    failed: int
    flagged: int
    fraction: float
    elapsed_s: float
    eta_s: float | None
    current: str | None              # label of a series being screened (the latest started)
    message: str
    last: dict[str, Any] | None = None   # the row committed most recently (scan_id, status, probability, ...)
    finished: tuple[dict[str, Any], ...] = ()   # every row committed since the previous update (same keys)

    @property
    def percent(self) -> int:
        return int(round(100 * self.fraction))


@dataclass
class JobSummary:
    out_dir: Path
    total: int                       # series in the job
    screened: int                    # finished in this run
    resumed: int                     # already finished by earlier runs, skipped now
    ok: int
    failed: int
    flagged: int
    skipped_files: int               # non-image files ignored by discovery
    cancelled: bool
    seconds: float
    engine: str                      # "inline", "processes x N", "dask <address>"
    db: Path = field(default=Path())
    csv: Path | None = None
    report: Path | None = None
    report_error: str | None = None

    @property
    def complete(self) -> bool:
        return not self.cancelled and self.ok + self.failed >= self.total

    def to_dict(self) -> dict[str, Any]:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}
        d["complete"] = self.complete
        return d


# ---------------------------------------------------------------------------------------------- helpers
def _resolve(path: str | Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path)))).resolve()


def _is_within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def model_manifest(name: str, weights: str | Path = "default") -> dict[str, Any]:
    """The manifest of the weights a job would use (no network is built), checked against ``name``."""
    from engine.models.registry import model_config
    from engine.weights import WeightsError, find_default_weights, read_manifest

    try:
        canonical = model_config(name).name
    except KeyError as exc:
        raise JobError(f"unknown model {name!r}; list them with `lunglens-engine models`") from exc
    if str(weights) == "default":
        manifest = find_default_weights(canonical)
        if manifest is None:
            from engine.weights import weights_search_path
            where = ", ".join(str(p) for p in weights_search_path())
            raise JobError(f"no trained weights for model {canonical!r} (searched {where}); pass --weights "
                           f"FOLDER, or train some with `lunglens-engine train`")
        return manifest
    try:
        manifest = dict(read_manifest(weights))
    except WeightsError as exc:
        raise JobError(str(exc)) from exc
    manifest.setdefault("location", str(weights))
    if model_config(str(manifest.get("model_name"))).name != canonical:
        raise JobError(f"the weights at {weights} are for {manifest.get('model_name')!r}, not {canonical!r}")
    return manifest


class _Throttle:
    def __init__(self, interval: float):
        self.interval = interval
        self.last = -float("inf")

    def ready(self, force: bool = False) -> bool:
        now = time.monotonic()
        if force or now - self.last >= self.interval:
            self.last = now
            return True
        return False


# ---------------------------------------------------------------------------------------------- the job
class ScreeningJob:
    """Screen every series under ``inputs`` with one model into ``out_dir`` (see the module docstring).

    ``model``: a registered model name (then ``weights`` = "default" or a weights folder) or an open
    ``ScanModel`` (the viewer's; used as is in this process, its weights folder is handed to workers).
    ``explainer``: cam | gradcam | gradcampp | layercam | none.  ``workers``: processes on this machine;
    ``scheduler``: a Dask scheduler address or ``distributed.Client`` (overrides ``workers``).  ``threads``:
    inference threads per worker (default: this process's cores, divided among ``workers``).
    """

    def __init__(self, inputs: Sequence[str | Path] | str | Path, model: str | ScanModel,
                 out_dir: str | Path, *, weights: str | Path = "default", explainer: str = "cam",
                 workers: int = 1, scheduler: Any = None, backend: str = "auto", threshold: float = 0.5,
                 key_slices: int = 3, force: bool = False, retry_failed: bool = False, report: bool = True,
                 batch_size: int = 16, throttle_s: float = 0.1, hide_paths: bool = False,
                 threads: int | None = None, scheduler_timeout_s: float = 20.0,
                 argv: Sequence[str] | None = None):
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        self.inputs = [Path(p) for p in inputs]
        self.out_dir = Path(out_dir)
        self.scan_model = model if isinstance(model, ScanModel) else None
        threads = None if threads is None else max(1, int(threads))
        if self.scan_model is not None:
            self.spec = ModelSpec(self.scan_model.name, str(Path(self.scan_model.loaded.path).resolve()), backend,
                                  threads)
        else:
            w = str(weights) if str(weights) == "default" else str(_resolve(weights))
            self.spec = ModelSpec(str(model), w, backend, threads)
        explainer = (explainer or "none").lower().replace("-", "").replace("+", "p")
        if explainer not in EXPLAINER_CHOICES:
            raise JobError(f"unknown explainer {explainer!r}; choose one of {', '.join(EXPLAINER_CHOICES)}")
        if not 0.0 <= float(threshold) <= 1.0:
            raise JobError(f"threshold must be a probability in [0, 1], got {threshold}")
        if int(workers) < 1:
            raise JobError(f"workers must be at least 1, got {workers}")
        self.options = ScreenOptions(explainer=explainer, key_slices=int(key_slices), threshold=float(threshold),
                                     batch_size=int(batch_size))
        self.workers = int(workers)
        self.scheduler = scheduler
        self.scheduler_timeout_s = float(scheduler_timeout_s)
        self.force = bool(force)
        self.retry_failed = bool(retry_failed)
        self.make_report = bool(report)
        self.throttle_s = float(throttle_s)
        self.hide_paths = bool(hide_paths)
        self.argv = list(argv) if argv is not None else list(sys.argv)
        self.manifest: dict[str, Any] | None = None
        self.skipped: list[tuple[str, str, str]] = []
        self.discovery_warnings: list[str] = []

    # ------------------------------------------------------------------ checks and discovery
    def check(self) -> None:
        """Fail early with a clear message: inputs exist, output is not inside an input, weights exist."""
        if not self.inputs:
            raise JobError("no inputs given: name one or more folders or files to screen")
        out = _resolve(self.out_dir)
        for inp in self.inputs:
            if not os.path.lexists(inp):
                raise JobError(f"input not found: {inp} (check the path)")
            root = _resolve(inp)
            folder = root if root.is_dir() else root.parent
            if _is_within(out, folder) and not self.force:
                raise OutputInsideInputError(
                    f"the output folder {out} is inside the input folder {folder}: LungLens never writes into "
                    f"the folders it screens. Choose an --out outside it (or pass --force to allow it; the output "
                    f"folder is then excluded from screening)")
        if out.exists() and not out.is_dir():
            raise JobError(f"--out must be a folder, but {out} is a file")
        if self.manifest is None:
            self.manifest = model_manifest(self.spec.name, self.spec.weights)

    def identity(self) -> dict[str, Any]:
        m = self.manifest or {}
        return {"model": m.get("model_name", self.spec.name), "weights_sha256": m.get("sha256", ""),
                "explainer": self.options.explainer, "threshold": self.options.threshold,
                "key_slices": self.options.key_slices}

    def discover(self) -> list[SeriesTask]:
        """Every series under the inputs, as tasks (deduplicated, output folder excluded); sets ``skipped``."""
        from engine.io import VolumeError, discover

        out = _resolve(self.out_dir)
        tasks: dict[str, SeriesTask] = {}
        self.skipped, self.discovery_warnings = [], []
        for inp in self.inputs:
            root = str(_resolve(inp))
            try:
                found = discover(inp)
            except VolumeError as exc:
                raise JobError(f"cannot screen input {inp}: {exc}") from exc
            self.discovery_warnings.extend(found.warnings)
            for info in found:
                if any(_is_within(_resolve(p), out) for p in info.paths[:1]):
                    continue            # our own heatmaps, when --force put the output inside an input
                key = series_key(info)
                tasks.setdefault(key, SeriesTask(key=key, info=info, input_root=root,
                                                 path=series_open_path(info)))
            for path, reason in found.skipped_files:
                p = _resolve(path)
                if _is_within(p, out):
                    continue
                benign = any(reason.startswith(b) for b in _BENIGN_SKIPS)
                looks_like_scan = p.name.lower().endswith(SCAN_SUFFIXES)
                if benign and not looks_like_scan:
                    self.skipped.append((str(p), reason, root))
                    continue
                if reason.startswith("not DICOM"):
                    reason = (f"the file is neither DICOM nor a readable image although its name says it is a "
                              f"scan (corrupt or incomplete copy?); copy it again from the source [{p}]")
                elif str(p) not in reason:
                    reason = f"{reason} [{p}]"
                key = "file:" + scan_pseudonym(str(p))[2:] + scan_pseudonym(str(p) + "#")[2:]
                tasks.setdefault(key, SeriesTask(key=key, info=None, input_root=root, path=str(p),
                                                 error=reason, error_type="UnreadableFileError"))
        return list(tasks.values())

    # ------------------------------------------------------------------ running
    @property
    def engine_name(self) -> str:
        if self.scheduler is not None:
            return f"dask {getattr(self.scheduler, 'scheduler', None) and self.scheduler.scheduler.address or self.scheduler}"
        return "inline" if self.workers == 1 else f"processes x {self.workers}"

    def run(self, progress: Callable[[JobProgress], None] | None = None,
            cancel: CancelFn | None = None) -> JobSummary:
        """Screen everything not yet finished in ``out_dir``; ``progress`` gets throttled ``JobProgress``
        updates (at most one per ``throttle_s``, plus the final one); ``cancel()`` returning True stops after
        (inline: during) the series in flight.  Raises ``JobError`` for setup problems only."""
        t_start = time.monotonic()
        self.check()
        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        lock = _FolderLock(out)
        try:
            store = ResultsStore(out)
        except StoreError as exc:
            lock.release()
            raise JobError(str(exc)) from exc
        try:
            _remove_stale_temp_files(out)
            try:
                store.bind_job(self.identity())
            except StoreError as exc:
                raise JobError(str(exc)) from exc
            store.set_meta("model_manifest", json.dumps(
                {k: v for k, v in (self.manifest or {}).items() if k != "location"}, default=str))
            if self.scan_model is not None:
                with _MODELS_LOCK:
                    _MODELS.setdefault(self.spec, self.scan_model)
            run_id = store.start_run(argv=self.argv, inputs=[str(_resolve(i)) for i in self.inputs],
                                     workers=self.workers, scheduler=None if self.scheduler is None
                                     else str(self.engine_name), host=socket.gethostname())
            state = _State(self, store, run_id, progress, t_start)
            state.emit("discovering series", force=True)
            tasks = self.discover()
            store.put_skipped(self.skipped, run_id)
            finished = store.finished_keys(include_failed=not self.retry_failed)
            pending = [t for t in tasks if t.key not in finished]
            state.begin(total=len(tasks), pending=pending, resumed=len(tasks) - len(pending))
            outcome = "complete"
            try:
                for task, result in self._execute(pending, state, cancel):
                    state.commit(task, result)
                if cancel is not None and cancel() and state.n_now < len(pending):
                    outcome = "cancelled"
            except ScreeningCancelled:
                outcome = "cancelled"
            except KeyboardInterrupt:
                outcome = "interrupted"
                raise
            finally:
                store.finish_run(run_id, outcome, n_pending=len(pending), n_done=state.n_now,
                                 n_failed=state.failed_now)
            summary = JobSummary(out_dir=out, total=state.total, screened=state.n_now, resumed=state.resumed,
                                 ok=store.count("ok"), failed=store.count("failed"), flagged=_count_flagged(store),
                                 skipped_files=len(store.skipped()), cancelled=outcome != "complete",
                                 seconds=time.monotonic() - t_start, engine=self.engine_name, db=out / DB_NAME)
            summary.csv = write_csv(store.rows(), out / CSV_NAME)
            if self.make_report:
                state.emit("writing report.pdf", force=True)
                try:
                    from engine.screen.report import write_report
                    summary.report = write_report(out, hide_paths=self.hide_paths, summary=summary)
                except Exception as exc:  # noqa: BLE001 - results are safe in the DB/CSV; say what failed
                    summary.report_error = f"{type(exc).__name__}: {exc}"
            summary.seconds = time.monotonic() - t_start
            state.emit("finished" if summary.complete else "stopped", force=True)
            return summary
        finally:
            if self.scan_model is not None:
                with _MODELS_LOCK:       # do not keep the caller's model alive in our cache
                    if _MODELS.get(self.spec) is self.scan_model:
                        _MODELS.pop(self.spec, None)
            store.close()
            lock.release()

    # ------------------------------------------------------------------ engines
    def _execute(self, pending: list[SeriesTask], state: "_State",
                 cancel: CancelFn | None) -> Iterator[tuple[SeriesTask, TaskOutcome]]:
        if not pending:
            return iter(())
        if self.scheduler is not None:
            return self._run_dask(pending, state, cancel)
        if self.workers > 1:
            return self._run_processes(pending, state, cancel)
        return self._run_inline(pending, state, cancel)

    def _run_inline(self, pending, state, cancel) -> Iterator[tuple[SeriesTask, TaskOutcome]]:
        try:
            get_model(self.spec)
        except Exception as exc:  # noqa: BLE001
            raise JobError(f"cannot open model {self.spec.name!r}: {exc}") from exc
        for task in pending:
            if cancel is not None and cancel():
                return
            state.started(task)
            outcome = screen_series(task, self.spec, self.options,
                                    progress=lambda f, m, t=task: state.partial(t, f), cancel=cancel)
            yield task, outcome

    def _run_processes(self, pending, state, cancel) -> Iterator[tuple[SeriesTask, TaskOutcome]]:
        cores = _usable_cores()
        spec = ModelSpec(self.spec.name, self.spec.weights, self.spec.backend,
                         self.spec.threads or max(1, cores // self.workers))
        ctx = multiprocessing.get_context("spawn")   # never fork a process holding ORT/torch thread pools

        def new_pool() -> ProcessPoolExecutor:
            return ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=init_worker,
                                       initargs=(spec,))

        pool = new_pool()
        queue = iter(pending)
        inflight: dict[Future, SeriesTask] = {}
        stop = False
        try:
            while True:
                while not stop and len(inflight) < 2 * self.workers:
                    task = next(queue, None)
                    if task is None:
                        break
                    state.started(task)
                    inflight[pool.submit(screen_series, task, spec, self.options)] = task
                if not inflight:
                    return
                done, _ = wait(list(inflight), timeout=self.throttle_s, return_when=FIRST_COMPLETED)
                broken = False
                for fut in done:
                    task = inflight.pop(fut)
                    try:
                        yield task, fut.result()
                    except BrokenProcessPool:
                        broken = True
                        yield task, _worker_died(task, self.spec)
                    except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result: record, go on
                        yield task, _worker_error(task, self.spec, exc)
                if broken:
                    for fut, task in list(inflight.items()):
                        inflight.pop(fut)
                        yield task, _worker_died(task, self.spec)
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = new_pool()
                if not stop and cancel is not None and cancel():
                    stop = True
                    for fut in list(inflight):
                        if fut.cancel():
                            inflight.pop(fut)
                    _terminate(pool)
                    return
                state.tick()
        finally:
            pool.shutdown(wait=not stop, cancel_futures=True)

    def _run_dask(self, pending, state, cancel) -> Iterator[tuple[SeriesTask, TaskOutcome]]:
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise JobError("--scheduler needs dask[distributed] (pip install 'dask[distributed]')") from exc
        own = not isinstance(self.scheduler, Client)
        try:
            client = Client(self.scheduler, timeout=f"{self.scheduler_timeout_s}s") if own else self.scheduler
        except Exception as exc:  # noqa: BLE001 - OSError/TimeoutError/ValueError depending on the address
            raise JobError(f"cannot reach the Dask scheduler at {self.scheduler!r} ({exc}); start one with "
                           f"`dask scheduler` and workers with `dask worker ADDRESS`") from exc
        try:
            slots = max(1, sum(client.nthreads().values()))
            queue = iter(pending)
            inflight: dict[Any, SeriesTask] = {}
            while True:
                while len(inflight) < 2 * slots:
                    task = next(queue, None)
                    if task is None:
                        break
                    state.started(task)
                    inflight[client.submit(screen_series, task, self.spec, self.options, pure=False)] = task
                if not inflight:
                    return
                done = [f for f in inflight if f.done()]
                if not done:
                    time.sleep(min(0.05, self.throttle_s))
                for fut in done:
                    task = inflight.pop(fut)
                    if fut.status == "finished":
                        yield task, fut.result()
                    else:
                        exc = fut.exception()
                        yield task, _worker_error(task, self.spec, exc)
                    fut.release()
                if cancel is not None and cancel():
                    client.cancel(list(inflight))
                    return
                state.tick()
        finally:
            if own:
                client.close()


# ---------------------------------------------------------------------------------------------- progress state
class _State:
    """Counts, slice-weighted ETA and throttled emission; commits outcomes to the store."""

    def __init__(self, job: ScreeningJob, store: ResultsStore, run_id: int,
                 callback: Callable[[JobProgress], None] | None, t_start: float):
        self.job, self.store, self.run_id, self.callback = job, store, run_id, callback
        self.t_start = t_start
        self.throttle = _Throttle(job.throttle_s)
        self.total = self.done = self.failed = self.flagged = 0
        self.resumed = self.n_now = self.failed_now = 0
        self.weight_total = self.weight_done = 0.0
        self.partials: dict[str, tuple[float, float]] = {}   # series in flight: (fraction, weight)
        self.current: str | None = None
        self.last: dict[str, Any] | None = None
        self.unreported: list[dict[str, Any]] = []
        self.t_work: float | None = None
        self.out = _resolve(job.out_dir)

    @staticmethod
    def weight(task: SeriesTask) -> float:
        return 1.0 + float(task.n_slices)

    def begin(self, *, total: int, pending: list[SeriesTask], resumed: int) -> None:
        self.total = total
        self.resumed = resumed
        self.done = resumed
        self.failed = self.store.count("failed")
        self.flagged = _count_flagged(self.store)
        self.weight_total = sum(self.weight(t) for t in pending)
        self.t_work = time.monotonic()
        self.emit(f"{len(pending)} series to screen, {resumed} already done", force=True)

    def started(self, task: SeriesTask) -> None:
        self.partials[task.key] = (0.0, self.weight(task))
        self.current = _label(task)

    def partial(self, task: SeriesTask, fraction: float) -> None:
        self.partials[task.key] = (max(0.0, min(1.0, float(fraction))), self.weight(task))
        self.emit(f"screening {_label(task)}")

    def tick(self) -> None:
        self.emit(f"screening {self.current}" if self.current else "screening")

    def commit(self, task: SeriesTask, outcome: TaskOutcome) -> None:
        """Write the PNGs (atomically), then the row (one transaction): the order that makes a kill safe."""
        row = dict(outcome.row)
        for rel, data in outcome.files.items():
            target = (self.out / rel).resolve()
            if not _is_within(target, self.out):
                raise JobError(f"a worker returned a file outside the output folder: {rel!r}")
            atomic_write_bytes(target, data)
        row["run_id"] = self.run_id
        row["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.store.put(row)
        self.partials.pop(task.key, None)
        self.weight_done += self.weight(task)
        self.n_now += 1
        self.done = self.resumed + self.n_now
        if row.get("status") == "failed":
            self.failed_now += 1
        self.failed = self.store.count("failed")
        self.flagged = _count_flagged(self.store)
        self.last = {k: row.get(k) for k in ("scan_id", "status", "probability", "flagged", "top_slice", "path",
                                             "series_uid", "description", "reason")}
        self.unreported.append(self.last)
        self.emit(f"{row.get('scan_id')} {row.get('status')}", force=self.n_now == 1)

    def emit(self, message: str, force: bool = False) -> None:
        if self.callback is None or not self.throttle.ready(force):
            return
        now = time.monotonic()
        in_flight = sum(f * w for f, w in self.partials.values())
        work = self.weight_done + in_flight
        fraction_pending = work / self.weight_total if self.weight_total else 1.0
        eta = None
        if self.t_work is not None and work > 0 and self.weight_total:
            rate = work / max(1e-6, now - self.t_work)
            eta = max(0.0, (self.weight_total - work) / rate)
        base = self.resumed
        frac = (base + fraction_pending * max(0, self.total - base)) / self.total if self.total else 0.0
        self.callback(JobProgress(done=self.done, total=self.total, failed=self.failed, flagged=self.flagged,
                                  fraction=min(1.0, frac), elapsed_s=now - self.t_start, eta_s=eta,
                                  current=self.current, message=message, last=self.last,
                                  finished=tuple(self.unreported)))
        self.unreported.clear()


def _label(task: SeriesTask) -> str:
    info = task.info
    name = Path(task.path).name
    if info is None:
        return name
    return f"{name} ({info.description or info.kind}, {info.n_slices} sl.)"


def _count_flagged(store: ResultsStore) -> int:
    return int(store.conn.execute("SELECT COUNT(*) FROM results WHERE flagged = 1").fetchone()[0])


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _failed_outcome(task: SeriesTask, spec: ModelSpec, reason: str, error_type: str) -> TaskOutcome:
    from engine.screen.task import _base_row

    row = _base_row(task)
    row.update(status="failed", reason=reason, error_type=error_type, model=spec.name)
    return TaskOutcome(row=row)


def _worker_died(task: SeriesTask, spec: ModelSpec) -> TaskOutcome:
    return _failed_outcome(task, spec, "the worker process died while screening this series (out of memory, or a "
                                       "crash in an image decoder); rerun with --retry-failed --workers 1 to "
                                       f"retry it alone [{task.path}]", "WorkerDied")


def _worker_error(task: SeriesTask, spec: ModelSpec, exc: BaseException | None) -> TaskOutcome:
    return _failed_outcome(task, spec, f"the worker could not screen this series ({type(exc).__name__}: {exc}) "
                                       f"[{task.path}]", type(exc).__name__)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop worker processes now (cancel): their series in flight are simply not recorded."""
    for proc in list(getattr(pool, "_processes", {}).values() or []):
        try:
            proc.terminate()
        except Exception:  # noqa: BLE001
            pass


class _FolderLock:
    """An advisory lock on ``OUTDIR/.lunglens-screen.lock`` so two jobs never write one folder at once.  The OS
    drops it when the process dies, even by SIGKILL, so a crashed run never blocks its own resume."""

    NAME = ".lunglens-screen.lock"

    def __init__(self, out_dir: Path):
        self.fh = open(out_dir / self.NAME, "a+")
        try:
            import fcntl
        except ImportError:             # Windows: msvcrt byte-range lock on the first byte
            import msvcrt
            try:
                msvcrt.locking(self.fh.fileno(), msvcrt.LK_NBLCK, 1)
            except OSError as exc:
                self.fh.close()
                raise JobError(f"another lunglens-screen is writing to {out_dir}; wait for it or choose "
                               f"another --out") from exc
            return
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self.fh.close()
            raise JobError(f"another lunglens-screen is writing to {out_dir}; wait for it or choose "
                           f"another --out") from exc

    def release(self) -> None:
        try:
            self.fh.close()             # closing the file drops the lock
        except OSError:
            pass


def _remove_stale_temp_files(out_dir: Path) -> None:
    """Temporary files of a killed run (``.<name>.<pid>.tmp``): never read, safe to delete."""
    for folder in (out_dir, out_dir / "heatmaps"):
        if not folder.is_dir():
            continue
        pattern = "**/.*.tmp" if folder.name == "heatmaps" else ".*.tmp"
        for p in folder.glob(pattern):
            try:
                p.unlink()
            except OSError:
                pass


def job_from_out_dir(out_dir: str | Path) -> dict[str, Any]:
    """The settings stored in an output folder (for ``--report-only`` and the GUI)."""
    from engine.screen.store import read_meta

    return read_meta(out_dir)


__all__ = ["ScreeningJob", "JobProgress", "JobSummary", "JobError", "OutputInsideInputError", "model_manifest",
           "EXPLAINER_CHOICES", "SCAN_SUFFIXES", "job_from_out_dir"]
