"""``lunglens-engine bench``: the efficiency benchmark over registered models.

Examples::

    lunglens-engine bench                                   # every non-giant model, text table
    lunglens-engine bench --models lightsqueeze_proposed covidnet3d_s --json
    lunglens-engine bench --giant --out runs/bench          # + giant models; JSON, CSV and PNG plots
    lunglens-engine bench --quick                           # CI-sized inputs, short timings (smoke test)

Progress goes to stderr, results to stdout (``--json``: one JSON document and nothing else).  Exit status 1
when any model failed (its row carries the error), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help="registry names or wildcards (default: every registered model)")
    parser.add_argument("--giant", action="store_true",
                        help="include giant models (VGG, ResNet152V2, EfficientNet-B6/B7, ResNet3D-101) in "
                             "wildcard/default selections")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="write bench.json, bench.csv, references.csv and PNG plots into DIR")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="also write the rows as CSV to FILE")
    parser.add_argument("--no-plots", action="store_true", help="with --out: skip the PNG plots")
    parser.add_argument("--backends", nargs="+", default=["onnx", "torch"], choices=["onnx", "torch"],
                        help="inference back-ends to time (default: onnx torch)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16], metavar="N",
                        help="batch sizes to time (default: 1 16)")
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and ONNX Runtime (default 2)")
    parser.add_argument("--input-size", choices=["native", "test"], default="native",
                        help="paper's native input (default) or the reduced CI input")
    parser.add_argument("--weights", choices=["auto", "random", "default"], default="auto",
                        help="auto: shipped weights when present, else random init (default)")
    parser.add_argument("--in-chans", type=int, help="input channels for random-init models (default: paper's)")
    parser.add_argument("--num-classes", type=int, help="classes for random-init models (default: paper's)")
    parser.add_argument("--budget", type=float, default=2.0, metavar="S",
                        help="seconds of timed calls per model, back-end and batch size (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="minimum timed calls (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up calls (default 2)")
    parser.add_argument("--no-gemm", action="store_true", help="skip the fp32 GEMM peak measurement")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: --input-size test, 1 warm-up, 3 repeats, 0.3 s budget")
    parser.add_argument("--list", action="store_true", help="print the models that would run and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    from engine.bench import run_benchmark, select_models

    try:
        names = select_models(args.models, include_giant=args.giant)
    except KeyError as exc:
        print(f"lunglens-engine bench: {exc.args[0]}", file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(names))
        return 0
    if not names:
        print("lunglens-engine bench: no models selected", file=sys.stderr)
        return 2
    if any(b < 1 for b in args.batch_sizes) or args.threads < 1:
        print("lunglens-engine bench: batch sizes and --threads must be positive", file=sys.stderr)
        return 2
    if args.quick:
        args.input_size, args.warmup, args.repeats, args.budget = "test", 1, 3, 0.3

    def progress(done: int, total: int, message: str) -> None:
        if not args.quiet:
            step = done if message in ("done", "cancelled") else done + 1
            print(f"[{step}/{total}] {message}", file=sys.stderr, flush=True)

    report = run_benchmark(names, backends=args.backends, batch_sizes=args.batch_sizes, threads=args.threads,
                           include_giant=True, input_size=args.input_size, weights=args.weights,
                           in_chans=args.in_chans, num_classes=args.num_classes, warmup=args.warmup,
                           min_repeats=args.repeats, budget_s=args.budget, measure_gemm=not args.no_gemm,
                           progress=progress)
    if args.out is not None:
        files = report.save(args.out, plots=not args.no_plots)
        if not args.quiet:
            print(f"wrote {', '.join(str(p) for p in files.values())}", file=sys.stderr)
    if args.csv is not None:
        report.to_csv(args.csv)
    if args.json:
        print(report.to_json())
    else:
        print(report.summary())
    failed = [r for r in report.rows if r.error]
    if failed and not args.quiet:
        print(f"{len(failed)} row(s) failed: " + ", ".join(f"{r.model}/{r.backend}" for r in failed),
              file=sys.stderr)
    return 1 if failed else 0
