"""Train / evaluate a 3-D model on a volume manifest, measure CAM localisation, optionally write shipped weights.

    python -m engine.train.cli_train3d --model covidnet3d_s --genotype search/genotype_selected.json \\
        --data DIR --input-size 32,64,64 --epochs 8 --out runs/covidnet3d_s [--save-weights DIR]

Splits come from the manifest's ``split`` column (train / val / test); without a val split 10 % of train is held
out (stratified).  The run folder gets ``history.json``, ``results.json`` (test metrics + localisation) and a
resumable checkpoint; re-running the same command resumes.  ``--save-weights`` writes safetensors + manifest
(preprocessing, classes, metrics, data provenance) + model card through ``engine.weights.save_weights``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from engine.search.cli import ProgressPrinter, _fmt, _ints, add_data_arguments, make_preprocess


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="covidnet3d_s", help="a registered 3-D model")
    p.add_argument("--genotype", default=None, help="CovidNet3D genotype JSON (default: the representative one)")
    p.add_argument("--macro", default=None,
                   help='CovidNet3D macro overrides as JSON, e.g. \'{"stem_stride":[1,2,2],"strides":[2,2,1,1,1,1]}\'')
    add_data_arguments(p)
    p.add_argument("--input-size", type=_ints, default=None, help="D,H,W (default: the model's)")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, history, results)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--val-fraction", type=float, default=0.1, help="held out of train when there is no val split")
    p.add_argument("--limit-train", type=int, default=None, metavar="N",
                   help="use a stratified random subset of N training volumes (quick pilots)")
    p.add_argument("--no-localise", action="store_true", help="skip the CAM localisation on the test split")
    p.add_argument("--tol-mm", type=float, default=15.0, help="tolerance of the tolerant pointing game")
    p.add_argument("--save-weights", type=Path, default=None, help="write engine.weights files into this folder")
    p.add_argument("--notes", default="", help="free text for the model card")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --out")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from engine.models import create_model, model_config
    from engine.train.data3d import Dataset3DError, VolumeDataset, read_manifest3d, split_indices
    from engine.train.train3d import Train3DConfig, evaluate3d, fit3d, localise3d

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg_model = model_config(args.model)
    if cfg_model.spatial_dims != 3:
        print(f"{args.model} is a 2-D model; use `lunglens-engine train`", file=sys.stderr)
        return 2
    kwargs: dict[str, Any] = {}
    if args.genotype:
        from engine.models.covidnet3d import genotype_macro, load_genotype

        kwargs["genotype"] = load_genotype(args.genotype, space=cfg_model.name)
        macro = genotype_macro(args.genotype)
        if macro:
            kwargs["macro"] = macro
    if args.macro:
        kwargs["macro"] = json.loads(args.macro)
    try:
        records, classes = read_manifest3d(args.data, classes=args.classes, label_map=args.label_map)
    except Dataset3DError as exc:
        print(f"cli_train3d: {exc}", file=sys.stderr)
        return 2
    by_split: dict[str, list] = {}
    for r in records:
        by_split.setdefault(r.split or "train", []).append(r)
    train_recs = by_split.get("train", [])
    val_recs = by_split.get("val", [])
    test_recs = by_split.get("test", [])
    if not train_recs:
        print("cli_train3d: the manifest has no 'train' rows", file=sys.stderr)
        return 2
    if not val_recs:
        labels = [r.label for r in train_recs]
        keep, held = split_indices(len(train_recs), 1 - args.val_fraction, args.seed, labels)
        val_recs = [train_recs[i] for i in held]
        train_recs = [train_recs[i] for i in keep]
    if args.limit_train and args.limit_train < len(train_recs):
        keep, _ = split_indices(len(train_recs), args.limit_train / len(train_recs), args.seed + 1,
                                [r.label for r in train_recs])
        train_recs = [train_recs[i] for i in keep]
    size = args.input_size or tuple(cfg_model.input_size)
    pre = make_preprocess(args.model, size, args)
    from engine.train.data3d import default_box_cache

    cache = default_box_cache()
    train = VolumeDataset(train_recs, pre, classes, train=True, seed=args.seed, box_cache=cache)
    val = VolumeDataset(val_recs, pre, classes, train=False, seed=args.seed, box_cache=cache)
    test = VolumeDataset(test_recs, pre, classes, train=False, seed=args.seed, box_cache=cache) if test_recs else None
    torch.manual_seed(args.seed)
    model = create_model(args.model, num_classes=len(classes), in_chans=1, **kwargs)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {n_params:,} parameters, input {'x'.join(map(str, size))}; train {len(train)}, "
          f"val {len(val)}, test {len(test) if test else 0} volumes; classes {list(classes)}", flush=True)
    print("loading volumes ...", flush=True)
    for ds in (train, val, test):
        if ds is not None:
            ds.preload()
    cfg = Train3DConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        weight_decay=args.weight_decay, seed=args.seed, device=args.device)
    fit = fit3d(model, train, val, cfg, args.out, classes=classes, progress=ProgressPrinter(),
                resume=not args.fresh)
    model.to("cpu").eval()
    results: dict[str, Any] = {"model": args.model, "create_kwargs": {k: v for k, v in kwargs.items()},
                               "parameters": n_params, "input_size": list(size), "train_seconds": fit["seconds"],
                               "best_epoch": fit["best_epoch"], "val": fit["best"], "preprocess": pre.to_dict()}
    if test is not None:
        t0 = time.time()
        results["test"] = evaluate3d(model, test, classes)
        print(f"test: accuracy {results['test']['accuracy']:.3f} · sensitivity {results['test']['sensitivity']:.3f}"
              f" · specificity {results['test']['specificity']:.3f} · AUC {results['test']['auc']:.3f} "
              f"({len(test)} volumes, {_fmt(time.time() - t0)})", flush=True)
        if not args.no_localise:
            loc = localise3d(model, test, method="cam", tol_mm=args.tol_mm)
            results["localisation"] = loc
            if loc["n"]:
                print(f"CAM localisation on {loc['n']} positive test volumes: pointing game {loc['pointing_game']:.3f}"
                      f" (within {args.tol_mm:g} mm: {loc['pointing_game_tol']:.3f}) · energy in lesions "
                      f"{loc['energy_in_mask']:.3f} (chance {loc['energy_chance']:.3f}) · lesion-vs-lung AUC "
                      f"{loc['lesion_auc']:.3f}", flush=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1, default=_jsonable) + "\n",
                                                 encoding="utf-8")
    if args.save_weights:
        from engine.weights import save_weights

        metrics = {k: results[k] for k in ("test", "val") if k in results}
        if "localisation" in results:
            metrics["localisation"] = {k: v for k, v in results["localisation"].items() if k != "cases"}
        data_info = {
            "dataset": str(args.data), "manifest_rows": len(records),
            "train_volumes": len(train), "val_volumes": len(val), "test_volumes": len(test) if test else 0,
            "counts": {c: int(sum(1 for r in records if r.label == i)) for i, c in enumerate(classes)},
        }
        readme = Path(args.data) / "README.md"
        if readme.is_file():
            data_info["dataset_readme"] = readme.read_text(encoding="utf-8")[:2000]
        manifest = save_weights(model, args.save_weights, model_name=args.model,
                                create_kwargs={"num_classes": len(classes), "in_chans": 1, **kwargs},
                                preprocess=pre, classes=list(classes), metrics=metrics, data=data_info,
                                notes=args.notes)
        print(f"weights -> {args.save_weights} (sha256 {manifest['sha256'][:12]}…)", flush=True)
    return 0


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.train.cli_train3d", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
