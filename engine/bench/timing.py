"""Latency statistics, a fixed-thread context and a peak-memory sampler for the benchmark.

Timing follows the usual CPU-benchmark protocol: ``warmup`` untimed calls, then timed calls until both
``min_repeats`` calls and ``budget_s`` seconds are reached (or ``max_repeats``), reporting p50/p90/min/mean.
On a shared machine the minimum is the best estimate of the uncontended cost and p50 the typical one.

Each call's process CPU time (all threads, ``time.process_time``) is recorded too: when other jobs hold the
cores, wall time stretches but the CPU time a call consumes barely changes, so ``cpu_min_ms / threads``
estimates the wall time the call would take on an idle machine (for well-parallelised kernels; it
over-estimates when threads idle, e.g. batch-1 calls of small nets, and includes spin-waiting if enabled).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Wall time of one call (a whole batch), in milliseconds."""

    batch: int
    repeats: int
    p50_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float
    cpu_p50_ms: float | None = None      # process CPU time per call (all threads)
    cpu_min_ms: float | None = None

    @property
    def p50_ms_per_item(self) -> float:
        return self.p50_ms / self.batch

    @property
    def min_ms_per_item(self) -> float:
        return self.min_ms / self.batch

    @property
    def throughput(self) -> float:
        """Items per second at p50."""
        return 1000.0 * self.batch / self.p50_ms if self.p50_ms > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["p50_ms_per_item"] = self.p50_ms_per_item
        d["throughput_per_s"] = self.throughput
        return d

    @classmethod
    def from_samples(cls, batch: int, samples_s: list[float], cpu_s: list[float] | None = None) -> "LatencyStats":
        a = np.asarray(samples_s, dtype=np.float64) * 1000.0
        c = None if not cpu_s else np.asarray(cpu_s, dtype=np.float64) * 1000.0
        return cls(batch=batch, repeats=int(a.size), p50_ms=float(np.percentile(a, 50)),
                   p90_ms=float(np.percentile(a, 90)), min_ms=float(a.min()), mean_ms=float(a.mean()),
                   cpu_p50_ms=None if c is None else float(np.percentile(c, 50)),
                   cpu_min_ms=None if c is None else float(c.min()))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LatencyStats":
        opt = {k: (None if d.get(k) is None else float(d[k])) for k in ("cpu_p50_ms", "cpu_min_ms")}
        return cls(batch=int(d["batch"]), repeats=int(d["repeats"]), p50_ms=float(d["p50_ms"]),
                   p90_ms=float(d["p90_ms"]), min_ms=float(d["min_ms"]), mean_ms=float(d["mean_ms"]), **opt)


class Cancelled(Exception):
    """The caller's cancel flag was set during a measurement."""


def time_calls(fn: Callable[[], Any], *, batch: int = 1, warmup: int = 2, min_repeats: int = 5,
               max_repeats: int = 50, budget_s: float = 2.0,
               cancelled: Callable[[], bool] | None = None) -> LatencyStats:
    """Time ``fn()`` (one call = one batch) with warm-up; see module docstring for the stopping rule.

    A call slower than ``budget_s`` (big 3-D nets at batch 16) ends the warm-up after one call and lowers
    ``min_repeats`` to 3, so a whole-registry run stays bounded.
    """
    for i in range(max(0, warmup)):
        if cancelled is not None and cancelled():
            raise Cancelled
        t0 = time.perf_counter()
        fn()
        if i == 0 and time.perf_counter() - t0 > budget_s:
            min_repeats = min(min_repeats, 3)
            break
    samples: list[float] = []
    cpu: list[float] = []
    start = time.perf_counter()
    while len(samples) < max_repeats:
        if cancelled is not None and cancelled():
            raise Cancelled
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if len(samples) >= min_repeats and time.perf_counter() - start >= budget_s:
            break
    return LatencyStats.from_samples(batch, samples, cpu)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Temporarily fix torch's intra-op thread count."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; falls back to psutil or 0)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            import psutil  # optional

            return int(psutil.Process().memory_info().rss)
        except Exception:  # noqa: BLE001
            return 0


class PeakMemory:
    """Samples RSS in a background thread; ``peak_mb`` = max RSS seen during the block minus RSS at entry.

    Covers torch and ONNX Runtime allocations alike (both allocate outside Python's tracemalloc).  Sampling
    every ``interval_s`` can miss a spike shorter than that; the block's end value is sampled too.
    """

    def __init__(self, interval_s: float = 0.002):
        self.interval_s = interval_s
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        self.baseline = self.peak = rss_bytes()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bench-peak-rss", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: Any) -> None:
        self.peak = max(self.peak, rss_bytes())
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def peak_mb(self) -> float:
        return max(0, self.peak - self.baseline) / 2**20

    @property
    def peak_rss_mb(self) -> float:
        return self.peak / 2**20
