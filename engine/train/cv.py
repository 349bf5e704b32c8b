"""Patient-wise (grouped, stratified) k-fold cross-validation, repeated, with 95 % intervals.

* Folds are built over *patients*: every image of a patient is in exactly one test fold, so no patient is ever
  on both sides (asserted for every fold).  Images without a patient id count as their own patient.
* Stratified: each patient is assigned its majority label; patients of each class are shuffled (seeded per
  repeat) and dealt greedily, largest first, to the fold that currently holds the fewest images of that class.
* Inside each training fold a patient-wise ``inner_val`` fraction (P1: 15 %) is held out for epoch selection;
  the test fold is never looked at during training.
* Summary: for every metric the mean over the k × R fold estimates with a Student-t 95 % interval
  (``metrics.CI_FORMULA``), plus SD/variance (P2 Table II) and the metrics of the pooled out-of-fold
  predictions of each repeat.  Fold estimates of repeated CV are not independent, so the interval is
  optimistic; with R = 1 it is the usual k-fold interval.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from engine.train.data import TensorData, positive_index
from engine.train.loop import TrainConfig, fit, json_clean, predict_proba
from engine.train.metrics import CI_FORMULA, classification_metrics, mean_ci

SUMMARY_METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc", "balanced_accuracy",
                   "p2_mean_accuracy_eq1")


def patient_kfold(groups: Sequence[str], labels: Sequence[int], k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train_idx, test_idx) pairs, patient-disjoint and stratified by the patients' majority label."""
    labels = np.asarray(labels, dtype=np.int64)
    by_patient: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_patient.setdefault(str(g), []).append(i)
    if k < 2:
        raise ValueError("need at least 2 folds")
    if len(by_patient) < k:
        raise ValueError(f"only {len(by_patient)} patients for {k} folds; use fewer folds")
    rng = np.random.default_rng(seed)
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    fold_counts = np.zeros((k, max(1, n_classes)), dtype=np.int64)
    fold_of: dict[str, int] = {}
    patients = sorted(by_patient)
    majority = {p: int(np.bincount(labels[by_patient[p]]).argmax()) for p in patients}
    for cls in range(n_classes):
        pats = [p for p in patients if majority[p] == cls]
        rng.shuffle(pats)
        pats.sort(key=lambda p: -len(by_patient[p]))  # stable: random order among equal sizes
        for p in pats:
            f = int(np.lexsort((rng.random(k), fold_counts.sum(1), fold_counts[:, cls]))[0])
            fold_of[p] = f
            fold_counts[f, cls] += len(by_patient[p])
    folds = []
    for f in range(k):
        test = np.array(sorted(i for p, idx in by_patient.items() if fold_of[p] == f for i in idx), dtype=np.int64)
        train = np.array(sorted(i for p, idx in by_patient.items() if fold_of[p] != f for i in idx), dtype=np.int64)
        assert not ({str(groups[i]) for i in test} & {str(groups[i]) for i in train})
        folds.append((train, test))
    return folds


