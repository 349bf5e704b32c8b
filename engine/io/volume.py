"""The volume contract every part of LungLens relies on.

Axis order is always (z, y, x) for arrays, spacing and shapes.  ``z`` increases along the slice normal
(sorted by position, never by file name or InstanceNumber).  Geometry is in DICOM patient coordinates (LPS, mm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Patient-safe header fields that may be shown or stored in reports (no names, no birth dates, no IDs).
SAFE_META_KEYS = (
    "Modality", "SeriesDescription", "StudyDescription", "BodyPartExamined", "Manufacturer",
    "ManufacturerModelName", "ConvolutionKernel", "KVP", "SliceThickness", "StudyDate", "SeriesNumber",
    "WindowCenter", "WindowWidth", "PhotometricInterpretation", "TransferSyntaxUID", "PatientPosition",
)


@dataclass(frozen=True)
class SeriesInfo:
    """One loadable series found by ``discover`` (headers only, no pixels read)."""

    uid: str                        # SeriesInstanceUID, or a stable pseudo-UID for non-DICOM files
    kind: str                       # "dicom" | "nifti" | "itk" (NRRD/MHA) | "image2d" (PNG/JPEG)
    paths: tuple[Path, ...]         # files that make up the series (one for NIfTI/PNG/multi-frame)
    n_slices: int
    shape: tuple[int, int, int] | None = None   # (z, y, x) if known from headers
    modality: str = ""
    description: str = ""
    study_uid: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Human-readable one-liner for series browsers."""
        what = self.description or self.paths[0].name
        return f"{self.modality or self.kind} · {what} · {self.n_slices} slice(s)"


@dataclass
class Volume:
    """A CT volume in Hounsfield units (or an 8-bit image stack, flagged by ``is_hu=False``)."""

    array: np.ndarray                            # (z, y, x); float32/int16 HU, or uint8 when not HU
    spacing: tuple[float, float, float]          # (z, y, x) in mm
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)       # LPS position of voxel (0,0,0), (x, y, z) mm
    direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1)  # 3x3 row-major; columns = x, y, z axes in LPS
    modality: str = "CT"
    is_hu: bool = True
    meta: dict = field(default_factory=dict)    # patient-safe fields only (SAFE_META_KEYS)
    source: tuple[Path, ...] = ()
    series_uid: str = ""
    study_uid: str = ""
    warnings: list[str] = field(default_factory=list)
    # position of each slice along the slice normal (mm), when known; differs from uniform steps when spacing
    # is non-uniform or slices are missing (see ``warnings``)
    slice_positions: tuple[float, ...] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def hu(self) -> np.ndarray | None:
        """The HU array, or None for pre-windowed 8-bit data (PNG/JPEG) that carry no HU."""
        return self.array if self.is_hu else None

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume.array must be (z, y, x), got shape {self.array.shape}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"Volume.spacing must be three positive mm values (z, y, x), got {self.spacing}")
