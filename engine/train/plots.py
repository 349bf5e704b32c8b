"""Matplotlib figures for runs (training curves, ROC, confusion matrix, HPO history).

Uses the object-oriented API with the Agg canvas only (no pyplot global state, no GUI backend), so it is safe
in worker threads and on headless machines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=90, layout="tight")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _series(history: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for h in history:
        v = h.get(key)
        if v is not None:
            xs.append(int(h["epoch"]) + 1)
            ys.append(float(v))
    return xs, ys


def training_curves(history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Loss, accuracy, validation AUC and learning rate per epoch (one row per epoch of metrics.jsonl)."""
    fig = _figure(10, 7)
    axes = fig.subplots(2, 2)
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        xs, ys = _series(history, key)
        if xs:
            axes[0, 0].plot(xs, ys, marker=".", label=label)
    axes[0, 0].set(title="loss (cross-entropy)", xlabel="epoch")
    for key, label in (("train_accuracy", "train"), ("val_accuracy", "validation"),
                       ("val_balanced_accuracy", "validation, balanced")):
        xs, ys = _series(history, key)
        if xs:
            axes[0, 1].plot(xs, ys, marker=".", label=label)
    axes[0, 1].set(title="accuracy", xlabel="epoch", ylim=(0, 1.02))
    for key, label in (("val_auc", "AUC"), ("val_sensitivity", "sensitivity"), ("val_specificity", "specificity")):
        xs, ys = _series(history, key)
        if xs:
            axes[1, 0].plot(xs, ys, marker=".", label=label)
    axes[1, 0].set(title="validation (positive = COVID)", xlabel="epoch", ylim=(0, 1.02))
    xs, ys = _series(history, "lr")
    if xs:
        axes[1, 1].plot(xs, ys, marker=".")
        if min(ys) > 0:
            axes[1, 1].set_yscale("log")
    axes[1, 1].set(title="learning rate", xlabel="epoch")
    sel = [int(h["epoch"]) + 1 for h in history if h.get("selected")]
    for ax in axes.flat:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        if sel:
            ax.axvline(sel[-1], color="grey", ls=":", lw=1)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def roc_plot(fpr: np.ndarray, tpr: np.ndarray, auc: float, path: str | Path, title: str = "ROC (COVID positive)",
             point: tuple[float, float] | None = None) -> Path:
    fig = _figure(5, 5)
    ax = fig.subplots()
    ax.plot(fpr, tpr, lw=2, label=f"AUC = {auc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
    if point is not None:
        ax.plot([point[0]], [point[1]], "o", color="C3", label="operating point (argmax)")
    ax.set(xlabel="1 − specificity (FPR)", ylabel="sensitivity (TPR)", xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def confusion_plot(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path,
                   title: str = "confusion matrix") -> Path:
    m = np.asarray(matrix)
    fig = _figure(1.6 + 1.2 * len(classes), 1.2 + 1.1 * len(classes))
    ax = fig.subplots()
    ax.imshow(m, cmap="Blues")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            colour = "white" if m[i, j] > m.max() / 2 else "black"
            ax.text(j, i, str(int(m[i, j])), ha="center", va="center", color=colour, fontsize=12)
    ax.set_xticks(range(len(classes)), labels=list(classes))
    ax.set_yticks(range(len(classes)), labels=list(classes))
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)


def hpo_plot(trials: Sequence[dict[str, Any]], params: Sequence[str], path: str | Path,
             objective: str = "validation accuracy") -> Path:
    """Objective per trial (with running best) and objective vs each searched parameter (log axes)."""
    done = [t for t in trials if t.get("value") is not None]
    fig = _figure(4 * (1 + len(params)), 4)
    axes = np.atleast_1d(fig.subplots(1, 1 + len(params)))
    if done:
        xs = [t["number"] for t in done]
        ys = [t["value"] for t in done]
        axes[0].plot(xs, ys, "o", label="trial")
        axes[0].plot(xs, np.maximum.accumulate(ys), "-", color="C3", label="best so far")
    pruned = [t for t in trials if t.get("state") == "PRUNED"]
    if pruned:
        axes[0].plot([t["number"] for t in pruned], [t.get("last_value") or 0 for t in pruned], "x",
                     color="grey", label="pruned (last reported)")
    axes[0].set(xlabel="trial", ylabel=objective, title="search history")
    axes[0].legend(fontsize=8)
    for ax, p in zip(axes[1:], params):
        vals = [(t["params"].get(p), t["value"]) for t in done if p in t.get("params", {})]
        if vals:
            ax.plot([v[0] for v in vals], [v[1] for v in vals], "o")
            if all(v[0] > 0 for v in vals):
                ax.set_xscale("log")
        ax.set(xlabel=p, ylabel=objective)
    for ax in axes:
        ax.grid(alpha=0.3)
    return _save(fig, path)
