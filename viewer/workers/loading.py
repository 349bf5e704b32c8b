"""Jobs that open scans for the viewer: discover series under paths, pick one, load it (run in a Worker).

They call ``engine.io`` only (one road for viewer, CLI and batch screening) and add the viewer's policy:
several dropped files/folders are merged, and the default series is the largest CT-like one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.io.errors import VolumeError
from engine.io.volume import SeriesInfo, Volume
from viewer.workers.worker import JobContext

ACCEPTED_HINT = ("LungLens opens DICOM series (files, folders, DICOMDIR), NIfTI (.nii, .nii.gz), NRRD/MHA "
                 "and PNG/JPEG slices.")


class NoSeriesFoundError(VolumeError):
    """Nothing loadable was found under the given path(s)."""


@dataclass
class Discovery:
    """Series found under one or more paths, and what was skipped (non-image or unreadable files)."""

    series: list[SeriesInfo]
    skipped: int = 0
    skipped_files: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class OpenResult:
    """What ``open_paths_job`` found and loaded."""

    paths: tuple[Path, ...]
    discovery: Discovery
    chosen: SeriesInfo
    volume: Volume
    seconds: float = 0.0

    @property
    def series(self) -> list[SeriesInfo]:
        return self.discovery.series


def discover_all(paths: Iterable[str | Path], context: JobContext | None = None) -> Discovery:
    """``engine.io.discover`` over every path; a DICOM series split across several dropped paths is merged."""
    from engine.io import discover

    merged: dict[tuple[str, str], SeriesInfo] = {}
    found = Discovery([])
    for path in paths:
        if context is not None:
            context.check()
            context.progress(None, None, f"Scanning {Path(path).name or path} …")
        listing = discover(Path(path))
        found.skipped += getattr(listing, "skipped", 0)
        found.skipped_files += list(getattr(listing, "skipped_files", []))
        found.warnings += list(getattr(listing, "warnings", []))
        for info in listing:
            key = (info.kind, info.uid)
            if key in merged and info.kind == "dicom":
                old = merged[key]
                new_paths = tuple(dict.fromkeys(old.paths + info.paths))
                merged[key] = dataclasses.replace(old, paths=new_paths, n_slices=len(new_paths),
                                                  shape=None, warnings=old.warnings + info.warnings)
            else:
                merged.setdefault(key, info)
    found.series = list(merged.values())
    return found


def choose_default_series(series: Sequence[SeriesInfo]) -> SeriesInfo:
    """The series a radiologist most likely wants first: CT before other modalities, then the most slices."""
    if not series:
        raise ValueError("no series to choose from")
    return max(series, key=lambda s: ((s.modality or "CT").upper() == "CT", s.n_slices))


def load_series(series: SeriesInfo | str | Path, context: JobContext | None = None) -> Volume:
    """``engine.io.load_volume`` with the worker's progress (fraction) and cancel hooks."""
    from engine.io import load_volume

    if context is None:
        return load_volume(series)
    context.check()
    return load_volume(series, progress=context.progress, cancel=context.is_cancelled)


def require_series(paths: Sequence[Path], found: Discovery) -> None:
    """Raise the most specific error when nothing loadable was found.

    A single file that discovery skipped is loaded directly so the reader's own error (empty, truncated,
    unsupported transfer syntax, ...) reaches the user instead of a generic "nothing found".
    """
    if found.series:
        return
    if len(paths) == 1 and paths[0].is_file():
        load_series(paths[0])          # raises the specific VolumeError
    reasons = "; ".join(f"{p.name}: {why}" for p, why in found.skipped_files[:3])
    more = f" (and {found.skipped - 3} more)" if found.skipped > 3 else ""
    skipped = f" Skipped {found.skipped} file(s): {reasons}{more}." if found.skipped else ""
    where = ", ".join(str(p) for p in paths)
    raise NoSeriesFoundError(f"No loadable images found.{skipped} {ACCEPTED_HINT}", where)


def open_paths_job(context: JobContext, paths: Sequence[str | Path]) -> OpenResult:
    """Discover series under ``paths``, choose the default one and load it."""
    started = time.perf_counter()
    paths = tuple(Path(p) for p in paths)
    found = discover_all(paths, context)
    require_series(paths, found)
    chosen = choose_default_series(found.series)
    context.progress(0.0, None, f"Loading {chosen.label} …")
    volume = load_series(chosen, context)
    return OpenResult(paths, found, chosen, volume, time.perf_counter() - started)


def load_series_job(context: JobContext, series: SeriesInfo) -> Volume:
    context.progress(0.0, None, f"Loading {series.label} …")
    return load_series(series, context)


def open_demo_job(context: JobContext) -> OpenResult:
    """Generate (first run only, then cached) and open the bundled synthetic chest CT."""
    from engine.phantom import demo_scan_path

    context.progress(None, None, "Preparing the demo scan (generated on first run, then cached) …")
    path = demo_scan_path()
    context.check()
    return open_paths_job(context, [path])
