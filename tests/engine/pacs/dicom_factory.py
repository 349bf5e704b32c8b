"""Small, valid CT/MR DICOM series with chosen patient/study attributes (for PACS search tests).

Every call makes new UIDs; pixel data are deterministic from ``seed`` (a body ellipse plus noise, int16 HU)
so retrieve tests can compare them bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, PYDICOM_IMPLEMENTATION_UID, generate_uid


@dataclass(frozen=True)
class WrittenSeries:
    study_uid: str
    series_uid: str
    paths: tuple[Path, ...]
    sop_uids: tuple[str, ...]
    patient_name: str
    patient_id: str
    study_date: str
    modality: str


def write_series(folder: Path, *, patient_name: str, patient_id: str, study_date: str, modality: str = "CT",
                 n_slices: int = 6, rows: int = 40, cols: int = 56, seed: int = 0, study_uid: str | None = None,
                 description: str = "synthetic test series", accession: str = "") -> WrittenSeries:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    yy, xx = np.mgrid[0:rows, 0:cols]
    body = ((yy - rows / 2) / (rows * 0.42)) ** 2 + ((xx - cols / 2) / (cols * 0.45)) ** 2 <= 1
    paths, sops = [], []
    for k in range(n_slices):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = sop_uid
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = "19600101"
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = study_date
        ds.StudyTime = "101010"
        ds.StudyID = "1"
        ds.AccessionNumber = accession
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "CHEST"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 2
        ds.SeriesDescription = description
        ds.Modality = modality
        ds.Manufacturer = "LungLens tests"
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.FrameOfReferenceUID = study_uid + ".1" if len(study_uid) < 62 else generate_uid()
        ds.PatientPosition = "HFS"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-cols * 0.35, -rows * 0.35, -100.0 + 2.5 * k]
        ds.SliceLocation = -100.0 + 2.5 * k
        ds.SliceThickness = 2.5
        ds.PixelSpacing = [0.7, 0.7]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        if modality == "CT":
            ds.KVP = 120
        hu = np.where(body, 20, -1000) + rng.integers(-30, 30, size=(rows, cols))
        ds.PixelData = hu.astype("<i2").tobytes()
        path = folder / f"{k + 1:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
        sops.append(sop_uid)
    return WrittenSeries(study_uid, series_uid, tuple(paths), tuple(sops), patient_name, patient_id, study_date,
                         modality)


def read_pixels(path: Path) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array
