"""results.sqlite: one row per series (upsert), settings bound to the folder, readers, CSV."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.screen.store import ResultsStore, StoreError, read_results, write_csv


def _row(key: str, p: float | None, status: str = "ok", **kw) -> dict:
    return {"series_key": key, "scan_id": "S-" + key[-8:].rjust(8, "0"), "status": status, "probability": p,
            "flagged": p is not None and p >= 0.5, "path": f"/scans/{key}", "top_slices": [4, 2, 9],
            "top_slice": 4, "heatmaps": [{"z": 4, "ct": "heatmaps/x/z0004_ct.png"}], **kw}


def test_put_is_an_upsert_and_rows_sort_by_suspicion(tmp_path: Path) -> None:
    with ResultsStore(tmp_path) as store:
        store.put(_row("dicom:a", 0.2))
        store.put(_row("dicom:b", 0.9))
        store.put(_row("file:c", None, status="failed", reason="broken [/scans/c]"))
        store.put(_row("dicom:a", 0.7))                 # the same series again: replaced, not duplicated
        assert store.count() == 3 and store.count("failed") == 1
        order = [r["series_key"] for r in store.rows()]
        assert order == ["dicom:b", "dicom:a", "file:c"]
        assert store.finished_keys(include_failed=False) == {"dicom:a", "dicom:b"}
        assert store.integrity_ok()
    rows = read_results(tmp_path)
    assert rows[1]["probability"] == pytest.approx(0.7) and rows[1]["flagged"] is True
    assert rows[0]["top_slices"] == [4, 2, 9]                                  # JSON decoded
    assert rows[0]["heatmaps"][0]["ct"] == str(tmp_path / "heatmaps/x/z0004_ct.png")   # made absolute


def test_status_is_constrained_and_unknown_columns_are_refused(tmp_path: Path) -> None:
    with ResultsStore(tmp_path) as store:
        with pytest.raises(sqlite3.IntegrityError):
            store.put(_row("dicom:a", 0.1, status="maybe"))
        with pytest.raises(KeyError, match="patient_name"):
            store.put({**_row("dicom:a", 0.1), "patient_name": "Doe^John"})
        assert store.count() == 0


def test_settings_are_bound_to_the_folder(tmp_path: Path) -> None:
    with ResultsStore(tmp_path) as store:
        store.bind_job({"model": "m", "weights_sha256": "aa", "explainer": "cam"})
        store.put(_row("dicom:a", 0.3))
        store.bind_job({"model": "m", "weights_sha256": "aa", "explainer": "cam"})     # same: fine
        with pytest.raises(StoreError, match="weights_sha256: folder has 'aa', this run asks for 'bb'"):
            store.bind_job({"model": "m", "weights_sha256": "bb", "explainer": "cam"})


def test_database_is_wal_and_runs_left_running_are_marked_killed(tmp_path: Path) -> None:
    with ResultsStore(tmp_path) as store:
        first = store.start_run(argv=["x"], inputs=["/in"], workers=1, scheduler=None, host="h")
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with ResultsStore(tmp_path) as store:               # the first run never finished (killed)
        second = store.start_run(argv=["x"], inputs=["/in"], workers=1, scheduler=None, host="h")
        store.finish_run(second, "complete", n_pending=0, n_done=0, n_failed=0)
        outcomes = {r["id"]: r["outcome"] for r in store.runs()}
    assert outcomes == {first: "killed", second: "complete"}


def test_garbage_database_and_missing_results_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "results.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable SQLite database"):
        ResultsStore(tmp_path)
    with pytest.raises(StoreError, match="no screening results here"):
        read_results(tmp_path / "elsewhere")


def test_csv_has_one_line_per_row_with_lists_flattened(tmp_path: Path) -> None:
    path = write_csv([_row("dicom:a", 0.71234), _row("file:b", None, status="failed", reason="bad, really")],
                     tmp_path / "results.csv")
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert lines[1].startswith("S-0dicom:a,ok,0.7123,1,4,4 2 9,")
    assert '"bad, really"' in lines[2]
