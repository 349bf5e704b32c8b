"""Batch-screening throughput and memory: CT volumes per minute through the real job (target >= 20 / min).

    python -m bench.bench_screen [--volumes 20] [--slices 300] [--size 512] [--workers 1,2] \
        [--model lightsqueeze_proposed] [--explainer cam] [--workdir DIR] [--format dicom|nifti]

Setup (not timed): ``--distinct`` phantom chests (``engine.phantom``, 0–4 COVID-like lesions) of ``--slices`` ×
``--size``² voxels are written as ``--volumes`` separate uncompressed DICOM series (distinct UIDs; copies of the
distinct anatomies) — reused from ``--workdir`` when it already holds the same set.  The model uses its shipped
weights when present, else random weights (throughput does not depend on the values; their ONNX export goes to
a throw-away cache and is made once before timing, as the app caches it per weights).

Timed, per ``--workers`` setting: ``engine.screen.ScreeningJob(...).run()`` exactly as ``lunglens-screen`` runs
it — discovery, loading, preprocessing, inference, CAM on 3 key slices, heatmap PNGs, SQLite rows, CSV and the
PDF report.  Reported: end-to-end and steady-state volumes/minute (first to last finished series), CPU seconds
of the coordinator plus its worker processes, per-stage means from the results database, and the resident
memory (coordinator + workers) after every finished series with its slope over the second half of the batch
(memory must stay flat: nothing is held per scan).

The machine may be shared with other jobs (see ``loadavg``): wall-clock rates then understate what the code
does on a dedicated machine.  ``idle_estimate_volumes_per_min`` = volumes / (CPU seconds / cores) × 60 is what
the same work would give on the given number of otherwise idle cores (an upper bound: perfect overlap).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_PER_MIN = 20.0


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total / 1024.0


def _children(pid: int) -> list[int]:
    try:
        import psutil

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:  # noqa: BLE001 - psutil is optional here
        return []


def _make_inputs(root: Path, *, volumes: int, distinct: int, slices: int, size: int, fmt: str) -> dict[str, Any]:
    from engine.phantom import make_phantom, write_dicom_series, write_nifti

    stamp = {"volumes": volumes, "distinct": distinct, "slices": slices, "size": size, "format": fmt,
             "version": 1}
    marker = root / "bench_screen_inputs.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return {"reused": True, "seconds": 0.0}
    t0 = time.perf_counter()
    inputs = root / "inputs"
    if inputs.exists():
        import shutil
        shutil.rmtree(inputs)
    k = 0
    for d in range(distinct):
        ph = make_phantom((slices, size, size), (300.0 / slices, 350.0 / size, 350.0 / size), seed=d,
                          lesions=(d * 2) % 5)
        for copy in range(d, volumes, distinct):
            if fmt == "dicom":
                write_dicom_series(ph.volume, inputs / f"vol{copy:03d}", uid_seed=f"bench-screen-{copy}",
                                   series_description=f"bench phantom {d} copy {copy}")
            else:
                write_nifti(ph.volume, inputs / f"vol{copy:03d}.nii")
            k += 1
        del ph
    marker.write_text(json.dumps(stamp))
    return {"reused": False, "seconds": round(time.perf_counter() - t0, 1), "written": k}


def _weights(name: str, tmp: Path) -> tuple[str, str]:
    from engine.weights import find_default_weights, save_weights

    manifest = find_default_weights(name)
    if manifest is not None:
        return "default", "default"
    import torch

    from engine.models import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=2, in_chans=1).eval()
    save_weights(model, tmp / "weights", model_name=name, create_kwargs={"num_classes": 2, "in_chans": 1},
                 classes=["NonCOVID", "COVID"], notes="random weights for the screening benchmark")
    return str(tmp / "weights"), "random"


def _run(inputs: Path, out: Path, model: str, weights: str, workers: int, explainer: str,
         threads: int | None) -> dict[str, Any]:
    from engine.screen import ScreeningJob, read_results

    me = os.getpid()
    samples: list[tuple[int, float, float]] = []     # (done, seconds since start, RSS MB coordinator + workers)
    t_done: list[float] = []
    children: set[int] = set()
    t0 = time.perf_counter()
    times0 = os.times()

    def progress(p: Any) -> None:
        if p.finished:
            children.update(_children(me))
            now = time.perf_counter() - t0
            t_done.extend([now] * len(p.finished))
            samples.append((p.done, round(now, 2), round(_rss_mb([me, *children]), 1)))

    job = ScreeningJob([inputs], model, out, weights=weights, workers=workers, explainer=explainer,
                       threads=threads, throttle_s=0.0, argv=["bench_screen"])
    summary = job.run(progress=progress)
    wall = time.perf_counter() - t0
    times1 = os.times()
    cpu = (times1.user - times0.user + times1.system - times0.system
           + times1.children_user - times0.children_user + times1.children_system - times0.children_system)
    rows = read_results(out)
    ok = [r for r in rows if r["status"] == "ok"]
    n = len(rows)

    def mean(key: str) -> float | None:
        vals = [r[key] for r in ok if r.get(key) is not None]
        return round(statistics.fmean(vals), 3) if vals else None

    steady = None
    if len(t_done) >= 3:
        steady = round((len(t_done) - 1) / (t_done[-1] - t_done[0]) * 60.0, 2)
    rss = [s[2] for s in samples]
    half = samples[len(samples) // 2:]
    slope = None
    if len(half) >= 3:
        xs = [s[0] for s in half]
        ys = [s[2] for s in half]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        den = sum((x - mx) ** 2 for x in xs)
        slope = round(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den, 2) if den else None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {
        "workers": workers, "engine": summary.engine, "series": n, "ok": len(ok), "failed": summary.failed,
        "flagged": summary.flagged, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "volumes_per_min_end_to_end": round(n / wall * 60.0, 2),
        "volumes_per_min_steady": steady,
        "idle_estimate_volumes_per_min": round(n / (cpu / cores) * 60.0, 2) if cpu > 0 else None,
        "cpu_s_per_volume": round(cpu / max(1, n), 2),
        "stage_mean_s": {k: mean(f"t_{k}") for k in ("load", "preprocess", "inference", "explain", "total")},
        "backend": ok[0]["backend"] if ok else None,
        "rss_mb": {"after_first": rss[0] if rss else None, "after_half": rss[len(rss) // 2] if rss else None,
                   "after_last": rss[-1] if rss else None, "max": max(rss) if rss else None,
                   "slope_mb_per_series_2nd_half": slope},
        "rss_mb_after_each_series": [s[2] for s in samples],
        "report_error": summary.report_error,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_screen", description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=20)
    parser.add_argument("--distinct", type=int, default=4, help="distinct phantom anatomies among the volumes")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--format", choices=("dicom", "nifti"), default="dicom")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts to measure")
    parser.add_argument("--threads", type=int, default=None, help="inference threads per worker (default: "
                                                                   "cores / workers)")
    parser.add_argument("--model", default="lightsqueeze_proposed")
    parser.add_argument("--explainer", default="cam")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the generated series here and reuse them next time (default: a temp folder)")
    args = parser.parse_args(argv)

    from engine.bench.runner import machine_info

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    doc: dict[str, Any] = {"bench": "screen", "machine": machine_info(cores), "target_volumes_per_min":
                           TARGET_PER_MIN, "volumes": args.volumes, "slices": args.slices, "size": args.size,
                           "format": args.format, "model": args.model, "explainer": args.explainer}
    with tempfile.TemporaryDirectory(prefix="lunglens-bench-screen-") as tmp_name:
        tmp = Path(tmp_name)
        work = args.workdir or tmp
        work.mkdir(parents=True, exist_ok=True)
        doc["setup"] = _make_inputs(work, volumes=args.volumes, distinct=args.distinct, slices=args.slices,
                                    size=args.size, fmt=args.format)
        os.environ.setdefault("LUNGLENS_CACHE_DIR", str(tmp / "cache"))   # random weights: throw-away export
        weights, kind = _weights(args.model, tmp)
        doc["weights"] = kind
        t0 = time.perf_counter()
        from engine.screen import ScanModel
        warm = ScanModel.open(args.model, weights)       # makes (or finds) the ONNX export before timing
        doc["setup_model_s"] = round(time.perf_counter() - t0, 1)
        doc["backend"] = warm.backend
        del warm
        runs = []
        for w in [int(x) for x in str(args.workers).split(",") if x.strip()]:
            runs.append(_run(work / "inputs", tmp / f"out-{w}", args.model, weights, w, args.explainer,
                             args.threads))
        doc["runs"] = runs
    best = max(runs, key=lambda r: r["volumes_per_min_end_to_end"])
    doc["best_volumes_per_min_end_to_end"] = best["volumes_per_min_end_to_end"]
    doc["best_idle_estimate_volumes_per_min"] = max(r["idle_estimate_volumes_per_min"] or 0 for r in runs)
    doc["met"] = best["volumes_per_min_end_to_end"] >= TARGET_PER_MIN
    doc["met_idle_estimate"] = doc["best_idle_estimate_volumes_per_min"] >= TARGET_PER_MIN
    doc["memory_flat"] = all((r["rss_mb"]["slope_mb_per_series_2nd_half"] or 0) < 5.0 for r in runs)
    try:
        doc["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
