"""The training loop shared by ``train``, ``cv`` and ``hpo``: deterministic, resumable, checkpointed.

Determinism: every random draw of step ``s`` of epoch ``e`` (batch order, augmentation, dropout) is seeded
from (seed, e, s), so a run is a pure function of its configuration and seed, and a run interrupted at any
step boundary and resumed from its checkpoint produces bit-identical weights and metrics (same machine and
thread count).

Run folder layout::

    config.json            the TrainConfig (resuming checks it matches)
    checkpoint.safetensors model + optimiser state; metadata = epoch/step/LR/plateau/best state (JSON)
    best.safetensors       model weights of the selected epoch (``select``)
    metrics.jsonl          one JSON object per finished epoch
    curves.png             loss / accuracy / AUC / LR per epoch
    summary.json           final result (selected epoch, its full validation metrics, timing)
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.train.augment import Augment, apply_offline, seeded_generator
from engine.train.data import TensorData, positive_index
from engine.train.metrics import classification_metrics
from engine.train.sampling import rebalanced_batches, shuffled_batches

CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"
METRICS = "metrics.jsonl"


class TrainingInterrupted(Exception):
    """Raised after a checkpoint was written because of SIGINT/SIGTERM or a step limit; resume to continue."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (a recipe fills these; CLI flags override)."""

    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "sgdm"              # sgdm | adam | adamw
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0            # L2 (coupled for sgdm/adam, decoupled for adamw)
    schedule: str = "none"               # none | step | plateau | cosine
    step_every: int = 5
    step_factor: float = 0.8
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    plateau_threshold: float = 1e-4
    eta_min: float = 1e-6
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    class_weights: tuple[float, ...] | None = None
    augment: str = "none"                # see engine.train.augment.POLICIES
    noise_std: float = 0.02
    sampler: str = "shuffle"             # shuffle | rebalance
    positive_share: float = 0.3
    select: str = "accuracy"             # accuracy | auc | loss | last
    early_stop: int = 0                  # epochs without improvement before stopping (0 = off)
    seed: int = 0
    channels_last: bool = True
    eval_batch_size: int = 64
    max_minutes: float = 0.0             # stop after the epoch that crosses this wall-time budget (0 = off)
    grad_clip: float = 0.0
    ema: float = 0.0                     # exponential moving average of the weights (0 = off, e.g. 0.98)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known})

    def validate(self) -> None:
        if self.optimizer not in ("sgdm", "adam", "adamw"):
            raise ValueError(f"optimizer must be sgdm, adam or adamw, got {self.optimizer!r}")
        if self.schedule not in ("none", "step", "plateau", "cosine"):
            raise ValueError(f"schedule must be none, step, plateau or cosine, got {self.schedule!r}")
        if self.sampler not in ("shuffle", "rebalance"):
            raise ValueError(f"sampler must be shuffle or rebalance, got {self.sampler!r}")
        if self.select not in ("accuracy", "auc", "loss", "last"):
            raise ValueError(f"select must be accuracy, auc, loss or last, got {self.select!r}")
        if self.epochs < 1 or self.batch_size < 2 or not self.lr > 0:
            raise ValueError("epochs ≥ 1, batch_size ≥ 2 and lr > 0 are required")
        Augment(self.augment)


