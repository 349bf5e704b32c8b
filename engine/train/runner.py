"""Glue shared by the subcommands: dataset selection, model construction, training run, weights export.

The CLI modules only parse arguments; everything they do is reachable from Python through these functions
(``prepare_data``, ``train_run``, ``evaluate_weights``).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from engine.preprocess import Preprocess
from engine.train.data import DatasetError, ManifestDataset, TensorData, load_tensors
from engine.train.loop import FitResult, TrainConfig, fit, json_clean, predict_proba
from engine.train.metrics import auc_ci_hanley, classification_metrics, roc_curve, wilson_ci
from engine.train.recipes import get_recipe


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def make_preprocess(model: str, input_size: int | Sequence[int] | None = None, in_chans: int = 1,
                    **overrides: Any) -> Preprocess:
    """The model's registry preprocessing, optionally at another input size (recorded with the weights)."""
    if input_size:
        size = tuple(input_size) if isinstance(input_size, (list, tuple)) else (int(input_size),) * 2
        overrides["input_size"] = size
    return Preprocess.for_model(model, in_chans=in_chans, **overrides)


def patient_holdout(groups: Sequence[str], labels: np.ndarray, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Patient-wise random split (stratified by each patient's majority label): (train idx, held-out idx)."""
    rng = np.random.default_rng(seed)
    by_patient: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_patient.setdefault(g, []).append(i)
    held: list[int] = []
    for cls in sorted(set(int(v) for v in labels)):
        pats = sorted(p for p, idx in by_patient.items()
                      if int(np.bincount(labels[idx]).argmax()) == cls)
        rng.shuffle(pats)
        k = max(1, int(round(fraction * len(pats)))) if len(pats) > 1 else 0
        for p in pats[:k]:
            held += by_patient[p]
    held_set = set(held)
    return [i for i in range(len(groups)) if i not in held_set], sorted(held)


@dataclass
class DataPlan:
    train: TensorData
    val: TensorData | None
    description: dict[str, Any]


def prepare_data(data: str | Path, preprocess: Preprocess, *, val: str | Path | None = None,
                 classes: str | Sequence[str] | None = None, extra: Sequence[str | Path] = (),
                 train_split: str | None = None, val_split: str | None = None, holdout: float = 0.15,
                 seed: int = 0, cache: bool = True, progress: bool = False) -> DataPlan:
    """Pick training and validation data the way the issue asks.

    * ``--val DIR`` given: train on ``data`` (its ``train_split`` if given), validate on all of ``DIR``
      (or its ``val_split``).
    * no ``--val`` but ``data`` has a ``val`` split (covid-ct-2d: the official UCSD split): train on every
      other split, validate on ``val``.
    * otherwise: a patient-wise ``holdout`` fraction of ``data`` becomes the validation set (seeded).
    ``extra`` folders are added to the training side only (e.g. mosmed-slices-2d).
    """
    ds = ManifestDataset.from_folder(data, classes=classes)
    desc: dict[str, Any] = {"data": str(Path(data)), "extra": [str(e) for e in extra]}
    all_t = load_tensors(ds, preprocess, cache=cache, progress=progress)
    splits = [s.split for s in ds.samples]
    if val is not None:
        vds = ManifestDataset.from_folder(val, classes=ds.classes,
                                          split=val_split if val_split else None)
        val_t = load_tensors(vds, preprocess, cache=cache, progress=progress)
        idx = [i for i, s in enumerate(splits) if train_split is None or s == train_split]
        train_t = all_t.subset(idx)
        desc["selection"] = f"validation = {val}" + (f" split {val_split}" if val_split else "")
        desc["val_set"] = vds.describe()
        overlap = set(train_t.groups) & set(val_t.groups)
        overlap = {g for g in overlap if not g.startswith("file:")}
        if overlap:
            raise DatasetError(f"{len(overlap)} patient(s) appear in both training and validation data, e.g. "
                               f"{sorted(overlap)[:3]}; use patient-disjoint folders")
    elif "val" in splits or val_split:
        vname = val_split or "val"
        vi = [i for i, s in enumerate(splits) if s == vname]
        ti = [i for i, s in enumerate(splits) if s != vname and (train_split is None or s == train_split)]
        train_t, val_t = all_t.subset(ti), all_t.subset(vi)
        desc["selection"] = f"validation = split '{vname}' of the manifest (official split)"
    elif holdout > 0:
        ti, vi = patient_holdout(all_t.groups, all_t.y.numpy(), holdout, seed)
        train_t, val_t = all_t.subset(ti), all_t.subset(vi)
        desc["selection"] = f"validation = patient-wise random {holdout:.0%} hold-out (seed {seed})"
    else:
        train_t, val_t = all_t, None
        desc["selection"] = "no validation set"
    for e in extra:
        eds = ManifestDataset.from_folder(e, classes=ds.classes)
        et = load_tensors(eds, preprocess, cache=cache, progress=progress)
        if val_t is not None:
            clash = {g for g in set(et.groups) & set(val_t.groups) if not g.startswith("file:")}
            if clash:
                raise DatasetError(f"extra training data {e} shares patients with the validation set: "
                                   f"{sorted(clash)[:3]}")
        train_t = TensorData.concat([train_t, et])
    desc["train"] = _describe_tensors(train_t)
    desc["val"] = _describe_tensors(val_t) if val_t is not None else None
    return DataPlan(train_t, val_t, desc)


def _describe_tensors(t: TensorData) -> dict[str, Any]:
    y = t.y.numpy()
    return {"n": len(t), "patients": len(set(t.groups)),
            "counts": {c: int((y == i).sum()) for i, c in enumerate(t.classes)}}


def build_config(recipe: str | None, classes: Sequence[str], **overrides: Any) -> tuple[TrainConfig, dict]:
    r = get_recipe(recipe or "lunglens", classes)
    cfg = replace(r.config, **{k: v for k, v in overrides.items() if v is not None})
    cfg.validate()
    return cfg, r.describe()


def train_run(model_name: str, plan: DataPlan, cfg: TrainConfig, out: str | Path, *,
              preprocess: Preprocess, recipe_info: dict | None = None, model_kwargs: dict | None = None,
              resume: bool = True, progress: bool = True, export: bool = True,
              extra_provenance: dict | None = None) -> dict[str, Any]:
    """Train, write the run folder and (``export``) a weights folder ``out/weights`` via save_weights."""
    from engine.models.registry import create_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    classes = plan.train.classes
    kwargs = {"num_classes": len(classes), "in_chans": preprocess.in_chans, **(model_kwargs or {})}
    torch.manual_seed(cfg.seed)
    model = create_model(model_name, **kwargs)
    cfg_path = out / "config.json"
    info = {"model": model_name, "create_kwargs": kwargs, "preprocess": preprocess.to_dict(),
            "recipe": recipe_info, "data": plan.description}
    existing = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    if resume and (out / "checkpoint.safetensors").is_file() and existing.get("model") not in (None, model_name):
        raise ValueError(f"{out} holds a run of {existing.get('model')!r}; use another --out or --restart")
    existing.update(json_clean(info))
    cfg_path.write_text(json.dumps(existing, indent=2) + "\n")
    t0 = time.time()
    result: FitResult = fit(model, plan.train, plan.val, cfg, out, resume=resume, progress=progress,
                            handle_signals=True, log=log)
    summary: dict[str, Any] = {
        "model": model_name, "run_dir": str(out), "best_epoch": result.best_epoch + 1,
        "epochs_run": result.epochs_run, "stopped": result.stopped or "completed",
        "train_seconds": round(result.seconds, 1), "wall_seconds_this_call": round(time.time() - t0, 1),
        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "val_metrics": result.best_metrics, "data": plan.description, "recipe": recipe_info,
        "input_size": list(preprocess.input_size),
    }
    if export:
        from engine.weights import save_weights

        metrics = {}
        if result.best_metrics is not None:
            metrics["validation"] = with_intervals(result.best_metrics, plan.val.y.numpy(),
                                                   positive=list(classes).index(result.best_metrics["positive_class"]))
            metrics["validation"]["selected_on_this_set"] = True
        data = {"training": plan.description, **(extra_provenance or {})}
        manifest = save_weights(model, out / "weights", model_name=model_name, create_kwargs=kwargs,
                                preprocess=preprocess, classes=list(classes), metrics=metrics, data=data,
                                notes=f"trained with recipe {recipe_info.get('recipe') if recipe_info else '?'}, "
                                      f"best epoch {result.best_epoch + 1}/{result.epochs_run}, "
                                      f"{result.seconds / 60:.1f} min")
        summary["weights"] = str(out / "weights")
        summary["sha256"] = manifest["sha256"]
    (out / "summary.json").write_text(json.dumps(json_clean(summary), indent=2) + "\n")
    return summary


def with_intervals(m: dict[str, Any], y: np.ndarray, positive: int) -> dict[str, Any]:
    """Add 95 % intervals: Wilson for accuracy / sensitivity / specificity, Hanley–McNeil for AUC."""
    out = dict(m)
    cm = np.asarray(m["confusion_matrix"])
    n = int(cm.sum())
    tp = int(cm[positive, positive])
    p_tot = int(cm[positive].sum())
    neg_idx = [i for i in range(len(cm)) if i != positive]
    tn = int(sum(cm[i, j] for i in neg_idx for j in neg_idx))
    n_tot = n - p_tot
    out["ci95"] = {
        "accuracy": wilson_ci(int(np.trace(cm)), n),
        "sensitivity": wilson_ci(tp, p_tot),
        "specificity": wilson_ci(tn, n_tot),
        "auc": auc_ci_hanley(m["auc"], p_tot, n_tot),
        "formula": "Wilson score interval for proportions; Hanley & McNeil (1982) for AUC",
    }
    return out


def evaluate_loaded(model: torch.nn.Module, data: TensorData, batch_size: int = 64,
                    threshold: float | None = None) -> tuple[dict[str, Any], np.ndarray]:
    probs = predict_proba(model, data, batch_size)
    classes = data.classes
    pos = [c.lower() for c in classes].index("covid")
    m = classification_metrics(data.y.numpy(), probs, classes, pos, threshold)
    return with_intervals(m, data.y.numpy(), pos), probs


def roc_points(y: np.ndarray, probs: np.ndarray, positive: int) -> tuple[np.ndarray, np.ndarray]:
    fpr, tpr, _ = roc_curve((y == positive).astype(int), probs[:, positive])
    return fpr, tpr
