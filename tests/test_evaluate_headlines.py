"""``evaluate`` over A/B tests counts headline pairs: packages sharing a headline are pooled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_support import invoke
from training.data import HeadlineData, load_dataset
from training.mapping import UPWORTHY
from training.pairwise import headline_key, pairwise_accuracy
from training.predict import BEST_CHECKPOINT, TrainedModel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ab_data(sample_dir: Path) -> HeadlineData:
    return load_dataset(sample_dir / "ab_tests.csv", UPWORTHY)


@pytest.fixture(scope="module")
def ab_model(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("ab-headlines")
    args = ("train", "--data", sample_dir / "ab_tests.csv", "--mapping", "upworthy", "--epochs", "2")
    result = invoke(*args, "--out", out)
    assert result.exit_code == 0, result.stderr
    return out


def test_evaluate_json_counts_headline_pairs(ab_model: Path, ab_data: HeadlineData, sample_dir: Path) -> None:
    result = invoke(
        "evaluate",
        "--model",
        ab_model,
        "--data",
        sample_dir / "ab_tests.csv",
        "--mapping",
        "upworthy",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)

    assert ab_data.groups is not None
    headlines = {(g, headline_key(t)) for g, t in zip(ab_data.groups, ab_data.titles, strict=True)}
    assert metrics["pooled_rows"] == len(ab_data) - len(headlines)
    assert metrics["pooled_rows"] > 0  # the sample has image-only variants

    # The reported figures are the headline-pair figures of the model's own predictions.
    model = TrainedModel.from_checkpoint(ab_model / BEST_CHECKPOINT)
    predicted = model.predict(ab_data.titles, ab_data.categories).ctr_normalized
    assert ab_data.raw_ctr is not None
    args = (ab_data.groups, ab_data.raw_ctr, predicted, ab_data.clicks, ab_data.impressions)
    pooled = pairwise_accuracy(*args, titles=ab_data.titles)
    per_package = pairwise_accuracy(*args)
    assert metrics["pairs"] == pooled.pairs < per_package.pairs
    assert metrics["significant_pairs"] == pooled.significant_pairs
    assert metrics["pairwise_accuracy"] == pytest.approx(pooled.accuracy)
    assert metrics["pairwise_accuracy_significant"] == pytest.approx(pooled.accuracy_significant)


def test_report_says_packages_were_pooled(ab_model: Path) -> None:
    report = (ab_model / "report.md").read_text(encoding="utf-8")
    assert "sharing a headline (case and whitespace ignored) were pooled first" in report
    assert "Rows pooled into a headline of their group" in report


def test_without_counts_significant_pairs_are_explained(
    ab_model: Path, sample_dir: Path, tmp_path: Path
) -> None:
    import pandas as pd

    frame = pd.read_csv(sample_dir / "ab_tests.csv")
    frame["ctr"] = frame["clicks"] / frame["impressions"]
    frame.drop(columns=["clicks", "impressions"]).to_csv(tmp_path / "ctr_only.csv", index=False)
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"title": "headline", "group": "clickability_test_id", "ctr": "ctr"}))
    result = invoke(
        "evaluate", "--model", ab_model, "--data", tmp_path / "ctr_only.csv", "--mapping", mapping, "--json"
    )
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["pairs"] > 0 and metrics["pairwise_accuracy"] is not None
    assert metrics["significant_pairs"] == 0 and metrics["pairwise_accuracy_significant"] is None
    assert "significant pairs need clicks and impressions" in metrics["notice"]
