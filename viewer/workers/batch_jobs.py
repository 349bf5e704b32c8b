"""Jobs behind Tools ▸ Batch screen…: run the engine's batch job (``engine.screen.ScreeningJob``) in a Worker.

The GUI runs exactly the job ``lunglens-screen`` runs -- same discovery, same ``ScanModel`` road as the viewer,
same ``results.sqlite`` / ``results.csv`` / ``report.pdf`` -- so a batch started here can be resumed from the
command line and vice versa.  With one worker the job runs in this process on the viewer's cached model
(:func:`viewer.workers.ai_jobs.load_model`: loaded once, its first-use ONNX export done in a helper process so the
window does not freeze); with more, the engine's process pool opens the weights folder in each process.

``batch_screen_job`` reports the engine's ``JobProgress`` twice: as worker progress (fraction + a one-line
message, for the status bar) and, unthrottled by the worker but throttled by the engine (``throttle_s``), to an
``on_update`` callback (the dialog's queued signal), which carries the finished rows for the live table.
Cancel stops at the series in flight; everything finished stays in the database and a rerun skips it.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from viewer.model.ai import ModelEntry
from viewer.workers.worker import JobCancelled, JobContext

# engine.screen.job.EXPLAINER_CHOICES, repeated so this module (and the dialog) import without torch;
# tests check they agree.
BATCH_EXPLAINERS = ("cam", "gradcam", "gradcampp", "layercam", "none")


@dataclass(frozen=True)
class BatchRequest:
    """What the dialog asks for: the arguments of one ``lunglens-screen`` run."""

    inputs: tuple[Path, ...]
    entry: ModelEntry
    out_dir: Path
    explainer: str = "cam"
    workers: int = 1
    threshold: float = 0.5
    key_slices: int = 3
    force: bool = False
    retry_failed: bool = False
    backend: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)   # other ScreeningJob keywords (tests)

    def command_line(self) -> list[str]:
        """The equivalent ``lunglens-screen`` command (recorded as the run's argv in ``results.sqlite``)."""
        argv = ["lunglens-screen", *(str(p) for p in self.inputs), "--model", self.entry.name,
                "--weights", str(self.entry.folder), "--explainer", self.explainer, "--out", str(self.out_dir)]
        if self.workers != 1:
            argv += ["--workers", str(self.workers)]
        if self.threshold != 0.5:
            argv += ["--threshold", f"{self.threshold:g}"]
        if self.key_slices != 3:
            argv += ["--key-slices", str(self.key_slices)]
        if self.backend != "auto":
            argv += ["--backend", self.backend]
        if self.force:
            argv.append("--force")
        if self.retry_failed:
            argv.append("--retry-failed")
        return argv

    def command_text(self) -> str:
        return shlex.join(self.command_line())


def batch_screen_job(context: JobContext, request: BatchRequest,
                     on_update: Callable[[Any], None] | None = None) -> Any:
    """Screen every series under ``request.inputs`` into ``request.out_dir``; returns the engine's ``JobSummary``.

    Raises ``engine.screen.JobError`` (``OutputInsideInputError`` for an output folder inside an input) when the
    job cannot start -- before anything is written.  A cancelled run raises ``JobCancelled`` after the engine
    has closed the database and rebuilt the CSV/PDF of what is done.
    """
    from engine.screen.job import ScreeningJob

    model: Any = request.entry.name
    weights: Any = request.entry.folder
    try:
        from viewer.workers.ai_jobs import cached_model, export_in_helper_process, load_model, onnx_export_cached
    except ImportError:          # the AI workflow's model cache changed: the engine opens the weights itself
        cached_model = None
    if request.workers == 1 and cached_model is not None:
        entry = request.entry
        if cached_model(entry, request.backend) is None:
            if request.backend in ("auto", "onnx") and not onnx_export_cached(entry):
                context.progress(None, None, f"Preparing the fast back-end for {entry.name} (first use of these "
                                             f"weights) …")
                export_in_helper_process(entry, request.backend, context)
            context.check()
            context.progress(None, None, f"Loading {entry.name} …")
        model = load_model(entry, request.backend)
        context.check()

    job = ScreeningJob(list(request.inputs), model, request.out_dir, weights=weights, explainer=request.explainer,
                       workers=request.workers, backend=request.backend, threshold=request.threshold,
                       key_slices=request.key_slices, force=request.force, retry_failed=request.retry_failed,
                       argv=request.command_line(), **request.extra)

    def progress(p: Any) -> None:
        if on_update is not None:
            on_update(p)
        context.progress(p.fraction, None, progress_text(p))

    summary = job.run(progress=progress, cancel=context.is_cancelled)
    if summary.cancelled:
        raise JobCancelled()
    return summary


def progress_text(p: Any) -> str:
    """One line for a status bar: ``3/10 series · 1 failed · ETA 0:42 · screening <series>``."""
    parts = [f"{p.done}/{p.total} series" if p.total else p.message]
    if p.failed:
        parts.append(f"{p.failed} failed")
    if p.eta_s is not None and p.done < p.total:
        parts.append(f"ETA {clock(p.eta_s)}")
    if p.current and p.done < p.total:
        parts.append(p.current)
    elif p.total and p.message and not p.message.startswith(("S-", "screening")):
        parts.append(p.message)
    return " · ".join(parts)


def clock(seconds: float | None) -> str:
    """``m:ss`` (or ``h:mm:ss``); ``--:--`` when unknown."""
    if seconds is None:
        return "--:--"
    s = int(round(max(0.0, seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def read_results_job(context: JobContext, out_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(rows most suspicious first, the folder's settings) of a batch output folder; read-only (WAL-safe)."""
    from engine.screen.store import read_meta, read_results

    context.progress(None, None, f"Reading {Path(out_dir).name}/results.sqlite …")
    rows = read_results(out_dir)
    return rows, read_meta(out_dir)


__all__ = ["BATCH_EXPLAINERS", "BatchRequest", "batch_screen_job", "clock", "progress_text", "read_results_job"]
