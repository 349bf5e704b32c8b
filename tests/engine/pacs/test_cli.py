"""``lunglens-engine pacs echo|find|get|send|servers`` against a real Orthanc."""

from __future__ import annotations

import json

import numpy as np
import pydicom

from engine.cli import main
from engine.export import heatmap_secondary_capture
from engine.pacs import cache_root, load_servers
from tests.engine.pacs.orthanc_server import free_port


def _dimse_args(orthanc) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(orthanc.dicom_port), "--aet", orthanc.aet]


def test_servers_add_list_remove_then_use_by_name(orthanc, capsys):
    assert main(["pacs", "servers", "add", "local", *_dimse_args(orthanc), "--retrieve", "move",
                 "--move-port", str(orthanc.move_port), "--timeout", "10"]) == 0
    assert main(["pacs", "servers", "add", "web", "--url", orthanc.dicomweb_url]) == 0
    assert [s.name for s in load_servers()] == ["local", "web"]
    capsys.readouterr()
    assert main(["pacs", "servers", "list"]) == 0
    listing = capsys.readouterr().out
    assert "local" in listing and "dimse" in listing and "move" in listing and orthanc.dicomweb_url in listing
    for name in ("local", "web"):
        assert main(["pacs", "echo", "--server", name]) == 0
        assert f"{name}: OK" in capsys.readouterr().out
    assert main(["pacs", "servers", "remove", "web"]) == 0
    assert [s.name for s in load_servers()] == ["local"]


def test_find_get_send_inline(orthanc, studies, own_study, tmp_path, capsys):
    jane = studies["jane"]
    assert main(["pacs", "find", "--url", orthanc.dicomweb_url, "--patient-name", "DOE", "--date",
                 "20200101-20201231", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [s["patient_id"] for s in found if s["patient_id"].startswith("LL-")] == ["LL-001"]

    assert main(["pacs", "find", *_dimse_args(orthanc), "--study", jane.study_uid]) == 0
    out = capsys.readouterr().out
    assert jane.series_uid in out and "synthetic jane" in out

    assert main(["pacs", "get", *_dimse_args(orthanc), "--study", jane.study_uid]) == 0
    out = capsys.readouterr().out
    folder = cache_root() / jane.study_uid / jane.series_uid
    assert f"6 instances -> {folder}" in out
    assert len(list(folder.glob("*.dcm"))) == 6

    ds = pydicom.dcmread(own_study.paths[0])
    sc = heatmap_secondary_capture(own_study.paths[0], ds.pixel_array, np.ones(ds.pixel_array.shape) * 0.7)
    sc_path = sc.save(tmp_path)
    assert main(["pacs", "send", "--url", orthanc.dicomweb_url, str(sc_path)]) == 0
    assert "stored 1 instance(s)" in capsys.readouterr().out
    assert sc.SeriesInstanceUID in orthanc.study_series_uids(own_study.study_uid)


def test_cli_errors_are_one_clear_line(orthanc, capsys):
    port = free_port()
    assert main(["pacs", "echo", "--host", "127.0.0.1", "--port", str(port), "--aet", "X"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "connection refused" in err and f"127.0.0.1:{port}" in err
    assert main(["pacs", "echo", *_dimse_args(orthanc)[:-1], "WRONG_AET"]) == 1
    assert "called AE title is not recognised" in capsys.readouterr().err
    assert main(["pacs", "echo", "--server", "nope"]) == 1
    assert "no PACS server named 'nope'" in capsys.readouterr().err
    assert main(["pacs", "echo"]) == 1
    assert "--server NAME" in capsys.readouterr().err
    assert main(["pacs", "find", "--url", orthanc.dicomweb_url, "--date", "March"]) == 1
    assert "--date 'March'" in capsys.readouterr().err
