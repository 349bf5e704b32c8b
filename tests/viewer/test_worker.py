"""The generic worker: result, error, cancel, generator jobs and throttled progress, off the GUI thread."""

from __future__ import annotations

import threading
import time

import pytest

from engine.io.errors import LoadCancelled
from viewer.workers import JobContext, Worker, active_workers, worker_pool

pytestmark = pytest.mark.gui


def _collect(worker: Worker) -> dict:
    seen: dict = {"progress": [], "order": []}
    worker.started.connect(lambda: seen["order"].append("started"))
    worker.progress.connect(lambda r: seen["progress"].append(r))
    worker.result.connect(lambda v: (seen.__setitem__("result", v), seen["order"].append("result")))
    worker.error.connect(lambda e, tb: (seen.__setitem__("error", (e, tb)), seen["order"].append("error")))
    worker.cancelled.connect(lambda: seen["order"].append("cancelled"))
    worker.finished.connect(lambda: seen["order"].append("finished"))
    return seen


def test_callable_runs_off_the_gui_thread_and_returns(qtbot, leak_guard) -> None:
    gui_thread = threading.get_ident()

    def job(context: JobContext, a: int, b: int = 0) -> tuple[int, int]:
        return a + b, threading.get_ident()

    worker = Worker(job, 2, b=3)
    seen = _collect(worker)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    value, thread = seen["result"]
    assert value == 5 and thread != gui_thread
    assert seen["order"] == ["started", "result", "finished"] and worker.outcome == "result"
    assert worker.wait(1.0) and active_workers() == []


def test_plain_function_via_call(qtbot, leak_guard) -> None:
    worker = Worker.call(sorted, [3, 1, 2], reverse=True)
    seen = _collect(worker)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    assert seen["result"] == [3, 2, 1]


def test_errors_arrive_as_signal_with_traceback(qtbot, leak_guard) -> None:
    def job(context: JobContext) -> None:
        raise ValueError("bad slice 7")

    worker = Worker(job)
    seen = _collect(worker)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    error, text = seen["error"]
    assert isinstance(error, ValueError) and "bad slice 7" in text and "Traceback" in text
    assert seen["order"] == ["started", "error", "finished"]


def test_generator_job_progress_and_cancel(qtbot, leak_guard) -> None:
    steps_done = []

    def job(context: JobContext, n: int):
        for i in range(n):
            time.sleep(0.01)
            steps_done.append(i)
            yield i + 1, n, f"step {i + 1}"
        return "all done"

    worker = Worker(job, 10_000)
    seen = _collect(worker)
    worker.start()
    qtbot.waitUntil(lambda: len(steps_done) > 20, timeout=5000)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.cancel()
    assert seen["order"][-2:] == ["cancelled", "finished"] and "result" not in seen
    assert len(steps_done) < 10_000
    assert seen["progress"] and seen["progress"][-1].message.startswith("step ")


def test_generator_result(qtbot, leak_guard) -> None:
    def job(context: JobContext):
        yield 0.5
        yield "halfway"
        return 42

    worker = Worker(job)
    seen = _collect(worker)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    assert seen["result"] == 42


def test_progress_is_throttled_to_ten_per_second(qtbot, leak_guard) -> None:
    def job(context: JobContext) -> int:
        start = time.monotonic()
        calls = 0
        while time.monotonic() - start < 0.55:
            context.progress(calls, 10**9, "busy")
            calls += 1
        return calls

    worker = Worker(job)
    seen = _collect(worker)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    qtbot.wait(50)
    assert seen["result"] > 1000                     # the job reported far more often ...
    assert 1 <= len(seen["progress"]) <= 7           # ... than the GUI heard (<= 10/s over 0.55 s)
    report = seen["progress"][-1]
    assert report.message == "busy" and report.elapsed > 0


def test_callable_job_polls_cancel_and_engine_cancel_counts_as_cancel(qtbot, leak_guard) -> None:
    def job(context: JobContext) -> None:
        while True:
            if context.is_cancelled():
                raise LoadCancelled("stopped by the user")
            time.sleep(0.005)

    worker = Worker(job)
    seen = _collect(worker)
    worker.start()
    qtbot.waitUntil(lambda: "started" in seen["order"], timeout=5000)
    assert worker.is_running
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.cancel()
    assert worker.outcome == "cancelled" and "error" not in seen
    assert worker.wait(1.0) and worker_pool().waitForDone(2000)


def test_cancel_before_start_never_runs_the_job(qtbot, leak_guard) -> None:
    ran = []
    worker = Worker(lambda context: ran.append(1))
    seen = _collect(worker)
    worker.cancel()
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    assert ran == [] and "cancelled" in seen["order"]
    with pytest.raises(RuntimeError, match="already started"):
        worker.start()
