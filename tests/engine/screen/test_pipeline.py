"""The scan-level road shared by the viewer and batch screening (engine.screen.pipeline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.models import create_model
from engine.phantom import make_phantom
from engine.preprocess import Preprocess
from engine.screen.pipeline import ScanModel, ScreeningCancelled, ScreeningError, top_k_mean
from engine.weights import save_weights


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_model("lightsqueeze_proposed", num_classes=2, in_chans=1)
    pre = Preprocess.for_model("lightsqueeze_proposed", input_size=(96, 96))
    out = tmp_path_factory.mktemp("w") / "lightsqueeze_proposed"
    save_weights(model, out, model_name="lightsqueeze_proposed", create_kwargs={"num_classes": 2, "in_chans": 1},
                 preprocess=pre, classes=["NonCOVID", "COVID"], metrics={}, data={"dataset": "random init (test)"})
    return out


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape=(24, 112, 144), spacing=(2.5, 1.4, 1.2), seed=3, lesions=2)


def test_top_k_mean_uses_only_eligible_slices() -> None:
    scores = np.array([0.99, 0.1, 0.2, 0.3, 0.9, 0.8])
    eligible = np.array([False, True, True, True, True, True])
    p, order, k = top_k_mean(scores, eligible)
    assert k == 3 and order[0] == 4 and 0 not in order
    assert p == pytest.approx((0.9 + 0.8 + 0.3) / 3)


def test_screen_2d_scores_every_slice_and_matches_torch(weights_dir: Path, phantom) -> None:
    onnx = ScanModel.open("lightsqueeze_proposed", weights_dir, backend="auto")
    ref = ScanModel.open("lightsqueeze_proposed", weights_dir, backend="torch")
    vol = phantom.volume
    calls: list[float] = []
    a = onnx.screen(vol, batch_size=8, progress=lambda f, m: calls.append(f))
    b = ref.screen(vol, batch_size=5)
    assert a.slice_scores.shape == (vol.shape[0],)
    np.testing.assert_allclose(a.slice_scores, b.slice_scores, atol=1e-4)
    assert calls[-1] == pytest.approx(1.0) and len(calls) == 3
    assert 0.0 <= a.probability <= 1.0 and a.top_slices
    assert a.top_slices[0] == int(np.argmax(np.where(a.lung_slices, a.slice_scores, -1)))
    assert "not a diagnosis" in a.summary()


def test_screen_can_be_cancelled(weights_dir: Path, phantom) -> None:
    model = ScanModel.open("lightsqueeze_proposed", weights_dir, backend="torch")
    with pytest.raises(ScreeningCancelled):
        model.screen(phantom.volume, cancel=lambda: True)


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_slice_heatmap_is_on_the_voxel_grid(weights_dir: Path, phantom, method: str) -> None:
    model = ScanModel.open("lightsqueeze_proposed", weights_dir, backend="torch")
    heat = model.explain_slice(phantom.volume, 10, method)
    assert heat.shape == phantom.volume.shape[1:] and heat.dtype == np.float32
    assert np.isfinite(heat).all()


def test_cam_from_onnx_features_equals_torch_cam(weights_dir: Path, phantom) -> None:
    fast = ScanModel.open("lightsqueeze_proposed", weights_dir, backend="auto")
    slow = ScanModel.open("lightsqueeze_proposed", weights_dir, backend="torch")
    a = fast.explain_slices(phantom.volume, [5, 12], "cam")


    ref = slow.explain_slices(phantom.volume, [5, 12], "cam")
    # the xai CAM adds the class bias; the back-end CAM does not: the maps must agree up to that constant
    diff = (a - ref)[:, 20:-20, 20:-20]
    assert np.ptp(diff) < 1e-3 * max(1.0, float(np.abs(ref).max()))


def test_unknown_explainer_is_a_clear_error(weights_dir: Path, phantom) -> None:
    model = ScanModel.open("lightsqueeze_proposed", weights_dir, backend="torch")
    with pytest.raises(ScreeningError, match="unknown explainer 'saliency'"):
        model.explain_slice(phantom.volume, 0, "saliency")


def test_lung_crop_scores_do_not_depend_on_batch_size(tmp_path: Path, phantom) -> None:
    torch.manual_seed(1)
    model = create_model("lightsqueeze_plain", num_classes=2, in_chans=1)
    pre = Preprocess.for_model("lightsqueeze_plain", input_size=(64, 64), lung_crop=True)
    save_weights(model, tmp_path / "w", model_name="lightsqueeze_plain",
                 create_kwargs={"num_classes": 2, "in_chans": 1}, preprocess=pre, classes=["NonCOVID", "COVID"])
    scan = ScanModel.open("lightsqueeze_plain", tmp_path / "w", backend="torch")
    box = scan.crop_box(phantom.volume)
    assert box != (0, phantom.volume.shape[1], 0, phantom.volume.shape[2])   # the crop is really used
    a = scan.screen(phantom.volume, batch_size=4).slice_scores
    b = scan.screen(phantom.volume, batch_size=24).slice_scores
    np.testing.assert_allclose(a, b, atol=1e-5)
    heat = scan.explain_slice(phantom.volume, 12, "cam")
    y0, y1, x0, x1 = box
    outside = np.ones(heat.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert np.all(heat[outside] == 0)


def test_lung_bearing_slices_exclude_air_outside_the_body() -> None:
    from engine.screen.pipeline import lung_bearing, lung_fraction

    z, h, w = 12, 96, 128
    stack = np.full((z, h, w), -1000.0, dtype=np.float32)           # air around the patient
    stack[:, 20:80, 16:112] = 40.0                                    # body
    stack[3:9, 30:70, 24:60] = -850.0                                 # right lung, slices 3..8
    stack[3:9, 30:70, 68:104] = -850.0                                # left lung
    stack[10, 45:50, 62:66] = -900.0                                  # a trachea-sized bubble only
    frac = lung_fraction(stack)
    assert frac[0] == 0.0 and frac[5] > 0.2
    assert np.array_equal(np.flatnonzero(lung_bearing(stack)), np.arange(3, 9))
