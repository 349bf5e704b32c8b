"""Failures against a real Orthanc give specific, actionable messages and never leave half a series behind:
server down, wrong AE titles, a hung server (timeout), a study deleted while it is being transferred."""

from __future__ import annotations

import time

import pytest

from engine.pacs import (
    AssociationRejectedError, PacsTimeoutError, RemoteNotFoundError, SeriesVanishedError, ServerUnreachableError,
    StudyQuery, cache_root, open_client,
)
from tests.engine.pacs.conftest import client_server
from tests.engine.pacs.orthanc_server import free_port


def _cache_is_clean(study_uid: str) -> bool:
    study_dir = cache_root() / study_uid
    return not study_dir.exists() or not any(study_dir.iterdir())


@pytest.mark.parametrize("kind", ["dicomweb", "dimse"])
def test_server_down(orthanc, kind):
    port = free_port()  # nothing listens there
    server = (orthanc.dicomweb_server(url=f"http://127.0.0.1:{port}/dicom-web") if kind == "dicomweb"
              else orthanc.dimse_server(port=port))
    client = open_client(server)
    for call in (client.echo, lambda: client.find_studies(StudyQuery(patient_name="DOE"))):
        with pytest.raises(ServerUnreachableError) as info:
            call()
        message = str(info.value)
        assert f"127.0.0.1:{port}" in message
        assert "connection refused" in message.lower() and "running" in message
        assert info.value.server == server.name


def test_wrong_called_ae_title(orthanc):
    client = open_client(orthanc.dimse_server(called_ae="NOT_ORTHANC"))
    with pytest.raises(AssociationRejectedError) as info:
        client.echo()
    message = str(info.value)
    assert "called AE title is not recognised" in message and "'NOT_ORTHANC'" in message
    assert "rejected the association" in message


def test_calling_ae_title_not_registered(orthanc, studies):
    """Orthanc answers C-ECHO to anyone but aborts a C-FIND from an AE it does not know."""
    client = open_client(orthanc.dimse_server(calling_ae="STRANGER"))
    assert client.echo() < 5.0
    with pytest.raises(AssociationRejectedError) as info:
        client.find_studies(StudyQuery(patient_name="DOE"))
    assert "'STRANGER'" in str(info.value) and "register" in str(info.value)
    with pytest.raises(AssociationRejectedError):
        client.retrieve_series(studies["jane"].study_uid, studies["jane"].series_uid)
    assert _cache_is_clean(studies["jane"].study_uid)


@pytest.mark.parametrize("kind", ["dicomweb", "dimse"])
def test_hung_server_times_out(orthanc, kind):
    client = open_client(client_server(orthanc, kind, timeout_s=1.0))
    start = time.monotonic()
    with orthanc.paused():
        with pytest.raises(PacsTimeoutError) as info:
            client.echo()
    assert time.monotonic() - start < 5.0  # the configured 1 s, not a hang
    assert "1 s" in str(info.value) and "timeout_s" in str(info.value)
    assert client.echo() < 5.0  # fine again once the server answers


@pytest.mark.parametrize("kind", ["dicomweb", "dimse-get"])
def test_server_hangs_mid_transfer(orthanc, own_study, kind):
    client = open_client(client_server(orthanc, kind, timeout_s=1.0))

    def freeze_after_two(progress):
        if progress.done == 2:
            orthanc.pause()

    try:
        with pytest.raises(PacsTimeoutError):
            client.retrieve_series(own_study.study_uid, own_study.series_uid, progress=freeze_after_two)
    finally:
        orthanc.resume()
    assert _cache_is_clean(own_study.study_uid)


@pytest.mark.parametrize("kind", ["dicomweb", "dimse-get", "dimse-move"])
def test_study_deleted_mid_transfer(orthanc, own_study, kind):
    client = open_client(client_server(orthanc, kind))

    def delete_after_two(progress):
        if progress.done == 2:
            assert orthanc.delete_study(own_study.study_uid)

    with pytest.raises(SeriesVanishedError) as info:
        client.retrieve_series(own_study.study_uid, own_study.series_uid, progress=delete_after_two)
    message = str(info.value)
    assert "deleted" in message and "during the transfer" in message and "received 2 of 8" in message
    assert "nothing was kept in the cache" in message
    assert (info.value.received, info.value.expected) == (2, 8)
    assert isinstance(info.value, RemoteNotFoundError)
    assert _cache_is_clean(own_study.study_uid)
    # and asking again says plainly that it is gone
    with pytest.raises(RemoteNotFoundError, match="is not on the"):
        client.retrieve_series(own_study.study_uid, own_study.series_uid)


def test_wrong_dicomweb_path(orthanc):
    client = open_client(orthanc.dicomweb_server(url=f"{orthanc.url}/not-dicom-web"))
    with pytest.raises(RemoteNotFoundError, match="HTTP 404"):
        client.echo()
