"""DICOM/NIfTI writers: round trip through our loader, pydicom and SimpleITK."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from engine.io import load_volume
from engine.phantom import make_phantom, write_dicom_series, write_nifti

SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.5",
            "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.80"]


@pytest.fixture(scope="module")
def phantom():
    return make_phantom((12, 48, 64), (4.0, 2.0, 1.5), seed=5, lesions=2)


@pytest.mark.parametrize("ts", SYNTAXES)
def test_dicom_round_trip(tmp_path, phantom, ts):
    paths = write_dicom_series(phantom.volume, tmp_path / "s", transfer_syntax=ts)
    assert len(paths) == 12
    ds = pydicom.dcmread(paths[5])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and ds.Modality == "CT"
    assert ds.file_meta.TransferSyntaxUID == ts
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
               "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
               "RescaleSlope", "RescaleIntercept", "InstanceNumber"):
        assert kw in ds, kw
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.array_equal(hu, phantom.volume.array[5])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in paths])
    img = reader.Execute()
    assert np.array_equal(sitk.GetArrayFromImage(img), phantom.volume.array)
    assert np.allclose(img.GetSpacing(), (1.5, 2.0, 4.0))
    assert np.allclose(img.GetOrigin(), phantom.volume.origin)
    vol = load_volume(tmp_path / "s")
    assert np.array_equal(vol.array, phantom.volume.array)
    assert vol.spacing == pytest.approx(phantom.volume.spacing)
    assert vol.origin == pytest.approx(phantom.volume.origin)


def test_uids_unique_and_reproducible(tmp_path, phantom):
    a = write_dicom_series(phantom.volume, tmp_path / "a", uid_seed="x")
    b = write_dicom_series(phantom.volume, tmp_path / "b", uid_seed="x")
    c = write_dicom_series(phantom.volume, tmp_path / "c")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    sops = {pydicom.dcmread(p).SOPInstanceUID for p in a + c}
    assert len(sops) == 24
    assert pydicom.dcmread(a[0]).SeriesInstanceUID != pydicom.dcmread(c[0]).SeriesInstanceUID
    with pytest.raises(FileExistsError):
        write_dicom_series(phantom.volume, tmp_path / "a")


def test_nifti_round_trip(tmp_path, phantom):
    for name in ("v.nii", "v.nii.gz"):
        p = write_nifti(phantom.volume, tmp_path / name)
        vol = load_volume(p)
        assert np.array_equal(vol.array, phantom.volume.array)
        assert vol.spacing == pytest.approx(phantom.volume.spacing)
        assert vol.origin == pytest.approx(phantom.volume.origin)
        assert vol.is_hu
