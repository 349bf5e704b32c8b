"""Benchmark: timing protocol, GEMM peak, counts, report round trips, plots, cancel, CLI, reference data."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from engine.bench import (
    BenchReport,
    Cancelled,
    LatencyStats,
    PeakMemory,
    fraction_of_peak,
    load_references,
    measure_gemm_peak,
    run_benchmark,
    select_models,
    time_calls,
)
from engine.models import registry
from tests.engine.runtime.tiny_models import TinyCNN, tiny_config

FAST = dict(batch_sizes=(1, 4), warmup=1, min_repeats=3, max_repeats=5, budget_s=0.05)


class _Broken(nn.Module):
    def __init__(self, num_classes: int = 3, in_chans: int = 1, **_: object):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this network is broken on purpose")


@pytest.fixture
def tiny_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real registry plus three small test models (2-D, 3-D, one that fails)."""
    registry._ensure_loaded()
    table = dict(registry._REGISTRY)
    table["tiny2d"] = registry._Entry(lambda num_classes=3, in_chans=1, **k: TinyCNN(num_classes, in_chans, 2),
                                      tiny_config("tiny2d", 2))
    table["tiny3d"] = registry._Entry(lambda num_classes=3, in_chans=1, **k: TinyCNN(num_classes, in_chans, 3),
                                      tiny_config("tiny3d", 3, giant=True))
    table["tinybroken"] = registry._Entry(_Broken, tiny_config("tinybroken", 2, cam_layer="conv", classifier=""))
    monkeypatch.setattr(registry, "_REGISTRY", table)


# ------------------------------------------------------------------------------------------- timing
def test_latency_stats_percentiles() -> None:
    s = LatencyStats.from_samples(4, [0.001 * i for i in range(1, 11)])   # 1..10 ms
    assert s.repeats == 10 and s.min_ms == pytest.approx(1.0)
    assert s.p50_ms == pytest.approx(5.5) and s.p90_ms == pytest.approx(9.1)
    assert s.p50_ms_per_item == pytest.approx(5.5 / 4) and s.throughput == pytest.approx(4 / 5.5e-3)
    assert LatencyStats.from_dict(s.to_dict()) == s


def test_time_calls_stopping_rule_and_cancel() -> None:
    calls = []
    stats = time_calls(lambda: calls.append(time.sleep(0.002)), warmup=2, min_repeats=4, max_repeats=100,
                       budget_s=0.05)
    assert 4 <= stats.repeats <= 40 and len(calls) == stats.repeats + 2
    assert stats.min_ms >= 1.5
    capped = time_calls(lambda: None, warmup=0, min_repeats=2, max_repeats=7, budget_s=10.0)
    assert capped.repeats == 7
    # A call slower than the budget: one warm-up, and at most 3 timed calls are required.
    slow = time_calls(lambda: time.sleep(0.03), warmup=5, min_repeats=10, budget_s=0.02)
    assert slow.repeats == 3
    n = []
    with pytest.raises(Cancelled):
        time_calls(lambda: n.append(1), warmup=0, min_repeats=50, budget_s=10, cancelled=lambda: len(n) >= 3)
    assert len(n) == 3


