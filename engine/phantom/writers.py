"""Write a ``Volume`` as a real multi-file CT DICOM series or as NIfTI.

The DICOM files are CT Image Storage objects with the modules a PACS or viewer expects (patient, study, series,
frame of reference, equipment, image plane, image pixel, CT image, VOI LUT, SOP common), readable by
``engine.io.load_volume``, pydicom and SimpleITK/GDCM.  Pixels are stored as signed 16-bit with
RescaleIntercept/RescaleSlope so that HU = stored * slope + intercept exactly for integer-valued volumes.

Compressed transfer syntaxes: RLE Lossless (pydicom's own encoder), JPEG 2000 Lossless (pylibjpeg-openjpeg),
JPEG-LS Lossless (pyjpegls, a dev dependency).  They are used by tests and ``bench/``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from pathlib import Path

import numpy as np

from engine.io.volume import Volume

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_UID_ROOT = "1.2.826.0.1.3680043.8.498."   # pydicom's UID root, used for generated UIDs


def _uid(seed: str | None, *parts: object) -> str:
    from pydicom.uid import generate_uid
    if seed is None:
        return generate_uid(prefix=_UID_ROOT)
    return generate_uid(prefix=_UID_ROOT, entropy_srcs=[str(seed), *map(str, parts)])


def _direction_vectors(volume: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.asarray(volume.direction, dtype=float).reshape(3, 3)
    # columns of the row-major 3x3 are the x, y, z axes in LPS
    return d[:, 0], d[:, 1], d[:, 2]


def _fmt(x: float) -> str:
    s = f"{x:.6g}"
    return s if len(s) <= 16 else f"{x:.8e}"[:16]


def write_dicom_series(volume: Volume, folder: str | Path, *,
                       series_description: str | None = None,
                       transfer_syntax: str = "1.2.840.10008.1.2.1",
                       study_uid: str | None = None,
                       series_uid: str | None = None,
                       uid_seed: str | int | None = None,
                       patient_id: str = "LUNGLENS-PHANTOM",
                       patient_name: str = "LungLens^Phantom",
                       study_description: str = "Synthetic chest CT (LungLens phantom)",
                       series_number: int = 1,
                       rescale_intercept: float = -1024.0,
                       rescale_slope: float | None = None,
                       file_prefix: str = "IM",
                       overwrite: bool = False) -> list[Path]:
    """Write one file per z slice into ``folder`` (created) and return the paths in slice order.

    ``transfer_syntax`` is a UID (Explicit VR LE default; Implicit VR LE, Big Endian, RLE, JPEG-LS lossless
    .4.80 and JPEG 2000 lossless .4.90 are supported).  UIDs are random unless ``uid_seed`` is given, which makes
    the whole series (UIDs and bytes) reproducible.  Existing files are never overwritten unless ``overwrite``.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID

    ts = UID(str(transfer_syntax))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(volume.array)
    Z, Y, X = arr.shape
    sz, sy, sx = (float(s) for s in volume.spacing)
    ex, ey, ez = _direction_vectors(volume)
    origin = np.asarray(volume.origin, dtype=float)

    seed = None if uid_seed is None else str(uid_seed)
    study_uid = study_uid or _uid(seed, "study")
    series_uid = series_uid or _uid(seed, "series", study_uid, series_number)
    frame_uid = _uid(seed, "frame", series_uid)
    desc = series_description or volume.meta.get("SeriesDescription") or "LungLens phantom"
    when = _dt.datetime(2020, 3, 1, 12, 0, 0) if seed is not None else _dt.datetime.now()
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")

    if volume.is_hu:
        if rescale_slope is None:
            finite = arr[np.isfinite(arr)]
            integer = finite.size == 0 or bool(np.all(np.mod(finite, 1) == 0))
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
            if integer and -32768 <= lo - rescale_intercept and hi - rescale_intercept <= 32767:
                rescale_slope = 1.0
            else:
                rescale_slope = max((hi - rescale_intercept) / 32000.0, (rescale_intercept - lo) / 32000.0, 1e-3)
        stored_all = None
        bits = 16
    else:
        stored_all = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        bits = 8

    paths: list[Path] = []
    width = max(4, len(str(Z)))
    for k in range(Z):
        path = folder / f"{file_prefix}{k + 1:0{width}d}.dcm"
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; write into an empty folder or pass overwrite=True")
        sop_uid = _uid(seed, "sop", series_uid, k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ts if not ts.is_compressed else UID("1.2.840.10008.1.2.1")
        meta.ImplementationClassUID = UID(_UID_ROOT + "1")
        meta.ImplementationVersionName = "LUNGLENS_010"
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
        ds.AccessionNumber = ""
        ds.Modality = volume.modality or "CT"
        ds.Manufacturer = "LungLens"
        ds.ManufacturerModelName = "Synthetic chest phantom"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = study_description
        ds.SeriesDescription = desc
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = _fmt(sz)
        ds.KVP = "120"
        ds.PatientPosition = volume.meta.get("PatientPosition", "HFS")
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = int(series_number)
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        pos = origin + ez * sz * k
        ds.ImagePositionPatient = [_fmt(p) for p in pos]
        ds.ImageOrientationPatient = [_fmt(c) for c in (*ex, *ey)]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _fmt(float(pos @ ez))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = Y, X
        ds.PixelSpacing = [_fmt(sy), _fmt(sx)]
        ds.BitsAllocated = bits
        ds.BitsStored = bits
        ds.HighBit = bits - 1
        if volume.is_hu:
            ds.PixelRepresentation = 1
            ds.RescaleIntercept = _fmt(rescale_intercept)
            ds.RescaleSlope = _fmt(rescale_slope)
            ds.RescaleType = "HU"
            wc = volume.meta.get("WindowCenter", -600.0)
            ww = volume.meta.get("WindowWidth", 1500.0)
            ds.WindowCenter = _fmt(float(wc if np.isscalar(wc) else list(wc)[0]))
            ds.WindowWidth = _fmt(float(ww if np.isscalar(ww) else list(ww)[0]))
            stored = np.rint((arr[k].astype(np.float64) - rescale_intercept) / rescale_slope)
            px = np.clip(stored, -32768, 32767).astype(np.int16)
        else:
            ds.PixelRepresentation = 0
            px = stored_all[k]
        ds.PixelData = np.ascontiguousarray(px).tobytes()
        _encode(ds, ts, px)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _encode(ds, ts, px: np.ndarray) -> None:
    """Compress ``ds`` in place into transfer syntax ``ts`` (or just set the uncompressed syntax)."""
    from pydicom.uid import (JPEG2000Lossless, JPEGLSLossless, RLELossless, ExplicitVRBigEndian)

    if not ts.is_compressed:
        ds.file_meta.TransferSyntaxUID = ts
        if ts == ExplicitVRBigEndian:
            # pydicom 3 writes big endian only from a dataset that already is big endian: swap the pixel bytes
            ds.PixelData = px.astype(px.dtype.newbyteorder(">")).tobytes()
        return
    if ts == RLELossless:
        ds.compress(RLELossless, px, encoding_plugin="pydicom")
    elif ts == JPEG2000Lossless:
        ds.compress(JPEG2000Lossless, px, encoding_plugin="pylibjpeg")
    elif ts == JPEGLSLossless:
        try:
            import jpeg_ls  # noqa: F401  (pyjpegls)
        except ImportError as exc:
            raise RuntimeError("JPEG-LS encoding needs the pyjpegls package (pip install pyjpegls); "
                               "SimpleITK/GDCM cannot write JPEG-LS") from exc
        ds.compress(JPEGLSLossless, px, encoding_plugin="pyjpegls")
    else:
        raise ValueError(f"write_dicom_series cannot encode transfer syntax {ts} ({ts.name}); use explicit/implicit "
                         "VR little endian, big endian, RLE, JPEG-LS lossless or JPEG 2000 lossless")


def write_nifti(volume: Volume, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``volume`` as NIfTI (.nii or .nii.gz) with its spacing, origin and direction (HU as int16 when exact)."""
    import SimpleITK as sitk

    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise ValueError(f"NIfTI path must end in .nii or .nii.gz: {path}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(volume.array)
    if arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0) and arr.min() >= -32768 and arr.max() <= 32767:
        arr = arr.astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in volume.spacing[::-1]))
    img.SetOrigin(tuple(float(o) for o in volume.origin))
    img.SetDirection(tuple(float(d) for d in volume.direction))
    sitk.WriteImage(img, str(path), useCompression=path.name.endswith(".gz"))
    return path


def volume_digest(volume: Volume) -> str:
    """Short content hash (used to name cached demo scans)."""
    h = hashlib.sha256(np.ascontiguousarray(volume.array).tobytes())
    h.update(repr((volume.spacing, volume.origin, volume.direction)).encode())
    return h.hexdigest()[:16]
