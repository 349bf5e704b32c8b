"""``open_client(server)``: the right :class:`~engine.pacs.api.PacsClient` for a configured server."""

from __future__ import annotations

from pathlib import Path

from engine.pacs.api import PacsClient
from engine.pacs.config import PacsServer


def open_client(server: PacsServer, *, cache_dir: str | Path | None = None) -> PacsClient:
    """A DICOMweb or DIMSE client for ``server``; retrieved series go under ``cache_dir`` (default: app cache)."""
    if server.protocol == "dicomweb":
        from engine.pacs.dicomweb import DicomWebClient

        return DicomWebClient(server, cache_dir=cache_dir)
    from engine.pacs.dimse import DimseClient

    return DimseClient(server, cache_dir=cache_dir)
