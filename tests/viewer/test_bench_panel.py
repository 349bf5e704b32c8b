"""Tools ▸ Benchmark…: the registry-driven benchmark (``engine.bench.run_benchmark``) in a worker -- model chooser
with giant models behind a checkbox, live rows beside the papers' reference rows, GEMM peak and achieved
fraction, plots, CSV/PNG export, cancel, closing the window while it runs.

Real registered networks at their reduced test inputs, torch back-end, tiny timing budgets: a few seconds.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PySide6.QtCore import Qt

from viewer.qt.bench_panel import KIND_ROLE, REFERENCE_BACKGROUND, gemm_text

pytestmark = pytest.mark.gui
TIMEOUT = 180000
SMALL = ["mobilenet_v3_small", "shufflenet_v1"]


@pytest.fixture
def panel(qtbot, make_window, tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGLENS_CACHE_DIR", str(tmp_path / "cache"))      # no exports into the user's cache
    window = make_window()
    with qtbot.waitSignal(window.tools.open_bench().models_listed, timeout=TIMEOUT):
        pass
    p = window.tools.bench_panel
    p.extra = {"gemm_sizes": (256,), "budget_s": 0.05, "max_repeats": 4, "cache_dir": str(tmp_path / "bench")}
    p.window_ref = window
    return p


def _configure(panel, models=SMALL, batch="1, 2") -> None:
    panel.select_models(models)
    panel.onnx_check.setChecked(False)
    panel.torch_check.setChecked(True)
    panel.batch_edit.setText(batch)
    panel.threads_spin.setValue(1)
    panel.quick_check.setChecked(True)


def test_model_chooser_hides_giant_models_behind_the_checkbox(panel) -> None:
    from engine.models.registry import list_models

    names = [panel.model_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(panel.model_list.count())]
    assert names == list_models(include_giant=True)
    giant = [i.name for i in panel.infos if i.giant]
    assert "vgg16" in giant
    visible = {n for i, n in enumerate(names) if not panel.model_list.item(i).isHidden()}
    assert not visible & set(giant)
    panel.select_all()
    assert "vgg16" not in panel.chosen_models() and "lightsqueeze_proposed" in panel.chosen_models()
    panel.giant_check.setChecked(True)
    panel.select_all()
    assert "vgg16" in panel.chosen_models()
    panel.giant_check.setChecked(False)                   # hidden again -> not run even though checked
    assert "vgg16" not in panel.chosen_models()
    panel.select_none()
    assert not panel.run_button.isEnabled() and "at least one network" in panel.command_label.text()
    _configure(panel)
    panel.batch_edit.setText("1, x")
    assert not panel.run_button.isEnabled() and "not a whole number" in panel.command_label.text()
    panel.batch_edit.setText("2 1")
    assert panel.run_button.isEnabled()
    assert "lunglens-engine bench --models mobilenet_v3_small shufflenet_v1" in panel.command_label.text()
    # the papers' reference rows are there before any run
    kinds = {panel.proxy.index(i, 0).data(KIND_ROLE) for i in range(panel.proxy.rowCount())}
    assert kinds == {"paper"}


def test_benchmark_runs_rows_references_plot_and_exports(qtbot, panel, tmp_path) -> None:
    _configure(panel)
    seen_rows = []
    panel.table_model.rowsInserted.connect(lambda *_: seen_rows.append(len(panel.table_model.rows)))
    with qtbot.waitSignal(panel.job_finished, timeout=TIMEOUT) as blocker:
        worker = panel.start()
        assert worker is not None and not panel.run_button.isEnabled() and panel.cancel_button.isEnabled()
        assert not panel.model_list.isEnabled()
    assert blocker.args[0] == "result", panel.status_label.text()
    report = panel.report
    assert [(r.model, r.backend) for r in report.rows] == [(m, "torch") for m in SMALL]
    assert seen_rows[:2] == [1, 2] or seen_rows[0] == 1                  # rows arrived while it ran
    for r in report.rows:
        assert r.error is None and set(r.latency) == {1, 2} and r.threads == 1
        assert r.input_shape[1:] == (128, 128)                           # quick: the reduced test input
        assert r.gemm_fraction[2] > 0 and r.params_trainable > 1e5 and r.macs > 1e6

    # table: ours + the papers' rows for these models, distinguishable
    shown = [(panel.proxy.index(i, 0).data(KIND_ROLE), panel.proxy.index(i, 1).data())
             for i in range(panel.proxy.rowCount())]
    ours = [m for k, m in shown if k == "ours"]
    papers = [m for k, m in shown if k == "paper"]
    assert sorted(ours) == sorted(SMALL)
    assert papers and set(papers) <= set(SMALL)                          # filter: benchmarked models only
    paper_row = next(i for i in range(panel.proxy.rowCount()) if panel.proxy.index(i, 0).data(KIND_ROLE) == "paper")
    cell = panel.proxy.index(paper_row, 0)
    assert cell.data(Qt.ItemDataRole.BackgroundRole).color() == REFERENCE_BACKGROUND
    assert cell.data(Qt.ItemDataRole.FontRole).italic() and "paper" in cell.data()
    ours_row = next(i for i in range(panel.proxy.rowCount()) if panel.proxy.index(i, 0).data(KIND_ROLE) == "ours")
    assert panel.proxy.index(ours_row, 0).data(Qt.ItemDataRole.BackgroundRole) is None
    headers = [panel.table_model.headerData(c, Qt.Orientation.Horizontal) for c in
               range(panel.table_model.columnCount())]
    assert "ms/item b1" in headers and "ms/item b2" in headers and "% GEMM peak b2" in headers
    col = headers.index("ms/item b2")
    r0 = report.row(panel.proxy.index(ours_row, 1).data(), "torch")
    assert panel.proxy.index(ours_row, col).data() == f"{r0.ms_per_item(2):.2f}"
    panel.ref_filter.setCurrentIndex(0)
    assert panel.proxy.rowCount() == len(report.rows) + len(report.references) > 10
    panel.ref_filter.setCurrentIndex(2)
    assert panel.proxy.rowCount() == len(report.rows)
    # sortable by latency (numeric)
    panel.table.sortByColumn(col, Qt.SortOrder.DescendingOrder)
    lat = [float(panel.proxy.index(i, col).data()) for i in range(panel.proxy.rowCount())]
    assert lat == sorted(lat, reverse=True)

    # GEMM peak and the achieved fraction
    text = panel.gemm_label.text()
    assert f"{report.gemm.gflops:.1f} GFLOP/s" in text and "Best achieved" in text and text == gemm_text(report)
    best = max(f for r in report.rows for f in r.gemm_fraction.values())
    assert f"{100 * best:.0f} %" in text

    # the plot shown was drawn in the worker: an image with content, not a blank
    assert panel.current_figure() in panel.images
    pixels = panel.images[panel.current_figure()]
    assert pixels.ndim == 3 and pixels.shape[2] == 4 and pixels.shape[0] > 200
    assert len(np.unique(pixels.reshape(-1, 4), axis=0)) > 20
    assert panel.plot_label.pixmap() is not None and not panel.plot_label.pixmap().isNull()
    # another figure is drawn on demand
    with qtbot.waitSignal(panel.figure_drawn, timeout=TIMEOUT):
        panel.show_figure("latency_bars")
    assert "latency_bars" in panel.images

    # exports: CSV (rows + reference rows) and the shown plot as PNG
    rows_csv, refs_csv = panel.export_csv(tmp_path / "out" / "bench")
    assert rows_csv.suffix == ".csv"
    with rows_csv.open() as fh:
        got = list(csv.DictReader(fh))
    assert [g["model"] for g in got] == SMALL and float(got[0]["b2_ms_per_item"]) > 0
    assert got[0]["b2_gemm_fraction"] != ""
    with refs_csv.open() as fh:
        assert len(list(csv.DictReader(fh))) == len(report.references)
    png = tmp_path / "out" / "latency.png"
    worker = panel.export_png(png)
    qtbot.waitUntil(lambda: worker.is_done, timeout=TIMEOUT)
    assert worker.outcome == "result" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # everything into a folder, then open the saved report again
    worker = panel.save_all(tmp_path / "all")
    qtbot.waitUntil(lambda: worker.is_done, timeout=TIMEOUT)
    saved = json.loads((tmp_path / "all" / "bench.json").read_text())
    assert [r["model"] for r in saved["rows"]] == SMALL
    with qtbot.waitSignal(panel.report_shown, timeout=TIMEOUT):
        panel.open_report(tmp_path / "all" / "bench.json")
    assert [r.model for r in panel.report.rows] == SMALL and panel.report is not report


def test_cancel_keeps_the_partial_report(qtbot, panel) -> None:
    _configure(panel, models=["mobilenet_v3_small", "mobilenet_v2", "shufflenet_v1"])
    panel.extra["budget_s"] = 0.5
    panel.extra["max_repeats"] = 50

    def cancel_after_first_row(*_args) -> None:
        if panel.cancel_button.isEnabled():
            qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)

    panel.table_model.rowsInserted.connect(cancel_after_first_row)
    with qtbot.waitSignal(panel.job_finished, timeout=TIMEOUT) as blocker:
        panel.start()
    assert blocker.args[0] == "cancelled"
    assert panel.report is not None and panel.report.cancelled
    assert 1 <= len(panel.report.rows) < 3
    assert "Cancelled" in panel.status_label.text() and panel.run_button.isEnabled()
    assert panel.csv_button.isEnabled()


def test_closing_the_window_while_the_benchmark_runs(qtbot, panel) -> None:
    _configure(panel, models=["mobilenet_v3_small", "mobilenet_v2"])
    panel.extra.update(budget_s=5.0, max_repeats=1000, min_repeats=1000)
    worker = panel.start()
    qtbot.waitUntil(lambda: worker.is_running, timeout=TIMEOUT)
    qtbot.wait(300)                                        # somewhere inside the benchmark
    window = panel.window_ref
    window.close()
    assert worker.is_done and worker.outcome == "cancelled"
    assert window.tools.bench_panel is None


def test_gemm_line_warns_when_the_machine_was_busy() -> None:
    from engine.bench import BenchReport, BenchRow, GemmPeak, LatencyStats

    row = BenchRow(model="m", backend="onnx", macs=1e9, threads=2)
    row.latency[16] = LatencyStats(batch=16, repeats=5, p50_ms=160.0, p90_ms=170.0, min_ms=150.0, mean_ms=160.0)
    row.gemm_fraction[16] = 0.5
    idle = BenchReport(rows=[row], gemm=GemmPeak(gflops=40.0, gflops_p50=38.0, n=2048, threads=2, repeats=12,
                                                 library="mkl", gflops_cpu=42.0))
    text = gemm_text(idle)
    assert "40.0 GFLOP/s" in text and "Best achieved: <b>50 %</b>" in text and "m on onnx, batch 16" in text
    assert "busy" not in text
    busy = BenchReport(rows=[row], gemm=GemmPeak(gflops=14.0, gflops_p50=14.0, n=2048, threads=2, repeats=3,
                                                 library="mkl", gflops_cpu=127.0))
    assert "busy" in gemm_text(busy) and "artefacts" in gemm_text(busy)
    assert "not measured" in gemm_text(BenchReport(rows=[row]))


def test_the_command_line_shown_is_what_lunglens_engine_bench_parses() -> None:
    import argparse
    import shlex

    from engine.bench.cli import add_arguments
    from viewer.workers.bench_jobs import BenchSettings, parse_batch_sizes

    settings = BenchSettings(models=("mobilenet_v2", "shufflenet_v1"), backends=("torch",),
                             batch_sizes=parse_batch_sizes("16; 1,4"), threads=1, quick=True, measure_gemm=False)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(shlex.split(settings.command_text())[2:])
    assert args.models == ["mobilenet_v2", "shufflenet_v1"] and args.backends == ["torch"]
    assert args.batch_sizes == [1, 4, 16] and args.threads == 1 and args.quick and args.no_gemm
    kw = settings.run_kwargs()
    assert kw["input_size"] == "test" and kw["batch_sizes"] == (1, 4, 16) and kw["measure_gemm"] is False
    with pytest.raises(ValueError, match="out of range"):
        parse_batch_sizes("0")
