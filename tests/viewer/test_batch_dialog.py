"""Tools ▸ Batch screen…: the engine's batch job in a worker, live results table, cancel + resume, refusal of an
output folder inside an input, double-click opens the scan at its top slice, closing while it runs.

The model is the hand-set ground-glass probe of ``probe_model`` (weights saved with ``engine.weights``), so the
top slice of the phantom with a lesion must be the lesion's slice -- double-clicking its row must land there; a
slow copy of it (each forward pass sleeps) makes cancelling mid-batch deterministic.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from tests.viewer.probe_model import PROBE_2D, lesion_phantom, registered_probes, save_probe
from viewer.model.ai import ModelCatalog
from viewer.qt.results_table import COL_PROB, COL_REASON, COL_SCAN, COL_STATUS, FAILED_BACKGROUND, ROW_ROLE

pytestmark = pytest.mark.gui
TIMEOUT = 120000


@pytest.fixture(scope="module")
def batch_data(tmp_path_factory):
    """Weights (fast and slow probe) and a folder of scans: a lesion phantom, two healthy DICOM series, a NIfTI
    volume, a corrupt .dcm and a text file."""
    from engine.phantom import make_phantom, write_dicom_series, write_nifti

    root = tmp_path_factory.mktemp("batch")
    fast, slow = root / "weights", root / "slow-weights"
    with registered_probes():
        save_probe(fast, PROBE_2D)
        save_probe(slow, PROBE_2D, delay_s=0.4)
        scans = root / "ward"
        phantom, centre = lesion_phantom()
        write_dicom_series(phantom.volume, scans / "lesion" / "ct", uid_seed="batch-lesion",
                           series_description="with lesion")
        for i in range(2):
            healthy = make_phantom(shape=(8, 64, 72), spacing=(6.0, 4.5, 4.5), seed=i, lesions=0)
            write_dicom_series(healthy.volume, scans / f"healthy{i}" / "ct", uid_seed=f"batch-healthy-{i}",
                               series_description=f"healthy {i}")
        nifti = make_phantom(shape=(6, 56, 56), spacing=(5.0, 5.5, 5.5), seed=7, lesions=0)
        write_nifti(nifti.volume, scans / "volumes" / "chest.nii.gz")
        (scans / "notes.txt").write_text("not a scan\n")
        (scans / "healthy0" / "broken.dcm").write_bytes(b"\x00garbage" * 32)
        yield {"fast": fast, "slow": slow, "scans": scans, "centre": centre, "series": 5}


def _dialog(make_window, batch_data, weights="fast"):
    window = make_window()
    window.ai.catalog = ModelCatalog(roots=[batch_data[weights]])
    window.ai.backend = "torch"
    dialog = window.tools.open_batch()
    dialog.select_model(PROBE_2D)
    opened = []
    dialog.open_url = lambda url: opened.append(url.toLocalFile()) or True
    return window, dialog, opened


def _run(qtbot, dialog, **kw):
    with qtbot.waitSignal(dialog.job_finished, timeout=TIMEOUT) as blocker:
        worker = dialog.start(**kw)
        assert worker is not None
    return blocker.args[0]


def test_tools_menu_holds_batch_and_benchmark(make_window) -> None:
    window = make_window()
    titles = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert titles.index("Tools") == len(titles) - 2 and titles[-1] == "Help"
    texts = [a.text().replace("&", "") for a in window.tools.menu.actions()]
    assert texts == ["Batch screen…", "Benchmark…"]
    window.tools.batch_action.trigger()
    dialog = window.tools.batch_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.close()                             # hides; the same dialog comes back
    assert not dialog.isVisible()
    assert window.tools.open_batch() is dialog and dialog.isVisible()


def test_explainer_choices_match_the_engine() -> None:
    from engine.screen.job import EXPLAINER_CHOICES
    from viewer.workers.batch_jobs import BATCH_EXPLAINERS

    assert tuple(BATCH_EXPLAINERS) == tuple(EXPLAINER_CHOICES)


def test_batch_fills_the_table_and_double_click_opens_the_top_slice(qtbot, make_window, batch_data,
                                                                    tmp_path) -> None:
    window, dialog, opened = _dialog(make_window, batch_data)
    out = tmp_path / "results"
    dialog.set_inputs([batch_data["scans"]])
    dialog.set_output(out)
    dialog.set_explainer("cam")
    assert dialog.start_button.text() == "Screen" and dialog.start_button.isEnabled()
    assert "lunglens-screen" in dialog.command_label.text() and "--explainer cam" in dialog.command_label.text()
    with qtbot.waitSignal(dialog.job_finished, timeout=TIMEOUT):
        worker = dialog.start()
        assert not dialog.model_box.isEnabled() and dialog.cancel_button.isEnabled()
    assert worker.outcome == "result" and dialog.last_outcome == "result"
    summary = dialog.summary
    assert summary.total == batch_data["series"] and summary.ok == 4 and summary.failed == 1
    assert "Finished: 5 series" in dialog.status_label.text() and "1 non-image file" in dialog.status_label.text()
    assert dialog.start_button.text() == "Screen new series"
    assert dialog.bar.value() == 100

    rows = dialog.table.visible_rows()
    assert len(rows) == 5 and len({r["scan_id"] for r in rows}) == 5
    # sorted by probability, most suspicious first; failures last
    probs = [r["probability"] for r in rows if r["status"] == "ok"]
    assert probs == sorted(probs, reverse=True) and rows[-1]["status"] == "failed"
    top = next(r for r in rows if r.get("description") == "with lesion")
    assert top["top_slice"] == batch_data["centre"][0]          # the ground-glass slice is the most suspicious
    # the same rows the engine wrote
    from engine.screen.store import read_results
    assert {r["scan_id"] for r in read_results(out)} == {r["scan_id"] for r in rows}
    assert (out / "results.csv").is_file() and (out / "report.pdf").read_bytes()[:4] == b"%PDF"

    # the failed row: visibly distinct, with the engine's reason
    failed_index = dialog.table.view_index(rows[-1]["scan_id"])
    model = dialog.table.view.model()
    row_of = failed_index.row()
    assert model.index(row_of, COL_STATUS).data() == "failed"
    assert "broken.dcm" in model.index(row_of, COL_REASON).data()
    assert model.index(row_of, COL_PROB).data(Qt.ItemDataRole.BackgroundRole).color() == FAILED_BACKGROUND
    assert model.index(0, COL_PROB).data(Qt.ItemDataRole.BackgroundRole) is None or \
        model.index(0, COL_PROB).data(Qt.ItemDataRole.BackgroundRole).color() != FAILED_BACKGROUND
    dialog.table.filter_box.setCurrentIndex(2)            # failed only
    assert [r["status"] for r in dialog.table.visible_rows()] == ["failed"]
    dialog.table.filter_box.setCurrentIndex(0)

    # sortable: click the Scan header -> ascending scan ids
    header = dialog.table.view.horizontalHeader()
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton,
                     pos=header.viewport().rect().topLeft() + _section_centre(header, COL_SCAN))
    ids = [r["scan_id"] for r in dialog.table.visible_rows()]
    assert ids in (sorted(ids), sorted(ids, reverse=True))
    dialog.table.view.sortByColumn(COL_PROB, Qt.SortOrder.DescendingOrder)

    # report and folder buttons
    assert dialog.report_button.isEnabled() and dialog.folder_button.isEnabled()
    qtbot.mouseClick(dialog.report_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(dialog.folder_button, Qt.MouseButton.LeftButton)
    assert opened == [str(out / "report.pdf"), str(out)]

    # double-click the most suspicious row: the viewer opens that series at its top slice
    index = dialog.table.view_index(top["scan_id"], COL_PROB)
    view = dialog.table.view
    rect = view.visualRect(index)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: window.current_series is not None and window.current_series.uid == top["series_uid"],
                    timeout=TIMEOUT)
    assert window.state.slice_index == top["top_slice"]
    assert window.slice_slider.label.text().startswith(f"Slice {top['top_slice'] + 1} /")
    assert window.state.volume.shape[0] == top["n_slices"]


def _section_centre(header, col):
    from PySide6.QtCore import QPoint

    x = header.sectionViewportPosition(col) + header.sectionSize(col) // 2
    return QPoint(x, header.height() // 2)


def test_cancel_mid_batch_then_resume_skips_finished_series(qtbot, make_window, batch_data, tmp_path) -> None:
    window, dialog, _opened = _dialog(make_window, batch_data, weights="slow")
    out = tmp_path / "out"
    dialog.set_inputs([batch_data["scans"]])
    dialog.set_output(out)
    dialog.set_explainer("none")

    def cancel_after_first_row(*_args):
        if dialog.table.model.rows and dialog.cancel_button.isEnabled():
            qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)

    dialog.table.model.rowsInserted.connect(cancel_after_first_row)
    assert _run(qtbot, dialog) == "cancelled"
    dialog.table.model.rowsInserted.disconnect(cancel_after_first_row)
    done_first = [r["scan_id"] for r in dialog.table.model.rows]
    assert 1 <= len(done_first) < batch_data["series"]
    assert "Resume" in dialog.status_label.text() and dialog.start_button.text() == "Resume"
    assert dialog.model_box.isEnabled() and not dialog.cancel_button.isEnabled()
    assert (out / "results.sqlite").is_file()

    assert _run(qtbot, dialog) == "result"
    summary = dialog.summary
    assert summary.resumed == len(done_first) and summary.screened == batch_data["series"] - len(done_first)
    ids = [r["scan_id"] for r in dialog.table.model.rows]
    assert len(ids) == len(set(ids)) == batch_data["series"] and set(done_first) <= set(ids)
    assert "from earlier runs" in dialog.status_label.text()


def test_output_inside_an_input_is_refused_then_forced(qtbot, make_window, batch_data, tmp_path) -> None:
    window, dialog, _opened = _dialog(make_window, batch_data)
    scans = tmp_path / "scans"
    shutil.copytree(batch_data["scans"] / "healthy1", scans / "healthy1")
    inside = scans / "results"
    dialog.set_inputs([scans])
    dialog.set_output(inside)
    dialog.set_explainer("none")
    earlier = [{"series_key": "k", "scan_id": "S-earlier", "status": "ok", "probability": 0.1, "path": "/x"}]
    dialog.table.set_rows(earlier)                   # e.g. the results of an earlier batch on screen
    assert _run(qtbot, dialog) == "error"
    assert dialog.refusal.isVisible() and "inside the input folder" in dialog.refusal_label.text()
    assert "never writes into" in dialog.refusal_label.text() and "--out" not in dialog.refusal_label.text()
    assert not inside.exists()                       # nothing written
    assert [r["scan_id"] for r in dialog.table.model.rows] == ["S-earlier"]     # a refusal wipes nothing
    with qtbot.waitSignal(dialog.job_finished, timeout=TIMEOUT) as blocker:
        qtbot.mouseClick(dialog.force_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0] == "result"
    assert not dialog.refusal.isVisible()
    assert dialog.summary.total == 1 and (inside / "results.sqlite").is_file()
    assert "--force" in dialog.request.command_text()


def test_missing_settings_are_said_not_crashed(make_window, batch_data, tmp_path) -> None:
    window, dialog, _opened = _dialog(make_window, batch_data)
    assert dialog.start() is None and "Add at least one folder" in dialog.status_label.text()
    dialog.set_inputs([batch_data["scans"]])
    assert dialog.output is not None and dialog.output.name == "ward"     # a default outside the inputs
    assert batch_data["scans"] not in dialog.output.parents
    dialog.out_edit.setText("")
    dialog._on_out_changed()
    assert dialog.start() is None and "output folder" in dialog.status_label.text()
    dialog.set_output(tmp_path / "x")
    assert dialog.start_button.text() == "Screen" and dialog.start_button.isEnabled()


def test_closing_the_window_while_a_batch_runs(qtbot, make_window, batch_data, tmp_path) -> None:
    window, dialog, _opened = _dialog(make_window, batch_data, weights="slow")
    dialog.set_inputs([batch_data["scans"]])
    dialog.set_output(tmp_path / "out")
    dialog.set_explainer("none")
    worker = dialog.start()
    qtbot.waitUntil(lambda: bool(dialog.table.model.rows) or worker.is_done, timeout=TIMEOUT)
    assert worker.is_running
    window.close()
    assert worker.is_done and worker.outcome == "cancelled"
    assert window.tools.batch_dialog is None
    from engine.screen.store import read_results
    assert 1 <= len(read_results(tmp_path / "out")) < batch_data["series"]


def test_open_results_of_an_earlier_batch_and_a_row_table_model(qtbot, make_window, batch_data,
                                                                tmp_path) -> None:
    window, dialog, _opened = _dialog(make_window, batch_data)
    assert dialog.show_results_of(tmp_path) is None and "No batch results" in dialog.status_label.text()
    rows = [
        {"series_key": "a", "scan_id": "S-a", "status": "ok", "probability": 0.2, "flagged": False,
         "top_slice": 3, "top_slices": [3, 1], "path": "/x/a", "kind": "dicom", "n_slices": 10},
        {"series_key": "b", "scan_id": "S-b", "status": "failed", "reason": "corrupt file b.dcm", "path": "/x/b"},
        {"series_key": "c", "scan_id": "S-c", "status": "ok", "probability": 0.9, "flagged": True,
         "top_slice": 7, "top_slices": [7, 8, 2, 5], "path": "/x/c", "kind": "nifti", "n_slices": 12},
    ]
    dialog.table.set_rows(rows)
    shown = dialog.table.visible_rows()
    assert [r["scan_id"] for r in shown] == ["S-c", "S-a", "S-b"]
    assert dialog.table.view.model().index(0, 4).data() == "7, 8, 2 …"
    assert "1 failed" in dialog.table.counts_label.text() and "1 flagged" in dialog.table.counts_label.text()
    dialog.table.add_rows([{**rows[1], "status": "ok", "probability": 0.5, "reason": None}])   # retried
    assert len(dialog.table.model.rows) == 3 and "failed" not in dialog.table.counts_label.text()
    dialog.table.view.sortByColumn(COL_PROB, Qt.SortOrder.AscendingOrder)
    assert [r["scan_id"] for r in dialog.table.visible_rows()] == ["S-a", "S-b", "S-c"]
    got = []
    dialog.table.scan_activated.connect(got.append)
    index = dialog.table.view_index("S-c")
    dialog.table.view.setCurrentIndex(index)
    qtbot.keyClick(dialog.table.view, Qt.Key.Key_Return)
    assert got and got[0]["scan_id"] == "S-c" and index.data(ROW_ROLE)["path"] == "/x/c"


@pytest.mark.slow
@pytest.mark.data
def test_dialog_on_a_folder_built_from_real_data(qtbot, make_window, shared_data, tmp_path) -> None:
    """Real DICOM series, NIfTI volumes, a JPEG slice, corrupt files, a non-CT DICOM and a text file (symlinks
    into ../shared/data, never written): every series gets a row, the bad ones fail with their reason, and
    double-clicking the 30-slice DICOM series opens it at its top slice."""
    from tests.engine.screen.conftest import MODEL, make_weights
    from tests.engine.screen.test_shared_data import _build

    inputs = tmp_path / "in"
    _build(shared_data, inputs, with_ricord=False)
    weights = make_weights(tmp_path / "weights" / MODEL)
    window = make_window()
    window.ai.catalog = ModelCatalog(roots=[weights.parent])
    window.ai.backend = "torch"
    dialog = window.tools.open_batch()
    dialog.select_model(MODEL)
    dialog.set_inputs([inputs])
    dialog.set_output(tmp_path / "out")
    assert _run(qtbot, dialog) == "result"
    rows = {Path(r["path"]).relative_to(inputs).as_posix(): r for r in dialog.table.model.rows}
    assert set(rows) == {"A0002", "A0001", "nifti_covid.nii.gz", "nifti_A0002.nii.gz", "jpeg.jpg",
                         "damaged/truncated.dcm", "damaged/corrupt.nii.gz", "mr_image.dcm"}
    for bad, words in (("damaged/truncated.dcm", "truncated.dcm"), ("damaged/corrupt.nii.gz", "corrupt.nii.gz"),
                       ("mr_image.dcm", "not a CT series (Modality MR)")):
        assert rows[bad]["status"] == "failed" and words in rows[bad]["reason"]
    assert "1 non-image file" in dialog.status_label.text()          # README.md
    row = rows["A0002"]
    dialog.open_scan(row)
    qtbot.waitUntil(lambda: window.current_series is not None and window.current_series.uid == row["series_uid"],
                    timeout=TIMEOUT)
    assert window.state.slice_index == row["top_slice"] and window.state.volume.shape[0] == 30


def test_the_command_line_shown_is_what_lunglens_screen_parses(batch_data, tmp_path) -> None:
    import argparse
    import shlex

    from engine.screen.cli import add_arguments
    from viewer.workers.batch_jobs import BatchRequest

    entry = ModelCatalog(roots=[batch_data["fast"]]).get(PROBE_2D)
    request = BatchRequest(inputs=(batch_data["scans"], tmp_path / "a b.nii.gz"), entry=entry,
                           out_dir=tmp_path / "out dir", explainer="gradcampp", workers=2, threshold=0.35,
                           force=True, retry_failed=True, backend="torch")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(shlex.split(request.command_text())[1:])
    assert args.inputs == [str(batch_data["scans"]), str(tmp_path / "a b.nii.gz")]
    assert (args.model, args.weights, args.explainer, args.out) == (PROBE_2D, str(entry.folder), "gradcampp",
                                                                    str(tmp_path / "out dir"))
    assert (args.workers, args.threshold, args.force, args.retry_failed, args.backend) == (2, 0.35, True, True,
                                                                                          "torch")
