"""Efficiency benchmark: parameters, MACs over all kernel dims, CPU latency, GEMM peak, reports.

``run_benchmark(models, progress=..., cancel=...) -> BenchReport`` (rows + the papers' reference rows;
``to_json`` / ``to_csv`` / ``plot(dir)`` / ``figures()``).  Parameter and MAC counters: ``engine.bench.macs``.
"""

from engine.bench.gemm import GemmPeak, fraction_of_peak, measure_gemm_peak
from engine.bench.report import BenchReport, BenchRow, ReferenceRow, load_references
from engine.bench.runner import BACKENDS, run_benchmark, select_models
from engine.bench.timing import Cancelled, LatencyStats, PeakMemory, time_calls

__all__ = [
    "BACKENDS", "BenchReport", "BenchRow", "Cancelled", "GemmPeak", "LatencyStats", "PeakMemory", "ReferenceRow",
    "fraction_of_peak", "load_references", "measure_gemm_peak", "run_benchmark", "select_models", "time_calls",
]


def __getattr__(name: str):
    # The counters live in engine.bench.macs (count_params -> ParamCount, count_macs); imported lazily.
    if name in ("count_params", "count_macs", "ParamCount"):
        from engine.bench import macs

        return getattr(macs, name)
    raise AttributeError(name)
