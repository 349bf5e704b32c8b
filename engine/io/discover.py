"""Find the loadable series under a file, a folder (recursive) or a DICOMDIR — headers only, read-only.

``discover(path)`` returns a ``SeriesList`` (a plain ``list[SeriesInfo]`` with extra attributes):
``skipped`` (how many files were ignored), ``skipped_files`` ((path, reason) pairs, capped) and ``warnings``
(symlink loops, unreadable files, ...).  Symbolic links are followed, but every directory is entered at most once,
so link loops cannot hang the scan; they are reported.  Nothing is written, moved or locked.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import threading
from collections import OrderedDict
from pathlib import Path

from engine.io.dicom_header import DicomHeader, NotDicomError, read_header
from engine.io.errors import SymlinkLoopError, UnreadableFileError, VolumeError
from engine.io.other_formats import image2d_info, itk_info, kind_of, pseudo_uid
from engine.io.volume import SeriesInfo

MAX_SKIPPED_LISTED = 200
_IGNORED_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "dicomdir", "lockfile", "version"}


class SeriesList(list):
    """``list[SeriesInfo]`` plus what discovery skipped and why."""

    def __init__(self, items=(), skipped: int = 0, skipped_files=None, warnings=None):
        super().__init__(items)
        self.skipped = skipped
        self.skipped_files: list[tuple[Path, str]] = list(skipped_files or [])
        self.warnings: list[str] = list(warnings or [])


# ---------------------------------------------------------------------------------------------- header cache
_CACHE: OrderedDict[str, DicomHeader] = OrderedDict()
_CACHE_MAX = 50_000
_CACHE_LOCK = threading.Lock()     # discover (GUI thread) and load_volume (worker thread) may run at once


def cached_header(path: Path, st: os.stat_result | None = None) -> DicomHeader:
    """``read_header`` with a cache keyed by path, size and mtime (discover, then load, parses each file once)."""
    key = str(path)
    if st is None:
        try:
            st = os.stat(path)
        except OSError:
            st = None
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None and st is not None and hit.size == st.st_size and hit.mtime_ns == st.st_mtime_ns:
            _CACHE.move_to_end(key)
            return hit
    h = read_header(path)
    with _CACHE_LOCK:
        _CACHE[key] = h
        if len(_CACHE) > _CACHE_MAX:
            _CACHE.popitem(last=False)
    return h


def clear_header_cache() -> None:
    """Forget cached headers (benchmarks; files are re-validated by size+mtime anyway)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# ---------------------------------------------------------------------------------------------- walking
def _walk(root: Path, warnings: list[str]):
    """Yield (path, stat) of regular files under root, following links, entering each directory once."""
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    try:
        st = os.stat(root)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SymlinkLoopError("The folder is a symbolic link that loops back on itself", root) from exc
        raise UnreadableFileError(f"Cannot open folder ({exc.strerror})", root) from exc
    seen_dirs.add((st.st_dev, st.st_ino))
    stack = [(root, (st.st_dev, st.st_ino), frozenset([(st.st_dev, st.st_ino)]))]
    while stack:
        folder, _, ancestors = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            warnings.append(f"Cannot list folder {folder} ({exc.strerror}); skipped")
            continue
        subdirs = []
        for entry in entries:
            p = Path(entry.path)
            try:
                est = entry.stat(follow_symlinks=True)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    warnings.append(f"Symbolic link loop at {p}; not followed")
                    yield p, None, "symbolic link loop"
                else:
                    yield p, None, f"unreadable ({exc.strerror or exc})"
                continue
            key = (est.st_dev, est.st_ino)
            if stat_mod.S_ISDIR(est.st_mode):
                if key in ancestors:
                    warnings.append(f"Symbolic link loop: {p} points back to {os.path.realpath(p)}; not followed")
                    continue
                if key in seen_dirs:
                    continue      # the same folder reached twice through links: scan it once
                seen_dirs.add(key)
                subdirs.append((p, key, ancestors | {key}))
            elif stat_mod.S_ISREG(est.st_mode):
                if key in seen_files:
                    continue      # the same file through another link
                seen_files.add(key)
                yield p, est, None
            else:
                yield p, None, "not a regular file"
        stack.extend(reversed(subdirs))


def _dicomdir_files(path: Path, warnings: list[str]) -> list[Path]:
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise UnreadableFileError(f"Cannot read DICOMDIR ({exc})", path) from exc
    files = []
    base = path.parent
    for rec in ds.get("DirectoryRecordSequence", []):
        ref = rec.get("ReferencedFileID")
        if not ref:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        p = base.joinpath(*[str(x) for x in parts])
        if not p.exists():
            # media written on case-insensitive file systems: try a case-insensitive match
            alt = _case_insensitive(base, [str(x) for x in parts])
            if alt is None:
                warnings.append(f"DICOMDIR references a missing file {p}")
                continue
            p = alt
        files.append(p)
    return files


def _case_insensitive(base: Path, parts: list[str]) -> Path | None:
    cur = base
    for part in parts:
        try:
            match = [e for e in os.listdir(cur) if e.lower() == part.lower()]
        except OSError:
            return None
        if not match:
            return None
        cur = cur / match[0]
    return cur


