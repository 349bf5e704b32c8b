"""``lunglens-engine hpo``: Bayesian optimisation of initial LR, momentum and L2 (seed 000), with Optuna.

    lunglens-engine hpo --model lightsqueeze_proposed --data ../shared/data/covid-ct-2d --trials 30 --out runs/hpo

Training data and validation are chosen as for ``train`` (the manifest's ``val`` split when present).  The
objective is validation accuracy (``--objective auc`` for AUC).  Each trial uses the recipe (default
``polsinelli``: SGD-momentum, ×4 offline augmentation, 20 epochs) with the three searched values.  The study is
stored in ``<out>/study.db`` (SQLite): re-run the same command to continue it.  Writes ``hpo.png`` (search
history and objective vs each parameter) and ``hpo_summary.json``; prints the summary as JSON.
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
    p.add_argument("--val", type=Path, default=None, help="validation folder (default: the 'val' split)")
    p.add_argument("--trials", type=int, default=30, help="finished (complete + pruned) trials wanted")
    p.add_argument("--objective", choices=("accuracy", "auc"), default="accuracy")
    p.add_argument("--no-pruning", action="store_true")
    p.add_argument("--warmup", type=int, default=3, help="epochs before a trial may be pruned")
    p.add_argument("--study-name", default=None)
    add_train_arguments(p)
    p.set_defaults(recipe="polsinelli")
    p.add_argument("--out", type=Path, default=None, help="study folder (default runs/hpo-<model>)")


def run(args: argparse.Namespace) -> int:
    from engine.io.errors import VolumeError
    from engine.models.registry import create_model
    from engine.train.hpo import run_hpo
    from engine.train.loop import json_clean
    from engine.train.runner import build_config, log, make_preprocess, prepare_data, set_threads

    set_threads(args.threads)
    out = args.out or Path("runs") / f"hpo-{args.model}"
    try:
        pre = make_preprocess(args.model, args.input_size, **preprocess_overrides(args))
        plan = prepare_data(args.data, pre, val=args.val, classes=args.classes, seed=args.seed,
                            cache=not args.no_cache)
        if plan.val is None:
            raise ValueError("HPO needs a validation set")
        cfg, recipe_info = build_config(args.recipe, plan.train.classes, **config_overrides(args))
        kwargs = {"num_classes": len(plan.train.classes), "in_chans": pre.in_chans}
        log(f"hpo {args.model}: {args.trials} trials, objective validation {args.objective}, "
            f"{plan.description['selection']} -> {out}")
        t0 = time.time()
        summary = run_hpo(lambda: create_model(args.model, **kwargs), plan.train, plan.val, cfg, out,
                          trials=args.trials, objective=args.objective, seed=args.seed,
                          study_name=args.study_name or f"{args.model}-{args.recipe}", pruning=not args.no_pruning,
                          warmup=args.warmup, log=log)
    except (VolumeError, ValueError, KeyError) as exc:
        print(f"lunglens-engine hpo: error: {exc}", file=sys.stderr)
        return 2
    summary = {"model": args.model, "input_size": list(pre.input_size), "recipe": recipe_info,
               "data": plan.description, "wall_seconds_this_call": round(time.time() - t0, 1), **summary}
    (out / "hpo_summary.json").write_text(json.dumps(json_clean(summary), indent=2, default=str) + "\n")
    print(json.dumps(json_clean(summary), default=str))
    return 0
