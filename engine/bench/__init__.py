"""Efficiency benchmark: parameters, MACs over all kernel dims, CPU latency, GEMM peak, reports.

API (what ``lunglens-engine bench`` and the viewer's Benchmark panel use)::

    from engine.bench import run_benchmark, select_models, BenchReport

    report = run_benchmark(
        select_models(["lightsqueeze_*", "covidnet3d_s"]),   # or None = every non-giant model
        backends=("onnx", "torch"), batch_sizes=(1, 16), threads=2, include_giant=False,
        input_size="native",                                # or "test" (CI-sized inputs, quick)
        progress=lambda done, total, message: ...,          # called before each step (throttle in the GUI)
        on_row=lambda row: ...,                             # a BenchRow as soon as it is measured
        cancel=threading.Event(),                           # or a callable -> bool; partial report back
    )
    report.rows          # list[BenchRow]: model, backend, params_trainable/keras, size_mb, macs, latency{b:
                         #   LatencyStats(p50_ms, p90_ms, min_ms, ...)}, gemm_fraction{b: f}, peak_mem_mb,
                         #   accuracy/sensitivity/auc/sens_per_mparam (evaluated weights), error
    report.references    # list[ReferenceRow]: the papers' own figures (reference_figures.json)
    report.gemm          # GemmPeak: this machine's fp32 GEMM GFLOP/s, same run
    report.table()       # flat dicts = the CSV columns (for a table widget)
    report.to_json(path) / BenchReport.from_json(path_or_text) / report.to_csv(path) / report.references_csv()
    report.figures()     # {name: matplotlib Figure} (pyplot-free; embed with FigureCanvasQTAgg)
    report.plot(dir)     # PNGs;  report.save(dir) = JSON + CSVs + PNGs

Parameter and MAC counters live in ``engine.bench.macs`` (``count_params``, ``count_macs``).
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
