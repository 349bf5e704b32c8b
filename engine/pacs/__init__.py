"""DICOM networking: DICOMweb (QIDO-RS/WADO-RS/STOW-RS) and DIMSE (C-ECHO/C-FIND/C-GET/C-MOVE/C-STORE) clients.

Public API (Qt-free; a viewer dialog runs it in a worker thread with progress/cancel callbacks)::

    from engine.pacs import PacsServer, StudyQuery, open_client, load_servers
    client = open_client(load_servers()[0])
    studies = client.find_studies(StudyQuery(patient_name="DOE", modality="CT"))
    got = client.retrieve_series(study_uid, series_uid, progress=cb, cancel=event)  # -> RetrievedSeries
    client.send([sc_dataset_or_path])                                                # C-STORE / STOW-RS

Every failure is a :class:`PacsError` subclass whose message says what happened and what to do.
"""

from engine.pacs.api import (
    PacsClient, RetrievedSeries, SendResult, SeriesResult, StudyQuery, StudyResult, TransferProgress,
)
from engine.pacs.cache import SeriesCache
from engine.pacs.client import open_client
from engine.pacs.config import (
    PacsServer, cache_root, config_dir, get_server, load_servers, remove_server, save_servers, servers_path,
    upsert_server,
)
from engine.pacs.errors import (
    AssociationRejectedError, PacsAuthError, PacsCancelled, PacsConfigError, PacsError, PacsProtocolError,
    PacsTimeoutError, PacsTlsError, RemoteNotFoundError, SendRejectedError, SeriesVanishedError,
    ServerUnreachableError, TransferIncompleteError,
)

__all__ = [
    "AssociationRejectedError", "PacsAuthError", "PacsCancelled", "PacsClient", "PacsConfigError", "PacsError",
    "PacsProtocolError", "PacsServer", "PacsTimeoutError", "PacsTlsError", "RemoteNotFoundError",
    "RetrievedSeries", "SendRejectedError", "SendResult", "SeriesCache", "SeriesResult", "SeriesVanishedError",
    "ServerUnreachableError", "StudyQuery", "StudyResult", "TransferIncompleteError", "TransferProgress",
    "cache_root", "config_dir", "get_server", "load_servers", "open_client", "remove_server", "save_servers",
    "servers_path", "upsert_server",
]
