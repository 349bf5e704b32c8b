"""The PACS browser against a real Orthanc (loopback ports, temporary storage): server list, echo, search,
retrieve into the cache with progress/cancel, open in the viewer, send the heatmap back, and clear failures.

Locally the tests skip without Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``); in CI they may not skip.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pydicom
import pytest

from engine.pacs import PacsServer, load_servers, save_servers
from tests.engine.pacs.dicom_factory import write_series
from tests.engine.pacs.orthanc_server import OrthancServer, dicomweb_plugin, free_port, orthanc_binary

pytestmark = pytest.mark.gui

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
PHANTOM_SHAPE, PHANTOM_SPACING = (10, 72, 96), (5.0, 1.1, 0.8)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    missing = [what for what, found in (("orthanc", orthanc_binary()), ("orthanc-dicomweb", dicomweb_plugin()))
               if not found]
    if missing:
        reason = f"Orthanc not installed (Debian package(s) {', '.join(missing)})"
        if IN_CI:
            pytest.fail(f"{reason}: .ci/run must install it; PACS tests may not be skipped in CI")
        pytest.skip(reason)
    server = OrthancServer(tmp_path_factory.mktemp("orthanc-viewer"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pacs_data(orthanc, tmp_path_factory):
    """Loaded into Orthanc: the chest phantom (non-isotropic, two lesions) as an RLE-compressed CT series of
    patient PHANTOM^CHEST, plus DOE^JANE (CT, 2020-03-15) and DOE^JOHN (MR, 2021-07-20)."""
    from engine.phantom import make_phantom, write_dicom_series

    root = tmp_path_factory.mktemp("viewer-pacs-series")
    phantom = make_phantom(PHANTOM_SHAPE, PHANTOM_SPACING, seed=4, lesions=2)
    paths = write_dicom_series(phantom.volume, root / "phantom", uid_seed="viewer-pacs", patient_id="LL-PHANTOM",
                               patient_name="PHANTOM^CHEST", series_description="Phantom chest",
                               transfer_syntax="1.2.840.10008.1.2.5")
    jane = write_series(root / "jane", patient_name="DOE^JANE", patient_id="LL-001", study_date="20200315",
                        modality="CT", n_slices=4, seed=1, description="jane chest")
    john = write_series(root / "john", patient_name="DOE^JOHN", patient_id="LL-003", study_date="20210720",
                        modality="MR", n_slices=3, seed=3, description="john head")
    orthanc.upload(list(paths) + list(jane.paths) + list(john.paths))
    head = pydicom.dcmread(paths[0], stop_before_pixels=True)
    return {"phantom": phantom, "paths": paths, "study_uid": str(head.StudyInstanceUID),
            "series_uid": str(head.SeriesInstanceUID), "jane": jane, "john": john}


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGLENS_CACHE_DIR", str(tmp_path / "user-cache"))
    monkeypatch.setenv("LUNGLENS_CONFIG_DIR", str(tmp_path / "user-config"))


@pytest.fixture
def dimse_settled(leak_guard):
    """pynetdicom ends an association's reactor thread a few ms after the release/abort: let it finish before
    the leak guard counts threads (one still running after 10 s is a real leak and fails the test)."""
    yield
    deadline = time.monotonic() + 10.0
    for thread in threading.enumerate():
        if "run_reactor" in thread.name:
            thread.join(max(0.0, deadline - time.monotonic()))


@pytest.fixture
def servers_file(tmp_path, orthanc):
    path = tmp_path / "user-config" / "pacs_servers.json"
    save_servers([orthanc.dimse_server(name="Orthanc DIMSE"), orthanc.dicomweb_server(name="Orthanc web")], path)
    return path


@pytest.fixture
def browser(qtbot, dimse_settled, servers_file):
    from viewer.qt.pacs_dialog import PacsBrowser
    dialog = PacsBrowser(servers_file=servers_file)
    qtbot.addWidget(dialog)
    dialog.show()
    yield dialog
    dialog.close()


def _wait(dialog, worker, timeout=60.0):
    assert worker is not None, dialog.last_error
    assert worker.wait(timeout), "the job did not finish"
    assert dialog.wait_idle(timeout)


def _search(dialog, **fields):
    for name, value in fields.items():
        getattr(dialog, name).setText(value) if name != "modality" else dialog.modality_combo.setCurrentText(value)
    worker = dialog.search()
    _wait(dialog, worker)
    return worker


# --- servers ------------------------------------------------------------------------------------------------
def test_server_list_add_edit_remove_and_echo(qtbot, dimse_settled, tmp_path, orthanc) -> None:
    from viewer.qt.pacs_dialog import PacsBrowser, ServerDialog
    path = tmp_path / "servers.json"
    dialog = PacsBrowser(servers_file=path)
    qtbot.addWidget(dialog)
    assert dialog.current_server() is None and not dialog.search_button.isEnabled()
    assert dialog.search() is None and "Add a PACS server first" in dialog.status.text()

    editor = ServerDialog(dialog, None, [])
    qtbot.addWidget(editor)
    editor.name.setText("Ward PACS")
    editor.host.setText("127.0.0.1")
    editor.port.setValue(orthanc.dicom_port)
    editor.called_ae.setText("BAD\\AE")                      # a backslash is not allowed in an AE title
    editor.accept()
    assert editor.result() == 0 and "not a valid AE title" in editor.error_label.text()
    editor.called_ae.setText("ORTHANC")
    editor.accept()
    assert editor.result() == 1
    dialog.add_server(editor.server())
    saved = load_servers(path)
    assert [(s.name, s.protocol, s.port, s.called_ae, s.calling_ae) for s in saved] == \
        [("Ward PACS", "dimse", orthanc.dicom_port, "ORTHANC", "LUNGLENS")]
    assert "DIMSE 127.0.0.1" in dialog.server_info.text()

    _wait(dialog, dialog.test_server())
    assert "Ward PACS answered in" in dialog.status.text()

    # edit: the same name is allowed for the entry being edited, another server's name is not
    dialog.add_server(orthanc.dicomweb_server(name="Web"))
    dialog.select_server("Ward PACS")
    editor = ServerDialog(dialog, dialog.current_server(), [s.name for s in dialog.servers])
    qtbot.addWidget(editor)
    editor.name.setText("Web")
    editor.accept()
    assert "exists already" in editor.error_label.text()
    editor.name.setText("Ward PACS")
    editor.timeout.setValue(12.0)
    editor.accept()
    dialog.replace_server("Ward PACS", editor.server())
    assert {s.name: s.timeout_s for s in load_servers(path)} == {"Ward PACS": 12.0, "Web": 10.0}
    dialog.remove_server("Ward PACS")
    assert [s.name for s in load_servers(path)] == ["Web"]
    dialog.close()


def test_dicomweb_server_entry_and_tls_rule(qtbot, leak_guard) -> None:
    from viewer.qt.pacs_dialog import ServerDialog
    editor = ServerDialog(None, None, [])
    qtbot.addWidget(editor)
    editor.name.setText("Web")
    editor.protocol.setCurrentIndex(1)
    assert not editor.form.isRowVisible(editor.host) and editor.form.isRowVisible(editor.url)
    editor.url.setText("pacs.example.org/dicom-web")
    editor.accept()
    assert "url must be the DICOMweb service root" in editor.error_label.text()
    editor.url.setText("https://pacs.example.org/dicom-web")
    editor.password_env.setText("LUNGLENS_PACS_PASSWORD")
    editor.accept()
    server = editor.server()
    assert server.protocol == "dicomweb" and server.uses_tls and server.password_env == "LUNGLENS_PACS_PASSWORD"


# --- search -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("server_name", ["Orthanc DIMSE", "Orthanc web"])
def test_search_by_patient_date_modality_and_list_series(browser, pacs_data, server_name) -> None:
    browser.select_server(server_name)
    _search(browser, name_edit="DOE")
    names = sorted(s.patient_name for s in browser.studies)
    assert names == ["DOE^JANE", "DOE^JOHN"]
    assert browser.studies_table.rowCount() == 2
    texts = {browser.studies_table.item(r, 0).text() for r in range(2)}
    assert texts == {"DOE, JANE", "DOE, JOHN"}
    _search(browser, name_edit="DOE", modality="CT")
    assert [s.patient_id for s in browser.studies] == ["LL-001"]
    browser.modality_combo.setCurrentText("Any")
    _search(browser, name_edit="", date_from="2021-01-01", date_to="2021-12-31")
    assert [s.patient_id for s in browser.studies] == ["LL-003"]
    assert browser.studies_table.item(0, 2).text() == "2021-07-20"
    browser.date_preset.setCurrentText("Last 7 days")        # a preset fills both fields ...
    assert browser.date_from.text() and browser.date_to.text()
    browser.date_preset.setCurrentText("Any date")           # ... and "Any date" empties them
    _search(browser, id_edit="LL-PHANTOM")
    assert [s.study_uid for s in browser.studies] == [pacs_data["study_uid"]]
    assert browser.wait_idle(30) and browser.series       # the first study is selected: its series are listed
    assert [s.series_uid for s in browser.series] == [pacs_data["series_uid"]]
    assert browser.selected_series().n_instances == PHANTOM_SHAPE[0]
    assert browser.retrieve_button.isEnabled()


def test_bad_search_fields_are_refused_before_the_network(browser) -> None:
    browser.date_from.setText("2021-13-01")
    assert browser.search() is None and "not a valid calendar date" in browser.status.text()
    browser.date_from.setText("2022-01-01")
    browser.date_to.setText("2021-01-01")
    assert browser.search() is None and "is after" in browser.status.text()


# --- retrieve / open ------------------------------------------------------------------------------------------
def test_retrieve_into_the_cache_and_open_in_the_viewer(make_window, dimse_settled, qtbot, pacs_data,
                                                         servers_file) -> None:
    from engine.pacs import cache_root
    window = make_window()
    window.pacs.servers_file = servers_file
    window.pacs.browse_action.trigger()                       # File ▸ Query/Retrieve from PACS…
    browser = window.pacs.browser
    assert browser is not None and browser.isVisible() and browser.main_window is window
    browser.select_server("Orthanc DIMSE")
    _search(browser, id_edit="LL-PHANTOM")
    assert browser.wait_idle(30) and browser.selected_series() is not None
    reports = []
    worker = browser.retrieve(open_after=True)
    worker.progress.connect(reports.append)
    assert window.job_status.worker is worker                  # the window's status bar shows it too
    qtbot.waitUntil(lambda: window.state.volume is not None, timeout=60_000)
    got = browser.last_retrieved
    assert got is not None and got.n_instances == PHANTOM_SHAPE[0]
    assert cache_root() in got.folder.parents and "user-cache" in str(got.folder)
    volume = window.state.volume
    phantom = pacs_data["phantom"].volume
    assert volume.shape == phantom.shape
    assert volume.spacing == pytest.approx(phantom.spacing)
    np.testing.assert_array_equal(volume.array, phantom.array)      # lossless all the way (RLE)
    assert "retrieved into the cache" in browser.status.text()
    fractions = [r.fraction for r in reports if r.fraction is not None]
    assert fractions and fractions == sorted(fractions)          # throttled, monotonic, per instance
    assert any("Retrieved" in r.message and "/10 instances" in r.message for r in reports)
    # MPR on the retrieved series: the coronal plane is 10 slices x 5 mm tall, 96 x 0.8 mm wide
    window.mpr.set_layout("1x3")
    assert window.mpr.view(1).geometry_of_slices.scene_size == pytest.approx((96 * 0.8, 10 * 5.0))
    # retrieving again reuses the complete cached copy
    worker = browser.retrieve(open_after=False)
    _wait(browser, worker)
    assert browser.last_retrieved.from_cache and "already in the cache" in browser.status.text()


def test_cancel_a_retrieve_keeps_nothing(browser, orthanc, tmp_path) -> None:
    from PySide6.QtCore import Qt

    from engine.pacs import cache_root
    many = write_series(tmp_path / "many", patient_name="LONG^SERIES", patient_id="LL-LONG", study_date="20230101",
                        n_slices=80, seed=5)
    orthanc.upload(many.paths)
    browser.select_server("Orthanc DIMSE")
    _search(browser, id_edit="LL-LONG")
    assert browser.wait_idle(30) and browser.selected_series().n_instances == 80
    assert browser.open_button.isEnabled() is False       # no window to open into: Retrieve only
    worker = browser.retrieve(open_after=False)
    assert browser.cancel_button.isEnabled() and browser.progress.isVisible()
    # cancel as soon as instances arrive (direct connection: from the transfer thread, mid-transfer)
    worker.progress.connect(lambda report: worker.cancel() if report.fraction else None,
                            Qt.ConnectionType.DirectConnection)
    _wait(browser, worker)
    assert worker.outcome == "cancelled"
    assert "Cancelled; nothing was kept in the cache" in browser.status.text()
    study = cache_root() / many.study_uid
    assert not (study / many.series_uid).exists()
    assert not study.exists() or not any(study.iterdir())         # no partial staging folder either
    assert not browser.progress.isVisible() and browser.retrieve_button.isEnabled()


# --- failures -------------------------------------------------------------------------------------------------
def test_server_down_and_wrong_ae_title_say_what_to_do(qtbot, dimse_settled, tmp_path, orthanc) -> None:
    from viewer.qt.pacs_dialog import PacsBrowser
    path = tmp_path / "servers.json"
    down = PacsServer(name="Night PACS", host="127.0.0.1", port=free_port(), timeout_s=3.0)
    wrong_ae = orthanc.dimse_server(name="Typo PACS", called_ae="ORTHANX")
    web_down = PacsServer(name="Web down", protocol="dicomweb", url=f"http://127.0.0.1:{free_port()}/dicom-web",
                          timeout_s=3.0)
    save_servers([down, wrong_ae, web_down], path)
    dialog = PacsBrowser(servers_file=path)
    qtbot.addWidget(dialog)
    dialog.select_server("Night PACS")
    worker = _search(dialog, name_edit="DOE")
    assert worker.outcome == "error" and dialog.studies == []
    text = dialog.status.text()
    assert "connection refused" in text and "Is the 'Night PACS' PACS running" in text
    assert "Unexpected" not in text
    _wait(dialog, dialog.test_server())
    assert "connection refused" in dialog.status.text()
    dialog.select_server("Typo PACS")
    _search(dialog, name_edit="DOE")
    assert "rejected the association" in dialog.status.text() and "ORTHANX" in dialog.status.text()
    dialog.select_server("Web down")
    started = time.monotonic()
    _search(dialog, name_edit="DOE")
    assert time.monotonic() - started < 30
    assert "Web down" in dialog.status.text() or "127.0.0.1" in dialog.status.text()
    assert dialog.status.text() == dialog.last_error
    dialog.close()


def test_unreadable_server_list_is_reported_not_overwritten(qtbot, leak_guard, tmp_path) -> None:
    from viewer.qt.pacs_dialog import PacsBrowser
    path = tmp_path / "servers.json"
    path.write_text("{ not json")
    dialog = PacsBrowser(servers_file=path)
    qtbot.addWidget(dialog)
    assert "cannot read the PACS server list" in dialog.status.text()
    dialog.add_server(PacsServer(name="x"))
    assert path.read_text() == "{ not json" and "not saving over it" in dialog.status.text()
    dialog.close()


# --- send back ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("server_index", [0, 1], ids=["c-store", "stow-rs"])
def test_send_the_heatmap_secondary_capture_back(make_window, dimse_settled, qtbot, pacs_data, servers_file,
                                                 orthanc, server_index) -> None:
    from viewer.model.export import ExportRefused
    from viewer.qt.pacs_dialog import send_secondary_capture
    window = make_window()
    window.pacs.servers_file = servers_file
    assert window.pacs.send_action.text() == "Send heatmap to &PACS…"
    assert window.pacs.send_action in window.ai.menu.actions() and not window.pacs.send_action.isEnabled()
    worker = window.open_path(pacs_data["paths"][0].parent)
    qtbot.waitUntil(lambda: worker.is_done and window.state.volume is not None, timeout=60_000)
    server = load_servers(servers_file)[server_index]
    with pytest.raises(ExportRefused, match="show a heatmap first"):
        send_secondary_capture(window, server)
    heat = np.zeros(window.state.volume.shape, np.float32)
    heat[4:7, 20:30, 60:70] = 1.0
    window.state.add_heatmap(heat, "probe", threshold=0.3, info={"model": "probe", "explainer_label": "CAM"})
    assert window.pacs.send_action.isEnabled()
    window.state.slice_index = 5
    before = orthanc.study_series_uids(pacs_data["study_uid"])
    sent = []
    worker = send_secondary_capture(window, server, on_done=sent.append)
    qtbot.waitUntil(lambda: bool(sent) or worker.outcome == "error", timeout=60_000)
    assert worker.outcome == "result" and len(sent) == 1 and len(sent[0].stored) == 1
    new = orthanc.study_series_uids(pacs_data["study_uid"]) - before
    assert len(new) == 1                                   # a new series in the same study
    capture = pydicom.dcmread(pydicom.filebase.DicomBytesIO(orthanc.instance_file(sent[0].stored[0])))
    assert capture.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and capture.BurnedInAnnotation == "YES"
    assert capture.StudyInstanceUID == pacs_data["study_uid"] and capture.PatientID == "LL-PHANTOM"
    assert "NOT FOR DIAGNOSIS" in capture.SeriesDescription
    assert f"to {server.name}: 1 object stored" in window.statusBar().currentMessage()
