"""Whole-registry efficiency benchmark (what ``lunglens-engine bench --json`` prints), as a bench script.

    python -m bench.bench_models [--quick] [--giant] [--models NAME ...] [--out DIR]

Every registered model (giant ones with ``--giant``): parameters (trainable, Keras-style), size, MACs over all
kernel dims, ONNX Runtime and torch latency at batch 1 and 16 (p50/p90/min, 2 threads), peak RSS, the fraction
of this machine's fp32 GEMM peak, accuracy and P0's sensitivity/parameter efficiency for models with evaluated
weights, and the papers' own figures as reference rows.  ``--quick`` uses the reduced CI inputs and short
timings (a smoke run).  ``--out DIR`` also writes CSV and PNG plots.  Prints one JSON object.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_models", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--giant", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from engine.bench import run_benchmark

    timing = dict(warmup=1, min_repeats=3, budget_s=0.3, input_size="test") if args.quick else \
        dict(warmup=2, min_repeats=5, budget_s=2.0, input_size="native")
    report = run_benchmark(args.models, include_giant=args.giant, threads=args.threads,
                           progress=lambda d, t, m: print(f"[{d}/{t}] {m}", file=sys.stderr, flush=True),
                           **timing)
    if args.out is not None:
        report.save(args.out)
    print(report.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
