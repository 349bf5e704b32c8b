"""``lunglens-engine export``: export weighted models to ONNX for the fast back-end (verified, cached).

Examples::

    lunglens-engine export                          # every model with default weights -> the ONNX cache
    lunglens-engine export lightsqueeze_proposed    # one model's default weights
    lunglens-engine export --weights runs/w1        # a weights folder (manifest.json + model.safetensors)
    lunglens-engine export lightsqueeze_proposed --out exported/   # also copy the .onnx (+ .json) there
    lunglens-engine export lightsqueeze_proposed --int8 --calibration data/ct2d   # + gated int8 model
    lunglens-engine export --list                   # what is in the cache
    lunglens-engine export --clear-cache

Each export is checked against torch (probabilities within 1e-4) before it is cached; the viewer and batch
screening then load it without exporting again.  ``--int8`` also builds an int8 model (static quantisation,
calibrated on up to 128 ``train`` rows of the ``--calibration`` dataset's manifest.csv) and keeps it only if the
COVID AUC on the ``val`` rows drops by at most 0.005; the app then serves it automatically.  Exit status 1 if
any export failed (a rejected int8 model is not a failure: fp32 stays in use).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="NAME",
                        help="models whose default weights to export (default: all models with weights)")
    parser.add_argument("--weights", type=Path, action="append", default=[], metavar="DIR",
                        help="export this weights folder (repeatable)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="also copy each .onnx and its .json into DIR")
    parser.add_argument("--cache-dir", type=Path, help="ONNX cache folder (default: the user cache dir, "
                                                       "or $LUNGLENS_CACHE_DIR/onnx)")
    parser.add_argument("--refresh", action="store_true", help="re-export even if a valid cache entry exists")
    parser.add_argument("--list", action="store_true", help="list cached exports and exit")
    parser.add_argument("--clear-cache", action="store_true", help="delete every cached export and exit")
    parser.add_argument("--int8", action="store_true",
                        help="also quantise to int8 and keep it only if validation AUC drops <= 0.005")
    parser.add_argument("--calibration", type=Path, metavar="DATA",
                        help="with --int8: dataset folder with manifest.csv (split column: train/val rows)")
    parser.add_argument("--max-auc-drop", type=float, default=0.005, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print results as JSON")


def _cache_entries(root: Path) -> list[dict[str, Any]]:
    out = []
    if root.is_dir():
        for meta in sorted(root.rglob("*.json")):
            onnx = meta.with_suffix(".onnx")
            try:
                data = json.loads(meta.read_text())
            except (OSError, ValueError):
                continue
            if onnx.is_file() and isinstance(data, dict) and "spec" in data:
                out.append({"path": str(onnx), "model": data["spec"].get("model_name"),
                            "weights_sha256": data["spec"].get("weights_sha256"),
                            "variant": data["spec"].get("variant"), "exporter": data.get("exporter"),
                            "size_mb": round(onnx.stat().st_size / 2**20, 2)})
    return out


def run(args: argparse.Namespace) -> int:
    from engine.runtime.export import ExportError, cached_export, clear_cache, default_cache_dir

    root = args.cache_dir or default_cache_dir()
    if args.clear_cache:
        n = clear_cache(root)
        bench = root / "bench"
        n += clear_cache(bench) if bench.is_dir() else 0
        print(f"removed {n} file(s) from {root}")
        return 0
    if args.list:
        entries = _cache_entries(root)
        if args.json:
            print(json.dumps(entries, indent=1))
        else:
            for e in entries:
                print(f"{e['model']:24s} {e['variant']:5s} {e['size_mb']:>9.2f} MB  {e['path']}")
            print(f"{len(entries)} export(s) in {root}")
        return 0

    from engine.weights import WeightsError, list_weighted_models, load_default, load_weights

    if args.int8 and args.calibration is None:
        print("--int8 needs --calibration DATA (a dataset folder with manifest.csv and train/val rows)",
              file=sys.stderr)
        return 2

    jobs: list[tuple[str, Any]] = [(str(p), lambda p=p: load_weights(p)) for p in args.weights]
    names = list(args.models)
    if not names and not args.weights:
        names = list_weighted_models()
        if not names:
            print("no model has default weights yet; pass --weights DIR (a folder written by save_weights)",
                  file=sys.stderr)
            return 1
    jobs += [(n, lambda n=n: load_default(n)) for n in names]

    results, failed = [], 0
    for label, load in jobs:
        try:
            loaded = load()
            pre = loaded.preprocess
            shape = (int(pre.in_chans), *(int(s) for s in pre.input_size))
            res = cached_export(loaded.model, shape, weights_sha256=loaded.manifest.get("sha256"),
                                model_name=loaded.name, cam_layer=pre.cam_layer or None, cache_dir=root,
                                refresh=args.refresh)
        except (ExportError, WeightsError, KeyError, OSError) as exc:
            failed += 1
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            results.append({"source": label, "error": msg})
            print(f"{label}: FAILED — {msg}", file=sys.stderr)
            continue
        entry = {"source": label, "model": loaded.name, "path": str(res.path), "exporter": res.exporter,
                 "from_cache": res.from_cache, "max_prob_diff": res.max_prob_diff,
                 "max_value_diff": res.max_value_diff, "export_seconds": round(res.export_seconds, 2),
                 "outputs": list(res.outputs)}
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            dest = args.out / f"{loaded.name}.onnx"
            shutil.copyfile(res.path, dest)
            (args.out / f"{loaded.name}.json").write_text(json.dumps(res.to_dict(), indent=1))
            entry["copied_to"] = str(dest)
        if not args.json:
            how = "cached" if res.from_cache else f"exported ({res.exporter}, {res.export_seconds:.1f} s)"
            print(f"{loaded.name}: {how}; max |Δp| vs torch {res.max_prob_diff:.1e} -> {res.path}")
        if args.int8:
            try:
                gate = _int8(loaded, args.calibration, root, args.max_auc_drop)
            except Exception as exc:  # noqa: BLE001 - report and go on with the next model
                failed += 1
                entry["int8"] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"{loaded.name}: int8 FAILED — {exc}", file=sys.stderr)
            else:
                entry["int8"] = gate.to_dict()
                if not args.json:
                    print(f"{loaded.name}: int8 {'accepted' if gate.accepted else 'not used'} — {gate.reason}")
        results.append(entry)
    if args.json:
        print(json.dumps(results, indent=1))
    return 1 if failed else 0


def _int8(loaded: Any, data: Path, cache_root: Path, max_auc_drop: float) -> Any:
    """Calibrate on up to 128 train rows, gate on the val rows of ``data``'s manifest."""
    import numpy as np

    from engine.runtime import Predictor
    from engine.runtime.quantize import quantize_and_gate
    from engine.train.data import ManifestDataset, load_tensors

    pre = loaded.preprocess
    if pre.spatial_dims != 2:
        raise ValueError("int8 calibration from a manifest is implemented for 2-D models only")

    def tensors(split: str) -> Any:
        ds = ManifestDataset.from_folder(data, classes=loaded.classes, split=split)
        if len(ds) == 0:
            raise ValueError(f"{data}/manifest.csv has no rows with split={split!r}")
        td = load_tensors(ds, pre)
        return pre.normalise(td.x.float()).numpy(), td.y.numpy()

    calib, _ = tensors("train")
    rng = np.random.default_rng(0)
    calib = calib[rng.permutation(len(calib))[:128]]
    val_x, val_y = tensors("val")
    predictor = Predictor.from_loaded(loaded, backend="onnx", cache_dir=cache_root, int8=False)
    positive = loaded.positive_index if loaded.positive_index is not None else 1
    return quantize_and_gate(predictor, calib, val_x, val_y, positive_index=positive, max_auc_drop=max_auc_drop)
