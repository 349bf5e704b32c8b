"""The 2D weights shipped in resources/weights load by default and reproduce their recorded metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.weights import load_default

REPO = Path(__file__).resolve().parents[3]
SHIPPED = ("lightsqueeze_proposed", "lightsqueeze_plain", "spp_covid_net")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_load_by_default(name: str) -> None:
    folder = REPO / "resources" / "weights" / name
    assert (folder / "manifest.json").is_file(), f"no shipped weights for {name}"
    assert (folder / "model.safetensors").stat().st_size < 8 * 2**20        # a few MB at most
    loaded = load_default(name)                                               # verifies the sha256
    assert loaded.path.resolve() == folder.resolve()
    assert loaded.classes == ["NonCOVID", "COVID"] and loaded.positive_index == 1
    pre = loaded.preprocess
    x, _ = pre.image(np.random.default_rng(0).integers(0, 256, (300, 260)).astype(np.uint8))
    with torch.no_grad():
        p = torch.softmax(loaded.model(x), 1)
    assert p.shape == (1, 2) and torch.allclose(p.sum(1), torch.ones(1))
    m = loaded.manifest
    assert "validation" in m["metrics"]
    if name == "lightsqueeze_proposed":
        assert "cross_validation" in m["metrics"]
    assert "not validated for clinical use" in m["limits"].lower()
    assert "research" in m["licence"].lower()
    card = (folder / "MODEL_CARD.md").read_text()
    assert "95 % CI" in card and "paper-figure" in card


@pytest.mark.data
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_reproduce_recorded_validation_metrics(name: str, shared_data: Path) -> None:
    from engine.train.data import ManifestDataset, load_tensors
    from engine.train.runner import evaluate_loaded

    loaded = load_default(name)
    recorded = loaded.manifest["metrics"]["validation"]
    ds = ManifestDataset.from_folder(shared_data / "covid-ct-2d", classes=loaded.classes, split="val")
    data = load_tensors(ds, loaded.preprocess, cache=False)
    got, _ = evaluate_loaded(loaded.model, data)
    assert got["n"] == recorded["n"] == 118
    assert got["accuracy"] == pytest.approx(recorded["accuracy"], abs=0.01)
    assert got["auc"] == pytest.approx(recorded["auc"], abs=0.005)
    assert got["sensitivity"] == pytest.approx(recorded["sensitivity"], abs=0.02)
    assert json.dumps(got["confusion_matrix"]) and got["positive_class"] == "COVID"
