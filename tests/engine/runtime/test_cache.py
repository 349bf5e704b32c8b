"""Export cache: keyed by weights sha, verified on read, never half-written; Predictor.from_loaded end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.runtime import Predictor, cached_export, clear_cache, default_cache_dir, state_sha256
from engine.runtime.export import ExportSpec
from tests.engine.runtime.tiny_models import reference_outputs, tiny_model


def test_cache_hit_miss_and_corruption(tmp_path: Path) -> None:
    model = tiny_model()
    shape = (1, 32, 32)
    first = cached_export(model, shape, cache_dir=tmp_path)
    assert not first.from_cache and first.path.is_file()
    assert first.path.with_suffix(".json").is_file()
    assert first.spec.weights_sha256 == state_sha256(model)

    again = cached_export(model, shape, cache_dir=tmp_path)
    assert again.from_cache and again.path == first.path
    assert again.onnx_sha256 == first.onnx_sha256

    # Different weights -> different key, a second file.
    saved = model.fc.bias.detach().clone()
    with torch.no_grad():
        model.fc.bias.add_(1.0)
    other = cached_export(model, shape, cache_dir=tmp_path)
    assert not other.from_cache and other.path != first.path
    with torch.no_grad():
        model.fc.bias.copy_(saved)

    # A truncated file is detected through the sidecar's sha256 and re-exported.
    data = first.path.read_bytes()
    first.path.write_bytes(data[: len(data) // 2])
    healed = cached_export(model, shape, cache_dir=tmp_path)
    assert not healed.from_cache and healed.path.read_bytes() == data

    # A garbage sidecar is ignored (re-export), not a crash.
    first.path.with_suffix(".json").write_text("{not json")
    assert not cached_export(model, shape, cache_dir=tmp_path).from_cache

    assert not list(tmp_path.glob("*.tmp.*"))
    assert clear_cache(tmp_path) == 4 and not list(tmp_path.iterdir())


def test_key_covers_what_the_graph_depends_on() -> None:
    base = ExportSpec(model_name="m", weights_sha256="a" * 64, input_shape=(1, 32, 32), cam_layer="features")
    keys = {base.key}
    for change in ({"weights_sha256": "b" * 64}, {"input_shape": (1, 64, 64)}, {"cam_layer": "x"},
                   {"variant": "int8"}, {"opset": 17}, {"engine_version": "9.9"}, {"torch_version": "0"}):
        keys.add(ExportSpec(**{**base.__dict__, **change}).key)
    assert len(keys) == 8


def test_default_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LUNGLENS_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "onnx"


def test_from_loaded_with_weights_saved_through_engine_weights(tmp_path: Path) -> None:
    """A registry model, randomly initialised, saved + loaded with engine.weights, served by ONNX Runtime."""
    from engine.preprocess import Preprocess
    from engine.weights import load_weights, save_weights

    from engine.models import create_model

    torch.manual_seed(0)
    model = create_model("squeezenet1_1", num_classes=2, in_chans=1).eval()
    pre = Preprocess.for_model("squeezenet1_1", input_size=(64, 64))
    save_weights(model, tmp_path / "w", model_name="squeezenet1_1", preprocess=pre, classes=["NonCOVID", "COVID"])
    loaded = load_weights(tmp_path / "w")

    p = Predictor.from_loaded(loaded, cache_dir=tmp_path / "cache")
    assert p.backend == "onnx" and p.input_shape == (1, 64, 64)
    assert p.export.spec.weights_sha256 == loaded.manifest["sha256"]
    assert p.cam_available            # squeezenet: Fire9 features x conv10 (1x1) weights

    batch, geometry = pre.slices(np.random.default_rng(0).uniform(-1000, 200, (3, 80, 80)), is_hu=True)
    pred = p.predict(batch.numpy())
    with torch.inference_mode():
        ref = torch.softmax(loaded.model(batch), dim=1).numpy()
    np.testing.assert_allclose(pred.probs, ref, atol=1e-4, rtol=0)
    maps = p.cam(pred.features, pred.labels, normalise=True)
    on_scan = pre.to_voxels(maps, geometry)
    assert on_scan.shape == (3, 80, 80) and np.isfinite(on_scan).all()

    # A second predictor for the same weights reuses the cached export.
    p2 = Predictor.from_loaded(load_weights(tmp_path / "w"), cache_dir=tmp_path / "cache")
    assert p2.export.from_cache and p2.export.path == p.export.path
    meta = json.loads(p.export.path.with_suffix(".json").read_text())
    assert meta["spec"]["model_name"] == "squeezenet1_1"


def test_torch_backend_channels_last_matches(tmp_path: Path) -> None:
    model = tiny_model(seed=5)
    x = np.random.default_rng(1).standard_normal((4, 1, 32, 32), dtype=np.float32)
    ref_logits, ref_feats = reference_outputs(model, x)
    p = Predictor.from_model(model, backend="torch", channels_last=True)
    assert p.channels_last
    pred = p.predict(x)
    np.testing.assert_allclose(pred.logits, ref_logits, atol=1e-4)
    np.testing.assert_allclose(pred.features, ref_feats, atol=1e-4 * max(1, np.abs(ref_feats).max()))


def test_export_records_a_tuned_optimisation_level(tmp_path: Path) -> None:
    model = tiny_model(seed=8)
    res = cached_export(model, (1, 32, 32), cache_dir=tmp_path)
    tuned = res.extra["session"]
    assert tuned["optimization"] in ("all", "extended") and set(tuned["level_ms_per_item"]) == {"all", "extended"}
    assert tuned["chunk"] in (1, 2, 4, 8, 16) and set(tuned["chunk_ms_per_item"]) == {"1", "2", "4", "8", "16"}
    again = cached_export(model, (1, 32, 32), cache_dir=tmp_path)
    assert again.from_cache and again.extra["session"] == tuned              # persisted in the sidecar
    p = Predictor.from_model(model, backend="onnx", cache_dir=tmp_path, max_batch=64)
    assert p.describe()["onnx"]["optimization"] == tuned["optimization"]
    assert p.max_batch == tuned["chunk"]
    expected = {"all": 99, "extended": 2}[tuned["optimization"]]             # ORT_ENABLE_ALL / EXTENDED
    assert int(p._session.get_session_options().graph_optimization_level) == expected
    assert "session" not in cached_export(tiny_model(seed=9), (1, 32, 32), cache_dir=tmp_path, tune=False).extra
