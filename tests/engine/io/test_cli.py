"""``lunglens-engine phantom`` and ``lunglens-engine info`` end to end (in-process)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.cli import main
from engine.io import load_volume


def test_phantom_then_info(tmp_path, capsys):
    out = tmp_path / "ph"
    assert main(["phantom", str(out), "--shape", "6,32,48", "--spacing", "5,4,4", "--seed", "3",
                 "--lesions", "2", "--mask"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["files"] == 6 and len(written["lesions"]) == 2
    assert (tmp_path / "ph-lesions.nii.gz").exists()
    vol = load_volume(out)
    assert vol.shape == (6, 32, 48) and vol.spacing == pytest.approx((5, 4, 4))
    (out / "notes.txt").write_text("not an image")
    assert main(["info", str(out), "--json", "--load"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["skipped"] == 1 and len(report["series"]) == 1
    s = report["series"][0]
    assert s["n_slices"] == 6 and s["is_hu"] and s["spacing_mm"] == [5.0, 4.0, 4.0]
    assert "PatientName" not in s["meta"]
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 series, 1 file(s) skipped" in text and "6 slice(s)" in text


def test_phantom_nifti_and_info_errors(tmp_path, capsys):
    assert main(["phantom", str(tmp_path / "p.nii.gz"), "--shape", "4,16,16", "--spacing", "5,8,8",
                 "--lesions", "0"]) == 0
    capsys.readouterr()
    vol = load_volume(tmp_path / "p.nii.gz")
    assert vol.shape == (4, 16, 16) and np.isfinite(vol.array).all()
    assert main(["info", str(tmp_path / "missing")]) == 1
    assert "UnreadableFileError" in capsys.readouterr().out
