"""Conformance: every CT file/series of ../shared/data decodes to the same HU as a pydicom reference.

The reference is written independently of the loader: pydicom's ``pixel_array`` (with the pylibjpeg plugins)
times the file's own RescaleSlope/Intercept (Enhanced CT: the per-frame/shared functional groups), frames sorted by
their position along the slice normal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from engine.io import UnsupportedTransferSyntaxError, discover, load_volume

RETIRED = ("1.2.840.10008.1.2.4.53", "1.2.840.10008.1.2.4.55")
pytestmark = [pytest.mark.data, pytest.mark.filterwarnings("ignore::UserWarning")]


def _sample_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "dicom-samples").rglob("*.dcm"))


def _fg(ds, i, seq, attr):
    for grp_name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        grp = ds.get(grp_name)
        if not grp:
            continue
        item = grp[i] if grp_name.startswith("PerFrame") else grp[0]
        if seq in item and attr in item[seq][0]:
            return item[seq][0][attr].value
    return None


def reference_hu(paths: list[Path]) -> np.ndarray:
    """pydicom reference: (z, y, x) float64 HU sorted along the slice normal."""
    frames = []
    for p in paths:
        ds = pydicom.dcmread(p)
        arr = ds.pixel_array.astype(np.float64)
        n = int(ds.get("NumberOfFrames", 1) or 1)
        if n == 1 and arr.ndim == 2:
            arr = arr[None]
        for i in range(n):
            slope = ds.get("RescaleSlope")
            inter = ds.get("RescaleIntercept")
            ipp = ds.get("ImagePositionPatient")
            iop = ds.get("ImageOrientationPatient")
            if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
                slope = _fg(ds, i, "PixelValueTransformationSequence", "RescaleSlope") or slope
                inter = _fg(ds, i, "PixelValueTransformationSequence", "RescaleIntercept") or inter
                ipp = _fg(ds, i, "PlanePositionSequence", "ImagePositionPatient") or ipp
                iop = _fg(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient") or iop
            hu = arr[i] * float(slope if slope is not None else 1) + float(inter if inter is not None else 0)
            pos = 0.0
            if ipp is not None and iop is not None:
                normal = np.cross(np.array(iop[:3], float), np.array(iop[3:], float))
                pos = float(np.dot(np.array(ipp, float), normal))
            frames.append((pos, hu))
    frames.sort(key=lambda f: f[0])
    return np.stack([f[1] for f in frames])


def _ts(p: Path) -> str:
    return str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def test_every_sample_file_matches_pydicom(shared_data):
    files = _sample_files(shared_data)
    assert len(files) >= 45
    checked = 0
    for p in files:
        if _ts(p) in RETIRED:
            continue
        vol = load_volume(p)
        ref = reference_hu([p])
        assert vol.is_hu, p
        assert vol.array.shape == ref.shape, p
        np.testing.assert_allclose(vol.array, ref, rtol=1e-6, atol=1e-3, err_msg=str(p))
        checked += 1
    assert checked >= 45


@pytest.mark.parametrize("ts", RETIRED)
def test_retired_jpeg_fails_naming_the_syntax(shared_data, ts):
    p = next(f for f in _sample_files(shared_data) if ts in f.name)
    with pytest.raises(UnsupportedTransferSyntaxError, match=ts.replace(".", r"\.")):
        load_volume(p)


def test_enhanced_ct_uses_functional_group_rescale(shared_data):
    p = shared_data / "dicom-samples/enhanced-ct-multiframe/CT0012.explicit_little_endian.dcm"
    ds = pydicom.dcmread(p)
    assert "RescaleIntercept" not in ds             # rescale only in the functional groups
    vol = load_volume(p)
    assert vol.shape[0] == 2
    assert np.array_equal(vol.array, reference_hu([p]))
    assert vol.array.min() < -500                   # -1024 intercept applied (raw data are >= 0)


SERIES = ["ct-volumes/ricord-1a-419639-000082", "ct-volumes/lung-pet-ct-dx-A0002",
          "dicom-series/lung-pet-ct-dx-A0001-kernelB"]


# the RICORD reference decode (255 JPEG-lossless slices through pydicom) takes about a minute: slow
@pytest.mark.parametrize("rel", [pytest.param(SERIES[0], marks=pytest.mark.slow), *SERIES[1:]])
def test_series_match_pydicom(shared_data, rel):
    folder = shared_data / rel
    found = discover(folder)
    assert len(found) == 1 and found[0].kind == "dicom"
    vol = load_volume(found[0])
    files = sorted(folder.glob("*.dcm"))
    assert vol.shape[0] == len(files) == found[0].n_slices
    ref = reference_hu(files)
    np.testing.assert_array_equal(vol.array, ref.astype(np.float32))
    assert vol.warnings == [] or all("spacing" not in w for w in vol.warnings)
    # geometry: spacing from positions, origin = first (most inferior along the normal) slice
    positions = sorted(float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files)
    assert vol.spacing[0] == pytest.approx(np.median(np.diff(positions)), abs=1e-3)
    assert vol.origin[2] == pytest.approx(positions[0], abs=1e-3)
    assert vol.modality == "CT" and vol.is_hu


def test_ricord_geometry_and_safe_meta(shared_data):
    vol = load_volume(shared_data / SERIES[0])
    assert vol.shape == (255, 512, 512)
    assert vol.spacing == pytest.approx((1.25, 0.703125, 0.703125), abs=1e-3)
    assert "PatientName" not in vol.meta and "PatientID" not in vol.meta
    assert vol.meta.get("TransferSyntaxUID") == "1.2.840.10008.1.2.4.70"
    assert vol.array.min() == -3024                  # outside the circular FOV


def test_8bit_slice_stack_is_not_hu(shared_data):
    jpg = sorted((shared_data / "ct-volumes/covid19-ct-seg-slicestacks").rglob("*.jpg"))[0]
    vol = load_volume(jpg)
    assert not vol.is_hu and vol.hu is None and vol.array.dtype == np.uint8 and vol.shape[0] == 1
