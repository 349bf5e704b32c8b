"""ScreeningJob end to end on phantom folders: rows, failures, files, resume, refusal, same road as the viewer."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.io import discover, load_volume
from engine.screen import ScanModel
from engine.screen.job import JobError, JobProgress, OutputInsideInputError, ScreeningJob
from engine.screen.store import read_results

from .conftest import MODEL, make_weights, snapshot


def _job(inputs, out, weights, **kw) -> ScreeningJob:
    kw.setdefault("backend", "torch")
    return ScreeningJob(inputs, MODEL, out, weights=weights, **kw)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, phantom_inputs: Path, small_weights: Path):
    """One complete job over the phantom folder (shared by the read-only assertions below)."""
    out = tmp_path_factory.mktemp("job") / "out"
    before = snapshot(phantom_inputs)
    updates: list[JobProgress] = []
    summary = _job([phantom_inputs], out, small_weights).run(progress=updates.append)
    return out, summary, updates, before


def test_every_series_gets_one_row_and_bad_files_are_recorded(finished, phantom_inputs: Path) -> None:
    out, summary, _updates, _before = finished
    rows = read_results(out)
    assert summary.complete and summary.total == 5 and summary.ok == 4 and summary.failed == 1
    assert len({r["series_key"] for r in rows}) == len(rows) == 5
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["path"].endswith("broken.dcm")
    assert "broken.dcm" in failed[0]["reason"] and "corrupt" in failed[0]["reason"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["kind"] for r in ok} == {"dicom", "nifti"}
    # ok rows first, most suspicious first
    assert rows[-1]["status"] == "failed"
    probs = [r["probability"] for r in ok]
    assert probs == sorted(probs, reverse=True)
    # the text file is listed as skipped, not as a failure
    con = sqlite3.connect(out / "results.sqlite")
    skipped = [r[0] for r in con.execute("SELECT path FROM skipped")]
    con.close()
    assert [Path(p).name for p in skipped] == ["notes.txt"]


def test_rows_carry_what_the_viewer_needs_and_no_patient_identity(finished) -> None:
    out, _summary, _updates, _before = finished
    for r in read_results(out):
        assert r["scan_id"].startswith("S-") and len(r["scan_id"]) == 10
        if r["status"] != "ok":
            continue
        assert Path(r["path"]).exists() and r["series_uid"]
        assert 0 <= r["top_slice"] < r["n_slices"] == r["shape"][0]
        assert r["top_slice"] == r["top_slices"][0]
        assert r["model"] == MODEL and len(r["weights_sha256"]) == 64 and r["explainer"] == "cam"
        assert r["t_total"] > 0 and r["t_inference"] > 0
    text = (out / "results.csv").read_text() + (out / "results.sqlite").read_bytes().decode("latin-1")
    assert "LungLens^Phantom" not in text and "LUNGLENS-PHANTOM" not in text   # name / patient ID never read


def test_scores_are_exactly_the_viewer_pipeline(finished, phantom_inputs: Path, small_weights: Path) -> None:
    out, _s, _u, _b = finished
    rows = {r["series_uid"]: r for r in read_results(out) if r["status"] == "ok"}
    model = ScanModel.open(MODEL, small_weights, backend="torch")
    series = [s for s in discover(phantom_inputs) if s.kind == "dicom"][0]
    result = model.screen(load_volume(series))
    row = rows[series.uid]
    assert row["probability"] == pytest.approx(result.probability, abs=1e-6)
    assert row["top_slices"] == list(result.top_slices)
    np.testing.assert_allclose(row["slice_scores"], result.slice_scores, atol=1e-4)
    assert row["lung_slices"] == [int(b) for b in result.lung_slices]


def test_heatmap_pngs_are_on_the_scan_grid(finished) -> None:
    out, _s, _u, _b = finished
    for r in read_results(out):
        if r["status"] != "ok":
            assert not r.get("heatmaps")
            continue
        assert [h["z"] for h in r["heatmaps"]] == r["top_slices"][:3]
        for h in r["heatmaps"]:
            ct = np.asarray(Image.open(h["ct"]))
            heat = np.asarray(Image.open(h["map"]))
            overlay = np.asarray(Image.open(h["overlay"]))
            assert ct.shape == heat.shape == tuple(r["shape"][1:])
            assert overlay.shape == (*r["shape"][1:], 3)
            assert Path(h["overlay"]).parent == out / "heatmaps" / r["scan_id"]
        # maps are scaled per scan: the brightest key slice reaches 255
        assert max(int(np.asarray(Image.open(h["map"])).max()) for h in r["heatmaps"]) == 255


def test_csv_and_report_are_written(finished) -> None:
    out, summary, _u, _b = finished
    lines = (out / "results.csv").read_text().splitlines()
    assert lines[0].startswith("scan_id,status,probability,flagged,top_slice")
    assert len(lines) == 1 + 5
    pdf = (out / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and summary.report == out / "report.pdf" and summary.report_error is None
    # summary + one page per flagged scan + failures/skipped + model card
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))
    assert pages == 1 + summary.flagged + 1 + 1


def test_progress_is_throttled_and_ends_complete(finished) -> None:
    _out, summary, updates, _b = finished
    assert updates and updates[-1].done == updates[-1].total == summary.total
    assert updates[-1].fraction == pytest.approx(1.0)
    fractions = [u.fraction for u in updates]
    assert fractions == sorted(fractions)                        # never goes backwards
    reported = [row["scan_id"] for u in updates for row in u.finished]
    assert sorted(reported) == sorted(r["scan_id"] for r in read_results(_out))   # every row announced once
    assert any(u.eta_s is not None for u in updates)


def test_inputs_are_never_written(finished, phantom_inputs: Path) -> None:
    _out, _s, _u, before = finished
    assert snapshot(phantom_inputs) == before


def test_output_inside_an_input_is_refused_unless_forced(tmp_path: Path, phantom_inputs: Path,
                                                         small_weights: Path) -> None:
    with pytest.raises(OutputInsideInputError, match="inside the input folder"):
        _job([phantom_inputs], phantom_inputs / "results", small_weights).run()
    assert not (phantom_inputs / "results").exists()
    # a file input protects its folder too
    nifti = phantom_inputs / "volumes" / "chest.nii.gz"
    with pytest.raises(OutputInsideInputError):
        _job([nifti], phantom_inputs / "volumes" / "out", small_weights).run()
    # forced: allowed, and the output folder's own PNGs are not screened on a rerun
    import shutil
    scans = tmp_path / "scans"
    shutil.copytree(phantom_inputs / "patient1", scans / "patient1")
    first = _job([scans], scans / "out", small_weights, force=True, report=False).run()
    again = _job([scans], scans / "out", small_weights, force=True, report=False).run()
    assert first.total == again.total == 1 and again.resumed == 1 and again.screened == 0


def test_cancel_then_resume_finishes_without_duplicates(tmp_path: Path, phantom_inputs: Path,
                                                        small_weights: Path) -> None:
    out = tmp_path / "out"
    done: list[int] = []
    first = _job([phantom_inputs], out, small_weights, report=False).run(
        progress=lambda p: done.append(p.done), cancel=lambda: bool(done) and done[-1] >= 1)
    assert first.cancelled and not first.complete and 1 <= first.ok + first.failed < 5
    kept = {r["series_key"]: r["finished_at"] for r in read_results(out)}
    second = _job([phantom_inputs], out, small_weights, report=False).run()
    assert second.complete and second.resumed == len(kept) and second.screened == 5 - len(kept)
    rows = read_results(out)
    assert len(rows) == len({r["series_key"] for r in rows}) == 5
    assert all(r["finished_at"] == kept[r["series_key"]] for r in rows if r["series_key"] in kept)
    con = sqlite3.connect(out / "results.sqlite")
    outcomes = [r[0] for r in con.execute("SELECT outcome FROM runs ORDER BY id")]
    con.close()
    assert outcomes == ["cancelled", "complete"]


def test_retry_failed_screens_failures_again(tmp_path: Path, phantom_inputs: Path, small_weights: Path) -> None:
    out = tmp_path / "out"
    _job([phantom_inputs / "patient0"], out, small_weights, report=False).run()
    again = _job([phantom_inputs / "patient0"], out, small_weights, report=False, retry_failed=True).run()
    assert again.screened == 1 and again.resumed == 1 and again.failed == 1
    assert len(read_results(out)) == 2


def test_results_of_another_model_are_not_mixed(tmp_path: Path, phantom_inputs: Path, small_weights: Path) -> None:
    out = tmp_path / "out"
    _job([phantom_inputs / "patient1"], out, small_weights, report=False).run()
    other = make_weights(tmp_path / "other", seed=1)
    with pytest.raises(JobError, match="weights_sha256"):
        _job([phantom_inputs / "patient1"], out, other, report=False).run()
    with pytest.raises(JobError, match="explainer"):
        _job([phantom_inputs / "patient1"], out, small_weights, report=False, explainer="gradcam").run()


def test_setup_errors_are_clear(tmp_path: Path, phantom_inputs: Path, small_weights: Path) -> None:
    with pytest.raises(JobError, match="input not found"):
        _job([tmp_path / "nope"], tmp_path / "out", small_weights).run()
    with pytest.raises(JobError, match="unknown explainer"):
        _job([phantom_inputs], tmp_path / "out", small_weights, explainer="saliency")
    with pytest.raises(JobError, match="unknown model"):
        ScreeningJob([phantom_inputs], "no_such_net", tmp_path / "out").run()
    with pytest.raises(JobError, match="no such weights|not found"):
        _job([phantom_inputs], tmp_path / "out", tmp_path / "missing-weights").run()


def test_non_ct_dicom_is_a_failed_row(tmp_path: Path, small_weights: Path) -> None:
    import pydicom

    from engine.phantom import make_phantom, write_dicom_series

    scans = tmp_path / "scans"
    files = write_dicom_series(make_phantom(shape=(3, 32, 32), spacing=(5, 8, 8), seed=1).volume, scans / "mr",
                               uid_seed=5)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.Modality = "MR"
        ds.save_as(f)
    summary = _job([scans], tmp_path / "out", small_weights, report=False).run()
    (row,) = read_results(tmp_path / "out")
    assert summary.failed == 1 and row["status"] == "failed" and "not a CT series (Modality MR)" in row["reason"]


def test_an_open_scan_model_is_used_as_is(tmp_path: Path, phantom_inputs: Path, small_weights: Path) -> None:
    """The GUI hands its already-open model to the job (no second load, same weights in the rows)."""
    model = ScanModel.open(MODEL, small_weights, backend="torch")
    summary = ScreeningJob([phantom_inputs / "patient2"], model, tmp_path / "out", report=False).run()
    (row,) = read_results(tmp_path / "out")
    assert summary.ok == 1 and row["weights_sha256"] == model.weights_sha256


def test_a_3d_model_scores_whole_volumes_and_picks_key_slices_from_its_heatmap(tmp_path: Path,
                                                                                phantom_inputs: Path) -> None:
    import torch

    from engine.models import create_model
    from engine.preprocess import Preprocess
    from engine.weights import save_weights

    torch.manual_seed(0)
    net = create_model("covidnet3d_s", num_classes=2, in_chans=1)
    save_weights(net, tmp_path / "w3d", model_name="covidnet3d_s", create_kwargs={"num_classes": 2, "in_chans": 1},
                 preprocess=Preprocess.for_model("covidnet3d_s", input_size=(8, 48, 48)),
                 classes=["NonCOVID", "COVID"])
    summary = ScreeningJob([phantom_inputs / "volumes"], "covidnet3d_s", tmp_path / "out", weights=tmp_path / "w3d",
                           backend="torch", threshold=0.0).run()
    (row,) = read_results(tmp_path / "out")
    assert row["status"] == "ok" and row["aggregation"].startswith("3-D model") and row["slice_scores"] is None
    assert len(row["top_slices"]) == 3 and row["top_slice"] == row["heatmaps"][0]["z"]
    assert all(0 <= z < row["n_slices"] for z in row["top_slices"])
    assert summary.report is not None and summary.report_error is None     # a flagged 3-D page renders
