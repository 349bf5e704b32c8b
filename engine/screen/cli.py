"""``lunglens-screen`` (= ``lunglens-engine screen``): batch-screen folders of chest CT into an output folder.

    lunglens-screen /scans/ward7 /scans/extra.nii.gz --model lightsqueeze_proposed --out /results/ward7
    lunglens-screen ... --workers 2                      # processes on this machine
    lunglens-screen ... --scheduler tcp://head:8786      # the same job on a Dask distributed cluster
    lunglens-screen --report-only --out /results/ward7   # rebuild results.csv / report.pdf from the database

Writes ``results.sqlite``, ``results.csv``, ``report.pdf`` and ``heatmaps/`` into ``--out`` (never into the
inputs).  Rerunning the same command resumes: finished series are skipped.  Ctrl-C stops cleanly (the report
of what is done is still written); a second Ctrl-C aborts.  Exit status: 0 all series screened, 3 finished but
some series failed (see the report), 1 the job could not start, 130 stopped before the end.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from engine.screen.job import EXPLAINER_CHOICES, JobError, JobProgress, JobSummary, ScreeningJob

EXIT_OK, EXIT_SETUP, EXIT_FAILED_SERIES, EXIT_STOPPED = 0, 1, 3, 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("batch-screen folders of chest CT into an output folder (results.sqlite, results.csv, "
                          "report.pdf, heatmaps/); the same as `lunglens-engine screen`")
    parser.epilog = "Research use only: the scores are not a diagnosis."
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="folders (searched recursively: DICOM series, NIfTI/NRRD/MHA files, images) or files")
    parser.add_argument("--model", "-m", help="registered model name, e.g. lightsqueeze_proposed")
    parser.add_argument("--weights", default="default",
                        help="weights folder or manifest.json (default: the model's shipped weights)")
    parser.add_argument("--explainer", "-e", default="cam", choices=EXPLAINER_CHOICES,
                        help="heatmap method for the key slices (default: cam, the cheapest)")
    parser.add_argument("--out", "-o", required=True, metavar="OUTDIR", help="output folder (created)")
    parser.add_argument("--workers", "-j", type=int, default=1,
                        help="worker processes on this machine (default 1: in this process)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on a Dask distributed cluster, e.g. tcp://10.0.0.5:8786 (workers need LungLens "
                             "installed and the inputs at the same paths)")
    parser.add_argument("--threads", type=int, default=None,
                        help="inference threads per worker (default: the cores, shared among --workers)")
    parser.add_argument("--backend", default="auto", choices=("auto", "onnx", "torch"),
                        help="inference back-end (auto: ONNX Runtime when it reproduces torch)")
    parser.add_argument("--threshold", type=float, default=0.5, help="flag scans with P >= this (default 0.5)")
    parser.add_argument("--key-slices", type=int, default=3, help="heatmap PNGs per scan (default 3)")
    parser.add_argument("--batch-size", type=int, default=16, help="slices per inference batch (default 16)")
    parser.add_argument("--force", action="store_true",
                        help="allow an output folder inside an input folder (it is then excluded from screening)")
    parser.add_argument("--retry-failed", action="store_true", help="on resume, screen failed series again")
    parser.add_argument("--no-report", action="store_true", help="skip report.pdf (CSV and database only)")
    parser.add_argument("--report-only", action="store_true",
                        help="only rebuild results.csv and report.pdf from OUTDIR/results.sqlite")
    parser.add_argument("--hide-paths", action="store_true",
                        help="leave file paths and UIDs out of report.pdf (pseudonymous scan ids only)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------------------------------- progress bar
def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """A one-line bar with ETA on a terminal; one line per finished series when stderr is a file/pipe."""

    def __init__(self, stream: Any = None, width: int = 24):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.dirty = False

    def line(self, p: JobProgress) -> str:
        filled = min(self.width, int(self.width * p.fraction))
        bar = "#" * filled + "-" * (self.width - filled)
        text = (f"[{bar}] {p.done}/{p.total} series {p.percent:3d}%  elapsed {_clock(p.elapsed_s)}  "
                f"ETA {_clock(p.eta_s)}  flagged {p.flagged}  failed {p.failed}")
        if p.current and p.done < p.total:
            text += f"  | {p.current}"
        return text

    def __call__(self, p: JobProgress) -> None:
        if self.tty:
            text = self.line(p)[:160]
            self.stream.write("\r" + text.ljust(160)[:160])
            self.stream.flush()
            self.dirty = True
            return
        for row in p.finished:
            what = (f"P={row['probability']:.3f}{' FLAGGED' if row.get('flagged') else ''}"
                    if row.get("status") == "ok" else f"FAILED: {row.get('reason')}")
            self.stream.write(f"[{p.done}/{p.total} {p.percent}% ETA {_clock(p.eta_s)}] {row.get('scan_id')} "
                              f"{row.get('path')}: {what}\n")
        if p.finished:
            self.stream.flush()
        elif p.message and (p.message.startswith(("discovering", "writing", "finished", "stopped"))
                            or "already done" in p.message):
            self.stream.write(f"{p.message}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty and self.dirty:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------------------------- run
def _print_summary(s: JobSummary, stream: Any) -> None:
    state = "complete" if s.complete else "STOPPED (rerun the same command to resume)"
    stream.write(
        f"{state}: {s.total} series — {s.ok} screened, {s.flagged} flagged, {s.failed} failed"
        f"{f', {s.skipped_files} non-image files ignored' if s.skipped_files else ''}; "
        f"{s.screened} now, {s.resumed} from earlier runs, {s.seconds:.1f} s on {s.engine}\n"
        f"results: {s.db}\n         {s.csv}\n")
    if s.report is not None:
        stream.write(f"         {s.report}\n")
    if s.report_error:
        stream.write(f"report.pdf could not be written: {s.report_error}\n")
    stream.write("Research use only: the scores are not a diagnosis.\n")
    stream.flush()


def _report_only(args: argparse.Namespace) -> int:
    from engine.screen.report import write_report
    from engine.screen.store import CSV_NAME, ResultsStore, StoreError, write_csv

    try:
        with ResultsStore(args.out, create=False) as store:
            csv_path = write_csv(store.rows(), store.out_dir / CSV_NAME)
        report = None if args.no_report else write_report(args.out, hide_paths=args.hide_paths)
    except StoreError as exc:
        print(f"lunglens-screen: {exc}", file=sys.stderr)
        return EXIT_SETUP
    print(f"rewrote {csv_path}" + (f" and {report}" if report else ""), file=sys.stderr)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.report_only:
        return _report_only(args)
    if not args.inputs:
        print("lunglens-screen: name at least one INPUT folder or file to screen", file=sys.stderr)
        return EXIT_SETUP
    if not args.model:
        from engine.weights import list_weighted_models
        have = ", ".join(list_weighted_models()) or "none installed"
        print(f"lunglens-screen: --model is required (models with weights: {have})", file=sys.stderr)
        return EXIT_SETUP
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        sys.stderr.write("\nstopping after the series in flight (Ctrl-C again to abort) ...\n")

    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, on_signal)
    bar = None if args.quiet else ProgressBar()
    try:
        job = ScreeningJob(args.inputs, args.model, args.out, weights=args.weights, explainer=args.explainer,
                           workers=args.workers, scheduler=args.scheduler, backend=args.backend,
                           threshold=args.threshold, key_slices=args.key_slices, force=args.force,
                           retry_failed=args.retry_failed, report=not args.no_report, batch_size=args.batch_size,
                           hide_paths=args.hide_paths, threads=args.threads, throttle_s=0.25 if (bar and bar.tty) else 0.1)
        summary = job.run(progress=bar, cancel=stop.is_set)
    except JobError as exc:
        if bar:
            bar.close()
        print(f"lunglens-screen: {exc}", file=sys.stderr)
        return EXIT_SETUP
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if bar:
        bar.close()
    _print_summary(summary, sys.stderr)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    if not summary.complete:
        return EXIT_STOPPED
    return EXIT_FAILED_SERIES if summary.failed else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lunglens-screen")
    add_arguments(parser)
    return int(run(parser.parse_args(argv)) or 0)


if __name__ == "__main__":
    import multiprocessing

    multiprocessing.freeze_support()   # a frozen build of this script: the --workers processes re-enter here
    raise SystemExit(main())