# ---------------------------------------------------------------------------------------------- helpers
def lr_for_epoch(cfg: TrainConfig, epoch: int, plateau_lr: float | None = None) -> float:
    """The LR of a (0-based) epoch for the stateless schedules; plateau returns its tracked LR."""
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return cfg.lr * (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.schedule == "step":
        return cfg.lr * cfg.step_factor ** (epoch // max(1, cfg.step_every))
    if cfg.schedule == "cosine":
        span = max(1, cfg.epochs - cfg.warmup_epochs)
        t = min(1.0, (epoch - cfg.warmup_epochs) / span)
        return cfg.eta_min + (cfg.lr - cfg.eta_min) * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "plateau" and plateau_lr is not None:
        return plateau_lr
    return cfg.lr


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgdm":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _optim_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = val.detach().clone().contiguous()
            else:
                scalars[f"{pid}.{key}"] = val
    return tensors, {"scalars": scalars, "param_groups": sd["param_groups"]}


def _load_optim(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        if not name.startswith("optim."):
            continue
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = val
    for name, val in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = val
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, meta: dict[str, Any],
                    extra: dict[str, torch.Tensor] | None = None) -> None:
    """Model + optimiser (+ ``extra`` tensors, e.g. the EMA weights as ``ema.*``) + JSON metadata, atomically."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    tensors.update({k: v.detach().clone().contiguous() for k, v in (extra or {}).items()})
    opt_t, opt_meta = _optim_tensors(opt)
    tensors.update(opt_t)
    meta = dict(meta, optimizer=opt_meta)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"lunglens_train": json.dumps(meta)})
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer | None,
                    extra: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Restore model (+ optimiser); tensors that are neither go into ``extra`` when given."""
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["lunglens_train"])
        for k in fh.keys():
            tensors[k] = fh.get_tensor(k)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if opt is not None:
        _load_optim(opt, tensors, meta["optimizer"])
    if extra is not None:
        extra.update({k: v for k, v in tensors.items() if not k.startswith(("model.", "optim."))})
    return meta


def save_model_file(path: Path, model: nn.Module, meta: dict[str, Any] | None = None) -> None:
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(tmp),
              metadata={"lunglens_train": json.dumps(meta or {})})
    os.replace(tmp, path)


def load_model_file(path: Path, model: nn.Module) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {}).get("lunglens_train", "{}"))
        model.load_state_dict({k: fh.get_tensor(k) for k in fh.keys()})
    return meta


@torch.no_grad()
def predict_proba(model: nn.Module, data: TensorData, batch_size: int = 64,
                  channels_last: bool = True) -> np.ndarray:
    """Softmax probabilities N×K of ``data`` (unit-range cache) through ``data.preprocess.normalise``."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        x = data.preprocess.normalise(data.x[start:start + batch_size].to(torch.float32))
        if channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(F.softmax(model(x).float(), dim=1))
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, len(data.classes)))


def evaluate_loss_metrics(model: nn.Module, data: TensorData, cfg: TrainConfig) -> dict[str, Any]:
    probs = predict_proba(model, data, cfg.eval_batch_size, cfg.channels_last)
    y = data.y.numpy()
    eps = 1e-7
    loss = float(-np.log(np.clip(probs[np.arange(len(y)), y], eps, 1.0)).mean()) if len(y) else float("nan")
    m = classification_metrics(y, probs, data.classes, positive_index(data.classes))
    m["loss"] = loss
    return m


def _ema_update(ema: dict[str, torch.Tensor], model: nn.Module, decay: float, steps: int) -> None:
    """ema = d·ema + (1−d)·weights, with d ramped up early ((1+n)/(10+n)) so the random init fades fast."""
    d = min(decay, (1.0 + steps) / (10.0 + steps))
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                ema[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                ema[k].copy_(v)


def _ema_extra(ema: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    return None if ema is None else {f"ema.{k}": v for k, v in ema.items()}


def json_clean(value: Any) -> Any:
    """NaN/inf -> None recursively, so every file we write is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return json_clean(value.item())
    return value


def _score(select: str, m: dict[str, Any]) -> tuple:
    """Bigger is better; ties broken by AUC then loss (so two epochs with equal accuracy are ordered)."""
    auc = m.get("auc", float("nan"))
    auc = -1.0 if auc is None or math.isnan(auc) else auc
    loss = m.get("loss", float("inf"))
    if select == "auc":
        return (auc, m.get("accuracy", 0.0), -loss)
    if select == "loss":
        return (-loss,)
    return (m.get("accuracy", 0.0), auc, -loss)


# ---------------------------------------------------------------------------------------------- the loop
@dataclass
class FitResult:
    best_epoch: int
    epochs_run: int
    history: list[dict[str, Any]]
    best_metrics: dict[str, Any] | None
    seconds: float
    stopped: str = ""                     # "", "early_stop", "time_budget", "pruned"
    run_dir: Path | None = None


