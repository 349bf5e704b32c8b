"""The demo scan: generated once into the cache dir, reused afterwards, identical on every machine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.io import discover, load_volume
from engine.phantom import demo_scan_path


def test_demo_generated_once_then_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGLENS_CACHE_DIR", str(tmp_path / "cache"))
    kw = dict(shape=(8, 64, 80), spacing=(5.0, 4.0, 4.0))
    path = demo_scan_path(**kw)
    assert path.is_dir() and path.parent.parent == tmp_path / "cache"
    files = sorted(path.glob("*.dcm"))
    assert len(files) == 8
    stamps = [f.stat().st_mtime_ns for f in files]
    assert demo_scan_path(**kw) == path
    assert [f.stat().st_mtime_ns for f in files] == stamps          # reused, not rewritten
    info = json.loads(path.with_name(path.name + ".json").read_text())
    assert info["n_files"] == 8 and len(info["lesions"]) > 0
    assert path.with_name(path.name + ".lesions.nii.gz").exists()
    found = discover(path)
    assert len(found) == 1 and found[0].modality == "CT" and "demo" in found[0].description.lower()
    vol = load_volume(path)
    assert vol.shape == (8, 64, 80) and vol.is_hu and vol.warnings == []
    mask = load_volume(path.with_name(path.name + ".lesions.nii.gz"))
    assert mask.shape == vol.shape and mask.array.max() == 1
    # deterministic: a second cache produces byte-identical files
    monkeypatch.setenv("LUNGLENS_CACHE_DIR", str(tmp_path / "other"))
    again = demo_scan_path(**kw)
    assert [f.read_bytes() for f in sorted(again.glob("*.dcm"))] == [f.read_bytes() for f in files]


def test_incomplete_cache_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGLENS_CACHE_DIR", str(tmp_path))
    kw = dict(shape=(6, 48, 48), spacing=(5.0, 5.0, 5.0))
    path = demo_scan_path(**kw)
    sorted(path.glob("*.dcm"))[2].unlink()                            # e.g. a user cleaned up half the cache
    path2 = demo_scan_path(**kw)
    assert path2 == path and len(list(path.glob("*.dcm"))) == 6
    assert load_volume(path).shape[0] == 6


@pytest.mark.slow
def test_full_size_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGLENS_CACHE_DIR", str(tmp_path))
    vol = load_volume(demo_scan_path())
    assert vol.shape == (112, 512, 512) and vol.spacing == pytest.approx((2.5, 0.7, 0.7))
    lung = (vol.array > -950) & (vol.array < -700)
    assert lung.mean() > 0.05
    assert np.isfinite(vol.array).all()
