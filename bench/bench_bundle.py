"""Size and start-up time of the built installer bundle (``make installer``), printed as JSON.

    python -m bench.bench_bundle [--bundle dist/lunglens] [--repeats 2] [--model NAME --weights DIR]

* ``size``: the one-folder bundle in MiB, split into torch, Qt (PySide6 + shiboken6), ONNX Runtime, SimpleITK,
  the shipped weights and the rest (Python, numpy, pydicom, matplotlib, ...), plus the .deb if one was built.
* ``start``: wall seconds from launching ``lunglens --demo --screenshot`` to its exit with the picture written
  (offscreen, fresh empty HOME): ``first_run`` also generates the demo scan into the user cache; ``warm_cache``
  is a later start (demo cached), i.e. process start -> first image of the scan on screen -> exit.  With
  ``--model`` also starts that screen the demo and draw the heatmap: the first use of the weights (which exports
  them to ONNX into the user cache) and a later one.  Wall times on a shared machine are upper bounds; ``cpu_s``
  (user + sys of the process tree) is reported beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _mib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink():
                total += p.stat().st_size
    return total / 2**20


def sizes(bundle: Path) -> dict:
    internal = bundle / "_internal"
    parts = {
        "torch": [internal / "torch"],
        "qt": [internal / "PySide6", internal / "shiboken6"],
        "onnxruntime": [internal / "onnxruntime"],
        "simpleitk": [internal / "SimpleITK"],
        "weights": [internal / "resources" / "weights"],
    }
    out = {"total_mib": round(_mib(bundle), 1)}
    counted = 0.0
    for key, paths in parts.items():
        value = sum(_mib(p) for p in paths if p.exists())
        out[f"{key}_mib"] = round(value, 1)
        counted += value
    out["rest_mib"] = round(out["total_mib"] - counted, 1)
    debs = sorted((bundle.parent).glob("lunglens_*.deb"))
    if debs:
        out["deb"] = debs[-1].name
        out["deb_mib"] = round(_mib(debs[-1]), 1)
    return out


def _timed(argv: list[str], env: dict, cwd: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def start_times(bundle: Path, repeats: int, model: str | None, weights: Path | None) -> dict:
    exe = bundle / ("lunglens.exe" if sys.platform == "win32" else "lunglens")
    with tempfile.TemporaryDirectory(prefix="lunglens-bench-bundle-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
        env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen", TMPDIR=tmp)
        shot = [str(exe), "--demo", "--screenshot", str(Path(tmp) / "shot.png")]
        out = {"first_run": _timed(shot, env, Path(tmp))}
        out["warm_cache"] = [_timed(shot, env, Path(tmp)) for _ in range(repeats)]
        if model:
            argv = shot[:2] + ["--model", model] + (["--weights", str(weights)] if weights else []) + shot[2:]
            # first use of the weights (ONNX export into the user cache, in a helper process), then a later start
            out[f"demo_screened_with_{model}"] = {"first_use": _timed(argv, env, Path(tmp)),
                                                   "export_cached": _timed(argv, env, Path(tmp))}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=REPO / "dist" / "lunglens")
    parser.add_argument("--repeats", type=int, default=2, help="warm-cache starts to time (default 2)")
    parser.add_argument("--model", help="also time a start that screens the demo with this model")
    parser.add_argument("--weights", type=Path, help="weights folder for --model (default: shipped weights)")
    parser.add_argument("--sizes-only", action="store_true")
    args = parser.parse_args(argv)
    if not (args.bundle / "_internal").is_dir():
        raise SystemExit(f"no bundle at {args.bundle}: run `make installer` first")
    result = {"bundle": str(args.bundle), "size": sizes(args.bundle), "cpu_count": os.cpu_count(),
              "load_avg_1min": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None}
    if not args.sizes_only:
        result["start"] = start_times(args.bundle, args.repeats, args.model, args.weights)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