EpochCallback = Callable[[int, dict[str, Any]], bool]   # (epoch, row) -> True to stop (e.g. Optuna pruning)


def fit(model: nn.Module, train: TensorData, val: TensorData | None, cfg: TrainConfig,
        run_dir: str | Path | None = None, *, resume: bool = True, progress: bool = False,
        on_epoch: EpochCallback | None = None, max_steps: int | None = None,
        handle_signals: bool = False, log: Callable[[str], None] | None = None,
        curves: bool = True) -> FitResult:
    """Train ``model`` on ``train`` (unit-range cache), select on ``val``; see the module docstring.

    ``max_steps`` stops (with a checkpoint, raising ``TrainingInterrupted``) after that many optimiser steps
    in this call — used to test resuming.  ``handle_signals`` turns SIGINT/SIGTERM into the same clean stop.
    ``curves`` draws ``curves.png`` at the end (run folders only).
    """
    cfg.validate()
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    rdir = Path(run_dir) if run_dir is not None else None
    if rdir is not None:
        rdir.mkdir(parents=True, exist_ok=True)
    pos = positive_index(train.classes)
    aug = Augment(cfg.augment, noise_std=cfg.noise_std)
    copies = aug.offline_copies
    weight = torch.tensor(cfg.class_weights, dtype=torch.float32) if cfg.class_weights else None
    if weight is not None and len(weight) != len(train.classes):
        raise ValueError(f"class_weights has {len(weight)} values for {len(train.classes)} classes")
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)

    history: list[dict[str, Any]] = []
    start_epoch, start_step = 0, 0
    ema_state = ({k: v.detach().clone() for k, v in model.state_dict().items()} if cfg.ema > 0 else None)
    state: dict[str, Any] = {"plateau_lr": cfg.lr, "plateau_best": None, "plateau_bad": 0,
                             "best_score": None, "best_epoch": -1, "bad_epochs": 0,
                             "partial": {"loss_sum": 0.0, "correct": 0, "seen": 0}, "seconds": 0.0,
                             "ema_steps": 0}
    ck = rdir / CHECKPOINT if rdir is not None else None
    if rdir is not None:
        cfg_path = rdir / "config.json"
        if resume and ck is not None and ck.is_file():
            old = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
            mismatch = {k for k, v in cfg.to_dict().items()
                        if k not in ("epochs", "max_minutes", "early_stop")
                        and json.dumps(old.get("train", {}).get(k)) != json.dumps(v)}
            if mismatch:
                raise ValueError(f"{rdir} holds a run with a different configuration ({sorted(mismatch)}); "
                                 "use another --out folder or --restart")
            loaded_extra: dict[str, torch.Tensor] = {}
            meta = load_checkpoint(ck, model, opt, loaded_extra)
            if ema_state is not None:
                ema_state = {k[4:]: v for k, v in loaded_extra.items() if k.startswith("ema.")} or ema_state
            start_epoch, start_step = int(meta["epoch"]), int(meta["step"])
            state.update(meta["state"])
            mpath = rdir / METRICS
            if mpath.is_file():
                history = [json.loads(line) for line in mpath.read_text().splitlines() if line.strip()]
                history = [h for h in history if h["epoch"] < start_epoch]
                mpath.write_text("".join(json.dumps(h) + "\n" for h in history))
            log(f"resuming {rdir} at epoch {start_epoch + 1}, step {start_step}")
        else:
            for stale in (CHECKPOINT, BEST, METRICS, "summary.json"):
                if (rdir / stale).exists():
                    (rdir / stale).unlink()
        existing = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        existing["train"] = cfg.to_dict()
        cfg_path.write_text(json.dumps(existing, indent=2) + "\n")

    stop_flag = {"stop": False}
    old_handlers = {}
    if handle_signals:
        def _handler(signum, frame):  # noqa: ARG001
            stop_flag["stop"] = True
            log("interrupt received: finishing this step and writing a checkpoint (resume with the same command)")
        for sig in (signal.SIGINT, signal.SIGTERM):
            old_handlers[sig] = signal.signal(sig, _handler)

    t_start = time.time() - float(state.get("seconds", 0.0))
    steps_this_call = 0
    stopped = ""
    try:
        for epoch in range(start_epoch, cfg.epochs):
            lr = lr_for_epoch(cfg, epoch, state["plateau_lr"])
            for group in opt.param_groups:
                group["lr"] = lr
            g_epoch = seeded_generator(cfg.seed, epoch, 101)
            if cfg.sampler == "rebalance":
                batches = rebalanced_batches(train.y, cfg.batch_size, g_epoch, pos, copies, cfg.positive_share)
            else:
                batches = shuffled_batches(len(train), cfg.batch_size, g_epoch, copies)
            model.train()
            part = state["partial"] if epoch == start_epoch and start_step else \
                {"loss_sum": 0.0, "correct": 0, "seen": 0}
            iterator = range(start_step if epoch == start_epoch else 0, len(batches))
            bar = None
            if progress:
                from tqdm import tqdm
                bar = tqdm(iterator, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
                           mininterval=1.0, file=sys.stderr)
                iterator = bar
            t_epoch = time.time()
            for step in iterator:
                idx, copy = batches[step]
                x = train.x[idx].to(torch.float32)
                if copies > 1:
                    x = apply_offline(aug, x, idx, copy, cfg.seed)
                else:
                    x = aug(x, seeded_generator(cfg.seed, epoch, step, 202))
                x = train.preprocess.normalise(x)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = train.y[idx]
                torch.manual_seed(seeded_generator(cfg.seed, epoch, step, 303).initial_seed())  # dropout
                opt.zero_grad(set_to_none=True)
                logits = model(x)
                loss = criterion(logits, y)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1} step {step}; "
                                             "lower the learning rate")
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                if ema_state is not None:
                    _ema_update(ema_state, model, cfg.ema, state["ema_steps"])
                    state["ema_steps"] += 1
                part["loss_sum"] += float(loss.detach()) * len(y)
                part["correct"] += int((logits.detach().argmax(1) == y).sum())
                part["seen"] += len(y)
                steps_this_call += 1
                if bar is not None:
                    bar.set_postfix(loss=f"{part['loss_sum'] / part['seen']:.3f}", refresh=False)
                last_step = step == len(batches) - 1
                if not last_step and (stop_flag["stop"] or (max_steps is not None and steps_this_call >= max_steps)):
                    state["partial"] = part
                    state["seconds"] = time.time() - t_start
                    if ck is not None:
                        save_checkpoint(ck, model, opt, {"epoch": epoch, "step": step + 1, "state": state},
                                        _ema_extra(ema_state))
                    raise TrainingInterrupted(f"stopped at epoch {epoch + 1}, step {step + 1}; checkpoint in {rdir}")
            if bar is not None:
                bar.close()
            row: dict[str, Any] = {
                "epoch": epoch, "lr": lr,
                "train_loss": part["loss_sum"] / max(1, part["seen"]),
                "train_accuracy": part["correct"] / max(1, part["seen"]),
                "train_seconds": round(time.time() - t_epoch, 2),
            }
            vm = None
            live = None
            if ema_state is not None:   # evaluate (and select) the averaged weights
                live = {k: v.detach().clone() for k, v in model.state_dict().items()}
                model.load_state_dict(ema_state)
            if val is not None and len(val):
                vm = evaluate_loss_metrics(model, val, cfg)
                row.update({f"val_{k}": vm[k] for k in ("loss", "accuracy", "auc", "sensitivity", "specificity",
                                                       "f1", "balanced_accuracy")})
            # plateau schedule monitors the validation loss (training loss without validation)
            monitor = row.get("val_loss", row["train_loss"])
            if cfg.schedule == "plateau":
                best = state["plateau_best"]
                if best is None or monitor < best - cfg.plateau_threshold:
                    state["plateau_best"], state["plateau_bad"] = monitor, 0
                else:
                    state["plateau_bad"] += 1
                    if state["plateau_bad"] >= cfg.plateau_patience:
                        state["plateau_lr"] = max(cfg.eta_min, state["plateau_lr"] * cfg.plateau_factor)
                        state["plateau_bad"] = 0
            score_src = vm if vm is not None else {"accuracy": row["train_accuracy"], "loss": row["train_loss"]}
            improved = False
            if cfg.select == "last":
                improved = True
            else:
                score = list(_score(cfg.select, score_src))
                if state["best_score"] is None or score > state["best_score"]:
                    state["best_score"], improved = score, True
            if improved:
                state["best_epoch"], state["bad_epochs"] = epoch, 0
                if rdir is not None:
                    save_model_file(rdir / BEST, model, {"epoch": epoch})
                else:
                    state["_best_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                state["bad_epochs"] += 1
            if live is not None:
                model.load_state_dict(live)
            row["selected"] = improved
            row["elapsed_seconds"] = round(time.time() - t_start, 2)
            history.append(row)
            state["partial"] = {"loss_sum": 0.0, "correct": 0, "seen": 0}
            state["seconds"] = time.time() - t_start
            if rdir is not None:
                with open(rdir / METRICS, "a") as fh:
                    fh.write(json.dumps(json_clean(row)) + "\n")
                save_checkpoint(ck, model, opt, {"epoch": epoch + 1, "step": 0,
                                                 "state": {k: v for k, v in state.items() if k != "_best_state"}},
                                _ema_extra(ema_state))
            msg = (f"epoch {epoch + 1}/{cfg.epochs} lr {lr:.3g} loss {row['train_loss']:.4f} "
                   f"acc {row['train_accuracy']:.3f}")
            if vm is not None:
                msg += f" | val loss {vm['loss']:.4f} acc {vm['accuracy']:.3f} auc {vm['auc']:.3f}"
            log(msg + f" ({row['train_seconds']:.0f}s)" + (" *" if improved else ""))
            start_step = 0
            if on_epoch is not None and on_epoch(epoch, row):
                stopped = "pruned"
                break
            if cfg.early_stop and state["bad_epochs"] >= cfg.early_stop:
                stopped = "early_stop"
                break
            if cfg.max_minutes and (time.time() - t_start) / 60.0 >= cfg.max_minutes and epoch + 1 < cfg.epochs:
                stopped = "time_budget"
                log(f"time budget of {cfg.max_minutes} min reached after epoch {epoch + 1}")
                break
            if stop_flag["stop"] and epoch + 1 < cfg.epochs:
                raise TrainingInterrupted(f"stopped after epoch {epoch + 1}; checkpoint in {rdir}")
    finally:
        for sig, h in old_handlers.items():
            signal.signal(sig, h)

    # restore the selected weights
    if cfg.select == "last" and ema_state is not None:
        model.load_state_dict(ema_state)
    if cfg.select != "last":
        if rdir is not None and (rdir / BEST).is_file():
            load_model_file(rdir / BEST, model)
        elif "_best_state" in state:
            model.load_state_dict(state["_best_state"])
    best_metrics = evaluate_loss_metrics(model, val, cfg) if val is not None and len(val) else None
    result = FitResult(best_epoch=int(state["best_epoch"]), epochs_run=len(history), history=history,
                       best_metrics=best_metrics, seconds=time.time() - t_start, stopped=stopped, run_dir=rdir)
    if rdir is not None and curves:
        try:
            from engine.train.plots import training_curves
            training_curves(history, rdir / "curves.png")
        except Exception as exc:  # a plotting problem must not lose a finished run
            log(f"warning: could not draw training curves: {exc}")
    return result


def config_with(cfg: TrainConfig, **overrides: Any) -> TrainConfig:
    """``cfg`` with the given non-None overrides."""
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


__all__ = ["TrainConfig", "FitResult", "TrainingInterrupted", "fit", "predict_proba", "evaluate_loss_metrics",
           "lr_for_epoch", "config_with", "save_model_file", "load_model_file", "save_checkpoint",
           "load_checkpoint"]
