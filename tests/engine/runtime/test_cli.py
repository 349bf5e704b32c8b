"""`lunglens-engine export`: default weights -> verified cache entries, --out copies, --list, --int8 gate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli import main


@pytest.fixture
def weights_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from engine.models import create_model
    from engine.preprocess import Preprocess
    from engine.weights import save_weights

    torch.manual_seed(0)
    model = create_model("squeezenet1_1", num_classes=2, in_chans=1).eval()
    root = tmp_path / "weights"
    save_weights(model, root / "squeezenet1_1", model_name="squeezenet1_1",
                 preprocess=Preprocess.for_model("squeezenet1_1", input_size=(64, 64)),
                 classes=["NonCOVID", "COVID"])
    monkeypatch.setenv("LUNGLENS_WEIGHTS_PATH", str(root))
    monkeypatch.setenv("LUNGLENS_BUNDLED_WEIGHTS", "0")      # only this folder, not the shipped models
    return root


def _dataset(folder: Path, n: int = 24) -> Path:
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = "COVID" if i % 2 else "NonCOVID"
        img = (rng.random((72, 72)) * (200 if label == "COVID" else 120)).astype(np.uint8)
        Image.fromarray(img).save(folder / f"im{i}.png")
        rows.append({"file": f"im{i}.png", "label": label, "split": "train" if i < 12 else "val"})
    with open(folder / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    return folder


def test_export_default_weights_list_and_copy(weights_root: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    assert main(["export", "--cache-dir", str(cache), "--json", "--out", str(tmp_path / "out")]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["model"] == "squeezenet1_1" and entry["max_prob_diff"] <= 1e-4 and not entry["from_cache"]
    assert (tmp_path / "out" / "squeezenet1_1.onnx").read_bytes() == Path(entry["path"]).read_bytes()

    assert main(["export", "squeezenet1_1", "--cache-dir", str(cache)]) == 0
    assert "cached" in capsys.readouterr().out

    assert main(["export", "--list", "--cache-dir", str(cache), "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["model"] == "squeezenet1_1" and listed["variant"] == "fp32"

    assert main(["export", "no_such_model", "--cache-dir", str(cache)]) == 1
    assert "no trained weights for model 'no_such_model'" in capsys.readouterr().err
    assert main(["export", "--clear-cache", "--cache-dir", str(cache)]) == 0
    assert not list(cache.glob("*.onnx"))


@pytest.mark.slow
def test_export_int8_runs_the_gate(weights_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUNGLENS_CACHE_DIR", str(tmp_path / "c"))     # tensor cache of engine.train.data
    data = _dataset(tmp_path / "data")
    assert main(["export", "squeezenet1_1", "--int8", "--json"]) == 2       # calibration data required
    capsys.readouterr()
    rc = main(["export", "squeezenet1_1", "--int8", "--calibration", str(data), "--json",
               "--cache-dir", str(tmp_path / "cache")])
    (entry,) = json.loads(capsys.readouterr().out)
    assert rc == 0, entry
    gate = entry["int8"]
    assert gate["n_validation"] == 12 and gate["n_calibration"] == 12
    assert 0.0 <= gate["auc_int8"] <= 1.0 and gate["accepted"] == (gate["auc_drop"] <= 0.005)
    int8_files = list((tmp_path / "cache").glob("*-int8-*.onnx"))
    assert len(int8_files) == (1 if gate["accepted"] else 0)
