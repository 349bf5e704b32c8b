"""Canonical image reading and manifest datasets."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.io.errors import TruncatedFileError, UnreadableFileError, UnsupportedImageError
from engine.preprocess import Preprocess
from engine.train import data as data_mod
from engine.train.data import DatasetError, ManifestDataset, load_tensors, parse_classes, read_image_grey

from .conftest import phantom_image, save_as

LOSSLESS = ("png-l", "png-rgb", "png-rgba", "png-la", "png-16")


@pytest.fixture
def picture() -> np.ndarray:
    return phantom_image(np.random.default_rng(3), (70, 90), covid=True)


@pytest.mark.parametrize("fmt", LOSSLESS)
def test_lossless_formats_read_identically(tmp_path: Path, picture: np.ndarray, fmt: str) -> None:
    got = read_image_grey(save_as(picture, tmp_path / "x", fmt))
    assert got.dtype == np.uint8 and got.shape == picture.shape
    np.testing.assert_array_equal(got, picture)


def test_palette_png_is_expanded(tmp_path: Path, picture: np.ndarray) -> None:
    got = read_image_grey(save_as(picture, tmp_path / "x", "png-p"))
    # a grey->P conversion maps to the web palette: values are close, never the palette indices themselves
    assert np.abs(got.astype(int) - picture.astype(int)).mean() < 12


@pytest.mark.parametrize("fmt", ("jpeg-l", "jpeg-rgb"))
def test_jpeg_reads_close_to_the_original(tmp_path: Path, picture: np.ndarray, fmt: str) -> None:
    got = read_image_grey(save_as(picture, tmp_path / "x", fmt))
    assert got.shape == picture.shape
    assert np.abs(got.astype(int) - picture.astype(int)).mean() < 4


def test_alpha_is_composited_on_black(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0        # transparent -> black background
    rgba[1, 1, 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    got = read_image_grey(tmp_path / "a.png")
    assert got[0, 0] == 0 and got[2, 2] == 200 and got[1, 1] == round(200 * 128 / 255)


def test_colour_uses_luma_weights(tmp_path: Path) -> None:
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[1, 0] = (0, 0, 255)
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.png")
    got = read_image_grey(tmp_path / "c.png")
    assert (got[0, 0], got[0, 1], got[1, 0], got[1, 1]) == (76, 150, 29, 0)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = np.zeros((10, 20), dtype=np.uint8)
    img[0, :5] = 255
    im = Image.fromarray(img, "L")
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    im.save(tmp_path / "e.jpg", exif=exif, quality=100)
    got = read_image_grey(tmp_path / "e.jpg")
    assert got.shape == (20, 10)


def test_bad_files_raise_specific_errors(tmp_path: Path, picture: np.ndarray) -> None:
    with pytest.raises(UnreadableFileError, match="not found"):
        read_image_grey(tmp_path / "missing.png")
    (tmp_path / "garbage.png").write_bytes(b"this is not an image at all")
    with pytest.raises(UnreadableFileError, match="garbage.png"):
        read_image_grey(tmp_path / "garbage.png")
    good = save_as(picture, tmp_path / "t", "png-l").read_bytes()
    (tmp_path / "trunc.png").write_bytes(good[: len(good) // 2])
    with pytest.raises((TruncatedFileError, UnreadableFileError), match="trunc.png"):
        read_image_grey(tmp_path / "trunc.png")
    Image.fromarray(np.full((3, 3), -2000, dtype=np.int32), "I").save(tmp_path / "hu.tif")
    with pytest.raises(UnsupportedImageError, match="HU"):
        read_image_grey(tmp_path / "hu.tif")
    Image.fromarray(np.full((3, 3), 900.0, dtype=np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(UnsupportedImageError, match="0..255"):
        read_image_grey(tmp_path / "f.tif")


# ------------------------------------------------------------------------------------------------ manifests
def _manifest(root: Path, rows: list[dict], header: list[str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    header = header or list(rows[0])
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    return root


def _img(root: Path, name: str) -> str:
    (root / "i").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "i" / name)
    return f"i/{name}"


def test_manifest_labels_case_insensitive_and_patient_fallback(tmp_path: Path) -> None:
    root = tmp_path / "d"
    rows = [{"file": _img(root, "a.png"), "label": "covid", "patient_id": "p1", "split": "train", "x": "1"},
            {"file": _img(root, "b.png"), "label": "NONCOVID", "patient_id": "", "split": "val", "x": "2"},
            {"file": _img(root, "c.png"), "label": "Non-COVID", "patient_id": "p3", "split": "val", "x": "3"}]
    ds = ManifestDataset.from_folder(_manifest(root, rows))
    assert ds.classes == ("NonCOVID", "COVID")
    assert ds.labels.tolist() == [1, 0, 0]
    assert ds.groups == ["p1", "file:i/b.png", "p3"]
    assert ds.samples[0].extra == {"x": "1"}
    assert len(ManifestDataset.from_folder(root, split="val")) == 2
    assert ds.counts() == {"NonCOVID": 2, "COVID": 1}


def test_manifest_three_classes(tmp_path: Path) -> None:
    root = tmp_path / "d"
    rows = [{"file": _img(root, f"{i}.png"), "label": lab} for i, lab in enumerate(["COVID", "normal", "Pneumonia"])]
    ds = ManifestDataset.from_folder(_manifest(root, rows), classes="COVID,Normal,Pneumonia")
    assert ds.labels.tolist() == [0, 1, 2]
    with pytest.raises(DatasetError, match="labels not in the class list"):
        ManifestDataset.from_folder(root)  # binary list cannot hold 'normal'


def test_manifest_errors_are_specific(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no manifest.csv"):
        ManifestDataset.from_folder(tmp_path)
    root = tmp_path / "d"
    _manifest(root, [{"path": "x.png", "label": "COVID"}])
    with pytest.raises(DatasetError, match=r"lacks column\(s\) \['file'\]"):
        ManifestDataset.from_folder(root)
    _manifest(root, [{"file": "nope.png", "label": "COVID"}])
    with pytest.raises(DatasetError, match="not found"):
        ManifestDataset.from_folder(root)
    f = _img(root, "a.png")
    _manifest(root, [{"file": f, "label": "COVID"}, {"file": f, "label": "COVID"}])
    with pytest.raises(DatasetError, match="listed twice"):
        ManifestDataset.from_folder(root)
    _manifest(root, [{"file": f, "label": "flu"}])
    with pytest.raises(DatasetError, match="'flu'"):
        ManifestDataset.from_folder(root)
    with pytest.raises(DatasetError, match="must contain 'COVID'"):
        parse_classes("a,b")


def test_load_tensors_caches_outside_the_data(synth_data: Path, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    ds = ManifestDataset.from_folder(synth_data)
    pre = Preprocess.for_model("lightsqueeze_proposed", input_size=(40, 40))
    first = load_tensors(ds, pre)
    assert first.x.shape == (len(ds), 1, 40, 40) and first.x.dtype == torch.float16
    assert 0.0 <= float(first.x.min()) and float(first.x.max()) <= 1.0
    cached = list((tmp_path / "cache").rglob("*.safetensors"))
    assert len(cached) == 1
    assert not any(p.suffix == ".safetensors" for p in synth_data.rglob("*"))

    def boom(path):  # a cache hit must not read a single image
        raise AssertionError("image read despite cache")

    monkeypatch.setattr(data_mod, "read_image_grey", boom)
    again = load_tensors(ds, pre)
    assert torch.equal(again.x, first.x) and torch.equal(again.y, first.y)
    # a different preprocessing definition is a different cache entry
    with pytest.raises(AssertionError, match="despite cache"):
        load_tensors(ds, Preprocess.for_model("lightsqueeze_proposed", input_size=(32, 32)))


def test_cached_tensor_equals_the_viewer_path(synth_data: Path) -> None:
    """Training tensors are exactly Preprocess.image() of the canonical image (one preprocessing path)."""
    ds = ManifestDataset.from_folder(synth_data)
    pre = Preprocess.for_model("lightsqueeze_proposed", input_size=(40, 40))
    t = load_tensors(ds, pre, cache=False)
    for i in (0, 5):
        x, _ = pre.image(read_image_grey(ds.samples[i].path))
        np.testing.assert_allclose(pre.normalise(t.x[i:i + 1].float()).numpy(), x.numpy(), atol=2e-3 / 0.25)
