"""The typed API every PACS client implements (DICOMweb and DIMSE alike) and the values it returns.

A viewer dialog drives a :class:`PacsClient` from a worker thread::

    client = open_client(server)                      # engine.pacs.open_client
    studies = client.find_studies(StudyQuery(patient_name="DOE", modality="CT"))
    series = client.find_series(studies[0].study_uid)
    got = client.retrieve_series(series[0].study_uid, series[0].series_uid,
                                 progress=on_progress, cancel=stop_event)   # threading.Event or callable
    volume = engine.io.load(got.folder)               # a folder in the app's cache

``progress`` receives a :class:`TransferProgress` after every instance, from the thread doing the transfer
(for DIMSE that is pynetdicom's association thread, not the caller's): a GUI forwards it with a queued
signal and throttles it.  ``cancel`` is polled between instances (a ``threading.Event`` or any
``() -> bool``); a cancelled operation raises :class:`~engine.pacs.errors.PacsCancelled` and leaves nothing
partial behind.  A client is cheap: use one per worker thread (the DICOMweb one holds a requests.Session).
Every failure is a :class:`~engine.pacs.errors.PacsError` whose ``str()`` is the message to show.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Union, runtime_checkable

import pydicom

from engine.pacs.config import PacsServer
from engine.pacs.errors import PacsCancelled, PacsConfigError, PacsProtocolError


@dataclass(frozen=True)
class TransferProgress:
    """One progress report: ``done`` of ``total`` instances (``total`` None when unknown)."""

    done: int
    total: int | None
    stage: str                 # "retrieve" | "send"
    message: str = ""
    bytes_done: int = 0

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


ProgressCallback = Callable[[TransferProgress], None]
CancelLike = Union[Callable[[], bool], "threading.Event", None]  # noqa: F821  (duck-typed: .is_set())


def as_cancel_check(cancel: object) -> Callable[[], bool]:
    """Normalise ``cancel`` (None, a threading.Event-like object, or a callable) to ``() -> bool``."""
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set  # type: ignore[union-attr,return-value]
    if callable(cancel):
        return lambda: bool(cancel())
    raise TypeError(f"cancel must be a threading.Event, a callable returning bool, or None; got {cancel!r}")


def raise_if_cancelled(check: Callable[[], bool], what: str, server: str | None) -> None:
    if check():
        raise PacsCancelled(f"{what} cancelled", server)


_DATE_RE = re.compile(r"^\d{8}$")


def _dicom_date(value: str | _dt.date | None, what: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, _dt.date):
        return value.strftime("%Y%m%d")
    text = str(value).strip().replace("-", "")
    if not _DATE_RE.match(text):
        raise PacsConfigError(f"{what} {value!r} is not a date; use YYYYMMDD or YYYY-MM-DD")
    try:
        _dt.datetime.strptime(text, "%Y%m%d")
    except ValueError as exc:
        raise PacsConfigError(f"{what} {value!r} is not a valid calendar date") from exc
    return text


@dataclass(frozen=True)
class StudyQuery:
    """Study search criteria; empty fields match everything.

    ``patient_name`` without ``*``/``?`` matches names that start with it (``"DOE"`` finds ``DOE^JANE``);
    dates are inclusive, as ``YYYYMMDD``, ``YYYY-MM-DD`` or :class:`datetime.date`.
    """

    patient_name: str = ""
    patient_id: str = ""
    study_date_from: str | _dt.date | None = None
    study_date_to: str | _dt.date | None = None
    modality: str = ""
    accession_number: str = ""
    study_uid: str = ""
    study_description: str = ""
    limit: int = 200

    def name_pattern(self) -> str:
        name = self.patient_name.strip()
        if name and not any(c in name for c in "*?"):
            name += "*"
        return name

    def date_range(self) -> str:
        start = _dicom_date(self.study_date_from, "study_date_from")
        end = _dicom_date(self.study_date_to, "study_date_to")
        if start and end and start > end:
            raise PacsConfigError(f"study date range is empty: {start} is after {end}")
        if not start and not end:
            return ""
        if start == end:
            return start
        return f"{start}-{end}"


@dataclass(frozen=True)
class StudyResult:
    study_uid: str
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""       # YYYYMMDD
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    modalities: tuple[str, ...] = ()
    n_series: int | None = None
    n_instances: int | None = None


@dataclass(frozen=True)
class SeriesResult:
    study_uid: str
    series_uid: str
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""
    body_part: str = ""
    n_instances: int | None = None


@dataclass(frozen=True)
class RetrievedSeries:
    """A series now complete in the cache: ``folder`` holds exactly ``files`` (one per instance)."""

    study_uid: str
    series_uid: str
    folder: Path
    files: tuple[Path, ...]
    from_cache: bool = False
    bytes_total: int = 0

    @property
    def n_instances(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class SendResult:
    stored: tuple[str, ...]                    # SOP Instance UIDs the server accepted
    warnings: dict[str, str] = field(default_factory=dict)  # SOP UID -> warning (stored anyway)


@runtime_checkable
class PacsClient(Protocol):
    """What the viewer's PACS browser (and the CLI) need from any server, DICOMweb or DIMSE."""

    server: PacsServer

    def echo(self) -> float:
        """Check the server answers (C-ECHO or a QIDO ping); returns the round trip in seconds."""

    def find_studies(self, query: StudyQuery) -> list[StudyResult]:
        ...

    def find_series(self, study_uid: str) -> list[SeriesResult]:
        ...

    def retrieve_series(self, study_uid: str, series_uid: str, *, progress: ProgressCallback | None = None,
                        cancel: CancelLike = None, refresh: bool = False) -> RetrievedSeries:
        """Fetch every instance of the series into the cache (re-used when complete and ``refresh`` is False)."""

    def send(self, items: Iterable[str | Path | pydicom.Dataset], *, progress: ProgressCallback | None = None,
             cancel: CancelLike = None) -> SendResult:
        """Store DICOM files/datasets on the server (C-STORE / STOW-RS)."""

    def close(self) -> None:
        ...


