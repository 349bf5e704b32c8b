"""The subcommands end to end, through ``engine.cli.main`` (in-process), on a synthetic dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from engine.cli import main

from .conftest import tiny_registered, write_dataset


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict]]:
    """One training run shared by the tests of this module (they only read it)."""
    import contextlib
    import io

    base = tmp_path_factory.mktemp("cli")
    with tiny_registered() as name, pytest.MonkeyPatch.context() as mp:
        mp.setenv("LUNGLENS_CACHE", str(base / "cache"))
        data = write_dataset(base / "synth")
        out = base / "run"
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
            rc = main(["train", "--model", name, "--data", str(data), "--epochs", "2", "--batch-size", "8",
                       "--optimizer", "adam", "--lr", "0.005", "--augment", "flip", "--input-size", "40",
                       "--out", str(out), "--no-progress", "--seed", "1"])
        assert rc == 0
        yield out, _last_json(buf.getvalue())


def test_train_writes_run_and_weights(trained: tuple[Path, dict]) -> None:
    out, summary = trained
    assert summary["epochs_run"] == 2 and summary["stopped"] == "completed"
    assert "official split" in summary["data"]["selection"]
    for name in ("metrics.jsonl", "curves.png", "checkpoint.safetensors", "summary.json", "config.json"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "weights" / "manifest.json").read_text())
    assert manifest["preprocess"]["input_size"] == [40, 40]          # the size used is recorded
    assert manifest["classes"] == ["NonCOVID", "COVID"] and manifest["positive_class"] == "COVID"
    val = manifest["metrics"]["validation"]
    assert val["n"] == summary["val_metrics"]["n"] and "ci95" in val
    assert (out / "weights" / "MODEL_CARD.md").is_file()


def test_evaluate_reproduces_the_recorded_validation_metrics(trained, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture, tiny_model: str) -> None:
    out, summary = trained
    plots = tmp_path / "plots"
    data = Path(summary["data"]["data"])
    rc = main(["evaluate", "--model", tiny_model, "--weights", str(out / "weights"), "--data", str(data),
               "--split", "val", "--json", "--plots", str(plots), "--predictions", str(tmp_path / "p.csv")])
    assert rc == 0
    res = _last_json(capsys.readouterr().out)
    for key in ("n", "accuracy", "sensitivity", "specificity", "precision", "f1", "auc", "balanced_accuracy",
                "confusion_matrix", "per_class", "p2_mean_accuracy_eq1"):
        assert key in res, key
    assert res["positive_class"] == "COVID"
    assert res["accuracy"] == pytest.approx(summary["val_metrics"]["accuracy"])
    assert res["auc"] == pytest.approx(summary["val_metrics"]["auc"], abs=1e-6)
    assert (plots / "roc.png").is_file() and (plots / "confusion.png").is_file()
    assert len((tmp_path / "p.csv").read_text().splitlines()) == res["n"] + 1


def test_training_resumes_with_the_same_command(trained, tiny_model: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    src, first = trained
    out = tmp_path / "run"
    shutil.copytree(src, out)
    # the run's config names its own data folder; resume it with more epochs on the same data
    data = Path(first["data"]["data"])
    rc = main(["train", "--model", tiny_model, "--data", str(data), "--epochs", "3", "--batch-size", "8",
               "--optimizer", "adam", "--lr", "0.005", "--augment", "flip", "--input-size", "40", "--out", str(out),
               "--no-progress", "--seed", "1"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "resuming" in captured.err
    summary = _last_json(captured.out)
    assert summary["epochs_run"] == 3 and first["epochs_run"] == 2


def test_errors_are_reported_not_raised(tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--model", tiny_model, "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "no manifest.csv" in capsys.readouterr().err
    assert main(["evaluate", "--model", tiny_model, "--data", str(tmp_path), "--json"]) == 2
    assert "no trained weights" in capsys.readouterr().err
    assert main(["train", "--model", "no_such_net", "--data", str(tmp_path)]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_localize_reports_every_explainer(trained, tmp_path: Path, tiny_model: str,
                                          capsys: pytest.CaptureFixture) -> None:
    out, _ = trained
    masks = write_dataset(tmp_path / "masked", n_per_class=4, masks=True, formats=("png-l",))
    rc = main(["localize", "--model", tiny_model, "--weights", str(out / "weights"), "--data", str(masks),
               "--json", "--methods", "cam,gradcam"])
    assert rc == 0
    res = _last_json(capsys.readouterr().out)
    assert res["n"] == 8 and set(res["methods"]) == {"cam", "gradcam"}
    for m in res["methods"].values():
        assert 0.0 <= m["pointing_game"]["mean"] <= 1.0 and 0.0 <= m["energy_in_mask"]["mean"] <= 1.0
    assert 0.0 < res["chance_hit_rate"] < 1.0


@pytest.mark.slow
def test_cv_and_hpo_commands(tiny_model: str, synth_data: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture) -> None:
    rc = main(["cv", "--model", tiny_model, "--data", str(synth_data), "--folds", "3", "--epochs", "1",
               "--batch-size", "8", "--input-size", "32", "--out", str(tmp_path / "cv")])
    assert rc == 0
    s = _last_json(capsys.readouterr().out)
    assert s["folds"] == 3 and "Student-t" in s["ci_formula"] and "p2_mean_accuracy" in s
    rc = main(["hpo", "--model", tiny_model, "--data", str(synth_data), "--trials", "2", "--epochs", "2",
               "--batch-size", "8", "--input-size", "32", "--out", str(tmp_path / "hpo")])
    assert rc == 0
    h = _last_json(capsys.readouterr().out)
    assert h["n_trials"] == 2 and (tmp_path / "hpo" / "study.db").is_file() and (tmp_path / "hpo" / "hpo.png").is_file()
    assert h["recipe"]["recipe"] == "polsinelli"


def test_three_class_training_and_evaluation(tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import csv

    root = write_dataset(tmp_path / "three", n_per_class=12)
    rows = list(csv.DictReader(open(root / "manifest.csv")))
    for r in rows:   # NonCOVID patients with an even number become 'Pneumonia'
        if r["label"].lower() == "noncovid" and int(r["patient_id"].split("-p")[1]) % 2 == 0:
            r["label"] = "pneumonia"
        elif r["label"].lower() == "noncovid":
            r["label"] = "Normal"
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "run3"
    rc = main(["train", "--model", tiny_model, "--data", str(root), "--classes", "COVID,Normal,Pneumonia",
               "--epochs", "1", "--batch-size", "8", "--input-size", "32", "--out", str(out), "--no-progress",
               "--recipe", "wang"])
    assert rc == 0
    capsys.readouterr()
    rc = main(["evaluate", "--model", tiny_model, "--weights", str(out / "weights"), "--data", str(root), "--json"])
    assert rc == 0
    res = _last_json(capsys.readouterr().out)
    assert res["classes"] == ["COVID", "Normal", "Pneumonia"] and len(res["confusion_matrix"]) == 3
    assert set(res["per_class"]) == {"COVID", "Normal", "Pneumonia"}
    assert {"sensitivity", "ppv"} <= set(res["per_class"]["Pneumonia"])
    manifest = json.loads((out / "weights" / "manifest.json").read_text())
    assert manifest["positive_class"] == "COVID" and manifest["create_kwargs"]["num_classes"] == 3


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_the_same_command_resumes(synth_data: Path, tmp_path: Path) -> None:
    """Kill-and-resume through a real process: SIGTERM mid-run -> exit 130 with a checkpoint; rerun finishes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "engine.cli", "train", "--model", "lightsqueeze_plain", "--data", str(synth_data),
           "--input-size", "48", "--epochs", "40", "--batch-size", "8", "--threads", "1", "--out", str(out),
           "--no-progress", "--no-export"]
    env = dict(os.environ, LUNGLENS_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=Path(__file__).resolve().parents[3])
    deadline = time.time() + 600
    while not (out / "metrics.jsonl").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err
    assert (out / "checkpoint.safetensors").is_file() and "resume" in err
    done = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["epoch"]
    cmd[cmd.index("40")] = str(done + 3)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900,
                         cwd=Path(__file__).resolve().parents[3])
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(len(epochs))) and len(epochs) >= done + 3