def test_peak_memory_sees_a_transient_allocation() -> None:
    with PeakMemory(interval_s=0.001) as mem:
        block = np.ones(200 * 2**20 // 8)          # 200 MB, pages touched
        time.sleep(0.02)
        del block
    assert mem.peak_mb > 150


def test_gemm_peak_and_fraction() -> None:
    peak = measure_gemm_peak(threads=1, n=256, repeats=4)
    assert peak.gflops > 0.5 and peak.gflops >= peak.gflops_p50 and peak.threads == 1
    # 1 GMAC in 10 ms = 200 GFLOP/s achieved; against a 400 GFLOP/s peak -> one half.
    assert fraction_of_peak(1e9, 10.0, 400.0) == pytest.approx(0.5)
    assert fraction_of_peak(None, 10.0, 400.0) is None


# ------------------------------------------------------------------------------------------- selection
def test_select_models_respects_giant_flag_for_wildcards(tiny_registry: None) -> None:
    assert select_models(["tiny*"]) == ["tiny2d", "tinybroken"]
    assert select_models(["tiny*"], include_giant=True) == ["tiny2d", "tiny3d", "tinybroken"]
    assert select_models(["tiny3d"]) == ["tiny3d"]                # named explicitly -> run
    with pytest.raises(KeyError):
        select_models(["no_such_net"])
    everything = select_models()
    assert "tiny2d" in everything and "tiny3d" not in everything


# ------------------------------------------------------------------------------------------- full run
@pytest.fixture(scope="module")
def ref_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench")


def test_run_benchmark_end_to_end(tiny_registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUNGLENS_ONNX_EXPORTER", "torchscript")   # the broken model: one failed export, not two
    seen, rows_seen = [], []
    report = run_benchmark(["tiny2d", "tiny3d", "tinybroken"], threads=1, cache_dir=str(tmp_path / "c"),
                           gemm_sizes=(256,), progress=lambda d, t, m: seen.append((d, t, m)),
                           on_row=rows_seen.append, **FAST)
    assert not report.cancelled and report.gemm is not None and report.gemm.gflops > 0
    assert [(r.model, r.backend) for r in report.rows] == [
        ("tiny2d", "onnx"), ("tiny2d", "torch"), ("tiny3d", "onnx"), ("tiny3d", "torch"),
        ("tinybroken", "onnx"), ("tinybroken", "torch")]
    assert rows_seen == report.rows
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen) and seen[-1][:2] == (7, 7)

    ok = [r for r in report.rows if r.model != "tinybroken"]
    ref = TinyCNN(3, 1, 2)
    for r in ok:
        assert r.error is None, r.error
        assert set(r.latency) == {1, 4} and r.latency[4].repeats >= 3
        assert r.weights == "random" and r.threads == 1 and r.num_classes == 3
        assert r.peak_mem_mb is not None and r.peak_mem_mb >= 0
        for b, s in r.latency.items():
            assert r.gemm_fraction[b] == pytest.approx(2 * r.macs / (s.p50_ms_per_item / 1e3)
                                                        / (report.gemm.gflops * 1e9))
    two = report.row("tiny2d", "onnx")
    assert two.input_shape == (1, 32, 32)
    assert two.params_trainable == sum(p.numel() for p in ref.parameters())
    assert two.params_keras == two.params_trainable + 2 * (8 + 16)           # BN running mean + var
    # MACs by hand: conv1 16x16 out, 8 ch, 1x3x3 ; conv2 16x16 out, 16 ch, 8x3x3 ; fc 16x3
    assert two.macs == 16 * 16 * 8 * 9 + 16 * 16 * 16 * 8 * 9 + 16 * 3
    three = report.row("tiny3d", "torch")
    assert three.input_shape == (1, 8, 16, 16)
    assert three.macs == 4 * 8 * 8 * 8 * 27 + 4 * 8 * 8 * 16 * 8 * 27 + 16 * 3   # all three kernel dims
    assert report.row("tiny2d", "onnx").notes == [] or "onnx" in " ".join(report.row("tiny2d", "onnx").notes)
    broken = [r for r in report.rows if r.model == "tinybroken"]
    assert all(r.error and "broken on purpose" in r.error and not r.ok for r in broken)

    # JSON round trip, CSV, text, plots
    again = BenchReport.from_json(report.to_json())
    assert again.to_dict() == json.loads(report.to_json())
    assert again.row("tiny3d", "onnx").latency[4] == report.row("tiny3d", "onnx").latency[4]
    lines = report.to_csv().splitlines()
    header = lines[0].split(",")
    assert len(lines) == 7 and "b4_ms_per_item" in header and "b1_gemm_fraction" in header
    assert "tiny2d" in report.summary() and "GEMM peak" in report.summary()
    files = report.save(tmp_path / "out", plots=False)
    for name in ("json", "csv", "references_csv"):
        assert files[name].is_file() and files[name].stat().st_size > 500, name
    assert BenchReport.from_json(files["json"]).to_dict() == again.to_dict()

    figs = report.figures()
    assert set(figs) == {"latency_vs_macs", "accuracy_vs_macs", "latency_bars", "params_bars",
                         "gemm_fraction_bars"}
    scatter = figs["latency_vs_macs"].axes[0]
    assert len(scatter.collections) == 2                      # one point set per back-end
    assert sorted(len(c.get_offsets()) for c in scatter.collections) == [2, 2]   # tiny2d + tiny3d each
    bars = figs["latency_bars"].axes
    assert len(bars) == 2                                     # one panel per batch size
    (png,) = report.plot(tmp_path / "png", dpi=30, only=["gemm_fraction_bars"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cancel_returns_a_partial_report(tiny_registry: None, tmp_path: Path) -> None:
    stop = threading.Event()

    def on_row(row) -> None:
        stop.set()                                   # cancel after the first row

    report = run_benchmark(["tiny2d", "tiny3d"], threads=1, cache_dir=str(tmp_path), measure_gemm=False,
                           on_row=on_row, cancel=stop, **FAST)
    assert report.cancelled and len(report.rows) == 1
    assert report.gemm is None and "cancelled" in report.summary()


def test_evaluated_weights_bring_accuracy_and_p0_efficiency(tiny_registry: None, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.weights import save_weights

    torch.manual_seed(0)
    model = TinyCNN(2, 1, 2)
    save_weights(model, tmp_path / "weights" / "tiny2d", model_name="tiny2d", classes=["NonCOVID", "COVID"],
                 metrics={"test": {"accuracy": 0.9, "sensitivity": 85.0, "auc": 0.95}})
    monkeypatch.setenv("LUNGLENS_WEIGHTS_PATH", str(tmp_path / "weights"))
    report = run_benchmark(["tiny2d"], backends=("onnx",), threads=1, cache_dir=str(tmp_path / "c"),
                           measure_gemm=False, **FAST)
    row = report.rows[0]
    assert row.error is None and row.weights == "default" and row.num_classes == 2
    assert row.weights_sha256 and len(row.weights_sha256) == 64
    assert row.accuracy == pytest.approx(0.9) and row.sensitivity == pytest.approx(0.85)   # % -> fraction
    assert row.auc == pytest.approx(0.95) and row.specificity is None
    # P0 Table 7 efficiency: sensitivity in % over parameters in millions.
    assert row.sens_per_mparam == pytest.approx(85.0 / (row.params_trainable / 1e6))


# ------------------------------------------------------------------------------------------- references
def test_reference_rows_are_internally_consistent() -> None:
    refs = load_references()
    assert {r.paper for r in refs} == {"P0", "P1", "P2", "P3", "P4"}
    p0 = next(r for r in refs if r.label.startswith("P0 proposed") and r.accuracy is not None)
    assert (p0.params, p0.sensitivity, p0.time_per_image_s) == (1.26e6, 0.85, 1.25)
    for r in refs:
        for metric in (r.accuracy, r.sensitivity, r.specificity, r.precision, r.f1):
            assert metric is None or 0.0 < metric <= 1.0, r.label
        if r.sens_per_mparam is not None:           # P0 Table 7 = sensitivity (%) / params (M), as printed
            assert 100 * r.sensitivity / (r.params / 1e6) == pytest.approx(r.sens_per_mparam, abs=0.02), r.label
        if r.size_mb is not None and r.params is not None:
            assert r.params * 4 / 2**20 == pytest.approx(r.size_mb, abs=0.01), r.label
    known = set(registry.list_models())
    missing = {r.model for r in refs if r.model} - known
    # names of families not registered yet are allowed; the P0 and P4 ones must exist
    assert not missing & {"lightsqueeze_proposed", "covidnet3d_s", "covidnet3d_l", "mc3_18", "resnet3d_101"}


# ------------------------------------------------------------------------------------------- CLI
def test_cli_json_is_one_document(tiny_registry: None, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from engine.cli import main

    monkeypatch.setenv("LUNGLENS_CACHE_DIR", str(tmp_path))
    rc = main(["bench", "--models", "tiny2d", "--json", "--quick", "--no-gemm", "--batch-sizes", "1", "2",
               "--threads", "1", "--csv", str(tmp_path / "b.csv")])
    out = capsys.readouterr()
    assert rc == 0
    doc = json.loads(out.out)
    assert [r["backend"] for r in doc["rows"]] == ["onnx", "torch"]
    assert doc["rows"][0]["latency"]["2"]["batch"] == 2
    assert "[1/2] tiny2d on onnx" in out.err
    assert (tmp_path / "b.csv").read_text().startswith("model,backend,")
    assert main(["bench", "--models", "tinybroken", "--quick", "--no-gemm", "-q"]) == 1
    assert main(["bench", "--models", "nope_net"]) == 2
    assert "unknown model 'nope_net'" in capsys.readouterr().err
    assert main(["bench", "--models", "tiny*", "--list"]) == 0
    assert capsys.readouterr().out.split() == ["tiny2d", "tinybroken"]


def test_cpu_time_is_recorded_per_call() -> None:
    """A loop that burns 10 ms of CPU is charged >= 10 ms however long it waits for a core; a 10 ms sleep
    is charged almost nothing."""
    def spin() -> None:
        t = time.process_time()
        while time.process_time() - t < 0.01:
            pass

    busy = time_calls(spin, warmup=0, min_repeats=3, max_repeats=3)
    idle = time_calls(lambda: time.sleep(0.01), warmup=0, min_repeats=3, max_repeats=3)
    assert busy.cpu_min_ms >= 10.0 and busy.min_ms >= 9.0
    assert idle.cpu_min_ms < 3.0 and idle.min_ms >= 9.0
    assert LatencyStats.from_dict(busy.to_dict()) == busy
