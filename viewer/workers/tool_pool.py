"""The thread pool for the Tools windows' long jobs (batch screening, the benchmark).

The viewer's own pool (``viewer.workers.worker_pool``) has two threads for loading, screening and explaining
the scan on screen.  A batch over a hundred scans or a benchmark runs for minutes; on that pool it would hold
a thread the whole time and queue the viewer's work behind it.  So these jobs get their own pool (two threads:
a batch and a benchmark may run side by side).  Workers on it are ordinary :class:`~viewer.workers.Worker`
objects (``active_workers()`` lists them; the windows cancel and wait for them on close).
"""

from __future__ import annotations

from PySide6.QtCore import QThreadPool

_POOL: QThreadPool | None = None


def tool_pool() -> QThreadPool:
    global _POOL
    if _POOL is None:
        _POOL = QThreadPool()
        _POOL.setMaxThreadCount(2)
        _POOL.setObjectName("lunglens-tools")
    return _POOL
