"""engine.weights: safetensors + manifest round trip, sha256 verification, pickle refusal, default weights."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.models import create_model, model_card
from engine.preprocess import Preprocess
from engine.weights import (
    WeightsError,
    WeightsNotFoundError,
    find_default_weights,
    guess_positive_class,
    list_weighted_models,
    load_default,
    load_weights,
    read_manifest,
    render_model_card,
    save_weights,
)

CLASSES = ["NonCOVID", "COVID"]


def _trained_like(name: str = "lightsqueeze_proposed", **kwargs) -> torch.nn.Module:
    model = create_model(name, **kwargs)
    # Give BN running stats non-default values so buffers are provably saved and restored.
    model.train()
    with torch.no_grad():
        model(torch.randn(4, kwargs.get("in_chans", 1), 67, 67))
    return model.eval()


def _save(model: torch.nn.Module, out: Path, name: str = "lightsqueeze_proposed", **kwargs) -> dict:
    pre = Preprocess.for_model(name, in_chans=kwargs.get("in_chans", 1), lung_crop=True)
    return save_weights(model, out, model_name=name, create_kwargs={"num_classes": 2, **kwargs},
                        preprocess=pre, classes=CLASSES, metrics={"accuracy": 0.83, "f1": 0.8333},
                        data={"dataset": "synthetic", "patients": 0}, notes="unit test")


def test_round_trip_reproduces_outputs_and_manifest(tmp_path: Path) -> None:
    model = _trained_like(up_filters=16)
    manifest = _save(model, tmp_path, up_filters=16)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "MODEL_CARD.md").is_file()
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == manifest
    for key in ("model_name", "create_kwargs", "preprocess", "classes", "positive_class", "sha256", "metrics",
                "data", "licence", "limits", "engine_version", "created"):
        assert key in manifest, key
    assert manifest["positive_class"] == "COVID"
    assert manifest["create_kwargs"] == {"num_classes": 2, "up_filters": 16, "in_chans": 1}

    loaded = load_weights(tmp_path)
    assert not loaded.model.training
    assert loaded.preprocess.lung_crop is True and loaded.preprocess.input_size == (227, 227)
    assert loaded.classes == CLASSES and loaded.positive_index == 1
    x = torch.randn(2, 1, 227, 227)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.model(x).numpy(), model(x).numpy())
    # Any entry point works: folder, manifest, safetensors file.
    for p in (tmp_path / "manifest.json", tmp_path / "model.safetensors"):
        assert load_weights(p).name == "lightsqueeze_proposed"


def test_tampered_file_is_refused(tmp_path: Path) -> None:
    _save(_trained_like(), tmp_path)
    blob = bytearray((tmp_path / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (tmp_path / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_weights(tmp_path)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".ckpt"])
def test_pickle_checkpoints_are_refused_without_unpickling(tmp_path: Path, suffix: str) -> None:
    class Boom:
        def __reduce__(self):
            return (Path(tmp_path / "pwned").touch, ())

    bad = tmp_path / f"model{suffix}"
    bad.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(WeightsError, match="never unpickles"):
        load_weights(bad)
    assert not (tmp_path / "pwned").exists()


def test_pickle_renamed_to_safetensors_is_refused(tmp_path: Path) -> None:
    manifest = _save(_trained_like(), tmp_path)
    fake = b"\x80\x04" + pickle.dumps({"x": 1})
    (tmp_path / "model.safetensors").write_bytes(fake)
    manifest["sha256"] = __import__("hashlib").sha256(fake).hexdigest()   # even with a matching hash
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="pickle"):
        load_weights(tmp_path)


def test_folder_without_manifest_and_mismatched_weights(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "best.pth").write_bytes(b"x")
    with pytest.raises(WeightsNotFoundError, match="best.pth"):
        load_weights(tmp_path / "empty")
    manifest = _save(_trained_like(), tmp_path / "w")
    manifest["create_kwargs"]["up_filters"] = 32                     # architecture no longer fits
    (tmp_path / "w" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="do not fit"):
        load_weights(tmp_path / "w")
    with pytest.raises(WeightsNotFoundError):
        load_weights(tmp_path / "missing")


def test_class_count_must_match(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="class names"):
        save_weights(create_model("lightsqueeze_plain"), tmp_path, model_name="lightsqueeze_plain",
                     create_kwargs={"num_classes": 2}, classes=["a", "b", "c"])


def test_default_weights_search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.weights import store

    monkeypatch.setenv("LUNGLENS_WEIGHTS_PATH", str(tmp_path))
    assert store.weights_search_path()[0] == tmp_path
    assert len(store.weights_search_path()) > 1                            # the shipped folders follow
    monkeypatch.setenv("LUNGLENS_BUNDLED_WEIGHTS", "0")                    # hide the bundled folders
    assert store.weights_search_path() == [tmp_path]
    assert find_default_weights("lightsqueeze_plain") is None
    assert list_weighted_models() == []
    with pytest.raises(WeightsNotFoundError, match="no trained weights"):
        load_default("lightsqueeze_plain")
    model = _trained_like("lightsqueeze_plain")
    _save(model, tmp_path / "lightsqueeze_plain", name="lightsqueeze_plain")
    found = find_default_weights("p0_a")                              # alias resolves to the canonical name
    assert found is not None and Path(found["location"]) == tmp_path / "lightsqueeze_plain"
    assert list_weighted_models() == ["lightsqueeze_plain"]
    assert load_default("lightsqueeze_plain").name == "lightsqueeze_plain"
    assert model_card("lightsqueeze_plain")["weights"]["sha256"] == found["sha256"]


def test_model_card_and_positive_class() -> None:
    assert guess_positive_class(["NonCOVID", "COVID"]) == "COVID"
    assert guess_positive_class(["non-COVID", "COVID-19"]) == "COVID-19"
    assert guess_positive_class(["CP", "NCP", "Normal"]) == "NCP"
    assert guess_positive_class(["normal", "pneumonia"]) is None
    card = render_model_card({"model_name": "lightsqueeze_proposed", "classes": CLASSES, "positive_class": "COVID",
                              "metrics": {"accuracy": 0.8312, "confusion": [[1, 2], [3, 4]]},
                              "data": {"dataset": "COVID-CT"}, "sha256": "ab" * 32, "parameters": 1272450})
    assert "# Model card — lightsqueeze_proposed" in card
    assert "| accuracy | 0.8312 |" in card and "COVID-CT" in card and "1,272,450" in card
    assert "not a medical device" in card


def test_shipped_manifests_are_valid() -> None:
    """Every shipped weights folder must load: hash, architecture and preprocessing agree."""
    for name in list_weighted_models():
        manifest = read_manifest(find_default_weights(name)["location"])
        assert manifest["model_name"] == name
        loaded = load_default(name)
        assert loaded.preprocess.in_chans == manifest["create_kwargs"].get("in_chans", 1)
