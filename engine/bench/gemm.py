"""This machine's fp32 GEMM throughput: the roofline a convolution network can at best reach on the CPU.

A square single-precision matrix product (``torch.mm``, backed by MKL/oneDNN BLAS) is the most efficient
dense kernel a CPU runs, so ``2 · MACs / time`` of a network divided by it is the fraction of the achievable
peak the network's inference reaches.  Measured with the same thread count as the models, best of several
runs (the least disturbed by other processes), in the same benchmark run.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GemmPeak:
    gflops: float                 # best observed, 2·n³ / t
    gflops_p50: float             # median over the timed runs (contention indicator)
    n: int
    threads: int
    repeats: int
    library: str
    gflops_cpu: float | None = None   # 2·n³ / (process CPU time / threads): the idle-machine estimate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GemmPeak":
        return cls(**{k: d[k] for k in ("gflops", "gflops_p50", "n", "threads", "repeats", "library")},
                   gflops_cpu=d.get("gflops_cpu"))


def measure_gemm_peak(threads: int = 2, n: int | tuple[int, ...] = (1024, 2048), repeats: int = 12,
                      budget_s: float = 1.5) -> GemmPeak:
    """fp32 ``n×n @ n×n`` with ``threads`` threads; ``repeats`` timed calls (fewer if over ``budget_s``) per
    size; with several sizes the best one is the peak."""
    if not isinstance(n, int):
        results = [measure_gemm_peak(threads, int(k), repeats, budget_s) for k in n]
        best = max(results, key=lambda g: g.gflops)
        cpu = [g.gflops_cpu for g in results if g.gflops_cpu]
        return replace(best, gflops_cpu=max(cpu) if cpu else None)
    import torch

    from engine.bench.timing import torch_threads

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=torch.float32)
    b = torch.randn(n, n, generator=gen, dtype=torch.float32)
    out = torch.empty(n, n, dtype=torch.float32)
    flop = 2.0 * n ** 3
    samples: list[float] = []
    cpu: list[float] = []
    with torch_threads(threads), torch.inference_mode():
        for _ in range(2):
            torch.mm(a, b, out=out)
        start = time.perf_counter()
        while len(samples) < repeats:
            c0 = time.process_time()
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            samples.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            if len(samples) >= 3 and time.perf_counter() - start > budget_s:
                break
    s = np.asarray(samples)
    c = np.asarray(cpu) / max(1, threads)
    library = "mkl" if torch.backends.mkl.is_available() else "openblas/other"
    return GemmPeak(gflops=float(flop / s.min() / 1e9), gflops_p50=float(flop / np.median(s) / 1e9), n=n,
                    threads=int(threads), repeats=int(s.size), library=library,
                    gflops_cpu=float(flop / c.min() / 1e9) if c.min() > 0 else None)


def fraction_of_peak(macs_per_item: float | None, ms_per_item: float | None, peak_gflops: float | None) -> float | None:
    """Achieved fraction of GEMM peak: ``2 · MACs / time / peak`` (None when an input is unknown)."""
    if not macs_per_item or not ms_per_item or not peak_gflops or ms_per_item <= 0:
        return None
    return float(2.0 * macs_per_item / (ms_per_item / 1000.0) / (peak_gflops * 1e9))
