"""training/report.py: the epoch table and curves, including histories resumed from older checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.baselines import BaselineMetrics
from training.data import ValidationSummary
from training.evaluate import Evaluation
from training.report import (
    baselines_table,
    epoch_table,
    escape_cell,
    metrics_table,
    plot_curves,
    plot_reliability,
    plot_scatter,
    write_report,
)
from training.train import EpochRecord


def _record(epoch: int, *, with_train_metrics: bool) -> EpochRecord:
    extra = (
        {"train_accuracy": 0.6 + epoch / 100, "train_mae": 0.1 - epoch / 1000} if with_train_metrics else {}
    )
    return EpochRecord(
        epoch=epoch,
        train_loss=0.5 - epoch / 100,
        val_loss=0.55 - epoch / 100,
        val_accuracy=0.7,
        val_mae=0.09,
        learning_rate=1e-3,
        **extra,
    )


def test_epoch_table_shows_train_and_validation_metrics_and_gaps_for_old_epochs() -> None:
    # Epochs 1-2 come from a checkpoint written before train accuracy and MAE were recorded.
    history = [_record(1, with_train_metrics=False), _record(2, with_train_metrics=False)]
    history += [_record(3, with_train_metrics=True)]
    lines = epoch_table(history, best_epoch=3).splitlines()
    assert lines[0].split("|")[1:-1] == [
        " epoch ",
        " train loss ",
        " val loss ",
        " train accuracy ",
        " val accuracy ",
        " train MAE ",
        " val MAE ",
        " learning rate ",
    ]
    assert lines[2] == "| 1 | 0.49000 | 0.54000 | n/a | 0.700 | n/a | 0.0900 | 0.001 |"
    assert lines[4] == "| 3 **best** | 0.47000 | 0.52000 | 0.630 | 0.700 | 0.0970 | 0.0900 | 0.001 |"


def test_curves_render_a_history_with_gaps(tmp_path: Path) -> None:
    history = [_record(1, with_train_metrics=False), _record(2, with_train_metrics=True)]
    plot_curves(history, tmp_path / "curves.png", resumed_at=1)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_as_dict_round_trips_through_the_checkpoint_history() -> None:
    for record in (_record(1, with_train_metrics=False), _record(2, with_train_metrics=True)):
        assert EpochRecord(**record.as_dict()) == record  # type: ignore[arg-type]


# --- Markdown tables: every cell escaped -----------------------------------------------------------


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row, split on unescaped pipes only (as GFM does)."""
    import re

    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def _evaluation(**overrides: object) -> Evaluation:
    base: dict[str, object] = {
        "mode": "evaluate",
        "rows": 100,
        "ctr_mae_normalized": 0.1,
        "ctr_mae_normalized_ci_low": 0.09,
        "ctr_mae_normalized_ci_high": 0.11,
        "ctr_mae_baseline_normalized": 0.12,
        "quality_roc_auc": 0.61,
        "quality_roc_auc_ci_low": 0.55,
        "quality_roc_auc_ci_high": 0.67,
        "pairs": 40,
        "pairwise_accuracy": 0.6,
        "pairwise_accuracy_significant": 0.7,
        "significant_pairs": 12,
        "pooled_rows": 3,
        "warnings": [],
    }
    return Evaluation.model_validate(base | overrides)


def test_pipes_in_cells_are_escaped_and_values_survive() -> None:
    lines = metrics_table(_evaluation()).splitlines()
    header = _cells(lines[0])
    row = next(line for line in lines if "|z|" in line or "\\|z\\|" in line)
    cells = _cells(row)
    assert len(cells) == len(header) == 3
    assert cells[0] == "Pairwise accuracy (significant pairs, \\|z\\| > 1.96)"
    assert cells[1] == "0.7000"
    for line in lines:
        assert len(_cells(line)) == 3, line
    assert escape_cell("a|b\nc \\ d") == "a\\|b c \\\\ d"


def test_metrics_table_shows_the_intervals() -> None:
    rows = {(c := _cells(line))[0]: c[1:] for line in metrics_table(_evaluation()).splitlines()[2:]}
    assert rows["Quality ROC AUC"] == ["0.6100", "0.5500 to 0.6700"]
    assert rows["CTR MAE (normalized)"] == ["0.1000", "0.0900 to 0.1100"]


def test_baselines_table_puts_the_model_beside_every_baseline() -> None:
    baselines = [
        BaselineMetrics(name="training mean", ctr_mae_normalized=0.12, ctr_mae_normalized_ci=(0.1, 0.14)),
        BaselineMetrics(
            name="TF-IDF ridge (CTR)", ctr_mae_normalized=0.11, ctr_spearman=0.3, pairwise_accuracy=0.58
        ),
        BaselineMetrics(
            name="TF-IDF logistic (quality)", quality_roc_auc=0.66, quality_roc_auc_ci=(0.6, 0.72)
        ),
    ]
    lines = baselines_table(_evaluation(), baselines).splitlines()
    assert [_cells(line)[0] for line in lines[2:]] == ["this model", *(b.name for b in baselines)]
    assert all(len(_cells(line)) == 7 for line in lines)  # pairwise column: the evaluation has pairs
    assert _cells(lines[5])[4:6] == ["0.660", "0.600 to 0.720"]


def _report(tmp_path: Path, evaluation: Evaluation) -> str:
    history = [_record(1, with_train_metrics=True), _record(2, with_train_metrics=True)]
    summary = ValidationSummary(
        file="x.csv",
        mapping="seed",
        sha256="0" * 64,
        rows_read=10,
        rows_kept=10,
        columns=["post_title"],
        target_source="normalized",
        has_group=False,
        has_category=False,
    )
    path = tmp_path / "report.md"
    write_report(
        path,
        summary=summary,
        history=history,
        best_epoch=2,
        start_epoch=0,
        stopped_early=False,
        evaluation=evaluation,
        train_rows=8,
        val_rows=2,
        label_rule="rule | with a pipe",
        notes=["a note"],
        baselines=[BaselineMetrics(name="TF-IDF logistic (quality)", quality_roc_auc=0.66)],
    )
    return path.read_text(encoding="utf-8")


def test_report_leads_with_warnings_and_shows_baselines(tmp_path: Path) -> None:
    warning = "the quality prediction is degenerate: 99.4% of the 100 rows are predicted positive"
    report = _report(tmp_path, _evaluation(warnings=[warning]))
    assert report.index("## Warnings") < report.index("## Highlights")
    assert f"- **{warning}**" in report
    assert "## Baselines (same validation rows)" in report
    assert "Quality ROC AUC 0.610 (0.550 to 0.670) against 0.660 for a TF-IDF logistic" in report
    assert "(reliability.png)" in report
    clean = _report(tmp_path, _evaluation())
    assert "## Warnings" not in clean


# --- plots -----------------------------------------------------------------------------------------


def _png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_scatter_with_thousands_of_points_and_reliability_diagram(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    true = rng.random(5000)
    plot_scatter(true, np.clip(true + rng.normal(0, 0.1, 5000), 0, 1), tmp_path / "dense.png")
    plot_scatter(true[:200], true[:200], tmp_path / "sparse.png")
    labels = (rng.random(500) < 0.4).astype(float)
    probs = rng.random(500)
    plot_reliability(labels, [("raw", probs, 0.1), ("calibrated", probs**2, None)], tmp_path / "rel.png")
    plot_curves([_record(e, with_train_metrics=True) for e in (1, 2, 3)], tmp_path / "c.png", best_epoch=2)
    assert all(_png(tmp_path / n) for n in ("dense.png", "sparse.png", "rel.png", "c.png"))
