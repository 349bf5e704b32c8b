"""int8 static quantisation: served only after passing the validation-AUC gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.runtime import ExportError, Predictor
from engine.runtime.quantize import accepted_int8, quantize_and_gate, roc_auc
from tests.engine.runtime.tiny_models import tiny_model


def test_roc_auc_matches_pair_counting() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 200).astype(float)       # many ties
    labels = rng.random(200) < 0.4
    pos, neg = scores[labels], scores[~labels]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert roc_auc(scores, labels) == pytest.approx(brute)
    assert roc_auc([0.1, 0.9], [0, 1]) == 1.0 and roc_auc([0.9, 0.1], [0, 1]) == 0.0
    with pytest.raises(ValueError, match="positive and one negative"):
        roc_auc([0.1, 0.2], [1, 1])


@pytest.fixture
def fp32(tmp_path: Path):
    model = tiny_model(seed=11)
    p = Predictor.from_model(model, backend="onnx", cache_dir=tmp_path, int8=False)
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((48, *p.input_shape), dtype=np.float32)
    val_x = rng.standard_normal((160, *p.input_shape), dtype=np.float32)
    score = p.predict(val_x).probs[:, 1]
    val_y = (score > np.median(score)).astype(int)          # the fp32 model ranks these perfectly (AUC 1)
    return p, calib, val_x, val_y, tmp_path


def test_accepted_int8_is_served_and_close_to_fp32(fp32) -> None:
    p, calib, val_x, val_y, cache = fp32
    report = quantize_and_gate(p, calib, val_x, val_y, positive_index=1, max_auc_drop=0.05)
    assert report.auc_fp32 == pytest.approx(1.0)
    assert report.accepted, report.reason
    assert report.max_prob_diff < 0.1 and report.n_calibration == 48 and report.n_validation == 160
    assert accepted_int8(p.export.spec, cache) is not None

    q = Predictor.from_model(tiny_model(seed=11), backend="onnx", cache_dir=cache)   # int8="auto"
    assert q.backend == "onnx-int8"
    out = q.predict(val_x[:8])
    ref = p.predict(val_x[:8])
    assert np.abs(out.probs - ref.probs).max() < 0.1
    assert out.features.shape == ref.features.shape       # CAM features survive quantisation
    assert Predictor.from_model(tiny_model(seed=11), backend="onnx", cache_dir=cache, int8=False).backend == "onnx"


def test_rejected_int8_is_never_served(fp32) -> None:
    p, calib, val_x, val_y, cache = fp32
    report = quantize_and_gate(p, calib, val_x, val_y, positive_index=1, max_auc_drop=-1.0)  # impossible bar
    assert not report.accepted and "rejected" in report.reason and report.path is None
    assert accepted_int8(p.export.spec, cache) is None
    assert not [f for f in cache.iterdir() if "-int8-" in f.name]
    assert Predictor.from_model(tiny_model(seed=11), backend="onnx", cache_dir=cache).backend == "onnx"
    with pytest.raises(ExportError, match="passed the validation gate"):
        Predictor.from_model(tiny_model(seed=11), backend="onnx", cache_dir=cache, int8=True)
