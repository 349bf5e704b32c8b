"""Training, evaluation and CAM localisation for the 3-D networks (CovidNet3D, MC3_18, ResNet3D, DenseNet3D).

``fit3d`` trains any registered 3-D model on ``VolumeDataset``s with P4's retraining recipe (spec §5.4): Adam
(LR 1e-3, weight decay 5e-4), cosine annealing with T_max = epochs (η_min 1e-6), cross-entropy; the kept
weights are those of the best **validation** epoch (never the test set — the public code's selection-on-test
leak is not reproduced).  A checkpoint (safetensors + JSON, no pickle) is written every epoch and every
``checkpoint_every`` steps; calling ``fit3d`` again with the same folder resumes.

``evaluate3d`` gives the spec §6 metrics (positive class = COVID).  ``localise3d`` measures where the CAM
points on the *source voxel grid* (the heatmap goes through ``Preprocess.to_voxels``):

* pointing game — the hottest voxel of the lung (of the lung ∪ lesion mask when a lung mask is given, else
  of the volume; a plateau counts by its centre) lies inside the lesion mask (strict) / within ``tol_mm`` of it (Zhang et al.'s tolerant
  variant: 15 px there, millimetres here);
* energy in mask — share of the min-max-normalised map's mass on lesion voxels (of the lung when a lung
  mask is given), with the lesion's share of the lung as the chance level;
* lesion-vs-lung AUC — how well map values separate lesion voxels from the other lung voxels.

Deviation from the recipe, on purpose: before each validation the BatchNorm statistics are re-estimated on
training batches with the current weights ("precise BN", ``bn_recalibration_batches``), because momentum
running averages lag behind on small 3-D batches (eval predictions collapsed to one class without it).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.search.checkpoint import load_checkpoint, save_checkpoint
from engine.xai import heatmap_peak

CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"


class TrainingCancelled(Exception):
    """``cancel()`` returned True; a checkpoint was written — call again with the same folder to resume."""


@dataclass
class Train3DConfig:
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 5e-4
    schedule: str = "cosine"          # 'cosine' (T_max = epochs) | 'constant'
    eta_min: float = 1e-6
    grad_clip: float | None = None
    select: str = "val_acc"           # 'val_acc' | 'val_loss' | 'val_auc'
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = 0         # steps; 0 = only at epoch ends
    bn_recalibration_batches: int = 8  # "precise BN" before each validation (0 = plain running averages)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Train3DConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def lr_at(self, epoch: int) -> float:
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "cosine":
            return self.eta_min + (self.lr - self.eta_min) * (1 + math.cos(math.pi * epoch / max(self.epochs, 1))) / 2
        raise ValueError(f"unknown schedule {self.schedule!r} (cosine, constant)")


# ---------------------------------------------------------------------------------------------- prediction
@torch.no_grad()
def predict3d(model: nn.Module, data: Any, indices: Sequence[int] | None = None, batch_size: int = 4,
              device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N×K) and labels of ``data`` (evaluation-mode sampling)."""
    model.eval()
    indices = list(range(len(data))) if indices is None else list(indices)
    probs, labels = [], []
    for s in range(0, len(indices), batch_size):
        x, y = data.batch(indices[s:s + batch_size], 0, train=False)
        probs.append(F.softmax(model(x.to(device)).float(), 1).cpu().numpy())
        labels.append(y.numpy())
    return np.concatenate(probs), np.concatenate(labels)


