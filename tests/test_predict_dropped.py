"""`predict` and `evaluate --json` on a file with empty titles: rows are dropped, counted and reported,
never silently lost."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from headline_scorer import SAMPLE_DATA
from headline_scorer.cli import app
from tests.cli_support import explain, invoke
from training.data import load_dataset
from training.mapping import SEED
from training.train import TrainConfig, train


@pytest.mark.slow
def test_predict_reports_rows_dropped_for_an_empty_title(tmp_path: Path) -> None:
    model = train(load_dataset(SAMPLE_DATA / "train.csv", SEED), tmp_path / "m", TrainConfig(epochs=1))
    frame = pd.read_csv(SAMPLE_DATA / "inference.csv", dtype=str, keep_default_na=False).iloc[:5]
    frame.loc[[1, 3], "post_title"] = ["", "   "]
    data = tmp_path / "in.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "p.csv"
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(
            app, ["predict", "--model", str(model.best_checkpoint), "--data", str(data), "--out", str(out)]
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert result.exit_code == 0, result.output
    assert "wrote 3 predictions" in result.stdout
    assert f"{data}: dropped 2 of 5 rows: 2 for empty title (rows 2, 4)" in result.stderr
    assert pd.read_csv(out, dtype={"id": str})["id"].tolist() == frame["id"].iloc[[0, 2, 4]].tolist()


@pytest.mark.slow
def test_evaluate_json_reports_rows_dropped(tmp_path: Path) -> None:
    model = train(load_dataset(SAMPLE_DATA / "train.csv", SEED), tmp_path / "m", TrainConfig(epochs=1))
    frame = pd.read_csv(SAMPLE_DATA / "train.csv", dtype=str, keep_default_na=False).iloc[:40]
    frame.loc[[0, 7, 9], "post_title"] = ""
    data = tmp_path / "labelled.csv"
    frame.to_csv(data, index=False)
    result = invoke("evaluate", "--model", model.best_checkpoint, "--data", data, "--json")
    assert result.exit_code == 0, explain(result)
    metrics = json.loads(result.stdout)  # stdout stays one JSON object
    assert (metrics["rows"], metrics["rows_read"], metrics["rows_dropped"]) == (37, 40, 3)
    assert f"{data}: dropped 3 of 40 rows: 3 for empty title (rows 1, 8, 10)" in result.stderr
