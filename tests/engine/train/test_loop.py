"""The training loop: learning, determinism, resuming after an interruption, schedules, run-folder files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.preprocess import Preprocess
from engine.train.data import ManifestDataset, TensorData, load_tensors
from engine.train.loop import (
    BEST,
    CHECKPOINT,
    METRICS,
    TrainConfig,
    TrainingInterrupted,
    fit,
    load_checkpoint,
    lr_for_epoch,
    make_optimizer,
)

from .conftest import TinyNet


def _split(root: Path, size: int = 32) -> tuple[TensorData, TensorData]:
    ds = ManifestDataset.from_folder(root)
    t = load_tensors(ds, Preprocess.for_model("lightsqueeze_proposed", input_size=(size, size)))
    tr = [i for i, s in enumerate(ds.samples) if s.split == "train"]
    va = [i for i, s in enumerate(ds.samples) if s.split == "val"]
    return t.subset(tr), t.subset(va)


CFG = TrainConfig(epochs=3, batch_size=8, optimizer="sgdm", lr=0.05, momentum=0.9, schedule="step", step_every=1,
                  step_factor=0.5, augment="p1", channels_last=False, seed=3, ema=0.9)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _quiet(_s: str) -> None:
    pass


def test_learns_the_synthetic_task(synth_data: Path) -> None:
    train, val = _split(synth_data)
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=8, batch_size=8, optimizer="adam", lr=5e-3, augment="flip", channels_last=False)
    result = fit(TinyNet(), train, val, cfg, None, log=_quiet)
    assert result.best_metrics["accuracy"] >= 0.75 and result.best_metrics["auc"] >= 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_same_seed_same_weights_and_interrupted_run_resumes_identically(synth_data: Path, tmp_path: Path) -> None:
    train, val = _split(synth_data)
    runs = []
    for name in ("a", "b"):
        torch.manual_seed(0)
        m = TinyNet()
        r = fit(m, train, val, CFG, tmp_path / name, log=_quiet, curves=False)
        runs.append((_state(m), r))
    for k in runs[0][0]:
        assert torch.equal(runs[0][0][k], runs[1][0][k]), k
    # interrupted mid-epoch 2 (after 5 optimiser steps), then resumed with a freshly built model
    torch.manual_seed(0)
    with pytest.raises(TrainingInterrupted):
        fit(TinyNet(), train, val, CFG, tmp_path / "c", max_steps=5, log=_quiet, curves=False)
    assert (tmp_path / "c" / CHECKPOINT).is_file()
    torch.manual_seed(99)  # a different init must be overwritten by the checkpoint
    m = TinyNet()
    r = fit(m, train, val, CFG, tmp_path / "c", log=_quiet, curves=False)
    ref_state, ref = runs[0]
    for k in ref_state:
        assert torch.equal(ref_state[k], _state(m)[k]), k
    assert [h["val_loss"] for h in r.history] == [h["val_loss"] for h in ref.history]
    rows = [json.loads(line) for line in (tmp_path / "c" / METRICS).read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1, 2]


def test_resume_refuses_a_different_configuration(synth_data: Path, tmp_path: Path) -> None:
    train, val = _split(synth_data)
    with pytest.raises(TrainingInterrupted):
        fit(TinyNet(), train, val, CFG, tmp_path / "r", max_steps=2, log=_quiet, curves=False)
    other = TrainConfig(**{**CFG.to_dict(), "lr": 0.1})
    with pytest.raises(ValueError, match="different configuration.*lr"):
        fit(TinyNet(), train, val, other, tmp_path / "r", log=_quiet, curves=False)
    # more epochs is allowed: the run is extended
    longer = TrainConfig(**{**CFG.to_dict(), "epochs": 4})
    r = fit(TinyNet(), train, val, longer, tmp_path / "r", log=_quiet, curves=False)
    assert r.epochs_run == 4


def test_run_folder_files(synth_data: Path, tmp_path: Path) -> None:
    train, val = _split(synth_data)
    m = TinyNet()
    r = fit(m, train, val, CFG, tmp_path / "run", log=_quiet)
    for name in (CHECKPOINT, BEST, METRICS, "curves.png", "config.json"):
        assert (tmp_path / "run" / name).is_file(), name
    rows = [json.loads(line) for line in (tmp_path / "run" / METRICS).read_text().splitlines()]
    assert [row["lr"] for row in rows] == pytest.approx([0.05, 0.025, 0.0125])
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_auc", "selected"} <= set(rows[0])
    meta = load_checkpoint(tmp_path / "run" / CHECKPOINT, TinyNet(), make_optimizer(TinyNet(), CFG))
    assert meta["epoch"] == 3 and meta["step"] == 0
    # the restored model is the selected (best) epoch, and its metrics are those of that epoch
    best = [row for row in rows if row["selected"]][-1]
    assert r.best_epoch == best["epoch"]
    assert r.best_metrics["accuracy"] == pytest.approx(best["val_accuracy"])


def test_lr_schedules() -> None:
    step = TrainConfig(lr=1.0, schedule="step", step_every=5, step_factor=0.8)
    assert [lr_for_epoch(step, e) for e in (0, 4, 5, 10)] == pytest.approx([1, 1, 0.8, 0.64])
    cos = TrainConfig(lr=1.0, schedule="cosine", epochs=10, eta_min=0.0)
    assert lr_for_epoch(cos, 0) == pytest.approx(1.0) and lr_for_epoch(cos, 5) == pytest.approx(0.5)
    warm = TrainConfig(lr=1.0, schedule="cosine", epochs=10, warmup_epochs=1)
    assert lr_for_epoch(warm, 0) == pytest.approx(0.5)
    assert lr_for_epoch(TrainConfig(lr=0.3, schedule="plateau"), 7, plateau_lr=0.1) == pytest.approx(0.1)


def test_plateau_halves_the_lr_when_validation_stalls(synth_data: Path) -> None:
    train, val = _split(synth_data)
    cfg = TrainConfig(epochs=4, batch_size=8, optimizer="adam", lr=1e-9, schedule="plateau", plateau_patience=1, eta_min=0.0,
                      plateau_factor=0.5, plateau_threshold=1.0, channels_last=False)
    r = fit(TinyNet(), train, val, cfg, None, log=_quiet)
    # threshold 1.0 means no epoch ever counts as an improvement after the first
    assert [h["lr"] for h in r.history] == pytest.approx([1e-9, 1e-9, 5e-10, 2.5e-10])


def test_label_smoothing_rebalance_and_p0_paths_run(synth_data: Path) -> None:
    train, val = _split(synth_data, size=24)
    cfg = TrainConfig(epochs=1, batch_size=8, optimizer="sgdm", lr=0.01, label_smoothing=0.1, sampler="rebalance",
                      augment="p0", channels_last=True, class_weights=(1.0, 2.0))
    r = fit(TinyNet(), train, val, cfg, None, log=_quiet)
    # P0: every image ×4 per epoch -> the rebalanced epoch has ceil(4N / batch) batches
    assert r.epochs_run == 1 and r.best_metrics["n"] == len(val)
    with pytest.raises(ValueError, match="class_weights"):
        fit(TinyNet(), train, val, TrainConfig(epochs=1, class_weights=(1.0,)), None, log=_quiet)


def test_invalid_config_is_refused() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs").validate()
    with pytest.raises(ValueError, match="augmentation"):
        TrainConfig(augment="crazy").validate()
