"""Series assembly, formats, DICOMDIR and the read-only guarantee."""

from __future__ import annotations

import hashlib
import os
import random
import stat

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from engine.io import SeriesInfo, discover, load_volume
from engine.io.volume import Volume
from engine.phantom import write_dicom_series, write_nifti

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_sorted_by_position_not_name_or_instance(series_dir, small_phantom):
    files = sorted(series_dir.glob("*.dcm"))
    rng = random.Random(3)
    names = [f"x{rng.randrange(10**6):06d}_{i}.dcm" for i in range(len(files))]
    rng.shuffle(names)
    for f, n in zip(files, names):
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = rng.randrange(1000)           # meaningless instance numbers
        ds.save_as(series_dir / n)
        f.unlink()
    vol = load_volume(series_dir)
    assert np.array_equal(vol.array, small_phantom.volume.array)
    assert vol.origin == pytest.approx(small_phantom.volume.origin)
    assert [p.name for p in vol.source] != sorted(p.name for p in vol.source)


def test_feet_first_order_reversed_positions(tmp_path, small_phantom):
    # the same volume written with the slice normal pointing down (z axis flipped): sorted along the normal
    v = small_phantom.volume
    d = np.asarray(v.direction, float).reshape(3, 3)
    flipped = Volume(array=v.array, spacing=v.spacing, origin=v.origin,
                     direction=tuple(np.column_stack([d[:, 0], -d[:, 1], -d[:, 2]]).ravel()))
    write_dicom_series(flipped, tmp_path / "ff")
    vol = load_volume(tmp_path / "ff")
    assert np.array_equal(vol.array, v.array)
    assert vol.direction == pytest.approx(flipped.direction)


def test_read_only_guarantee(tmp_path, series_dir):
    write_nifti(Volume(array=np.zeros((2, 4, 4), np.float32), spacing=(1, 1, 1)), series_dir / "extra.nii.gz")

    def snapshot():
        out = {}
        for p in sorted(series_dir.rglob("*")):
            st = p.stat()
            out[p.name] = (st.st_mtime_ns, st.st_mode, st.st_size, hashlib.sha1(p.read_bytes()).hexdigest())
        return out

    for p in series_dir.iterdir():
        p.chmod(0o444)
    series_dir.chmod(0o555)
    try:
        before = snapshot()
        found = discover(series_dir)
        for s in found:
            load_volume(s)
        load_volume(series_dir)
        after = snapshot()
    finally:
        series_dir.chmod(0o755)
    assert before == after                       # nothing written, touched, added or re-permissioned
    assert len(found) == 2


def test_formats_nrrd_mha_png_nifti(tmp_path, small_phantom):
    from PIL import Image

    v = small_phantom.volume
    img = sitk.GetImageFromArray(v.array.astype(np.int16))
    img.SetSpacing(v.spacing[::-1])
    img.SetOrigin(v.origin)
    for ext in ("nrrd", "mha"):
        sitk.WriteImage(img, str(tmp_path / f"v.{ext}"))
    write_nifti(v, tmp_path / "v.nii.gz")
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "slice.png")
    Image.fromarray(np.full((6, 5, 3), 100, np.uint8)).save(tmp_path / "rgb.jpg")
    found = discover(tmp_path)
    kinds = sorted(s.kind for s in found)
    assert kinds == ["image2d", "image2d", "itk", "itk", "nifti"]
    for s in found:
        vol = load_volume(s)
        if s.kind in ("itk", "nifti"):
            assert np.array_equal(vol.array, v.array) and vol.is_hu
            assert vol.spacing == pytest.approx(v.spacing)
            assert s.shape == v.shape
        else:
            assert not vol.is_hu and vol.hu is None and vol.array.dtype == np.uint8 and vol.shape[0] == 1
    png = load_volume(tmp_path / "slice.png")
    assert np.array_equal(png.array[0], np.arange(64, dtype=np.uint8).reshape(8, 8))


