"""Every way a user's file can be bad, as a specific exception.

The GUI and the CLI print ``str(error)``: it must say what is wrong, with which file, and what to do.
Warnings that do not stop loading (non-uniform spacing, non-CT modality, ...) are collected on
``Volume.warnings`` instead of being raised.
"""

from __future__ import annotations

from pathlib import Path


class VolumeError(Exception):
    """Base class: a scan could not be discovered or loaded.  ``path`` names the offending file/folder."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        super().__init__(f"{message} [{path}]" if path is not None else message)


class UnreadableFileError(VolumeError):
    """Not a readable image/DICOM file (permission denied, zero bytes, garbage, a directory loop)."""


class TruncatedFileError(VolumeError):
    """The file ends before its pixel data does."""


class NoPixelDataError(VolumeError):
    """A DICOM object without an image (SR, presentation state, DICOMDIR itself, ...)."""


class UnsupportedTransferSyntaxError(VolumeError):
    """Pixel data compressed with a transfer syntax no installed decoder handles (named in the message)."""


class UnsupportedImageError(VolumeError):
    """An image LungLens cannot interpret as CT (RGB secondary capture, palette colour, ...)."""


class InconsistentSeriesError(VolumeError):
    """Slices cannot form one volume (different sizes, duplicated positions that disagree, ...)."""


class SymlinkLoopError(UnreadableFileError):
    """Following symbolic links under the given folder loops forever."""


class LoadCancelled(VolumeError):
    """Loading was cancelled by the caller (not an error of the file)."""


class EmptyFileError(UnreadableFileError):
    """The file has zero bytes (an interrupted copy or download)."""


class MissingSlicesError(InconsistentSeriesError):
    """Gaps in the slice positions (only raised with ``load_volume(..., strict=True)``; otherwise a warning)."""


class DuplicateSlicesError(InconsistentSeriesError):
    """Two or more images share one slice position but hold different pixels (two acquisitions in one series?)."""
