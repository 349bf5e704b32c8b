"""``lunglens-engine models``: table and JSON output."""

from __future__ import annotations

import json

import pytest

from engine.cli import main


def test_models_json_for_a_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "lightsqueeze_*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by = {r["name"]: r for r in rows}
    assert set(by) == {"lightsqueeze_plain", "lightsqueeze_bypass", "lightsqueeze_proposed"}
    p = by["lightsqueeze_proposed"]
    assert (p["params"], p["params_keras"], p["in_chans"], p["num_classes"]) == (1_272_450, 1_273_090, 3, 2)
    assert p["matches_spec"] is True and p["paper"] == "P0" and p["input_size"] == [227, 227]
    assert p["gmacs"] == pytest.approx(0.467, abs=5e-4)


def test_models_table_and_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "spp_covid_net", "--in-chans", "1", "--num-classes", "2"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("spp_covid_net"))
    assert "1×256×256 →2" in line and "0.183" in line and "gradcam" in line   # 1-channel conv1
    assert out.splitlines()[0].split()[:4] == ["model", "paper", "input", "params"]


def test_models_unknown_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "no_such_net*"]) == 1
    assert "no registered model" in capsys.readouterr().err
