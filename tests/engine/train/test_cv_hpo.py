"""Patient-wise cross-validation and the Optuna study (plumbing, resuming, pruning)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.preprocess import Preprocess
from engine.train.cv import patient_kfold, run_cv
from engine.train.data import ManifestDataset, load_tensors
from engine.train.loop import TrainConfig

from .conftest import TinyNet


def test_patient_kfold_is_disjoint_complete_and_stratified() -> None:
    rng = np.random.default_rng(0)
    groups, labels = [], []
    for p in range(40):
        n = int(rng.integers(1, 6))
        lab = int(p % 3 == 0)
        groups += [f"p{p}"] * n
        labels += [lab] * n
    folds = patient_kfold(groups, labels, 5, seed=1)
    seen = np.zeros(len(groups), dtype=int)
    y = np.asarray(labels)
    for train, test in folds:
        assert not ({groups[i] for i in train} & {groups[i] for i in test})
        assert len(train) + len(test) == len(groups)
        seen[test] += 1
        share = y[test].mean()
        assert abs(share - y.mean()) < 0.15          # stratified by construction
    assert (seen == 1).all()
    again = patient_kfold(groups, labels, 5, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, patient_kfold(groups, labels, 5, seed=2)))
    with pytest.raises(ValueError, match="patients"):
        patient_kfold(["a", "a", "b"], [0, 0, 1], 3)


def _data(root: Path):
    ds = ManifestDataset.from_folder(root)
    return load_tensors(ds, Preprocess.for_model("lightsqueeze_proposed", input_size=(24, 24)))


@pytest.mark.slow
def test_cv_end_to_end_and_resume(synth_data: Path, tmp_path: Path) -> None:
    data = _data(synth_data)
    cfg = TrainConfig(epochs=2, batch_size=8, optimizer="adam", lr=5e-3, channels_last=False)
    out = tmp_path / "cv"
    s = run_cv(lambda: TinyNet(), data, cfg, out, folds=3, repeats=1, inner_val=0.2, curves=False)
    assert s["folds"] == 3 and len(s["per_fold"]) == 3
    for key in ("accuracy", "auc", "sensitivity", "specificity"):
        ci = s[key]
        assert ci["ci_low"] <= ci["mean"] <= ci["ci_high"]
    assert "Student-t" in s["ci_formula"]
    assert s["pooled_out_of_fold"][0]["n"] == len(data)
    assert sum(r["n_test"] for r in s["per_fold"]) == len(data)
    rows = [json.loads(line) for line in (out / "folds.jsonl").read_text().splitlines()]
    for r in rows:
        test_groups = {data.groups[i] for i in r["test_index"]}
        train_groups = set(data.groups) - test_groups
        assert not (test_groups & train_groups)
    # resuming does not retrain finished folds: delete their run folders, the summary is still rebuilt
    import shutil
    for d in out.glob("r0_f*"):
        shutil.rmtree(d)
    again = run_cv(lambda: TinyNet(), data, cfg, out, folds=3, repeats=1, inner_val=0.2, curves=False)
    assert again["accuracy"]["mean"] == pytest.approx(s["accuracy"]["mean"])
    assert not list(out.glob("r0_f*"))


@pytest.mark.slow
def test_hpo_study_resumes_and_prunes(synth_data: Path, tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    from engine.train.hpo import run_hpo

    data = _data(synth_data)
    ds = ManifestDataset.from_folder(synth_data)
    tr = [i for i, s in enumerate(ds.samples) if s.split == "train"]
    va = [i for i, s in enumerate(ds.samples) if s.split == "val"]
    cfg = TrainConfig(epochs=2, batch_size=8, optimizer="sgdm", channels_last=False)
    out = tmp_path / "hpo"
    s1 = run_hpo(lambda: TinyNet(), data.subset(tr), data.subset(va), cfg, out, trials=2, seed=0, warmup=0)
    assert s1["n_complete"] + s1["n_pruned"] == 2 and (out / "study.db").is_file()
    assert set(s1["best"]["params"]) == {"lr", "momentum", "weight_decay"}
    assert (out / "hpo.png").is_file()
    # simulate a crash mid-trial: a RUNNING trial is left in the storage
    study = optuna.load_study(study_name="lunglens-hpo", storage=f"sqlite:///{out / 'study.db'}")
    stale = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
                       "momentum": optuna.distributions.FloatDistribution(0.5, 0.99),
                       "weight_decay": optuna.distributions.FloatDistribution(1e-10, 1e-2, log=True)})
    s2 = run_hpo(lambda: TinyNet(), data.subset(tr), data.subset(va), cfg, out, trials=3, seed=0, warmup=0)
    states = [t["state"] for t in s2["trials"]]
    assert states.count("RUNNING") == 0 and states[stale.number] == "FAIL"
    assert s2["n_complete"] + s2["n_pruned"] == 3
    # the interrupted trial's parameters were re-queued and re-run
    rerun = [t for t in s2["trials"] if t["number"] > stale.number and t["params"] == stale.params]
    assert rerun
    with pytest.raises(ValueError, match="objective"):
        run_hpo(lambda: TinyNet(), data.subset(tr), data.subset(va), cfg, out, trials=1, objective="f1")
    _ = torch
