"""Run any Python job off the GUI thread: throttled progress, cancel, and result / error signals.

A *job* is a callable taking a :class:`JobContext` first (``job(context, *args, **kwargs)``).  It either

* returns its result, reporting with ``context.progress(done, total, message)`` and polling
  ``context.cancelled`` (pass ``context.progress`` / ``context.is_cancelled`` on to engine functions), or
* is a generator: each ``yield`` reports progress (a fraction, ``(done, total)``, ``(done, total, message)`` or
  a message string) and is a cancellation point; its ``return`` value is the result.

Use :meth:`Worker.call` for a plain function that knows nothing about contexts.  Signals are emitted from the
pool thread and delivered queued on the GUI thread; ``finished`` always comes last, after exactly one of
``result`` / ``error`` / ``cancelled``.  Progress reaches the GUI at most ``1 / min_interval`` times a second
(default 10/s), so a job may report per slice without flooding the event loop.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from engine.io.errors import LoadCancelled

DEFAULT_MIN_INTERVAL = 0.1  # s between progress signals: <= 10 updates per second
_POOL: QThreadPool | None = None
_ACTIVE: set[Worker] = set()
_ACTIVE_LOCK = threading.Lock()


class JobCancelled(Exception):
    """Raised by :meth:`JobContext.check` inside a job once cancel was requested."""


@dataclass(frozen=True)
class ProgressReport:
    """``fraction`` in 0..1 (None: unknown), what is happening, seconds elapsed and estimated remaining."""

    fraction: float | None
    message: str
    elapsed: float
    eta: float | None

    @property
    def percent(self) -> int | None:
        return None if self.fraction is None else int(round(100 * self.fraction))


def worker_pool() -> QThreadPool:
    """The pool all LungLens workers run on (two threads: the machines this targets have two cores)."""
    global _POOL
    if _POOL is None:
        _POOL = QThreadPool()
        _POOL.setMaxThreadCount(2)
        _POOL.setObjectName("lunglens-workers")
    return _POOL


def active_workers() -> list[Worker]:
    """Workers started and not yet finished (their ``finished`` signal may still be queued)."""
    with _ACTIVE_LOCK:
        _ACTIVE.difference_update([w for w in _ACTIVE if w.is_done])
        return list(_ACTIVE)


class JobContext:
    """Handed to a job: report progress, see whether it should stop."""

    def __init__(self, worker: Worker):
        self._worker = worker
        self._started = time.monotonic()
        self._last_emit = -float("inf")
        self._last_message = ""

    @property
    def cancelled(self) -> bool:
        return self._worker._cancel.is_set()

    def is_cancelled(self) -> bool:
        """Callable form of :attr:`cancelled`, for engine functions taking a ``cancel`` callback."""
        return self._worker._cancel.is_set()

    def check(self) -> None:
        """Raise :class:`JobCancelled` if cancel was requested (a cancellation point)."""
        if self._worker._cancel.is_set():
            raise JobCancelled()

    def progress(self, done: float | None = None, total: float | None = None, message: str | None = None) -> None:
        """Report progress (``done`` of ``total``, or a fraction when ``total`` is None); throttled, thread-safe."""
        if done is None:
            fraction = None
        elif total:
            fraction = min(1.0, max(0.0, float(done) / float(total)))
        elif total is None:
            fraction = min(1.0, max(0.0, float(done)))
        else:
            fraction = None
        if message is not None:
            self._last_message = str(message)
        now = time.monotonic()
        if now - self._last_emit < self._worker.min_interval:
            return
        self._last_emit = now
        elapsed = now - self._started
        eta = elapsed * (1 - fraction) / fraction if fraction and fraction > 0.01 else None
        self._worker.progress.emit(ProgressReport(fraction, self._last_message, elapsed, eta))

    def report(self, item: Any) -> None:
        """Interpret one value yielded by a generator job as progress."""
        if item is None:
            return
        if isinstance(item, str):
            self.progress(None, None, item)
        elif isinstance(item, ProgressReport):
            self.progress(item.fraction, None, item.message)
        elif isinstance(item, tuple):
            self.progress(*item[:3])
        else:
            self.progress(float(item))


class Worker(QObject):
    """One job on the worker pool.  Create, connect signals, :meth:`start`; :meth:`cancel` any time."""

    started = Signal()
    progress = Signal(object)     # ProgressReport
    result = Signal(object)       # the job's return value
    error = Signal(object, str)   # the exception and its formatted traceback
    cancelled = Signal()
    finished = Signal()           # always, last

    def __init__(self, job: Callable[..., Any], *args: Any, name: str = "", min_interval: float = DEFAULT_MIN_INTERVAL,
                 **kwargs: Any):
        super().__init__()
        self._job, self._args, self._kwargs = job, args, kwargs
        self.name = name or getattr(job, "__name__", "job")
        self.min_interval = float(min_interval)
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._started = False
        self._runnable: _Runnable | None = None
        self.outcome: str | None = None   # "result" | "error" | "cancelled" once done

    @classmethod
    def call(cls, function: Callable[..., Any], *args: Any, name: str = "", **kwargs: Any) -> Worker:
        """A worker for a plain function (no context, no progress): ``function(*args, **kwargs)``."""
        def job(_context: JobContext) -> Any:
            return function(*args, **kwargs)
        return cls(job, name=name or getattr(function, "__name__", "job"))

    # --- control (GUI thread) -----------------------------------------------------------------------------
    def start(self, pool: QThreadPool | None = None) -> Worker:
        if self._started:
            raise RuntimeError(f"worker {self.name!r} was already started")
        self._started = True
        with _ACTIVE_LOCK:
            _ACTIVE.add(self)
        self.finished.connect(self._forget)
        self._runnable = _Runnable(self)
        (pool or worker_pool()).start(self._runnable)
        return self

    def cancel(self) -> None:
        """Ask the job to stop at its next cancellation point; ``cancelled`` then ``finished`` follow."""
        self._cancel.set()

    @property
    def is_cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def is_running(self) -> bool:
        return self._started and not self._done.is_set()

    @property
    def is_done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has returned (True) or ``timeout`` seconds passed (False)."""
        if not self._started:
            return True
        return self._done.wait(timeout)

    def _forget(self) -> None:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self)

    # --- body (pool thread) -------------------------------------------------------------------------------
    def _run(self) -> None:
        context = JobContext(self)
        try:
            self.started.emit()
            if self._cancel.is_set():
                raise JobCancelled()
            value = self._job(context, *self._args, **self._kwargs)
            if hasattr(value, "__next__") and hasattr(value, "send"):   # a generator job
                value = self._drive(value, context)
            if self._cancel.is_set():
                raise JobCancelled()
        except (JobCancelled, LoadCancelled):
            self.outcome = "cancelled"
            self._finish(self.cancelled.emit)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the GUI, never kill the thread
            self.outcome = "error"
            text = "".join(traceback.format_exception(exc))
            self._finish(lambda: self.error.emit(exc, text))
        else:
            self.outcome = "result"
            self._finish(lambda: self.result.emit(value))

    def _drive(self, generator: Any, context: JobContext) -> Any:
        try:
            while True:
                if self._cancel.is_set():
                    generator.close()
                    raise JobCancelled()
                context.report(next(generator))
        except StopIteration as stop:
            return stop.value

    def _finish(self, emit_outcome: Callable[[], None]) -> None:
        # ``is_done`` turns True before ``finished`` is emitted, so whoever receives ``finished`` sees it done
        try:
            emit_outcome()
        finally:
            self._done.set()
            self.finished.emit()


class _Runnable(QRunnable):
    def __init__(self, worker: Worker):
        super().__init__()
        self._worker = worker
        self.setAutoDelete(True)

    def run(self) -> None:
        self._worker._run()
