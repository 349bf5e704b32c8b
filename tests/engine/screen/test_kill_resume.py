"""Crash safety: SIGKILL the real command mid-screening and mid-report, rerun it, lose and duplicate nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from engine.io import discover
from engine.screen.store import read_results

from .conftest import MODEL, make_phantom_folder

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def _command(inputs: Path, out: Path, weights: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "engine.screen.cli", str(inputs), "--model", MODEL, "--weights", str(weights),
            "--out", str(out), "--backend", "torch", "--threads", "1", "--quiet", *extra]


def _rows(out: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{out / 'results.sqlite'}?mode=ro", uri=True, timeout=0.2)
        try:
            return int(con.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen, condition, timeout: float = 240.0) -> bool:
    """SIGKILL ``proc`` as soon as ``condition()`` holds; False if it exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if condition():
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            return True
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the screening command neither progressed nor finished in time")


def test_sigkill_then_rerun_loses_nothing_and_duplicates_nothing(tmp_path: Path, small_weights: Path) -> None:
    inputs = make_phantom_folder(tmp_path / "scans", n_dicom=5)
    out = tmp_path / "out"
    n_series = len(discover(inputs)) + 1          # + the corrupt broken.dcm, recorded as failed
    cmd = _command(inputs, out, small_weights)

    # 1) killed while screening, right after the second series was committed
    assert _kill_when(_start(cmd), lambda: _rows(out) >= 2), "finished before it could be killed"
    first = {r["series_key"]: (r["finished_at"], r["run_id"]) for r in read_results(out)}
    assert 2 <= len(first) < n_series

    # 2) killed again mid-series: 0.15 s after the next commit of this run
    marks: list[float] = []

    def later() -> bool:
        if not marks and _rows(out) > len(first):
            marks.append(time.monotonic())
        return bool(marks) and time.monotonic() - marks[0] > 0.15

    killed_again = _kill_when(_start(cmd), later)

    # 3) killed while writing report.pdf (its temporary file exists), if we catch that moment
    def writing_report() -> bool:
        return any(p.name.startswith(".report.pdf") for p in out.iterdir())

    if killed_again:
        _kill_when(_start(cmd), writing_report)

    # 4) the rerun that finishes
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 3, done.stderr          # complete, one failed series (broken.dcm)

    con = sqlite3.connect(out / "results.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    outcomes = [r[0] for r in con.execute("SELECT outcome FROM runs ORDER BY id")]
    con.close()
    # killed runs are marked by the next run; a run killed while writing the PDF had finished screening
    assert outcomes[0] == "killed" and outcomes[-1] == "complete" and set(outcomes) <= {"killed", "complete"}

    rows = read_results(out)
    assert len(rows) == n_series and len({r["series_key"] for r in rows}) == n_series
    assert sum(r["status"] == "failed" for r in rows) == 1
    for r in rows:            # series finished before the first kill were not screened again
        if r["series_key"] in first:
            assert (r["finished_at"], r["run_id"]) == first[r["series_key"]]
    ok_ids = {r["scan_id"] for r in rows if r["status"] == "ok"}
    assert {p.name for p in (out / "heatmaps").iterdir()} == ok_ids
    for r in rows:
        for h in r.get("heatmaps") or []:
            for key in ("ct", "map", "overlay"):
                Image.open(h[key]).verify()          # every PNG complete
    assert not [p for p in out.rglob("*.tmp")]                       # no debris of the killed runs
    assert len((out / "results.csv").read_text().splitlines()) == n_series + 1
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")


def test_sigkill_with_worker_processes_leaves_no_orphans_and_resumes(tmp_path: Path, small_weights: Path) -> None:
    psutil = pytest.importorskip("psutil")
    inputs = make_phantom_folder(tmp_path / "scans", n_dicom=4)
    out = tmp_path / "out"
    n_series = len(discover(inputs)) + 1
    cmd = _command(inputs, out, small_weights, "--workers", "2", "--no-report")
    proc = _start(cmd)
    parent = psutil.Process(proc.pid)
    children: list = []

    def first_commit() -> bool:
        children[:] = parent.children(recursive=True) or children
        return _rows(out) >= 1

    assert _kill_when(proc, first_commit), "finished before it could be killed"
    assert children, "the job should have started worker processes"
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"worker processes outlived their killed parent: {alive}"
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 3, done.stderr
    rows = read_results(out)
    assert len(rows) == len({r["series_key"] for r in rows}) == n_series
