"""3-D path latency: CovidNet3D-S forward + 3-D CAM on CPU, and the whole volume -> heatmap pipeline.

    python -m bench.bench_3d [--threads 2] [--repeats 10] [--weights resources/weights/covidnet3d_s]

Cases (batch 1, fp32, eval, no_grad):
1. ``covidnet3d_s`` (representative genotype, paper macro-architecture) on 1×1×32×128×128 — forward alone and
   forward + CAM via ``engine.xai.explain(model, x, "cam")`` (map upsampled to the input grid, D×H×W).
   Target (issue 7): forward + CAM <= 150 ms on 2 cores.
2. The shipped weights (if present) at their own input size: the same two numbers, plus the full pipeline a
   viewer runs — ``Preprocess.volume`` on a 64×128×128 HU phantom, forward + CAM, ``Preprocess.to_voxels`` back
   onto the phantom's voxel grid.

Prints one JSON object.  The machine is shared: ``min_ms`` is the best estimate of the uncontended cost,
``p50_ms`` the typical one; ``load_avg`` is recorded so contended runs can be recognised.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

TARGET_MS = 150.0


def _time(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return {"min_ms": round(min(samples), 2), "p50_ms": round(statistics.median(samples), 2),
            "max_ms": round(max(samples), 2), "repeats": repeats}


def _model_case(name: str, model: torch.nn.Module, size: tuple[int, ...], repeats: int) -> dict[str, Any]:
    from engine.bench.macs import count_macs
    from engine.xai import explain

    model.eval()
    x = torch.randn(1, 1, *size)
    with torch.no_grad():
        fwd = _time(lambda: model(x), repeats)
    cam_shape = explain(model, x, "cam").shape
    cam = _time(lambda: explain(model, x, "cam"), repeats)
    return {
        "case": name, "input": [1, 1, *size], "params": sum(p.numel() for p in model.parameters()),
        "macs": int(count_macs(model, (1, 1, *size))), "forward": fwd, "forward_cam": cam,
        "cam_shape": list(cam_shape), "target_ms": TARGET_MS, "meets_target_min": cam["min_ms"] <= TARGET_MS,
        "meets_target_p50": cam["p50_ms"] <= TARGET_MS,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--weights", type=Path, default=Path(__file__).resolve().parents[1] / "resources" / "weights"
                    / "covidnet3d_s")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from engine.models import create_model

    report: dict[str, Any] = {
        "benchmark": "bench_3d", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "load_avg_before": list(os.getloadavg()), "cases": [],
    }
    torch.manual_seed(0)
    rep = create_model("covidnet3d_s", num_classes=2)
    report["cases"].append(_model_case("covidnet3d_s representative genotype, paper macro", rep, (32, 128, 128),
                                       args.repeats))
    if (args.weights / "manifest.json").is_file():
        from engine.phantom import make_phantom
        from engine.preprocess import Preprocess
        from engine.weights import load_weights
        from engine.xai import explain

        loaded = load_weights(args.weights)
        pre = loaded.preprocess
        case = _model_case(f"shipped weights {args.weights.name}", loaded.model, tuple(pre.input_size),
                           args.repeats)
        vol = make_phantom((64, 128, 128), (5.0, 2.8, 2.8), seed=7, lesions=3).volume

        def pipeline() -> np.ndarray:
            x, geom = pre.volume(vol)
            cam = explain(loaded.model, x, "cam")[0]
            return Preprocess.to_voxels(cam, geom)

        out = pipeline()
        case["pipeline_volume_to_heatmap"] = {**_time(pipeline, args.repeats), "volume": list(vol.shape),
                                              "heatmap_shape": list(out.shape)}
        report["cases"].append(case)
    report["load_avg_after"] = list(os.getloadavg())
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
