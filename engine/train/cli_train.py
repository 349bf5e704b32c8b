"""``lunglens-engine train``: train a registered model on a manifest.csv folder.

Examples::

    lunglens-engine train --model lightsqueeze_proposed --data ../shared/data/covid-ct-2d --out runs/p0c
    lunglens-engine train --model lightsqueeze_proposed --data DIR --recipe polsinelli --epochs 5
    # interrupted (Ctrl-C)?  run the same command again: it resumes from runs/p0c/checkpoint.safetensors

Writes the run folder (config.json, checkpoint.safetensors, best.safetensors, metrics.jsonl, curves.png,
summary.json) and a weights folder ``<out>/weights`` (model.safetensors + manifest.json + MODEL_CARD.md) that
``evaluate --weights`` and the viewer load.  The last stdout line is the summary as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engine.train.recipes import RECIPES


def add_common_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registered model name (see `lunglens-engine models`)")
    p.add_argument("--data", required=True, type=Path, help="dataset folder with manifest.csv (file,label,...)")
    p.add_argument("--classes", default=None,
                   help="comma-separated class list (default NonCOVID,COVID; must contain COVID)")
    p.add_argument("--input-size", type=int, default=None,
                   help="square input size (default: the model's native size); stored with the weights")
    p.add_argument("--intensity", choices=("window", "equalize"), default=None,
                   help="grey-level handling after windowing (default window; equalize = histogram equalisation)")
    p.add_argument("--lung-crop", action="store_true", help="crop HU inputs to the lung field (recorded)")
    p.add_argument("--crop-margin", type=float, default=None, help="margin around the lung box (fraction)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-cache", action="store_true", help="do not cache preprocessed images")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", choices=RECIPES, default="lunglens",
                   help="paper recipe preset (flags below override it); default: lunglens")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=("sgdm", "adam", "adamw"))
    p.add_argument("--lr", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float, help="L2 regularisation")
    p.add_argument("--schedule", choices=("none", "step", "plateau", "cosine"))
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--augment", choices=("none", "p0", "p1", "p3", "flip", "mixed"))
    p.add_argument("--sampler", choices=("shuffle", "rebalance"))
    p.add_argument("--select", choices=("accuracy", "auc", "loss", "last"), help="model selection on validation")
    p.add_argument("--early-stop", type=int, help="stop after N epochs without improvement")
    p.add_argument("--max-minutes", type=float, help="wall-time budget; stops after the epoch crossing it")
    p.add_argument("--ema", type=float, help="EMA decay of the weights per step (0 = off)")
    p.add_argument("--seed", type=int, default=0)


def preprocess_overrides(args: argparse.Namespace) -> dict:
    out = {}
    if getattr(args, "intensity", None):
        out["intensity"] = args.intensity
    if getattr(args, "lung_crop", False):
        out["lung_crop"] = True
    if getattr(args, "crop_margin", None) is not None:
        out["crop_margin"] = float(args.crop_margin)
    return out


def config_overrides(args: argparse.Namespace) -> dict:
    return {"epochs": args.epochs, "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
            "momentum": args.momentum, "weight_decay": args.weight_decay, "schedule": args.schedule,
            "label_smoothing": args.label_smoothing, "augment": args.augment, "sampler": args.sampler,
            "select": args.select, "early_stop": args.early_stop, "max_minutes": args.max_minutes,
            "ema": args.ema, "seed": args.seed}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_data_arguments(p)
    p.add_argument("--val", type=Path, default=None,
                   help="validation folder (default: the manifest's 'val' split, else a patient-wise 15%% hold-out)")
    p.add_argument("--extra-data", type=Path, action="append", default=[],
                   help="additional training folder(s), e.g. mosmed-slices-2d (repeatable)")
    add_train_arguments(p)
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<model>-<time>)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-export", action="store_true", help="do not write <out>/weights")


def run(args: argparse.Namespace) -> int:
    from engine.io.errors import VolumeError
    from engine.train.loop import TrainingInterrupted
    from engine.train.runner import build_config, log, make_preprocess, prepare_data, set_threads, train_run
    from engine.weights import WeightsError

    set_threads(args.threads)
    out = args.out or Path("runs") / f"{args.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        pre = make_preprocess(args.model, args.input_size, **preprocess_overrides(args))
        plan = prepare_data(args.data, pre, val=args.val, classes=args.classes, extra=args.extra_data,
                            seed=args.seed, cache=not args.no_cache, progress=not args.no_progress)
        cfg, recipe_info = build_config(args.recipe, plan.train.classes, **config_overrides(args))
        log(f"train {args.model} on {plan.description['train']} | val {plan.description['val']} | "
            f"{plan.description['selection']} | recipe {args.recipe} | out {out}")
        summary = train_run(args.model, plan, cfg, out, preprocess=pre, recipe_info=recipe_info,
                            resume=not args.restart, progress=not args.no_progress, export=not args.no_export)
    except TrainingInterrupted as exc:
        log(f"interrupted: {exc}. Run the same command again to resume.")
        return 130
    except (VolumeError, WeightsError, ValueError, KeyError) as exc:
        print(f"lunglens-engine train: error: {exc}", file=sys.stderr)
        return 2
    from engine.train.loop import json_clean
    print(json.dumps(json_clean(summary)))
    return 0
