"""Predictor: ONNX Runtime and torch back-ends agree with the plain torch model; CAM from exported features."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.runtime import ExportError, Predictor, export_onnx, make_session
from engine.runtime.predictor import softmax
from tests.engine.runtime.tiny_models import reference_outputs, tiny_model

TOL = 1e-4


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module", params=[2, 3], ids=["2d", "3d"])
def model_and_predictors(request: pytest.FixtureRequest, cache: Path):
    model = tiny_model(spatial_dims=request.param)
    onnx = Predictor.from_model(model, backend="onnx", cache_dir=cache, max_batch=4, threads=2)
    torch_p = Predictor.from_model(tiny_model(spatial_dims=request.param), backend="torch", max_batch=4)
    yield model, onnx, torch_p
    onnx.close()
    torch_p.close()


@pytest.mark.parametrize("n", [1, 3, 4, 9])   # dynamic batch; 9 crosses two max_batch=4 chunk boundaries
def test_backends_match_torch(model_and_predictors, n: int) -> None:
    model, onnx, torch_p = model_and_predictors
    assert onnx.backend == "onnx" and torch_p.backend == "torch"
    x = np.random.default_rng(n).standard_normal((n, *onnx.input_shape), dtype=np.float32)
    ref_logits, ref_feats = reference_outputs(model, x)
    for p in (onnx, torch_p):
        pred = p.predict(x)
        assert pred.probs.shape == (n, 3) and pred.probs.dtype == np.float32
        np.testing.assert_allclose(pred.probs, softmax(ref_logits), atol=TOL, rtol=0)
        np.testing.assert_allclose(pred.logits, ref_logits, atol=TOL, rtol=0)
        assert pred.features.shape == ref_feats.shape
        np.testing.assert_allclose(pred.features, ref_feats, atol=TOL * max(1.0, np.abs(ref_feats).max()), rtol=0)
        np.testing.assert_allclose(pred.probs.sum(axis=1), 1.0, atol=1e-5)


def test_zhou_cam_is_consistent_with_the_logits(model_and_predictors) -> None:
    """For GAP -> Linear, the spatial mean of the class-c map plus bias_c is exactly logit_c."""
    model, onnx, _ = model_and_predictors
    x = np.random.default_rng(7).standard_normal((5, *onnx.input_shape), dtype=np.float32)
    pred = onnx.predict(x)
    bias = model.fc.bias.detach().numpy()
    for c in range(3):
        maps = onnx.cam(pred.features, c)
        assert maps.shape == (5, *pred.features.shape[2:])
        recon = maps.reshape(5, -1).mean(axis=1) + bias[c]
        np.testing.assert_allclose(recon, pred.logits[:, c], atol=1e-4)
    # per-sample classes + normalisation
    maps = onnx.cam(pred.features, pred.labels, normalise=True)
    assert maps.min() >= 0.0 and np.allclose(maps.reshape(5, -1).max(axis=1), 1.0)
    _, maps2 = onnx.predict_with_cam(x)
    np.testing.assert_allclose(maps2, maps, atol=1e-6)


def test_cam_rejects_bad_arguments(model_and_predictors) -> None:
    _, onnx, _ = model_and_predictors
    pred = onnx.predict(np.zeros((2, *onnx.input_shape), np.float32))
    with pytest.raises(ValueError, match="class_index must be in"):
        onnx.cam(pred.features, 3)
    with pytest.raises(ValueError, match="features must be"):
        onnx.cam(pred.features[:, :3], 0)


def test_input_validation_names_the_expected_shape(model_and_predictors) -> None:
    _, onnx, _ = model_and_predictors
    want = "×".join(str(s) for s in onnx.input_shape)
    with pytest.raises(ValueError, match=f"expects input of shape N×{want}"):
        onnx.predict(np.zeros((2, 2, *onnx.input_shape[1:]), np.float32))
    with pytest.raises(ValueError, match="float32"):
        onnx.predict(np.zeros((1, *onnx.input_shape), np.int16))
    single = onnx.predict(np.zeros(onnx.input_shape, np.float64))   # one item, float64 accepted and cast
    assert len(single) == 1
    empty = onnx.predict(np.zeros((0, *onnx.input_shape), np.float32))
    assert empty.probs.shape == (0, 3)


def test_session_uses_the_requested_threads(model_and_predictors) -> None:
    _, onnx, _ = model_and_predictors
    opts = onnx._session.get_session_options()
    assert opts.intra_op_num_threads == 2 and opts.inter_op_num_threads == 1
    assert onnx.describe()["onnx"]["max_prob_diff"] <= TOL


def test_gradcam_only_models_have_no_zhou_cam(cache: Path) -> None:
    model = tiny_model(cam_kind="gradcam")
    p = Predictor.from_model(model, backend="torch")
    assert not p.cam_available
    pred = p.predict(np.zeros((1, *p.input_shape), np.float32))
    assert pred.features is not None            # feature maps still come back (activation maps)
    with pytest.raises(RuntimeError, match="CAM is not available.*gradient-based"):
        p.cam(pred.features, 0)


class _Unsupported(torch.nn.Module):
    """Uses an op (cummax) that neither ONNX exporter supports."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.inner = tiny_model(seed=seed)
        self.model_config = replace(self.inner.model_config, cam_layer="inner.features", classifier="inner.fc")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        return torch.cummax(logits, dim=1).values


