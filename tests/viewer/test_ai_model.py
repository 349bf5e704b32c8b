"""The Qt-free side of the AI workflow: model catalogue and cards, display maps, heatmap cache, export rules."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.viewer.probe_model import PROBE_2D, PROBE_2D_B, PROBE_3D, registered_probes, save_probe
from viewer.model.ai import HeatmapCache, ModelCatalog, display_map, explainer_name
from viewer.model.export import ExportRefused, check_export_target, dicom_sources, heatmap_capture
from viewer.model.layers import HeatmapLayer
from viewer.model.window_level import WindowLevel


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    other = tmp_path_factory.mktemp("other")
    with registered_probes():
        for name in (PROBE_2D, PROBE_2D_B, PROBE_3D):
            save_probe(root, name)
        save_probe(other, PROBE_2D, delay_s=0.01)
        yield {"root": root, "other": other}


def test_catalog_lists_models_with_weights_2d_first(weights) -> None:
    catalog = ModelCatalog(roots=[weights["root"]])
    entries = catalog.entries()
    assert [e.name for e in entries] == [PROBE_2D, PROBE_2D_B, PROBE_3D]
    assert [e.spatial_dims for e in entries] == [2, 2, 3]
    card = entries[0].card()
    assert card["Parameters"] == "13"         # band 3+3, mix 3, fc 2+2: the count saved in the manifest
    assert "hand-set weights" in card["Data"] and "auc: 0.500" in card["Metrics"]
    assert "not a medical device" in card["Limits"].lower()
    assert "48×64" in card["Input"] and "every axial slice" in card["Input"]
    assert "# Model card" in entries[0].card_markdown()


def test_added_weights_win_and_unknown_models_are_named(weights, tmp_path) -> None:
    catalog = ModelCatalog(roots=[weights["root"]])
    found = catalog.add(weights["other"] / PROBE_2D)        # a single weights folder
    assert [e.name for e in found] == [PROBE_2D]
    assert catalog.get(PROBE_2D).folder == weights["other"] / PROBE_2D
    assert catalog.get(PROBE_3D).folder == weights["root"] / PROBE_3D
    with pytest.raises(KeyError, match=r"models with weights: lesion_probe, .*lesion_probe_b, lesion_probe3d"):
        catalog.get("no_such_model")
    with pytest.raises(ValueError, match="no LungLens weights here"):
        catalog.add(tmp_path)


def test_second_weights_of_one_network_get_their_own_key(weights) -> None:
    catalog = ModelCatalog(roots=[weights["root"], weights["root"]])        # one folder twice: listed once
    catalog.add(weights["other"])
    keys = catalog.names()
    other_key = f"{PROBE_2D}@{weights['root'].name}"
    assert keys == [PROBE_2D, other_key, PROBE_2D_B, PROBE_3D]
    assert catalog.get(PROBE_2D).folder == weights["other"] / PROBE_2D       # added weights take the plain name
    second = catalog.get(other_key)
    assert second.name == PROBE_2D and second.folder == weights["root"] / PROBE_2D
    assert second.label.startswith(other_key)


def test_unreadable_manifest_is_reported_not_fatal(weights, tmp_path) -> None:
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json", encoding="utf-8")
    catalog = ModelCatalog(roots=[tmp_path, weights["root"]])
    assert len(catalog.entries()) == 3
    assert catalog.problems and "not readable JSON" in catalog.problems[0]


def test_explainer_names() -> None:
    assert explainer_name("Grad-CAM++") == "gradcampp" and explainer_name("layer_cam") == "layercam"
    with pytest.raises(ValueError, match="choose one of cam, gradcam"):
        explainer_name("saliency")


def test_display_map_cuts_negative_evidence_and_scales_by_the_peak() -> None:
    raw = np.array([[-2.0, 0.0], [1.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(display_map(raw), [[0, 0], [0.25, 1.0]])
    assert not display_map(np.full((3, 3), -1.0)).any()          # no positive evidence: nothing lights up
    assert np.isfinite(display_map(np.array([np.nan, 1.0]))).all()


def test_heatmap_cache_per_slice_and_volume() -> None:
    cache = HeatmapCache((4, 3, 5), spatial_dims=2)
    assert not cache.has("gradcam", 2)
    stored = cache.put_slice("Grad-CAM", 2, np.arange(15.0).reshape(3, 5))
    assert cache.has("gradcam", 2) and not cache.has("gradcam", 1) and not cache.has("cam", 2)
    assert stored.max() == 1.0 and np.isnan(cache.array("gradcam")[1]).all()
    with pytest.raises(ValueError, match="does not fit"):
        cache.put_slice("gradcam", 0, np.zeros((5, 3)))
    cache3 = HeatmapCache((4, 3, 5), spatial_dims=3)
    array = cache3.array("cam")
    cache3.put_volume("cam", np.ones((4, 3, 5)))
    assert cache3.has("cam") and cache3.array("cam") is array       # filled in place: layers keep the memory


def test_signed_layer_hides_small_magnitudes() -> None:
    data = np.array([[[-0.5, -0.05, 0.05, 0.5]]], dtype=np.float32)
    layer = HeatmapLayer(data, colormap="CET-D1", scale=(-1, 1), threshold=0.1, signed=True, opacity=1.0)
    lut = np.stack([np.arange(256)] * 3, axis=1).astype(np.uint8)
    alpha = layer.rgba_slice(0, lut)[0, :, 3]
    assert list(alpha) == [255, 0, 0, 255]


def test_exports_never_go_into_the_scan_folder(tmp_path) -> None:
    from tests.viewer.volumes import chest_volume

    scan = tmp_path / "scan"
    scan.mkdir()
    volume = chest_volume(shape=(3, 20, 30))
    volume.source = tuple(scan / f"{i}.dcm" for i in range(3))
    with pytest.raises(ExportRefused, match="inside the folder of the scan"):
        check_export_target(scan / "view.png", volume)
    with pytest.raises(ExportRefused, match="inside the folder of the scan"):
        check_export_target(scan / "sub" / "view.png", volume)
    assert check_export_target(tmp_path / "view.png", volume) == (tmp_path / "view.png").resolve()
    assert dicom_sources(volume, [2, 0]) == [scan / "2.dcm", scan / "0.dcm"]


def test_dicom_export_needs_a_dicom_scan_and_a_computed_map(tmp_path) -> None:
    from tests.viewer.volumes import chest_volume

    volume = chest_volume(shape=(3, 20, 30))
    volume.source = (tmp_path / "scan.nii.gz",)
    layer = HeatmapLayer.empty(volume.shape, info={"model": "m"})
    with pytest.raises(ExportRefused, match="has not been computed"):
        heatmap_capture(volume, layer, WindowLevel(1500, -600), [1])
    layer.set_slice(1, np.ones((20, 30)))
    with pytest.raises(ExportRefused, match="export the view as PNG instead"):
        heatmap_capture(volume, layer, WindowLevel(1500, -600), [1])


def test_manifest_is_what_the_catalog_reads(weights) -> None:
    manifest = json.loads((weights["root"] / PROBE_3D / "manifest.json").read_text())
    entry = ModelCatalog(roots=[weights["root"]]).get(PROBE_3D)
    assert entry.sha256 == manifest["sha256"] and entry.input_size == (8, 40, 48)


def test_viewer_explainers_are_the_engines() -> None:
    from engine.screen.pipeline import EXPLAINERS as ENGINE_EXPLAINERS
    from viewer.model.ai import EXPLAINER_LABELS, EXPLAINERS

    assert EXPLAINERS == ENGINE_EXPLAINERS and tuple(EXPLAINER_LABELS) == EXPLAINERS


@pytest.mark.slow
def test_first_use_onnx_export_runs_in_a_helper_process(tmp_path, monkeypatch) -> None:
    """The export (which holds the GIL for long stretches) happens in another process; this one then finds it."""
    from engine.models import create_model
    from engine.preprocess import Preprocess
    from engine.weights import save_weights
    from viewer.workers.ai_jobs import export_in_helper_process, load_model, onnx_export_cached

    monkeypatch.setenv("LUNGLENS_CACHE_DIR", str(tmp_path / "cache"))
    name = "lightsqueeze_plain"
    save_weights(create_model(name, num_classes=2, in_chans=1), tmp_path / "w" / name, model_name=name,
                 create_kwargs={"num_classes": 2, "in_chans": 1},
                 preprocess=Preprocess.for_model(name, input_size=(64, 64)), classes=["NonCOVID", "COVID"])
    entry = ModelCatalog(roots=[tmp_path / "w"]).get(name)
    assert not onnx_export_cached(entry)
    assert export_in_helper_process(entry, "auto")
    assert onnx_export_cached(entry)
    from viewer.workers.ai_jobs import BACKGROUND_NICE, _native_thread_ids

    before = _native_thread_ids()
    model = load_model(entry, "auto")
    assert model.backend.startswith("onnx") and model.predictor.export.from_cache
    import os
    import sys
    if sys.platform.startswith("linux"):      # the runtime's compute threads yield to the GUI thread
        new = _native_thread_ids() - before
        assert new and all(os.getpriority(os.PRIO_PROCESS, t) >= BACKGROUND_NICE for t in new)


def test_card_summarises_a_shipped_manifest_in_words() -> None:
    """The panel shows dataset names and headline metrics, not the manifest's nested dictionaries."""
    from viewer.model.ai import _data_text, _metrics_text

    data = {"datasets": {"covid-ct-2d": {"name": "UCSD COVID-CT", "licence": "research"}},
            "train": {"n": 425, "patients": 233}, "val": {"n": 118}}
    metrics = {"validation": {"n": 118, "accuracy": 0.7373, "auc": 0.8126, "sensitivity": 0.55,
                              "specificity": 0.931, "confusion_matrix": [[54, 4], [27, 33]]},
               "cross_validation": {"folds": 5, "accuracy": {"mean": 0.672}, "auc": {"mean": 0.748}}}
    assert _data_text(data) == "UCSD COVID-CT (train n = 425, val n = 118)"
    text = _metrics_text(metrics)
    assert "validation (n = 118): accuracy 0.737, AUC 0.813" in text and "5-fold CV: accuracy 0.672, AUC 0.748" in text
    assert "{" not in text and "confusion" not in text
