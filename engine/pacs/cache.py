"""Where retrieved series land: ``<cache_root>/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``.

A retrieve writes into a hidden staging folder next to the final one and only renames it into place once
every instance arrived, so a failed, cancelled or interrupted transfer never leaves half a series where the
viewer would load it.  A small ``<SeriesUID>.complete.json`` beside the series folder records that it is
complete (and how many instances it has) so the next retrieve can reuse it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from engine.pacs.api import RetrievedSeries, check_uid
from engine.pacs.config import cache_root


class SeriesCache:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_root()

    def series_dir(self, study_uid: str, series_uid: str) -> Path:
        return self.root / check_uid(study_uid, "StudyInstanceUID") / check_uid(series_uid, "SeriesInstanceUID")

    def _marker(self, study_uid: str, series_uid: str) -> Path:
        folder = self.series_dir(study_uid, series_uid)
        return folder.parent / f"{folder.name}.complete.json"

    def lookup(self, study_uid: str, series_uid: str, expected: int | None = None) -> RetrievedSeries | None:
        """The cached series if it is complete (and has ``expected`` instances when given), else None."""
        folder = self.series_dir(study_uid, series_uid)
        marker = self._marker(study_uid, series_uid)
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        files = tuple(sorted(folder.glob("*.dcm")))
        if len(files) != info.get("n_instances") or (expected is not None and len(files) != expected):
            return None
        return RetrievedSeries(study_uid, series_uid, folder, files, from_cache=True,
                               bytes_total=sum(f.stat().st_size for f in files))

    def staging(self, study_uid: str, series_uid: str, server: str = "") -> "SeriesStaging":
        return SeriesStaging(self, study_uid, series_uid, server)

    def clear(self) -> None:
        """Delete every cached series (the cache is LungLens's own; nothing else lives there)."""
        if self.root.exists():
            shutil.rmtree(self.root)


class SeriesStaging:
    """Context manager collecting one series; ``commit()`` moves it into the cache, anything else discards."""

    def __init__(self, cache: SeriesCache, study_uid: str, series_uid: str, server: str = ""):
        self.cache = cache
        self.study_uid = check_uid(study_uid, "StudyInstanceUID", server)
        self.series_uid = check_uid(series_uid, "SeriesInstanceUID", server)
        self.server = server
        self.final = cache.series_dir(self.study_uid, self.series_uid)
        self.folder: Path | None = None
        self.written: dict[str, Path] = {}
        self.bytes_total = 0

    def __enter__(self) -> "SeriesStaging":
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f".{self.series_uid}.partial-", dir=self.final.parent))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.discard()

    def write(self, sop_uid: str, data: bytes) -> Path:
        """Write one instance (a complete DICOM file's bytes) atomically; returns its staged path."""
        assert self.folder is not None, "use SeriesStaging as a context manager"
        sop_uid = check_uid(sop_uid, "SOPInstanceUID", self.server)
        target = self.folder / f"{sop_uid}.dcm"
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
        if sop_uid not in self.written:
            self.bytes_total += len(data)
        self.written[sop_uid] = target
        return target

    @property
    def count(self) -> int:
        return len(self.written)

    def commit(self) -> RetrievedSeries:
        """Replace any previous copy of the series with the staged one and mark it complete."""
        assert self.folder is not None
        marker = self.cache._marker(self.study_uid, self.series_uid)
        marker.unlink(missing_ok=True)
        old = None
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}-{time.monotonic_ns()}")
            os.replace(self.final, old)
        os.replace(self.folder, self.final)
        self.folder = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        files = tuple(sorted(self.final.glob("*.dcm")))
        info = {"study_uid": self.study_uid, "series_uid": self.series_uid, "n_instances": len(files),
                "server": self.server, "retrieved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=1), encoding="utf-8")
        os.replace(tmp, marker)
        return RetrievedSeries(self.study_uid, self.series_uid, self.final, files, from_cache=False,
                               bytes_total=self.bytes_total)

    def discard(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
            try:  # drop the study folder again if this was its only (failed) series
                self.final.parent.rmdir()
            except OSError:
                pass
