"""The server list (validated, persisted in the user config dir) and the cache location (never a user folder)."""

from __future__ import annotations

import json
from pathlib import Path

import platformdirs
import pytest

from engine.pacs import (
    PacsConfigError, PacsServer, SeriesCache, StudyQuery, cache_root, config_dir, get_server, load_servers,
    remove_server, save_servers, servers_path, upsert_server,
)


def test_default_locations_are_the_platform_user_dirs(monkeypatch):
    monkeypatch.delenv("LUNGLENS_CACHE_DIR")
    monkeypatch.delenv("LUNGLENS_CONFIG_DIR")
    assert config_dir() == Path(platformdirs.user_config_dir("lunglens"))
    assert servers_path() == config_dir() / "pacs_servers.json"
    assert cache_root() == Path(platformdirs.user_cache_dir("lunglens")) / "pacs"


def test_environment_overrides_locations(tmp_path):
    assert config_dir() == tmp_path / "user-config"          # set by the autouse fixture
    assert cache_root() == tmp_path / "user-cache" / "pacs"


def test_save_load_roundtrip_in_user_config_dir(tmp_path):
    assert load_servers() == []
    web = PacsServer(name="web", protocol="dicomweb", url="https://pacs.example.org/dicom-web",
                     username="reader", password_env="LL_PACS_PASSWORD")
    dimse = PacsServer(name="main", host="pacs.example.org", port=11112, called_ae="HOSPITAL_PACS",
                       retrieve="move", move_port=11113, timeout_s=12.5)
    path = save_servers([web, dimse])
    assert path == tmp_path / "user-config" / "pacs_servers.json"
    data = json.loads(path.read_text())
    assert data["version"] == 1 and "password" not in json.dumps(data).replace("password_env", "")
    assert load_servers() == [web, dimse]
    assert get_server("main") == dimse and web.uses_tls and not dimse.uses_tls
    upsert_server(dimse.with_(port=104))
    assert get_server("main").port == 104 and len(load_servers()) == 2
    remove_server("web")
    assert [s.name for s in load_servers()] == ["main"]
    with pytest.raises(PacsConfigError, match="no PACS server named 'web'.*configured: main"):
        get_server("web")
    assert not list(path.parent.glob("*.tmp"))  # atomic write leaves no temp file


@pytest.mark.parametrize("changes, message", [
    (dict(called_ae="A" * 17), "not a valid AE title"),
    (dict(called_ae="BAD\\AE"), "not a valid AE title"),
    (dict(calling_ae="   "), "calling AE title is empty"),
    (dict(port=0), "TCP port number"),
    (dict(port=70000), "TCP port number"),
    (dict(protocol="wado"), "'dicomweb' or 'dimse'"),
    (dict(retrieve="copy"), "C-GET"),
    (dict(timeout_s=0), "timeout_s"),
    (dict(tls_ca_file="/nonexistent/ca.pem"), "does not exist"),
    (dict(name=""), "non-empty name"),
])
def test_invalid_server_entries_are_refused_with_reason(changes, message):
    base = dict(name="x", host="127.0.0.1", port=104, called_ae="ORTHANC")
    base.update(changes)
    with pytest.raises(PacsConfigError, match=message):
        PacsServer(**base)


def test_dicomweb_entry_validation():
    with pytest.raises(PacsConfigError, match="service root"):
        PacsServer(name="w", protocol="dicomweb", url="pacs.example.org/dicom-web")
    with pytest.raises(PacsConfigError, match="https"):
        PacsServer(name="w", protocol="dicomweb", url="http://pacs/dicom-web", tls=True)
    assert PacsServer(name="w", protocol="dicomweb", url="http://pacs:8042/dicom-web").address.endswith("web")


def test_ae_titles_are_stripped():
    server = PacsServer(name="x", called_ae="  ORTHANC ", calling_ae="LUNGLENS  ")
    assert (server.called_ae, server.calling_ae) == ("ORTHANC", "LUNGLENS")


def test_password_comes_from_the_environment_only(monkeypatch):
    server = PacsServer(name="w", protocol="dicomweb", url="http://pacs/dicom-web", username="u",
                        password_env="LL_TEST_PW")
    with pytest.raises(PacsConfigError, match="LL_TEST_PW.*not set"):
        server.password()
    monkeypatch.setenv("LL_TEST_PW", "s3cret")
    assert server.password() == "s3cret"


def test_broken_server_list_names_the_file(tmp_path):
    path = servers_path()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(PacsConfigError) as info:
        load_servers()
    assert str(path) in str(info.value) and "delete it" in str(info.value)
    path.write_text(json.dumps({"servers": [{"name": "a", "hostname": "x"}]}))
    with pytest.raises(PacsConfigError, match="unknown field.*hostname"):
        load_servers()
    path.write_text(json.dumps({"servers": [{"name": "a"}, {"name": "a"}]}))
    with pytest.raises(PacsConfigError, match="more than once"):
        load_servers()


def test_study_query_normalisation():
    assert StudyQuery(patient_name="DOE").name_pattern() == "DOE*"
    assert StudyQuery(patient_name="DOE^J?NE").name_pattern() == "DOE^J?NE"
    assert StudyQuery(study_date_from="2020-01-02").date_range() == "20200102-"
    assert StudyQuery(study_date_from="20200102", study_date_to="20200102").date_range() == "20200102"
    with pytest.raises(PacsConfigError, match="not a valid calendar date"):
        StudyQuery(study_date_from="20200231").date_range()


def test_cache_staging_is_atomic(tmp_path):
    cache = SeriesCache(tmp_path / "c")
    with cache.staging("1.2.3", "1.2.3.4") as staging:
        staging.write("1.2.3.4.1", b"abc")
        assert cache.lookup("1.2.3", "1.2.3.4") is None          # not visible before commit
    assert not (tmp_path / "c" / "1.2.3").exists()               # discarded without commit
    with cache.staging("1.2.3", "1.2.3.4") as staging:
        staging.write("1.2.3.4.1", b"abc")
        staging.write("1.2.3.4.2", b"defg")
        done = staging.commit()
    assert done.n_instances == 2 and done.bytes_total == 7
    assert cache.lookup("1.2.3", "1.2.3.4", expected=2).from_cache
    assert cache.lookup("1.2.3", "1.2.3.4", expected=3) is None   # the server has more now: not reused
    from engine.pacs import PacsError

    with pytest.raises(PacsError, match="invalid"):
        cache.staging("1.2.3", "../../home")
