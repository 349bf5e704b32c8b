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
