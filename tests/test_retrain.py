"""Retrain and export behind the gate: both directions, reports, loop, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artifact.errors import GateRejectedError
from artifact.registry import Registry
from export.retrain import (
    REPORTS_DIR,
    CandidateRejectedError,
    GateReport,
    gate,
    parse_duration,
    retrain_loop,
    retrain_once,
)
from headline_scorer.cli import app
from tests.export_support import sample_data
from training.train import TrainConfig


def test_gate_rules() -> None:
    current = {"quality_roc_auc": 0.70, "ctr_mae_normalized": 0.10}
    assert gate({"quality_roc_auc": 0.70, "ctr_mae_normalized": 0.10}, current, 0.0) == []
    assert gate({"quality_roc_auc": 0.696, "ctr_mae_normalized": 0.104}, current, 0.005) == []
    worse = gate({"quality_roc_auc": 0.68, "ctr_mae_normalized": 0.12}, current, 0.005)
    assert len(worse) == 2 and "quality_roc_auc" in worse[0] and "below" in worse[0] and "above" in worse[1]
    assert gate({"quality_roc_auc": 0.71, "ctr_mae_normalized": 0.09}, current, -0.02) != []  # demand a gain
    assert gate({"quality_roc_auc": None, "ctr_mae_normalized": 0.1}, current, 0.1) != []
    assert gate({"quality_roc_auc": 0.1, "ctr_mae_normalized": 0.9}, None, 0.0) == []  # nothing to beat


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("6h", 21600.0), ("1d", 86400.0)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "-5m", "6 hours", "h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="positive duration"):
        parse_duration(text)


@pytest.mark.slow
def test_retrain_publishes_then_gates_in_both_directions(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    data = sample_data()
    # Fresh registry: trains from scratch and always publishes.
    first = retrain_once(data, registry, config=TrainConfig(epochs=6))
    assert first.decision == "publish" and first.candidate_from == "scratch" and first.current is None
    assert registry.current_version() == first.published_version
    assert first.report_path is not None and Path(first.report_path).is_file()

    # A one-epoch model from scratch is worse than the six-epoch current one: rejected, current kept.
    with pytest.raises(CandidateRejectedError) as rejected:
        retrain_once(data, registry, config=TrainConfig(epochs=1), fresh=True, tolerance=0.0)
    report = rejected.value.report
    assert isinstance(rejected.value, GateRejectedError)
    assert report.decision == "reject" and report.reasons and report.published_version is None
    assert report.current is not None and report.current_version == first.published_version
    assert registry.current_version() == first.published_version and len(registry.versions()) == 1
    saved = GateReport.model_validate_json(Path(str(report.report_path)).read_text(encoding="utf-8"))
    assert saved.reasons == report.reasons

    # Continuing from the current model and within tolerance: published, and it became current.
    second = retrain_once(data, registry, config=TrainConfig(epochs=1), tolerance=0.05)
    assert second.decision == "publish" and second.candidate_from == "current"
    assert second.current_version == first.published_version
    assert registry.current_version() == second.published_version != first.published_version
    assert len(list((tmp_path / "reg" / REPORTS_DIR).glob("retrain-*.json"))) == 3


def test_retrain_loop_runs_rounds_and_survives_failures() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def round_() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise GateRejectedError("worse")

    retrain_loop(round_, 60.0, sleep=sleeps.append, rounds=3)
    assert len(calls) == 3 and len(sleeps) == 2 and all(0 < s <= 60.0 for s in sleeps)


@pytest.mark.slow
def test_retrain_cli_exit_codes(tmp_path: Path, sample_dir: Path) -> None:
    runner = CliRunner()
    base = ["retrain", "--data", str(sample_dir / "train.csv"), "--registry", str(tmp_path / "reg"),
            "--epochs", "1", "--log-level", "WARNING"]  # fmt: skip
    ok = runner.invoke(app, base)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["decision"] == "publish"
    strict = runner.invoke(app, [*base, "--tolerance", "-1"])  # demands an AUC gain of 1.0: impossible
    assert strict.exit_code == 1
    assert json.loads(strict.stdout)["decision"] == "reject" and "rejected" in strict.stderr
    bad = runner.invoke(app, [*base, "--every", "soon"])
    assert bad.exit_code == 2 and "positive duration" in bad.output
