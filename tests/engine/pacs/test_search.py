"""Search a real Orthanc by patient, study, date and modality, over DICOMweb (QIDO-RS) and DIMSE (C-FIND)."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.pacs import PacsClient, StudyQuery, open_client
from tests.engine.pacs.conftest import STUDY_SPECS, client_server

PROTOCOLS = ["dicomweb", "dimse"]
SYNTHETIC_IDS = {spec["patient_id"] for spec in STUDY_SPECS.values()}


def _ids(results) -> set[str]:
    """Patient IDs among our synthetic studies (other tests may add more studies to the server)."""
    return {r.patient_id for r in results} & SYNTHETIC_IDS


@pytest.fixture(params=PROTOCOLS)
def client(request, orthanc, studies):
    c = open_client(client_server(orthanc, request.param))
    yield c
    c.close()


def test_clients_implement_the_protocol(client):
    assert isinstance(client, PacsClient)
    assert client.echo() < 5.0


def test_search_by_patient_name_prefix_and_wildcard(client):
    assert _ids(client.find_studies(StudyQuery(patient_name="DOE"))) == {"LL-001", "LL-003"}
    assert _ids(client.find_studies(StudyQuery(patient_name="*JANE"))) == {"LL-001"}
    assert _ids(client.find_studies(StudyQuery(patient_name="NOBODY"))) == set()


def test_search_by_patient_id(client, studies):
    results = client.find_studies(StudyQuery(patient_id="LL-002"))
    assert len(results) == 1
    hit = results[0]
    jane = studies["richard"]
    assert hit.study_uid == jane.study_uid
    assert hit.patient_name == "ROE^RICHARD"
    assert hit.study_date == "20210601"
    assert hit.modalities == ("CT",)
    assert hit.n_series == 1 and hit.n_instances == 4
    assert hit.accession_number == "ACC-RICH"


def test_search_by_study_date_range(client):
    assert _ids(client.find_studies(StudyQuery(study_date_from="20210101", study_date_to="2021-12-31"))) == \
        {"LL-002", "LL-003"}
    assert _ids(client.find_studies(StudyQuery(study_date_from=dt.date(2020, 3, 15),
                                               study_date_to=dt.date(2020, 3, 15)))) == {"LL-001"}
    assert _ids(client.find_studies(StudyQuery(study_date_to="20201231"))) == {"LL-001"}  # open start


def test_search_by_modality_and_study_uid(client, studies):
    assert _ids(client.find_studies(StudyQuery(modality="MR"))) == {"LL-003"}
    assert _ids(client.find_studies(StudyQuery(modality="CT", patient_name="DOE"))) == {"LL-001"}
    by_uid = client.find_studies(StudyQuery(study_uid=studies["john"].study_uid))
    assert [r.patient_id for r in by_uid] == ["LL-003"]


def test_find_series_of_a_study(client, studies):
    jane = studies["jane"]
    series = client.find_series(jane.study_uid)
    assert [s.series_uid for s in series] == [jane.series_uid]
    assert series[0].modality == "CT"
    assert series[0].n_instances == 6
    assert series[0].series_description == "synthetic jane"
    assert client.find_series("1.2.3.4.5.6.7.8.9") == []


def test_bad_query_is_refused_before_any_network_call(client):
    from engine.pacs import PacsConfigError

    with pytest.raises(PacsConfigError, match="not a date"):
        client.find_studies(StudyQuery(study_date_from="15/03/2020"))
    with pytest.raises(PacsConfigError, match="empty"):
        client.find_studies(StudyQuery(study_date_from="20210101", study_date_to="20200101"))
