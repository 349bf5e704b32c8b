"""``load_volume``: read one series (a path or a ``SeriesInfo`` from ``discover``) into a ``Volume``.

``progress(fraction)`` is called from the calling thread as slices arrive; ``cancel()`` is polled and, when it
returns True, loading stops with ``LoadCancelled``.  Both are optional.  With ``strict=True`` missing slices are
an error (``MissingSlicesError``) instead of a warning.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from pathlib import Path
from typing import Callable

from engine.io.dicom_header import NotDicomError
from engine.io.dicom_series import load_dicom_series
from engine.io.discover import cached_header, is_dicomdir, scan_path, series_info
from engine.io.errors import LoadCancelled, NoPixelDataError, SymlinkLoopError, UnreadableFileError
from engine.io.other_formats import kind_of, load_image2d, load_itk
from engine.io.volume import SeriesInfo, Volume


def load_volume(path_or_series: str | Path | SeriesInfo, progress: Callable[[float], None] | None = None,
                cancel: Callable[[], bool] | None = None, *, strict: bool = False) -> Volume:
    """Load a CT volume in HU.  A folder/DICOMDIR with several series loads the one with the most slices
    (noted in ``Volume.warnings``); use ``discover`` to choose."""
    if cancel is not None and cancel():
        raise LoadCancelled("Loading cancelled")
    if isinstance(path_or_series, SeriesInfo):
        vol = _load_series(path_or_series, progress, cancel, strict)
    else:
        vol = _load_path(Path(path_or_series), progress, cancel, strict)
    if progress is not None:
        progress(1.0)
    return vol


def _load_series(info: SeriesInfo, progress, cancel, strict) -> Volume:
    if info.kind == "dicom":
        headers = []
        for p in info.paths:
            try:
                headers.append(cached_header(Path(p)))
            except NotDicomError as exc:
                raise UnreadableFileError("The file is no longer a DICOM file", p) from exc
        return load_dicom_series(headers, progress, cancel, strict)
    if info.kind in ("nifti", "itk"):
        return load_itk(Path(info.paths[0]), info.kind)
    if info.kind == "image2d":
        return load_image2d(Path(info.paths[0]))
    raise ValueError(f"unknown SeriesInfo.kind {info.kind!r}")


def _load_path(path: Path, progress, cancel, strict) -> Volume:
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SymlinkLoopError("The path is a symbolic link that loops back on itself", path) from exc
        raise UnreadableFileError(f"Cannot open ({exc.strerror or exc}); check the path exists", path) from exc
    if stat_mod.S_ISDIR(st.st_mode) or is_dicomdir(path):
        return _load_folder(path, progress, cancel, strict)
    kind = kind_of(path)
    if kind in ("nifti", "itk"):
        return load_itk(path, kind)
    if kind == "image2d":
        return load_image2d(path)
    try:
        h = cached_header(path, st)
    except NotDicomError as exc:
        raise UnreadableFileError("Not a DICOM, NIfTI, NRRD/MHA or PNG/JPEG file", path) from exc
    if h.is_dicomdir:
        return _load_folder(path, progress, cancel, strict)
    return load_dicom_series([h], progress, cancel, strict)


def _load_folder(path: Path, progress, cancel, strict) -> Volume:
    scan = scan_path(path)
    if scan.dicom:
        # the series with the most slices (CT first)
        key, headers = max(scan.dicom.items(),
                           key=lambda kv: (kv[1][0].modality == "CT", sum(max(1, h.frames) for h in kv[1])))
        vol = load_dicom_series(headers, progress, cancel, strict)
        n_series = len(scan.dicom) + len(scan.others)
        if n_series > 1:
            info = series_info(key, headers)
            vol.warnings.insert(0, f"{path} holds {n_series} series; loaded '{info.label}' (the largest). "
                                   "Use the series browser / discover() to pick another")
        for err in scan.errors[:3]:
            vol.warnings.append(f"Skipped a bad file: {type(err).__name__}: {err}")
        if scan.n_skipped:
            vol.warnings.append(f"{scan.n_skipped} file(s) in the folder skipped (not images, or unreadable)")
        return vol
    if scan.others:
        first = sorted(scan.others, key=lambda s: str(s.paths[0]))[0]
        vol = _load_series(first, progress, cancel, strict)
        if len(scan.others) > 1:
            vol.warnings.insert(0, f"{path} holds {len(scan.others)} images/volumes; loaded {first.paths[0].name}")
        return vol
    if scan.errors:
        raise scan.errors[0]
    if scan.no_pixels:
        raise NoPixelDataError(f"The folder holds {len(scan.no_pixels)} DICOM object(s), none with an image "
                               "(reports, presentation states, ...); open the image series instead", path)
    if any("loop" in w for w in scan.warnings):
        raise SymlinkLoopError("Only symbolic link loops and no images were found in the folder", path)
    raise UnreadableFileError(
        f"No DICOM, NIfTI, NRRD/MHA or PNG/JPEG image found ({scan.n_skipped} other file(s) skipped); "
        "choose the folder that holds the scan", path)


__all__ = ["load_volume"]
