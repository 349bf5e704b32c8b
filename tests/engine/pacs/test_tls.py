"""TLS where the server supports it: DICOMweb over https and DICOM TLS against an Orthanc with both enabled
(a throw-away CA made with openssl), and clear messages when one side speaks TLS and the other does not."""

from __future__ import annotations

import shutil

import pytest

from engine.pacs import PacsTlsError, PacsProtocolError, StudyQuery, open_client
from tests.engine.pacs.conftest import IN_CI, _require_orthanc
from tests.engine.pacs.dicom_factory import write_series
from tests.engine.pacs.orthanc_server import OrthancServer, make_tls_files


@pytest.fixture(scope="module")
def tls_orthanc(tmp_path_factory):
    _require_orthanc()
    if shutil.which("openssl") is None:
        if IN_CI:
            pytest.fail("the openssl command is needed to make test certificates")
        pytest.skip("the openssl command is not installed")
    work = tmp_path_factory.mktemp("orthanc-tls")
    server = OrthancServer(work, tls=make_tls_files(work / "pki"))
    server.start()
    try:
        series = write_series(work / "series", patient_name="TLS^PATIENT", patient_id="LL-TLS",
                              study_date="20230101", n_slices=3)
        server.upload(series.paths)
        yield server, series
    finally:
        server.stop(grace_s=0)  # temporary storage: no need for Orthanc's 3 s clean shutdown


@pytest.mark.parametrize("kind", ["dicomweb", "dimse"])
def test_search_and_retrieve_over_tls(tls_orthanc, kind):
    orthanc, series = tls_orthanc
    server = orthanc.dicomweb_server() if kind == "dicomweb" else orthanc.dimse_server(retrieve="get")
    assert server.uses_tls
    client = open_client(server)
    assert client.echo() < 5.0
    found = client.find_studies(StudyQuery(patient_id="LL-TLS"))
    assert [s.study_uid for s in found] == [series.study_uid]
    got = client.retrieve_series(series.study_uid, series.series_uid)
    assert sorted(p.name for p in got.files) == sorted(f"{u}.dcm" for u in series.sop_uids)


@pytest.mark.parametrize("kind", ["dicomweb", "dimse"])
def test_untrusted_certificate_is_a_tls_error(tls_orthanc, kind):
    orthanc, _series = tls_orthanc
    server = (orthanc.dicomweb_server(tls_ca_file="") if kind == "dicomweb"
              else orthanc.dimse_server(tls_ca_file=""))  # system CA store: does not know our test CA
    with pytest.raises(PacsTlsError) as info:
        open_client(server).echo()
    assert "certificate verify failed" in str(info.value).lower() and "CA file" in str(info.value)


def test_plain_client_against_tls_port_and_vice_versa(tls_orthanc, orthanc):
    tls_server, _series = tls_orthanc
    with pytest.raises(PacsProtocolError, match="expects DICOM TLS"):
        open_client(tls_server.dimse_server(tls=False, tls_ca_file="", timeout_s=3.0)).echo()
    with pytest.raises(PacsTlsError, match="TLS handshake"):
        open_client(orthanc.dimse_server(tls=True, tls_verify=False, timeout_s=3.0)).echo()