class _Stateful(_Unsupported):
    """Exports fine but its output depends on hidden Python state, so the ONNX graph cannot reproduce it."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x) * float(self.calls)


@pytest.fixture
def torchscript_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failure paths try every exporter; one is enough to test the logic (and 10x faster than dynamo's)."""
    monkeypatch.setenv("LUNGLENS_ONNX_EXPORTER", "torchscript")


def test_auto_falls_back_to_torch_when_export_is_impossible(cache: Path, torchscript_only: None) -> None:
    model = _Unsupported()
    with pytest.raises(ExportError, match="could not export model 'tiny2d'.*cummax"):
        Predictor.from_model(model, backend="onnx", cache_dir=cache)
    assert not list(cache.glob("*.tmp.onnx"))           # no half-written files left behind
    p = Predictor.from_model(model, backend="auto", cache_dir=cache)
    assert p.backend == "torch" and "ExportError" in p.fallback_reason
    x = np.random.default_rng(0).standard_normal((2, *p.input_shape), dtype=np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(p.predict(x).logits, ref, atol=TOL)


def test_an_export_that_does_not_reproduce_torch_is_rejected(cache: Path, torchscript_only: None) -> None:
    with pytest.raises(ExportError, match="outputs differ from torch"):
        Predictor.from_model(_Stateful(seed=1), backend="onnx", cache_dir=cache)
    assert not list(cache.glob("*.tmp.onnx"))


@pytest.mark.slow
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_dynamo_exporter_also_verifies(tmp_path: Path, spatial_dims: int) -> None:
    """The torch.export-based exporter is the fallback; it must produce a verified graph too."""
    model = tiny_model(spatial_dims=spatial_dims, seed=3)
    shape = (1, *model.model_config.input_size)
    result = export_onnx(model, shape, tmp_path / "m.onnx", exporters=("dynamo",))
    assert result.exporter == "dynamo" and result.max_prob_diff <= TOL
    p = Predictor.from_model(model, backend="torch")
    x = np.random.default_rng(0).standard_normal((5, *shape), dtype=np.float32)
    out = make_session(result.path).run(None, {"input": x})
    np.testing.assert_allclose(out[0], p.predict(x).logits, atol=TOL)


def test_bad_backend_name() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        Predictor.from_model(tiny_model(), backend="tensorrt")


def test_features_can_be_skipped(model_and_predictors) -> None:
    _, onnx, torch_p = model_and_predictors
    x = np.random.default_rng(3).standard_normal((3, *onnx.input_shape), dtype=np.float32)
    for p in (onnx, torch_p):
        lean, full = p.predict(x, features=False), p.predict(x)
        assert lean.features is None and full.features is not None
        np.testing.assert_array_equal(lean.logits, full.logits)
