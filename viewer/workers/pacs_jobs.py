"""Jobs of the PACS browser (run in a :class:`~viewer.workers.worker.Worker`): echo, search, retrieve, send.

Each job opens its own client (``engine.pacs.open_client``; a client is per thread) and closes it.  Progress of
a retrieve/send arrives from whatever thread does the transfer -- for DIMSE that is pynetdicom's association
thread -- and goes through ``context.progress``, i.e. the worker's Qt signal, which Qt delivers queued on the
GUI thread (and throttles).  A cancelled transfer (:class:`~engine.pacs.errors.PacsCancelled`) ends the worker
as *cancelled*, not as an error; nothing partial is left in the cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pydicom

from engine.pacs import (
    PacsCancelled, PacsServer, RetrievedSeries, SendResult, SeriesResult, StudyQuery, StudyResult,
    TransferProgress, open_client,
)
from viewer.workers.worker import JobCancelled, JobContext


def _client(server: PacsServer, cache_dir: str | Path | None):
    return open_client(server, cache_dir=cache_dir)


def _forward(context: JobContext, verb: str):
    def on_progress(report: TransferProgress) -> None:
        total = report.total
        message = f"{verb} {report.done}/{total} instances" if total else f"{verb} {report.done} instances"
        if report.message == "already in cache":
            message = "already in the cache"
        if total:
            context.progress(report.done, total, message)
        else:
            context.progress(None, None, message)
    return on_progress


def echo_job(context: JobContext, server: PacsServer) -> float:
    """Round trip of a C-ECHO (DIMSE) or a QIDO ping (DICOMweb), in seconds."""
    context.progress(None, None, f"Testing {server.name} …")
    client = _client(server, None)
    try:
        return float(client.echo())
    finally:
        client.close()


def find_studies_job(context: JobContext, server: PacsServer, query: StudyQuery) -> list[StudyResult]:
    context.progress(None, None, f"Searching {server.name} …")
    client = _client(server, None)
    try:
        studies = client.find_studies(query)
    finally:
        client.close()
    context.check()
    return sorted(studies, key=lambda s: (s.study_date, s.study_time), reverse=True)


def find_series_job(context: JobContext, server: PacsServer, study_uid: str) -> list[SeriesResult]:
    client = _client(server, None)
    try:
        series = client.find_series(study_uid)
    finally:
        client.close()
    context.check()
    return sorted(series, key=lambda s: (s.series_number is None, s.series_number or 0, s.series_description))


def retrieve_job(context: JobContext, server: PacsServer, study_uid: str, series_uid: str, *,
                 refresh: bool = False, cache_dir: str | Path | None = None) -> RetrievedSeries:
    """Fetch one series into the app's cache (reused when already complete there)."""
    context.progress(0, None, f"Retrieving from {server.name} …")
    client = _client(server, cache_dir)
    try:
        return client.retrieve_series(study_uid, series_uid, progress=_forward(context, "Retrieved"),
                                      cancel=context.is_cancelled, refresh=refresh)
    except PacsCancelled as exc:
        raise JobCancelled() from exc
    finally:
        client.close()


def send_job(context: JobContext, server: PacsServer,
             items: Sequence[pydicom.Dataset | str | Path] | Iterable[pydicom.Dataset | str | Path]) -> SendResult:
    """C-STORE / STOW-RS ``items`` (data sets or files) to ``server``."""
    items = list(items)
    context.progress(0, len(items), f"Sending to {server.name} …")
    client = _client(server, None)
    try:
        return client.send(items, progress=_forward(context, "Sent"), cancel=context.is_cancelled)
    except PacsCancelled as exc:
        raise JobCancelled() from exc
    finally:
        client.close()
