"""Every way a scan can be bad gets a specific VolumeError (or a warning), never a crash or hang."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from engine.io import (DuplicateSlicesError, EmptyFileError, InconsistentSeriesError, LoadCancelled,
                       MissingSlicesError, NoPixelDataError, SymlinkLoopError, TruncatedFileError,
                       UnreadableFileError, UnsupportedImageError, VolumeError, discover, load_volume)
from engine.io.volume import Volume
from engine.phantom import write_dicom_series

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _files(folder):
    return sorted(folder.glob("*.dcm"))


def _minimal(path, sop_class, **attrs):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_zero_byte_file(tmp_path, series_dir):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(EmptyFileError, match="0 bytes") as exc:
        load_volume(empty)
    assert exc.value.path == empty and isinstance(exc.value, UnreadableFileError)
    (series_dir / "zzz.dcm").write_bytes(b"")
    found = discover(series_dir)
    assert len(found) == 1 and found.skipped == 1 and found[0].n_slices == 10


@pytest.mark.parametrize("keep", [0.5, 700])
def test_truncated_file(series_dir, keep):
    victim = _files(series_dir)[4]
    data = victim.read_bytes()
    victim.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])   # in the pixels / in the header
    with pytest.raises(TruncatedFileError) as exc:
        load_volume(victim)
    assert victim.name in str(exc.value)
    if keep < 1:     # the file's series is known: loading the series fails, naming the file
        with pytest.raises(TruncatedFileError):
            load_volume(series_dir)
    else:            # header cut: the file belongs to no series; the rest loads, the bad file is reported
        vol = load_volume(series_dir)
        assert vol.shape[0] == 9
        assert any("TruncatedFileError" in w and victim.name in w for w in vol.warnings)
        assert any("missing" in w for w in vol.warnings)


def test_truncated_compressed_file(tmp_path, small_phantom):
    folder = tmp_path / "j2k"
    paths = write_dicom_series(small_phantom.volume, folder, transfer_syntax="1.2.840.10008.1.2.4.90")
    data = paths[3].read_bytes()
    paths[3].write_bytes(data[: len(data) - 400])
    with pytest.raises((TruncatedFileError, UnreadableFileError)) as exc:
        load_volume(folder)
    assert paths[3].name in str(exc.value)


@pytest.mark.parametrize("name", ["scan.nii.gz", "scan.nii"])
def test_truncated_nifti_is_an_error_not_zeros(tmp_path, small_phantom, name):
    from engine.phantom import write_nifti

    path = tmp_path / name
    write_nifti(small_phantom.volume, path)
    assert np.allclose(load_volume(path).array, small_phantom.volume.array)   # the intact file loads
    data = path.read_bytes()
    cut = tmp_path / f"cut_{name}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(TruncatedFileError, match="incomplete") as exc:
        load_volume(cut)
    assert cut.name in str(exc.value)


def test_no_pixel_data(tmp_path):
    sr = _minimal(tmp_path / "report.dcm", "1.2.840.10008.5.1.4.1.1.88.11", Modality="SR")
    with pytest.raises(NoPixelDataError, match="no pixel data"):
        load_volume(sr)
    with pytest.raises(NoPixelDataError):
        load_volume(tmp_path)
    assert discover(tmp_path) == [] and discover(tmp_path).skipped == 1


def test_rgb_secondary_capture(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    sc = _minimal(tmp_path / "sc.dcm", "1.2.840.10008.5.1.4.1.1.7", Modality="OT", SamplesPerPixel=3,
                  PhotometricInterpretation="RGB", PlanarConfiguration=0, Rows=8, Columns=8, BitsAllocated=8,
                  BitsStored=8, HighBit=7, PixelRepresentation=0, PixelData=rgb.tobytes())
    with pytest.raises(UnsupportedImageError, match="RGB"):
        load_volume(sc)
    found = discover(tmp_path)
    assert len(found) == 1 and any("Colour" in w for w in found[0].warnings)


def test_garbage_and_stray_files(tmp_path, series_dir):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(UnreadableFileError):
        load_volume(junk)
    (series_dir / "README.txt").write_text("hello")
    (series_dir / ".DS_Store").write_bytes(b"\0\1\2")
    shutil.copy(junk, series_dir / "junk.dcm")
    found = discover(series_dir)
    assert len(found) == 1 and found.skipped == 3
    assert {p.name for p, _ in found.skipped_files} == {"README.txt", ".DS_Store", "junk.dcm"}
    vol = load_volume(series_dir)
    assert vol.shape[0] == 10 and any("skipped" in w for w in vol.warnings)


def test_nothing_loadable(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UnreadableFileError, match="No DICOM"):
        load_volume(tmp_path)
    with pytest.raises(UnreadableFileError):
        load_volume(tmp_path / "does-not-exist")


def test_duplicate_identical_slice_is_dropped(series_dir, small_phantom):
    shutil.copy(_files(series_dir)[3], series_dir / "copy.dcm")
    vol = load_volume(series_dir)
    assert np.array_equal(vol.array, small_phantom.volume.array)
    assert any("duplicated" in w for w in vol.warnings)


def test_duplicate_position_different_pixels(series_dir):
    src = _files(series_dir)[3]
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    arr = ds.pixel_array.copy()
    arr[0, 0] += 100
    ds.PixelData = arr.tobytes()
    ds.save_as(series_dir / "other-acquisition.dcm")
    with pytest.raises(DuplicateSlicesError, match="same position|both at position"):
        load_volume(series_dir)
    assert issubclass(DuplicateSlicesError, InconsistentSeriesError)


def test_missing_slice_warns_or_raises_when_strict(series_dir, small_phantom):
    _files(series_dir)[5].unlink()
    vol = load_volume(series_dir)
    assert vol.shape[0] == 9
    assert vol.spacing[0] == pytest.approx(3.0)
    assert any("1 slice(s) missing" in w for w in vol.warnings)
    assert vol.slice_positions is not None and len(vol.slice_positions) == 9
    with pytest.raises(MissingSlicesError):
        load_volume(series_dir, strict=True)


def test_non_uniform_spacing_warns_and_keeps(series_dir):
    for f in _files(series_dir)[6:]:
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + 0.4
        ds.save_as(f)
    vol = load_volume(series_dir)
    assert vol.shape[0] == 10
    assert any("Non-uniform" in w for w in vol.warnings)
    assert vol.slice_positions[6] - vol.slice_positions[5] == pytest.approx(3.4, abs=1e-3)


def test_mixed_orientation_warns(series_dir):
    f = _files(series_dir)[2]
    ds = pydicom.dcmread(f)
    ds.ImageOrientationPatient = [0.99, 0.141, 0, -0.141, 0.99, 0]
    ds.save_as(f)
    vol = load_volume(series_dir)
    assert vol.shape[0] == 10 and any("Mixed orientations" in w for w in vol.warnings)


def test_non_ct_modality_warns(tmp_path, small_phantom):
    v = small_phantom.volume
    mr = Volume(array=v.array, spacing=v.spacing, origin=v.origin, direction=v.direction, modality="MR")
    write_dicom_series(mr, tmp_path / "mr")
    vol = load_volume(tmp_path / "mr")
    assert vol.modality == "MR" and any("not CT" in w for w in vol.warnings)
    assert "not CT" in " ".join(discover(tmp_path / "mr")[0].warnings)


def test_mixed_series_folder(tmp_path, small_phantom):
    write_dicom_series(small_phantom.volume, tmp_path / "a", series_description="first")
    sub = Volume(array=small_phantom.volume.array[:4], spacing=small_phantom.volume.spacing)
    write_dicom_series(sub, tmp_path / "b", series_description="second")
    for f in (tmp_path / "b").iterdir():       # mix both series in one folder
        f.rename(tmp_path / "a" / f"b-{f.name}")
    found = discover(tmp_path / "a")
    assert sorted(s.n_slices for s in found) == [4, 10]
    assert {s.description for s in found} == {"first", "second"}
    vol = load_volume(tmp_path / "a")
    assert vol.shape[0] == 10 and "holds 2 series" in vol.warnings[0]
    small = next(s for s in found if s.n_slices == 4)
    assert load_volume(small).shape[0] == 4


def test_size_mismatch_in_series(series_dir):
    f = _files(series_dir)[0]
    ds = pydicom.dcmread(f)
    ds.Rows, ds.Columns = 16, 16
    ds.PixelData = np.zeros((16, 16), np.int16).tobytes()
    ds.save_as(f)
    vol = load_volume(series_dir)          # the odd image (a scout?) is left out with a warning
    assert vol.shape == (9, 32, 40) and any("different size" in w for w in vol.warnings)


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks")
def test_symlink_loops(tmp_path, series_dir):
    os.symlink(series_dir, series_dir / "loop")              # folder -> itself
    os.symlink(tmp_path, series_dir / "up")                  # folder -> an ancestor
    os.symlink(series_dir / "self", series_dir / "self")     # a link to itself
    found = discover(series_dir)
    assert len(found) == 1 and found[0].n_slices == 10
    assert any("loop" in w.lower() for w in found.warnings)
    assert load_volume(series_dir).shape[0] == 10
    with pytest.raises(SymlinkLoopError):
        load_volume(series_dir / "self")
    with pytest.raises(SymlinkLoopError):
        discover(series_dir / "self")
    a, b = tmp_path / "a", tmp_path / "b"
    os.symlink(b, a)
    os.symlink(a, b)
    with pytest.raises(SymlinkLoopError):
        load_volume(a)


def test_cancel_and_progress(series_dir):
    seen = []
    vol = load_volume(series_dir, progress=seen.append)
    assert vol.shape[0] == 10
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(LoadCancelled):
        load_volume(series_dir, cancel=lambda: True)
    calls = []

    def cancel_after_progress():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(LoadCancelled):
        load_volume(series_dir, cancel=cancel_after_progress)


def test_error_messages_name_the_file(tmp_path):
    empty = tmp_path / "cut.dcm"
    empty.write_bytes(b"")
    try:
        load_volume(empty)
    except VolumeError as exc:
        assert str(empty) in str(exc)