def inner_split(groups: Sequence[str], labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from engine.train.runner import patient_holdout
    tr, va = patient_holdout(groups, labels, fraction, seed)
    return np.asarray(tr, dtype=np.int64), np.asarray(va, dtype=np.int64)


def summarise(fold_rows: Sequence[dict[str, Any]], pooled: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"folds": len(fold_rows), "ci_formula": CI_FORMULA}
    for key in SUMMARY_METRICS:
        vals = [r["metrics"].get(key) for r in fold_rows]
        vals = [float(v) for v in vals if v is not None]
        ci = mean_ci(vals)
        ci["variance"] = float(np.var(vals, ddof=1)) if len(vals) > 1 else float("nan")
        out[key] = ci
    # P2 reports per-fold plain accuracy, its mean, variance and SD: that is exactly out["accuracy"].
    out["p2_mean_accuracy"] = {"value": out["accuracy"]["mean"], "sd": out["accuracy"]["sd"],
                               "variance": out["accuracy"]["variance"],
                               "note": "P2 Table II = mean over folds of plain accuracy (the authors' script); "
                                       "P2 Eq. 1 (mean one-vs-rest accuracy) is p2_mean_accuracy_eq1"}
    if pooled:
        out["pooled_out_of_fold"] = [{k: p[k] for k in ("repeat", "n", "accuracy", "auc", "sensitivity",
                                                         "specificity", "confusion_matrix")} for p in pooled]
    return out


def run_cv(model_factory: Callable[[], torch.nn.Module], data: TensorData, cfg: TrainConfig, out: str | Path,
           *, folds: int = 5, repeats: int = 1, seed: int = 0, inner_val: float = 0.15,
           progress: bool = False, log: Callable[[str], None] | None = None, curves: bool = True) -> dict[str, Any]:
    """Repeated patient-wise k-fold CV; resumable (finished folds are read back from ``folds.jsonl``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda s: None)
    done_path = out / "folds.jsonl"
    done: dict[tuple[int, int], dict[str, Any]] = {}
    if done_path.is_file():
        for line in done_path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["repeat"], r["fold"])] = r
    pos = positive_index(data.classes)
    y_all = data.y.numpy()
    rows: list[dict[str, Any]] = []
    pooled: list[dict[str, Any]] = []
    for rep in range(repeats):
        splits = patient_kfold(data.groups, y_all, folds, seed=seed + 1000 * rep)
        oof = np.full((len(data), len(data.classes)), np.nan)
        for f, (tr_idx, te_idx) in enumerate(splits):
            key = (rep, f)
            if key in done:
                row = done[key]
                rows.append(row)
                oof[np.asarray(row["test_index"])] = np.asarray(row["test_probs"])
                continue
            train_part = data.subset(tr_idx)
            val_part = None
            if inner_val > 0:
                a, b = inner_split(train_part.groups, train_part.y.numpy(), inner_val, seed + 17 * rep + f)
                val_part = train_part.subset(b)
                train_part = train_part.subset(a)
            test_part = data.subset(te_idx)
            assert not (set(g for g in test_part.groups) & set(train_part.groups))
            torch.manual_seed(cfg.seed + rep * 100 + f)
            model = model_factory()
            fold_cfg = replace(cfg, seed=cfg.seed + rep * 100 + f)
            result = fit(model, train_part, val_part, fold_cfg, out / f"r{rep}_f{f}", progress=progress, log=log,
                         curves=curves)
            probs = predict_proba(model, test_part, cfg.eval_batch_size, cfg.channels_last)
            m = classification_metrics(test_part.y.numpy(), probs, data.classes, pos)
            row = {"repeat": rep, "fold": f, "n_train": len(train_part), "n_inner_val": len(val_part or []),
                   "n_test": len(test_part), "test_patients": len(set(test_part.groups)),
                   "best_epoch": result.best_epoch + 1, "seconds": round(result.seconds, 1), "metrics": m,
                   "test_index": te_idx.tolist(), "test_probs": probs.tolist()}
            with open(done_path, "a") as fh:
                fh.write(json.dumps(json_clean(row)) + "\n")
            rows.append(row)
            oof[te_idx] = probs
            log(f"repeat {rep + 1}/{repeats} fold {f + 1}/{folds}: acc {m['accuracy']:.3f} auc {m['auc']:.3f} "
                f"sens {m['sensitivity']:.3f} spec {m['specificity']:.3f} ({result.seconds:.0f}s)")
        if not np.isnan(oof).any():
            pm = classification_metrics(y_all, oof, data.classes, pos)
            pm["repeat"] = rep
            pooled.append(pm)
    summary = summarise(rows, pooled)
    summary["per_fold"] = [{k: r[k] for k in ("repeat", "fold", "n_train", "n_inner_val", "n_test",
                                              "test_patients", "best_epoch", "seconds")}
                           | {m: r["metrics"].get(m) for m in SUMMARY_METRICS} for r in rows]
    (out / "cv_summary.json").write_text(json.dumps(json_clean(summary), indent=2) + "\n")
    return summary
