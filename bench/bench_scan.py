"""Whole-scan screening latency: a 300-slice CT loaded + screened + CAM on the top slices (target <= 3 s).

    python -m bench.bench_scan [--slices 300] [--size 512] [--model lightsqueeze_proposed] [--repeats 3]

A phantom chest (``engine.phantom``, COVID-like lesions) is written once as an uncompressed DICOM series into
a temporary folder (not timed).  The model uses its shipped weights when present, else random weights saved and
re-loaded through ``engine.weights`` (latency does not depend on the values); its ONNX export is made once
before timing (the app caches it per weights, so a user pays it once).  Each timed repeat then runs exactly what
the viewer / batch screening run:

1. ``engine.io.load_volume(folder)``                  — headers, sort, decode, HU;
2. ``engine.screen.ScanModel.screen(volume)``        — every slice preprocessed and scored (batch 16), top-k;
3. ``ScanModel.explain_slices(volume, top 3, "cam")`` — CAM from the exported features, mapped to voxels
   (models whose head has no Zhou CAM, e.g. SPP-COVID-Net, use Grad-CAM through torch instead).

Reports each stage's min and median (seconds) and the end-to-end total against the 3 s target.  The machine is
shared: see ``loadavg``.  Prints one JSON object.
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

import numpy as np
import torch

TARGET_S = 3.0


def _scan_model(name: str, tmp: Path, threads: int) -> Any:
    from engine.runtime import Predictor
    from engine.screen.pipeline import ScanModel
    from engine.weights import find_default_weights, load_weights, save_weights

    manifest = find_default_weights(name)
    cache = None                       # shipped weights: the app's own export cache
    if manifest is not None:
        loaded, kind = load_weights(manifest["location"]), "default"
    else:
        from engine.models import create_model

        torch.manual_seed(0)
        model = create_model(name, num_classes=2, in_chans=1).eval()
        save_weights(model, tmp / "weights", model_name=name, classes=["NonCOVID", "COVID"],
                     notes="random weights for the latency benchmark")
        loaded, kind = load_weights(tmp / "weights"), "random"
        cache = tmp / "onnx-cache"     # throw-away weights: keep their export out of the user's cache
    return ScanModel(loaded, Predictor.from_loaded(loaded, threads=threads, cache_dir=cache)), kind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_scan", description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--model", default="lightsqueeze_proposed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=3, help="slices explained with CAM")
    args = parser.parse_args(argv)

    from engine.bench.runner import machine_info
    from engine.io import load_volume
    from engine.phantom.anatomy import make_phantom
    from engine.phantom.writers import write_dicom_series

    torch.set_num_threads(args.threads)
    doc: dict[str, Any] = {"bench": "scan", "machine": machine_info(args.threads), "target_s": TARGET_S,
                           "slices": args.slices, "size": args.size, "model": args.model}
    with tempfile.TemporaryDirectory(prefix="lunglens-bench-scan-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        ph = make_phantom((args.slices, args.size, args.size), (1.0, 0.7, 0.7), seed=7, lesions=6)
        write_dicom_series(ph.volume, tmp / "series", uid_seed="bench-scan")
        del ph
        doc["setup_write_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        model, kind = _scan_model(args.model, tmp, args.threads)
        doc["setup_model_s"] = round(time.perf_counter() - t0, 2)
        doc["weights"] = kind
        doc["backend"] = model.backend
        doc["predictor"] = model.predictor.describe()
        # Zhou CAM from the exported features where the head allows it, else Grad-CAM (torch) as the app does.
        method = "cam" if model.predictor.cam_available else "gradcam"
        doc["explainer"] = method

        stages: dict[str, list[float]] = {"load": [], "screen": [], "cam": [], "total": [], "screen_preprocess": [],
                                          "screen_inference": []}
        cpu: list[float] = []
        for _ in range(max(1, args.repeats)):
            c0 = time.process_time()
            a = time.perf_counter()
            volume = load_volume(tmp / "series")
            b = time.perf_counter()
            result = model.screen(volume)
            c = time.perf_counter()
            maps = model.explain_slices(volume, result.top_slices[:args.top], method)
            d = time.perf_counter()
            cpu.append(time.process_time() - c0)
            assert maps.shape == (min(args.top, len(result.top_slices)), *volume.array.shape[1:])
            assert np.isfinite(maps).all()
            for key, v in (("load", b - a), ("screen", c - b), ("cam", d - c), ("total", d - a),
                           ("screen_preprocess", result.seconds.get("preprocess", 0.0)),
                           ("screen_inference", result.seconds.get("inference", 0.0))):
                stages[key].append(v)
            del volume
        doc["stages_s"] = {k: {"min": round(min(v), 3), "median": round(statistics.median(v), 3)}
                           for k, v in stages.items()}
        doc["ms_per_slice_inference_min"] = round(1000 * min(stages["screen_inference"]) / args.slices, 2)
        # When other jobs hold the cores, wall time says little; the pipeline's CPU seconds bound what it would
        # take on an idle machine: between cpu / threads (all parallel) and cpu (all single-threaded).
        doc["total_cpu_s_min"] = round(min(cpu), 3)
        doc["idle_estimate_s"] = [round(min(cpu) / args.threads, 3), round(min(cpu), 3)]
        doc["met_min"] = min(stages["total"]) <= TARGET_S
        doc["met_median"] = statistics.median(stages["total"]) <= TARGET_S
    try:
        doc["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
