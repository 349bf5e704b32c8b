"""``lunglens-engine cv``: patient-wise k-fold cross-validation (seed 001 / 002 protocol).

    lunglens-engine cv --model lightsqueeze_proposed --data ../shared/data/covid-ct-2d --folds 5 --repeats 1

All rows of the manifest (every split) are pooled and re-split by patient.  Prints a JSON summary: for each
metric the mean over folds ± a 95 % Student-t interval (mean ± t(0.975, n−1)·SD/√n over the k×R fold
estimates), SD and variance (P2's Table II), and pooled out-of-fold metrics.  Resumable: re-run the same
command with the same --out to continue after an interruption.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engine.train.cli_train import (
    add_common_data_arguments,
    add_train_arguments,
    config_overrides,
    preprocess_overrides,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_data_arguments(p)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--inner-val", type=float, default=0.15,
                   help="patient-wise fraction of each training fold used for epoch selection (0 = none)")
    add_train_arguments(p)
    p.add_argument("--out", type=Path, default=None, help="CV folder (default runs/cv-<model>-<time>)")
    p.add_argument("--progress", action="store_true", help="progress bar per epoch")


def run(args: argparse.Namespace) -> int:
    from engine.io.errors import VolumeError
    from engine.models.registry import create_model
    from engine.train.data import ManifestDataset, load_tensors
    from engine.train.cv import run_cv
    from engine.train.loop import json_clean
    from engine.train.runner import build_config, log, make_preprocess, set_threads

    set_threads(args.threads)
    out = args.out or Path("runs") / f"cv-{args.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        pre = make_preprocess(args.model, args.input_size, **preprocess_overrides(args))
        ds = ManifestDataset.from_folder(args.data, classes=args.classes)
        data = load_tensors(ds, pre, cache=not args.no_cache, progress=args.progress)
        overrides = config_overrides(args)
        if args.inner_val <= 0 and args.select is None:
            overrides["select"] = "last"
        cfg, recipe_info = build_config(args.recipe, data.classes, **overrides)
        n_cls = len(data.classes)
        kwargs = {"num_classes": n_cls, "in_chans": pre.in_chans}
        log(f"cv {args.model}: {args.folds} folds × {args.repeats} repeats on {ds.describe()} -> {out}")
        summary = run_cv(lambda: create_model(args.model, **kwargs), data, cfg, out, folds=args.folds,
                         repeats=args.repeats, seed=args.seed, inner_val=args.inner_val,
                         progress=args.progress, log=log)
    except (VolumeError, ValueError, KeyError) as exc:
        print(f"lunglens-engine cv: error: {exc}", file=sys.stderr)
        return 2
    summary = {"model": args.model, "data": str(args.data), "input_size": list(pre.input_size),
               "recipe": recipe_info, "out": str(out), **summary}
    (out / "cv_summary.json").write_text(json.dumps(json_clean(summary), indent=2) + "\n")
    print(json.dumps(json_clean(summary)))
    return 0
