"""bench/run_all.py: runs each bench_*.py in its own process and folds their JSON into one document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import run_all


def _scripts(root: Path) -> Path:
    pkg = root / "fakebench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "bench_ok.py").write_text('import json, sys\nprint("progress...", file=sys.stderr)\n'
                                     'print(json.dumps({"value": 42, "args": sys.argv[1:]}, indent=1))\n')
    (pkg / "bench_noisy.py").write_text('print("warming up")\nprint(\'{"value": 7}\')\n')
    (pkg / "bench_crash.py").write_text('raise SystemExit("cannot run here")\n')
    (pkg / "helper.py").write_text("raise RuntimeError('not a bench script, never run')\n")
    return pkg


def test_run_all_collects_every_script(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _scripts(tmp_path)
    monkeypatch.setenv("LUNGLENS_BENCH_ARGS_BENCH_OK", "--quick --x 1")
    rc = run_all.main(["--dir", str(pkg), "--out", str(tmp_path / "all.json")])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1                                              # one script failed
    assert sorted(doc["scripts"]) == ["bench_crash", "bench_noisy", "bench_ok"]
    ok = doc["scripts"]["bench_ok"]
    assert ok["rc"] == 0 and ok["result"] == {"value": 42, "args": ["--quick", "--x", "1"]}
    assert doc["scripts"]["bench_noisy"]["result"] == {"value": 7}   # text before the JSON is tolerated
    crash = doc["scripts"]["bench_crash"]
    assert crash["rc"] != 0 and "cannot run here" in crash["stderr_tail"] and "result" not in crash
    assert json.loads((tmp_path / "all.json").read_text()) == doc

    assert run_all.main(["--dir", str(pkg), "--only", "ok", "noisy"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)["scripts"]) == ["bench_noisy", "bench_ok"]
    assert run_all.main(["--dir", str(pkg), "--only", "nope"]) == 2
    assert run_all.main(["--dir", str(pkg), "--list", "--skip", "crash"]) == 0
    assert capsys.readouterr().out.split() == ["bench_noisy", "bench_ok"]


def test_every_real_bench_script_documents_itself() -> None:
    names = run_all.discover()
    assert {"bench_inference", "bench_models", "bench_scan"} <= set(names)
    for name in ("bench_inference", "bench_models", "bench_scan"):
        text = (Path(run_all.__file__).parent / f"{name}.py").read_text()
        assert "Prints one JSON object" in text and "def main(" in text


def test_parse_json_output_rejects_text() -> None:
    with pytest.raises(ValueError):
        run_all.parse_json_output("no json here\n")
    with pytest.raises(ValueError):
        run_all.parse_json_output("")


@pytest.mark.slow
def test_scan_and_inference_scripts_run_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real bench scripts, shrunk: a 24-slice 128² phantom through load + screen + CAM; the inference
    probes in --quick mode.  Checks they run and report consistent numbers (no speed assertions)."""
    monkeypatch.setenv("LUNGLENS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LUNGLENS_WEIGHTS_PATH", str(tmp_path / "no-weights"))
    monkeypatch.setenv("LUNGLENS_BUNDLED_WEIGHTS", "0")      # the paper's 227² architecture, untrained
    monkeypatch.setenv("LUNGLENS_BENCH_ARGS_BENCH_SCAN", "--slices 24 --size 128 --repeats 1")
    monkeypatch.setenv("LUNGLENS_BENCH_ARGS_BENCH_INFERENCE", "--quick")
    out = tmp_path / "all.json"
    rc = run_all.main(["--only", "scan", "inference", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert rc == 0, {k: v.get("stderr_tail") for k, v in doc["scripts"].items()}
    scan = doc["scripts"]["bench_scan"]["result"]
    assert scan["backend"] == "onnx" and scan["weights"] == "random" and scan["slices"] == 24
    st = scan["stages_s"]
    assert st["total"]["min"] >= st["screen"]["min"] > 0 and st["cam"]["min"] > 0
    inf = doc["scripts"]["bench_inference"]["result"]
    light = inf["lightsqueeze_proposed"]
    assert light["input"] == [1, 227, 227] and abs(light["gmacs"] - 0.4525) < 0.001
    assert light["onnx_export"]["max_prob_diff"] <= 1e-4
    assert {"b1", "b16"} <= set(light["onnx_fp32"]) and "torch_channels_last" in light
    assert inf["covidnet3d_s"]["input"] == [1, 16, 64, 64]
    assert inf["targets"][0]["target"] == 5.0
