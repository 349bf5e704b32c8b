"""The same job on every execution engine: in-process, a process pool (--workers) and Dask (--scheduler)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.screen.job import JobError, ScreeningJob
from engine.screen.store import read_results

from .conftest import MODEL

COMPARED = ("status", "probability", "top_slices", "slice_scores", "reason", "n_slices", "series_uid")


def _table(out: Path) -> dict[str, dict]:
    return {r["series_key"]: {k: r.get(k) for k in COMPARED} for r in read_results(out)}


@pytest.fixture(scope="module")
def inline(tmp_path_factory, phantom_inputs: Path, small_weights: Path) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("inline") / "out"
    ScreeningJob([phantom_inputs], MODEL, out, weights=small_weights, backend="torch", report=False).run()
    return _table(out)


def _assert_same(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        for col in COMPARED:
            if col == "probability" and a[key][col] is not None:
                assert b[key][col] == pytest.approx(a[key][col], abs=1e-5), (key, col)
            elif col == "slice_scores" and a[key][col] is not None:
                assert b[key][col] == pytest.approx(a[key][col], abs=1e-4), (key, col)
            else:
                assert b[key][col] == a[key][col], (key, col)


def test_dask_cluster_gives_the_same_rows(tmp_path: Path, phantom_inputs: Path, small_weights: Path,
                                          inline) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) \
            as cluster:
        summary = ScreeningJob([phantom_inputs], MODEL, tmp_path / "out", weights=small_weights, backend="torch",
                               scheduler=cluster.scheduler_address, report=False).run()
    assert summary.engine == f"dask {cluster.scheduler_address}" and summary.complete
    _assert_same(inline, _table(tmp_path / "out"))


def test_unreachable_scheduler_is_a_clear_error(tmp_path: Path, phantom_inputs: Path, small_weights: Path) -> None:
    job = ScreeningJob([phantom_inputs / "patient1"], MODEL, tmp_path / "out", weights=small_weights,
                       backend="torch", scheduler="tcp://127.0.0.1:9", scheduler_timeout_s=1.0, report=False)
    with pytest.raises(JobError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        job.run()


@pytest.mark.slow
def test_worker_processes_give_the_same_rows(tmp_path: Path, phantom_inputs: Path, small_weights: Path,
                                             inline) -> None:
    summary = ScreeningJob([phantom_inputs], MODEL, tmp_path / "out", weights=small_weights, backend="torch",
                           workers=2, threads=1, report=False).run()
    assert summary.engine == "processes x 2" and summary.complete
    table = _table(tmp_path / "out")
    _assert_same(inline, table)
    workers = {r["worker"] for r in read_results(tmp_path / "out") if r["status"] == "ok"}
    assert len(workers) >= 1 and all(w.split(":")[1] != str(__import__("os").getpid()) for w in workers)


@pytest.mark.slow
def test_dask_worker_processes_give_the_same_rows(tmp_path: Path, phantom_inputs: Path, small_weights: Path,
                                                  inline) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster:
        summary = ScreeningJob([phantom_inputs], MODEL, tmp_path / "out", weights=small_weights, backend="torch",
                               scheduler=cluster.scheduler_address, threads=1, report=False).run()
    assert summary.complete
    _assert_same(inline, _table(tmp_path / "out"))