def evaluate3d(model: nn.Module, data: Any, classes: Sequence[str], indices: Sequence[int] | None = None,
               batch_size: int = 4, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Spec §6 metrics of ``model`` on ``data`` (positive class = COVID)."""
    from engine.train.metrics import classification_metrics

    probs, labels = predict3d(model, data, indices, batch_size, device)
    metrics = classification_metrics(labels, probs, list(classes))
    metrics["loss"] = float(F.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-12)),
                                       torch.from_numpy(labels)).item())
    return metrics


# ---------------------------------------------------------------------------------------------- training
def fit3d(model: nn.Module, train: Any, val: Any | None, cfg: Train3DConfig, out_dir: str | Path, *,
          classes: Sequence[str] = ("NonCOVID", "COVID"), progress: Callable[[dict[str, Any]], None] | None = None,
          cancel: Callable[[], bool] | None = None, resume: bool = True) -> dict[str, Any]:
    """Train ``model`` in place; at the end it holds the best-validation weights (last epoch without ``val``).

    Returns {"history": [...], "best_epoch", "best": metrics, "seconds"}; also written to ``history.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model.to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, Any]] = []
    epoch, step, best_score, best_epoch = 0, 0, -math.inf, 0
    running = {"loss": 0.0, "correct": 0, "n": 0}
    t0 = time.time()
    ck = out / CHECKPOINT
    if resume and ck.is_file():
        meta, extra = load_checkpoint(ck, model, {"model": opt})
        epoch, step = int(meta["epoch"]), int(meta["step"])
        history, running = list(meta["history"]), dict(meta["running"])
        best_score, best_epoch = float(meta["best_score"]), int(meta["best_epoch"])
        torch.set_rng_state(extra["torch_rng"])
        t0 -= float(meta.get("seconds", 0.0))
        _emit(progress, {"stage": "train", "event": "resumed", "epoch": epoch, "step": step})
    n = len(train)
    bs = min(cfg.batch_size, n)
    steps = max(1, n // bs)          # drop the ragged last batch (BatchNorm needs >1 sample)

    def checkpoint() -> None:
        save_checkpoint(ck, model, {"model": opt},
                        {"config": cfg.to_dict(), "epoch": epoch, "step": step, "history": history,
                         "running": running, "best_score": best_score, "best_epoch": best_epoch,
                         "seconds": time.time() - t0},
                        {"torch_rng": torch.get_rng_state()})

    while epoch < cfg.epochs:
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(epoch)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        model.train()
        t_epoch = time.time()
        while step < steps:
            if cancel is not None and cancel():
                checkpoint()
                raise TrainingCancelled(f"training cancelled at epoch {epoch + 1}, step {step}; run again to resume")
            x, y = train.batch(order[step * bs:(step + 1) * bs], epoch, train=True)
            x, y = x.to(cfg.device), y.to(cfg.device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            running["loss"] += loss.item() * len(y)
            running["correct"] += int((logits.argmax(1) == y).sum())
            running["n"] += len(y)
            step += 1
            _emit(progress, {"stage": "train", "event": "step", "epoch": epoch + 1, "epochs": cfg.epochs,
                             "step": step, "steps": steps, "loss": loss.item(), "elapsed_s": time.time() - t0})
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < steps:
                checkpoint()
        if cfg.bn_recalibration_batches:
            recalibrate_bn(model, train, order[: cfg.bn_recalibration_batches * bs], bs, epoch, cfg.device)
        record: dict[str, Any] = {"epoch": epoch + 1, "lr": cfg.lr_at(epoch),
                                  "train_loss": running["loss"] / max(running["n"], 1),
                                  "train_acc": running["correct"] / max(running["n"], 1)}
        if val is not None and len(val):
            m = evaluate3d(model, val, classes, device=cfg.device)
            record.update(val_acc=m["accuracy"], val_loss=m["loss"], val_auc=m["auc"],
                          val_sensitivity=m["sensitivity"], val_specificity=m["specificity"])
            score = {"val_acc": (m["accuracy"], -m["loss"]), "val_loss": (-m["loss"],),
                     "val_auc": (m["auc"] if not math.isnan(m["auc"]) else -1.0, -m["loss"])}[cfg.select]
            score_v = score[0] * 1e6 + (score[1] if len(score) > 1 else 0.0)
        else:
            score_v = float(epoch)
        record["epoch_seconds"] = time.time() - t_epoch
        if score_v > best_score:
            best_score, best_epoch = score_v, epoch + 1
            _save_weights_file(out / BEST, model, {"epoch": epoch + 1, **{k: v for k, v in record.items()}})
        history.append(record)
        epoch += 1
        step = 0
        running = {"loss": 0.0, "correct": 0, "n": 0}
        checkpoint()
        (out / "history.json").write_text(json.dumps({"config": cfg.to_dict(), "history": history,
                                                      "best_epoch": best_epoch}, indent=1) + "\n",
                                          encoding="utf-8")
        _emit(progress, {"stage": "train", "event": "epoch", **record, "best_epoch": best_epoch})
    if (out / BEST).is_file():
        _load_weights_file(out / BEST, model)
    best = next((r for r in history if r["epoch"] == best_epoch), history[-1] if history else {})
    return {"history": history, "best_epoch": best_epoch, "best": best, "seconds": time.time() - t0}


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: Any, indices: Sequence[int], batch_size: int, epoch: int = 0,
                   device: str | torch.device = "cpu") -> None:
    """Re-estimate every BatchNorm's running statistics as the plain average over ``indices`` (training-mode
    sampling, current weights): "precise BN".  Running averages with momentum 0.1 lag behind fast-moving
    weights on small 3-D batches, which made eval-mode predictions collapse early in training."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(indices) < 2:
        return
    momenta = [m.momentum for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for s in range(0, len(indices), batch_size):
            chunk = list(indices[s:s + batch_size])
            if len(chunk) < 2:
                break
            x, _ = data.batch(chunk, epoch, train=True)
            model(x.to(device))
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)


def _save_weights_file(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp),
              metadata={"lunglens_train3d": json.dumps(meta)})
    tmp.replace(path)


def _load_weights_file(path: Path, model: nn.Module) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {}).get("lunglens_train3d", "{}"))
        device = next(model.parameters()).device
        model.load_state_dict({k: fh.get_tensor(k).to(device) for k in fh.keys()})
    return meta


def _emit(progress: Callable[[dict[str, Any]], None] | None, event: dict[str, Any]) -> None:
    if progress is not None:
        progress(event)


# ---------------------------------------------------------------------------------------------- localisation
def _distance_mm(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance (mm) of every voxel to the nearest mask voxel (0 inside); SimpleITK's exact Maurer map."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    dist = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return np.clip(sitk.GetArrayFromImage(dist), 0.0, None)


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    ranks = np.empty(len(allv))
    order = np.argsort(allv, kind="mergesort")
    sorted_v = allv[order]
    # average ranks for ties
    i = 0
    r = np.arange(1, len(allv) + 1, dtype=np.float64)
    while i < len(sorted_v):
        j = i
        while j + 1 < len(sorted_v) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        r[i:j + 1] = (i + j + 2) / 2.0
        i = j + 1
    ranks[order] = r
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def localisation_scores(heat: np.ndarray, lesion: np.ndarray, spacing: Sequence[float],
                        lung: np.ndarray | None = None, tol_mm: float = 15.0) -> dict[str, Any]:
    """Localisation of one heatmap on the voxel grid against a lesion mask (see the module docstring)."""
    heat = np.asarray(heat, dtype=np.float32)
    lesion = np.asarray(lesion, dtype=bool)
    if heat.shape != lesion.shape:
        raise ValueError(f"heatmap {heat.shape} and lesion mask {lesion.shape} must share the voxel grid")
    if lung is not None and np.shape(lung) != lesion.shape:
        raise ValueError(f"lung mask {np.shape(lung)} and lesion mask {lesion.shape} must share the voxel grid")
    region = np.asarray(lung, dtype=bool) | lesion if lung is not None else np.ones_like(lesion)
    # The peak is searched inside the scored region (lung ∪ lesion).  An up-sampled coarse CAM is flat over
    # the outer half of every edge cell and ``Preprocess.to_voxels`` carries that plateau out to the edge of
    # the crop box (the lung box + margin), so a plain argmax breaks the tie at the first voxel of the
    # plateau — the box corner, outside the lung — whenever the hottest cell touches the field of view
    # (peripheral lesions: most of them).  That scored even a perfect coarse map as a miss.
    peak = heatmap_peak(heat, region, spacing)
    dist = _distance_mm(lesion, spacing)
    total = float(heat[region].sum())
    inside = float(heat[lesion].sum())
    sub = region & ~lesion
    step = max(1, int(sub.sum() // 200_000))
    return {
        "peak_voxel": [int(v) for v in peak],
        "pointing_hit": bool(lesion[peak]),
        "pointing_hit_tol": bool(dist[peak] <= tol_mm),
        "peak_distance_mm": float(dist[peak]),
        "energy_in_mask": inside / total if total > 0 else float("nan"),
        "energy_chance": float(lesion.sum()) / max(float(region.sum()), 1.0),
        "lesion_auc": _auc(heat[lesion], heat[sub][::step]),
    }


def localise3d(model: nn.Module, data: Any, indices: Sequence[int] | None = None, *, method: str = "cam",
               target: int | None = None, tol_mm: float = 15.0,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """CAM localisation over the cases of ``data`` that have a non-empty lesion mask (``record.mask``).

    The map is taken for ``target`` (default: the positive class), min-max normalised on the model grid
    (spec §5.6), mapped to the source voxels with ``Preprocess.to_voxels`` and scored there.
    """
    from engine.preprocess import Preprocess
    from engine.train.data3d import load_mask
    from engine.xai import explain

    positive = target if target is not None else [c.lower() for c in data.classes].index("covid")
    indices = list(range(len(data))) if indices is None else list(indices)
    cases = []
    for k, i in enumerate(indices):
        rec = data.records[i]
        if rec.mask is None:
            continue
        arr, spacing, _ = data.volume(i)
        lesion = load_mask(rec.mask, arr.shape)
        if not lesion.any():
            continue
        lung = load_mask(rec.lung, arr.shape) if rec.lung is not None else None
        x, _, geom = data.item(i, 0, train=False)
        cam = explain(model, x[None], method, target=positive)[0]
        cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-8)
        heat = Preprocess.to_voxels(cam, geom)
        scores = localisation_scores(heat, lesion, spacing, lung, tol_mm)
        scores.update(case=rec.patient_id, lesion_ml=float(lesion.sum()) * float(np.prod(spacing)) / 1000.0)
        cases.append(scores)
        if progress is not None:
            progress(k + 1, len(indices))
    if not cases:
        return {"n": 0, "cases": []}

    def mean(key: str) -> float:
        vals = [c[key] for c in cases if not (isinstance(c[key], float) and math.isnan(c[key]))]
        return float(np.mean(vals)) if vals else float("nan")

    return {
        "n": len(cases), "method": method, "tol_mm": tol_mm,
        "pointing_game": mean("pointing_hit"), "pointing_game_tol": mean("pointing_hit_tol"),
        "energy_in_mask": mean("energy_in_mask"), "energy_chance": mean("energy_chance"),
        "lesion_auc": mean("lesion_auc"), "median_peak_distance_mm": float(np.median([c["peak_distance_mm"]
                                                                                   for c in cases])),
        "cases": cases,
    }


__all__ = ["Train3DConfig", "TrainingCancelled", "fit3d", "predict3d", "evaluate3d", "localise3d",
           "localisation_scores", "recalibrate_bn"]