_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def check_uid(value: object, what: str, server: str | None = None) -> str:
    """A DICOM UID as sent by a server; refuses anything that could escape a cache folder."""
    text = str(value or "").strip().rstrip("\x00")
    if not text or len(text) > 64 or not _UID_RE.match(text):
        raise PacsProtocolError(f"the server sent an invalid {what}: {value!r}", server)
    return text


@dataclass(frozen=True)
class SendItem:
    """One instance to send: its header facts now, the full data set (pixels) only when sent."""

    label: str                         # the file path, or "dataset <SOPInstanceUID>"
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    path: Path | None = None
    dataset: pydicom.Dataset | None = None

    def load(self) -> pydicom.Dataset:
        from engine.pacs.errors import PacsError

        if self.dataset is not None:
            return self.dataset
        try:
            return pydicom.dcmread(self.path)
        except Exception as exc:
            raise PacsError(f"cannot send {self.path}: it became unreadable ({exc})") from exc

    def encoded(self) -> bytes:
        """The complete DICOM file (a file on disk is sent exactly as stored)."""
        if self.path is not None:
            return self.path.read_bytes()
        import io

        buffer = io.BytesIO()
        self.dataset.save_as(buffer, enforce_file_format=True)  # type: ignore[union-attr]
        return buffer.getvalue()


def load_send_items(items: Iterable[str | Path | pydicom.Dataset]) -> list[SendItem]:
    """Expand files/folders/datasets for sending (headers only: pixel data are read one at a time when sent).

    A folder contributes every DICOM instance under it (non-DICOM files and DICOMDIRs are skipped); a file
    that is not DICOM is an error naming it.
    """
    from engine.pacs.errors import PacsError

    out: list[SendItem] = []
    for item in items:
        if isinstance(item, pydicom.Dataset):
            meta = getattr(item, "file_meta", None)
            ts = str(getattr(meta, "TransferSyntaxUID", "") or "1.2.840.10008.1.2.1")
            if "SOPInstanceUID" not in item or "SOPClassUID" not in item:
                raise PacsError("cannot send a data set without SOP Class/Instance UID")
            out.append(SendItem(f"dataset {item.SOPInstanceUID}", str(item.SOPClassUID),
                                str(item.SOPInstanceUID), ts, dataset=item))
            continue
        path = Path(item)
        if not path.exists():
            raise PacsError(f"cannot send {path}: no such file or folder")
        in_folder = path.is_dir()
        paths = sorted(p for p in path.rglob("*") if p.is_file()) if in_folder else [path]
        for p in paths:
            try:
                ds = pydicom.dcmread(p, stop_before_pixels=True)
            except Exception as exc:  # pydicom raises several types for non-DICOM files
                if in_folder:
                    continue  # a folder may hold non-DICOM files (README, thumbnails)
                raise PacsError(f"cannot send {p}: not a readable DICOM file ({exc})") from exc
            if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds or \
                    ds.SOPClassUID == "1.2.840.10008.1.3.10":  # no instance, or a DICOMDIR
                if in_folder:
                    continue
                raise PacsError(f"cannot send {p}: it is not an image/instance (no SOP Instance UID, or a DICOMDIR)")
            ts = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "1.2.840.10008.1.2")
            out.append(SendItem(str(p), str(ds.SOPClassUID), str(ds.SOPInstanceUID), ts, path=p))
    if not out:
        raise PacsError("nothing to send: no DICOM instances found in the given files/folders")
    return out
