"""3-D data (manifests, label maps, slice folders, phantom datasets), training/resume, CAM localisation scores."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from engine.preprocess import Preprocess
from engine.train.data3d import (
    Dataset3DError,
    VolumeDataset,
    load_record_volume,
    make_phantom_dataset,
    read_manifest3d,
)
from engine.train.train3d import Train3DConfig, evaluate3d, fit3d, localisation_scores, localise3d


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # small 3-D convs: one thread is faster than two on a shared 2-core machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms3d")
    make_phantom_dataset(out, 6, seed=5, splits={"train": 0.5, "test": 0.5},
                         options={"inplane": (48, 56), "fov_mm": (300.0, 340.0), "extent_mm": (200.0, 240.0),
                                  "slice_mm": (5.0, 8.0), "lesions": (2, 3)})
    return out


def small_pre(**kw) -> Preprocess:
    base = dict(spatial_dims=3, input_size=(8, 32, 32), target_spacing=(5.0, 0.0, 0.0), extra={"crop_scale": 1.0})
    base.update(kw)
    return Preprocess(**base)


# ---------------------------------------------------------------------------------------------- data
def test_phantom_dataset_manifest_masks_and_balance(phantom_dir) -> None:
    rows = list(csv.DictReader(open(phantom_dir / "manifest.csv")))
    assert len(rows) == 6 and {r["label"] for r in rows} <= {"COVID", "NonCOVID"}
    records, classes = read_manifest3d(phantom_dir)
    assert classes == ("NonCOVID", "COVID")
    for rec, row in zip(records, rows):
        vol = load_record_volume(rec.path)
        from engine.train.data3d import load_mask
        lesion = load_mask(rec.mask, vol.shape)
        lung = load_mask(rec.lung, vol.shape)
        assert lesion.any() == (row["label"] == "COVID")          # exact masks: positives have lesions
        assert (lesion & ~lung).sum() == 0                        # lesions lie inside the lung
        assert float(row["lesion_ml"]) == pytest.approx(lesion.sum() * np.prod(vol.spacing) / 1000, rel=1e-3)
        if row["label"] == "COVID":
            assert float(row["lesion_ml"]) >= 1.0
    assert (phantom_dir / "README.md").read_text().count("synthetic") >= 1


def test_manifest_label_maps_and_errors(tmp_path, phantom_dir) -> None:
    src = list(csv.DictReader(open(phantom_dir / "manifest.csv")))
    mos = tmp_path / "mosmed"
    mos.mkdir()
    with open(mos / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "split"])
        for r, grade in zip(src, ["CT-0", "CT-1", "CT-2", "CT-3", "CT-4", "CT-0"]):
            w.writerow([str(phantom_dir / r["file"]), grade, "test"])
    records, classes = read_manifest3d(mos, label_map="mosmed")
    assert [r.label_name for r in records] == ["NonCOVID", "COVID", "COVID", "COVID", "COVID", "NonCOVID"]
    with pytest.raises(Dataset3DError, match="labels not in the class list"):
        read_manifest3d(mos)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.csv").write_text("path,diagnosis\nx.nii.gz,COVID\n")
    with pytest.raises(Dataset3DError, match="lacks column"):
        read_manifest3d(tmp_path / "bad")
    with pytest.raises(Dataset3DError, match="no manifest.csv"):
        read_manifest3d(tmp_path / "nowhere")


def test_slice_folder_volumes_keep_natural_order(tmp_path) -> None:
    from PIL import Image

    scan = tmp_path / "ccccii" / "NCP" / "p1" / "scan1"
    scan.mkdir(parents=True)
    for i in (1, 2, 10, 3):                                     # natural order 1, 2, 3, 10 (not 1, 10, 2, 3)
        Image.fromarray(np.full((16, 20), i * 20, np.uint8)).save(scan / f"{i}.png")
    (tmp_path / "ccccii" / "manifest.csv").write_text("file,label,patient_id\nNCP/p1/scan1,NCP,p1\n")
    records, classes = read_manifest3d(tmp_path / "ccccii", classes="CP,COVID,Normal", label_map="ccccii")
    assert records[0].label_name == "COVID"
    vol = load_record_volume(records[0].path)
    assert not vol.is_hu and vol.shape == (4, 16, 20)
    assert vol.array[:, 0, 0].tolist() == [20, 40, 60, 200]
    ds = VolumeDataset(records, small_pre(input_size=(6, 8, 8)), classes, train=False)
    x, y = ds.batch([0])
    assert x.shape == (1, 1, 6, 8, 8) and int(y[0]) == 1


# ---------------------------------------------------------------------------------------------- localisation
def test_localisation_scores_on_known_maps() -> None:
    shape, spacing = (10, 20, 20), (5.0, 2.0, 2.0)
    lesion = np.zeros(shape, bool)
    lesion[4:6, 8:12, 8:12] = True
    lung = np.zeros(shape, bool)
    lung[1:9, 2:18, 2:18] = True
    perfect = lesion.astype(np.float32)
    s = localisation_scores(perfect, lesion, spacing, lung)
    assert s["pointing_hit"] and s["pointing_hit_tol"] and s["peak_distance_mm"] == 0.0
    assert s["energy_in_mask"] == pytest.approx(1.0) and s["lesion_auc"] == pytest.approx(1.0)
    assert s["energy_chance"] == pytest.approx(lesion.sum() / lung.sum())
    near = np.zeros(shape, np.float32)
    near[5, 10, 16] = 1.0                                      # 5 voxels × 2 mm = 10 mm beside the lesion
    s = localisation_scores(near, lesion, spacing, lung, tol_mm=15.0)
    assert not s["pointing_hit"] and s["pointing_hit_tol"] and s["peak_distance_mm"] == pytest.approx(10.0)
    far = np.zeros(shape, np.float32)
    far[1, 2, 2] = 1.0
    assert not localisation_scores(far, lesion, spacing, lung)["pointing_hit_tol"]
    with pytest.raises(ValueError, match="share the voxel grid"):
        localisation_scores(perfect[:-1], lesion, spacing)


# ---------------------------------------------------------------------------------------------- training
def test_fit_evaluate_localise_and_resume(tmp_path, phantom_dir) -> None:
    from engine.models import create_model

    records, classes = read_manifest3d(phantom_dir)
    train = VolumeDataset([r for r in records if r.split == "train"], small_pre(), classes, train=True)
    test = VolumeDataset([r for r in records if r.split == "test"], small_pre(), classes, train=False)
    torch.manual_seed(0)
    fine = {"stem_stride": [1, 2, 2], "strides": [2, 2, 1, 1, 1, 1]}   # CAM grid 2×4×4 for an 8×32×32 input
    model = create_model("covidnet3d_s", num_classes=2, genotype=["skip"] * 21, macro=fine)
    cfg = Train3DConfig(epochs=2, batch_size=3)
    events = []
    res = fit3d(model, train, test, cfg, tmp_path, classes=classes, progress=events.append)
    assert [r["epoch"] for r in res["history"]] == [1, 2] and 1 <= res["best_epoch"] <= 2
    assert (tmp_path / "best.safetensors").is_file() and (tmp_path / "checkpoint.safetensors").is_file()
    assert json.loads((tmp_path / "history.json").read_text())["best_epoch"] == res["best_epoch"]
    assert cfg.lr_at(0) == pytest.approx(1e-3) and cfg.lr_at(1) < 1e-3
    again = fit3d(create_model("covidnet3d_s", num_classes=2, genotype=["skip"] * 21, macro=fine), train, test,
                  cfg, tmp_path, classes=classes)
    assert again["history"] == res["history"]                  # finished run: resume is a no-op
    m = evaluate3d(model, test, classes)
    assert {"accuracy", "sensitivity", "specificity", "auc", "confusion_matrix"} <= set(m)
    loc = localise3d(model, test)
    positives = sum(r.label == 1 for r in test.records)
    assert loc["n"] == positives and len(loc["cases"]) == positives
    for case in loc["cases"]:
        assert 0.0 <= case["energy_in_mask"] <= 1.0
