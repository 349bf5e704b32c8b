"""``lunglens-engine evaluate``: metrics of trained weights on a manifest.csv folder.

    lunglens-engine evaluate --model lightsqueeze_proposed --weights default --data DIR --split val --json

Prints one JSON object (``--json``) with n, accuracy, sensitivity, specificity, precision (PPV), f1, auc,
balanced_accuracy, the confusion matrix (rows = truth), per-class sensitivity/PPV/specificity, P2's Eq.-1 "mean
accuracy" (labelled ``p2_mean_accuracy_eq1``; not the same number as accuracy) and 95 % intervals.  Positive
class = COVID.  ``--plots DIR`` writes roc.png and confusion.png.  The images go through the weights' own
``Preprocess`` (recorded in their manifest), exactly as in the viewer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--weights", default="default",
                   help="weights folder / manifest.json / model.safetensors, or 'default' (shipped weights)")
    p.add_argument("--data", required=True, type=Path, help="dataset folder with manifest.csv")
    p.add_argument("--split", default=None, help="only rows of this split (e.g. val)")
    p.add_argument("--threshold", type=float, default=None,
                   help="binary models: COVID iff p(COVID) ≥ threshold (default: argmax = 0.5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plots", type=Path, default=None, help="write roc.png and confusion.png here")
    p.add_argument("--predictions", type=Path, default=None, help="write per-image probabilities (CSV)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-cache", action="store_true")


def run(args: argparse.Namespace) -> int:
    from engine.io.errors import VolumeError
    from engine.train.data import ManifestDataset, load_tensors
    from engine.train.loop import json_clean
    from engine.train.runner import evaluate_loaded, roc_points, set_threads
    from engine.weights import WeightsError, load_default, load_weights

    set_threads(args.threads)
    try:
        from engine.models.registry import model_config
        name = model_config(args.model).name
        loaded = load_default(name) if args.weights == "default" else load_weights(args.weights)
        if loaded.name != name:
            raise WeightsError(f"the weights are for {loaded.name!r}, not {name!r}", loaded.path)
        ds = ManifestDataset.from_folder(args.data, classes=loaded.classes, split=args.split)
        data = load_tensors(ds, loaded.preprocess, cache=not args.no_cache)
        metrics, probs = evaluate_loaded(loaded.model, data, threshold=args.threshold)
    except (VolumeError, WeightsError, ValueError, KeyError) as exc:
        print(f"lunglens-engine evaluate: error: {exc}", file=sys.stderr)
        return 2
    result = {
        "model": name,
        "weights": str(loaded.path),
        "sha256": loaded.manifest.get("sha256"),
        "data": str(args.data),
        "split": args.split,
        "input_size": list(loaded.preprocess.input_size),
        **metrics,
    }
    if args.plots:
        from engine.train.plots import confusion_plot, roc_plot
        pos = data.classes.index(metrics["positive_class"])
        fpr, tpr = roc_points(data.y.numpy(), probs, pos)
        m = metrics
        point = (1 - m["specificity"], m["sensitivity"]) if len(data.classes) == 2 else None
        roc_plot(fpr, tpr, m["auc"], args.plots / "roc.png", title=f"{name} — ROC (COVID positive)", point=point)
        confusion_plot(m["confusion_matrix"], data.classes, args.plots / "confusion.png", title=name)
        result["plots"] = [str(args.plots / "roc.png"), str(args.plots / "confusion.png")]
    if args.predictions:
        args.predictions.parent.mkdir(parents=True, exist_ok=True)
        with open(args.predictions, "w") as fh:
            fh.write("file,label," + ",".join(f"p_{c}" for c in data.classes) + "\n")
            for f, y, p in zip(data.files, data.y.tolist(), probs.tolist()):
                fh.write(f'"{f}",{data.classes[y]},' + ",".join(f"{v:.6f}" for v in p) + "\n")
    if args.json:
        print(json.dumps(json_clean(result)))
    else:
        print(f"{name} on {args.data} ({args.split or 'all'}): n={result['n']}")
        for k in ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc", "balanced_accuracy",
                  "p2_mean_accuracy_eq1"):
            ci = result.get("ci95", {}).get(k)
            extra = f"  (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci and ci[0] == ci[0] else ""
            print(f"  {k:22s} {result[k]:.4f}{extra}")
        print(f"  confusion (rows=truth {data.classes}): {result['confusion_matrix']}")
    return 0