def is_dicomdir(path: Path) -> bool:
    if path.name.upper() == "DICOMDIR":
        return True
    return False


# ---------------------------------------------------------------------------------------------- scanning
class Scan:
    """Result of scanning a path: DICOM headers grouped by series plus non-DICOM series."""

    def __init__(self):
        self.dicom: dict[str, list[DicomHeader]] = {}
        self.others: list[SeriesInfo] = []
        self.skipped: list[tuple[Path, str]] = []
        self.n_skipped = 0
        self.warnings: list[str] = []
        self.errors: list[VolumeError] = []
        self.no_pixels: list[Path] = []

    def skip(self, path: Path, reason: str) -> None:
        self.n_skipped += 1
        if len(self.skipped) < MAX_SKIPPED_LISTED:
            self.skipped.append((path, reason))


def _add_file(scan: Scan, path: Path, st: os.stat_result | None, from_folder: bool) -> None:
    kind = kind_of(path)
    try:
        if kind in ("nifti", "itk"):
            if path.name.lower().endswith(".raw"):
                return
            scan.others.append(itk_info(path, kind))
            return
        if kind == "image2d":
            scan.others.append(image2d_info(path))
            return
        if path.name.lower() in _IGNORED_NAMES or path.name.startswith("."):
            if is_dicomdir(path) and from_folder:
                return            # the folder's files are scanned directly
            if path.name.startswith(".") or path.name.lower() in _IGNORED_NAMES - {"dicomdir"}:
                scan.skip(path, "system file")
                return
        h = cached_header(path, st)
    except NotDicomError:
        scan.skip(path, "not DICOM or a supported image format")
        return
    except VolumeError as exc:
        scan.skip(path, str(exc))
        scan.errors.append(exc)
        return
    if h.is_dicomdir:
        if from_folder:
            return
        scan.skip(path, "DICOMDIR index")
        return
    if not h.has_pixels:
        scan.skip(path, "DICOM object without pixel data (report, presentation state, ...)")
        scan.no_pixels.append(path)
        return
    key = h.series_uid or f"nouid:{h.study_uid}:{h.frame_uid}:{path.parent}"
    scan.dicom.setdefault(key, []).append(h)


def scan_path(path: str | Path) -> Scan:
    path = Path(path)
    scan = Scan()
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SymlinkLoopError("The path is a symbolic link that loops back on itself", path) from exc
        raise UnreadableFileError(f"Cannot open ({exc.strerror or exc}); check the path exists", path) from exc
    if stat_mod.S_ISDIR(st.st_mode):
        for p, pst, reason in _walk(path, scan.warnings):
            if reason is not None:
                scan.skip(p, reason)
                continue
            _add_file(scan, p, pst, from_folder=True)
    elif is_dicomdir(path):
        for p in _dicomdir_files(path, scan.warnings):
            _add_file(scan, p, None, from_folder=True)
    else:
        _add_file(scan, path, st, from_folder=False)
    return scan


def series_info(key: str, headers: list[DicomHeader]) -> SeriesInfo:
    h0 = headers[0]

    def order(h: DicomHeader):
        return (h.instance if h.instance is not None else 0, str(h.path))

    headers = sorted(headers, key=order)
    n = sum(max(1, h.frames) for h in headers)
    warnings = []
    modality = h0.modality
    if modality and modality != "CT":
        warnings.append(f"Modality {modality}, not CT")
    from engine.io.dicom_header import RETIRED_JPEG
    retired = {h.transfer_syntax for h in headers if h.transfer_syntax in RETIRED_JPEG}
    for ts in retired:
        warnings.append(f"Transfer syntax {ts} ({RETIRED_JPEG[ts]}) cannot be decoded")
    if any(h.samples != 1 for h in headers):
        warnings.append("Colour images (secondary capture?) — not CT data")
    return SeriesInfo(uid=h0.series_uid or key, kind="dicom", paths=tuple(h.path for h in headers), n_slices=n,
                      shape=(n, h0.rows, h0.cols), modality=modality,
                      description=str(h0.meta.get("SeriesDescription", "") or ""), study_uid=h0.study_uid,
                      warnings=tuple(warnings))


def discover(path: str | Path) -> SeriesList:
    """All loadable series under ``path`` (file, folder or DICOMDIR); headers only.

    Raises ``UnreadableFileError`` / ``SymlinkLoopError`` when ``path`` itself cannot be opened.  Files that are
    not images are skipped and counted (``result.skipped``).
    """
    scan = scan_path(path)
    items = [series_info(k, hs) for k, hs in scan.dicom.items()]
    items.sort(key=lambda s: (s.study_uid, s.description, s.uid))
    items.extend(sorted(scan.others, key=lambda s: str(s.paths[0])))
    warnings = list(scan.warnings)
    if scan.n_skipped:
        warnings.append(f"{scan.n_skipped} file(s) skipped (not images, or unreadable)")
    return SeriesList(items, skipped=scan.n_skipped, skipped_files=scan.skipped, warnings=warnings)


__all__ = ["discover", "SeriesList", "scan_path", "cached_header", "clear_header_cache", "pseudo_uid"]