def test_nifti_ras_is_reoriented_to_lps(tmp_path, small_phantom):
    # a NIfTI stored with flipped x/y (typical RAS-oriented export) comes back in the canonical orientation
    v = small_phantom.volume
    img = sitk.GetImageFromArray(v.array[:, ::-1, ::-1].copy())
    img.SetSpacing(v.spacing[::-1])
    nx, ny = v.shape[2], v.shape[1]
    img.SetOrigin((v.origin[0] + (nx - 1) * v.spacing[2], v.origin[1] + (ny - 1) * v.spacing[1], v.origin[2]))
    img.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    sitk.WriteImage(img, str(tmp_path / "ras.nii.gz"))
    vol = load_volume(tmp_path / "ras.nii.gz")
    assert np.array_equal(vol.array, v.array)
    assert vol.direction == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert vol.origin == pytest.approx(v.origin, abs=1e-4)


def test_eight_bit_dicom_is_not_hu(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (3, 16, 16)).astype(np.uint8)
    write_dicom_series(Volume(array=arr, spacing=(2, 1, 1), is_hu=False, modality="OT"), tmp_path / "sc")
    vol = load_volume(tmp_path / "sc")
    assert not vol.is_hu and vol.array.dtype == np.uint8 and np.array_equal(vol.array, arr)


def test_dicomdir(tmp_path, small_phantom):
    from pydicom.fileset import FileSet

    src = tmp_path / "src"
    paths = write_dicom_series(small_phantom.volume, src)
    fs = FileSet()
    for p in paths:
        fs.add(p)
    fs.write(tmp_path / "media")
    dicomdir = tmp_path / "media" / "DICOMDIR"
    assert dicomdir.exists()
    found = discover(dicomdir)
    assert len(found) == 1 and found[0].n_slices == 10
    vol = load_volume(dicomdir)
    assert np.array_equal(vol.array, small_phantom.volume.array)
    with pytest.raises(Exception):
        from engine.io.dicom_header import check_pixels, read_header
        check_pixels(read_header(dicomdir))


def test_series_info_round_trip(series_dir, small_phantom):
    found = discover(series_dir)
    info = found[0]
    assert isinstance(info, SeriesInfo) and info.kind == "dicom" and info.modality == "CT"
    assert info.shape == (10, 32, 40) and len(info.paths) == 10 and info.study_uid
    vol = load_volume(info)
    assert vol.series_uid == info.uid and vol.study_uid == info.study_uid
    assert np.array_equal(vol.array, small_phantom.volume.array)
    assert "PatientName" not in vol.meta and "PatientID" not in vol.meta
    assert vol.meta["Modality"] == "CT" and vol.meta["SeriesDescription"]


def test_fast_header_matches_pydicom(series_dir, tmp_path, small_phantom):
    from engine.io.dicom_header import _fast_header, _read_header_pydicom

    write_dicom_series(small_phantom.volume, tmp_path / "impl", transfer_syntax="1.2.840.10008.1.2")
    write_dicom_series(small_phantom.volume, tmp_path / "j2k", transfer_syntax="1.2.840.10008.1.2.4.90")
    for folder in (series_dir, tmp_path / "impl", tmp_path / "j2k"):
        for p in sorted(folder.glob("*.dcm"))[:3]:
            st = os.stat(p)
            fast, ref = _fast_header(p, st), _read_header_pydicom(p, st)
            assert fast is not None
            assert fast == ref and fast.meta == ref.meta


def test_fast_header_matches_pydicom_on_real_files(shared_data):
    from engine.io.dicom_header import _fast_header, _read_header_pydicom

    n = 0
    for p in sorted(shared_data.rglob("*.dcm"))[::7]:
        st = os.stat(p)
        fast = _fast_header(p, st)
        if fast is None:
            continue
        ref = _read_header_pydicom(p, st)
        assert fast == ref and fast.meta == ref.meta, p
        n += 1
    assert n > 20


def test_float_nifti_array_owns_its_memory(tmp_path):
    # SimpleITK arrays are views on the image; the volume must hold a real copy, whatever the pixel type
    import gc

    for dtype in (np.float32, np.int16, np.uint8):
        a = (np.random.default_rng(1).random((4, 12, 10)) * 100).astype(dtype)
        sitk.WriteImage(sitk.GetImageFromArray(a), str(tmp_path / f"f_{np.dtype(dtype).name}.nii"))
        vol = load_volume(tmp_path / f"f_{np.dtype(dtype).name}.nii")
        gc.collect()
        _ = np.ones((64, 64, 64))
        assert vol.array.flags.owndata and np.array_equal(vol.array, a)
