"""``lunglens-screen`` and ``lunglens-engine screen``: arguments, exit codes, progress lines, --report-only."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from engine import cli as engine_cli
from engine.screen import cli
from engine.screen.job import JobProgress
from engine.screen.store import read_results

from .conftest import MODEL


def _args(inputs: Path, out: Path, weights: Path, *extra: str) -> list[str]:
    return [str(inputs), "--model", MODEL, "--weights", str(weights), "--out", str(out), "--backend", "torch",
            *extra]


def test_screen_command_writes_results_and_reports_failures_by_exit_code(tmp_path: Path, phantom_inputs: Path,
                                                                          small_weights: Path, capsys) -> None:
    out = tmp_path / "out"
    rc = cli.main(_args(phantom_inputs / "patient0", out, small_weights, "--no-report", "--json"))
    captured = capsys.readouterr()
    assert rc == cli.EXIT_FAILED_SERIES                     # patient0 holds the corrupt broken.dcm
    summary = json.loads(captured.out)
    assert summary["total"] == 2 and summary["ok"] == 1 and summary["failed"] == 1 and summary["complete"]
    # stderr is not a terminal here: one line per finished series, then the summary and the notice
    assert "FAILED: the file is neither DICOM" in captured.err and "P=" in captured.err
    assert "not a diagnosis" in captured.err
    assert not (out / "report.pdf").exists() and (out / "results.csv").is_file()
    # a rerun resumes: nothing left to do, same exit code, nothing duplicated
    assert cli.main(_args(phantom_inputs / "patient0", out, small_weights, "--no-report", "-q")) == 3
    assert len(read_results(out)) == 2


def test_lunglens_engine_screen_routes_to_the_same_command(tmp_path: Path, phantom_inputs: Path,
                                                           small_weights: Path, capsys) -> None:
    out = tmp_path / "out"
    rc = engine_cli.main(["screen", *_args(phantom_inputs / "patient1", out, small_weights, "--no-report", "-q")])
    assert rc == cli.EXIT_OK
    (row,) = read_results(out)
    assert row["status"] == "ok" and row["description"] == "phantom 1"


def test_report_only_rebuilds_csv_and_pdf(tmp_path: Path, phantom_inputs: Path, small_weights: Path,
                                          capsys) -> None:
    out = tmp_path / "out"
    assert cli.main(_args(phantom_inputs / "patient1", out, small_weights, "--no-report", "-q")) == 0
    (out / "results.csv").unlink()
    assert cli.main(["--report-only", "--out", str(out), "--hide-paths"]) == 0
    assert (out / "results.csv").read_text().count("\n") == 2
    pdf = (out / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    assert str(phantom_inputs).encode() not in pdf          # --hide-paths: no paths in the PDF


def test_setup_errors_exit_1_with_a_message(tmp_path: Path, phantom_inputs: Path, small_weights: Path,
                                            capsys) -> None:
    assert cli.main(_args(phantom_inputs, phantom_inputs / "out", small_weights)) == cli.EXIT_SETUP
    assert "inside the input folder" in capsys.readouterr().err and not (phantom_inputs / "out").exists()
    assert cli.main(["--out", str(tmp_path / "o"), "--model", MODEL]) == cli.EXIT_SETUP
    assert "name at least one INPUT" in capsys.readouterr().err
    assert cli.main([str(phantom_inputs), "--out", str(tmp_path / "o")]) == cli.EXIT_SETUP
    assert "--model is required" in capsys.readouterr().err
    assert cli.main(["--report-only", "--out", str(tmp_path / "empty")]) == cli.EXIT_SETUP
    assert "no screening results here" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([str(phantom_inputs), "--model", MODEL, "--out", str(tmp_path / "o"), "--explainer", "saliency"])


def test_progress_bar_on_a_terminal_shows_counts_eta_and_current_series() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = cli.ProgressBar(stream, width=10)
    bar(JobProgress(done=3, total=12, failed=1, flagged=2, fraction=0.25, elapsed_s=65.0, eta_s=195.0,
                    current="ct (phantom 1, 8 sl.)", message="screening"))
    bar.close()
    text = stream.getvalue()
    assert text.startswith("\r[##--------] 3/12 series  25%  elapsed 01:05  ETA 03:15  flagged 2  failed 1")
    assert "| ct (phantom 1, 8 sl.)" in text and text.endswith("\n")
