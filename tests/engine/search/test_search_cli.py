"""`lunglens-engine search` and `python -m engine.train.cli_train3d` end to end on a few tiny phantoms."""

from __future__ import annotations

import json

import pytest

from engine.cli import main as engine_main


@pytest.mark.slow
def test_search_cli_then_train_cli_then_weights(tmp_path, capsys) -> None:
    data = tmp_path / "phantoms"
    out = tmp_path / "search"
    rc = engine_main(["search", "--space", "covidnet3d_s", "--data", str(data), "--make-phantoms", "8",
                      "--split", "", "--out", str(out), "--epochs", "1", "--batch-size", "2",
                      "--steps-per-epoch", "1", "--input-size", "8,32,32", "--eval-top-k", "1", "--threads", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "[search] epoch 1 done" in text and "selected genotype" in text
    selected = json.loads((out / "genotype_selected.json").read_text())
    assert len(selected["genotype"]) == 21

    from engine.train.cli_train3d import main as train_main

    run = tmp_path / "run"
    weights = tmp_path / "weights"
    rc = train_main(["--model", "covidnet3d_s", "--genotype", str(out / "genotype_selected.json"),
                     "--macro", '{"stem_stride": [1, 2, 2], "strides": [2, 2, 1, 1, 1, 1]}',
                     "--data", str(data), "--input-size", "8,32,32", "--epochs", "1", "--batch-size", "2",
                     "--out", str(run), "--save-weights", str(weights), "--threads", "1",
                     "--notes", "test run on synthetic phantoms"])
    assert rc == 0
    results = json.loads((run / "results.json").read_text())
    assert "test" in results and "localisation" in results

    from engine.weights import load_weights

    loaded = load_weights(weights)
    assert loaded.model.genotype == selected["genotype"]
    assert loaded.model.macro == {"stem_stride": [1, 2, 2], "strides": [2, 2, 1, 1, 1, 1]}
    assert tuple(loaded.preprocess.input_size) == (8, 32, 32) and loaded.preprocess.spatial_dims == 3
    assert loaded.classes == ["NonCOVID", "COVID"]
