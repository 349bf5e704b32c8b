"""Thread workers: run loading now (and screening / explaining / benchmarking later) off the GUI thread.

``Worker(job, ...)`` with ``job(context, ...)`` (callable or generator) -> signals ``progress`` (throttled
``ProgressReport``), ``result``, ``error``, ``cancelled``, ``finished``.  ``worker_pool()`` / ``active_workers()``
let the window and the tests make sure nothing is left running.
"""

from viewer.workers.worker import (
    JobCancelled,
    JobContext,
    ProgressReport,
    Worker,
    active_workers,
    worker_pool,
)

__all__ = ["JobCancelled", "JobContext", "ProgressReport", "Worker", "active_workers", "worker_pool"]
