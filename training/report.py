"""Training artifacts: metric curves, predicted-vs-true scatter, and the Markdown report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import NDArray

from training.data import ValidationSummary
from training.evaluate import Evaluation
from training.train import EpochRecord

logger = logging.getLogger(__name__)

CURVES_PNG = "metric_curves.png"
SCATTER_PNG = "ctr_scatter.png"
REPORT_MD = "report.md"


def plot_curves(history: Sequence[EpochRecord], path: Path, resumed_at: int = 0) -> None:
    """Train and validation loss, quality accuracy and CTR MAE per epoch."""
    epochs = [r.epoch for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = (
        ("Hybrid loss", "train_loss", "val_loss"),
        ("Quality accuracy", "train_accuracy", "val_accuracy"),
        ("CTR MAE (normalized)", "train_mae", "val_mae"),
    )
    for ax, (title, train_key, val_key) in zip(axes, panels, strict=True):
        # Epochs from a checkpoint written before train accuracy/MAE were recorded have gaps (NaN).
        train_values = [np.nan if getattr(r, train_key) is None else getattr(r, train_key) for r in history]
        ax.plot(epochs, train_values, marker=".", label="train")
        ax.plot(epochs, [getattr(r, val_key) for r in history], marker=".", label="validation")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if resumed_at:
            ax.axvline(resumed_at + 0.5, color="grey", linestyle="--", linewidth=1)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scatter(true: NDArray[np.float64], predicted: NDArray[np.float64], path: Path) -> None:
    """Predicted vs true normalized CTR on validation rows, with the identity line."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(true, predicted, s=8, alpha=0.5)
    lo = float(min(true.min(initial=0.0), predicted.min(initial=0.0)))
    hi = float(max(true.max(initial=1.0), predicted.max(initial=1.0)))
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("true normalized CTR")
    ax.set_ylabel("predicted normalized CTR")
    ax.set_title("Validation: predicted vs true CTR")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def epoch_table(history: Sequence[EpochRecord], best_epoch: int) -> str:
    lines = [
        "| epoch | train loss | val loss | train accuracy | val accuracy | train MAE | val MAE "
        "| learning rate |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in history:
        mark = " **best**" if r.epoch == best_epoch else ""
        lines.append(
            f"| {r.epoch}{mark} | {r.train_loss:.5f} | {r.val_loss:.5f} | {_fmt(r.train_accuracy, 3)} "
            f"| {r.val_accuracy:.3f} | {_fmt(r.train_mae)} | {r.val_mae:.4f} | {r.learning_rate:.2g} |"
        )
    return "\n".join(lines)


def metrics_table(evaluation: Evaluation) -> str:
    rows = [
        ("CTR MAE (normalized)", evaluation.ctr_mae_normalized),
        ("CTR MAE, predicting the training mean", evaluation.ctr_mae_baseline_normalized),
        ("CTR MAE (raw CTR units)", evaluation.ctr_mae_raw),
        ("CTR Spearman correlation", evaluation.ctr_spearman),
        ("Quality ROC AUC", evaluation.quality_roc_auc),
        ("Quality F1 at the chosen threshold", evaluation.quality_f1),
        ("Quality accuracy at the chosen threshold", evaluation.quality_accuracy),
        ("Quality threshold (chosen on validation)", evaluation.quality_threshold),
        ("Quality ECE, calibrated", evaluation.quality_ece),
        ("Quality ECE, uncalibrated", evaluation.quality_ece_uncalibrated),
        ("Label balance (positive share)", evaluation.label_positive_rate),
        ("Predicted positive share", evaluation.prediction_positive_rate),
    ]
    if evaluation.pairs is not None:
        rows += [
            ("Pairwise accuracy within groups (all headline pairs)", evaluation.pairwise_accuracy),
            ("Headline pairs compared", evaluation.pairs),
            ("Pairwise accuracy (significant pairs, |z| > 1.96)", evaluation.pairwise_accuracy_significant),
            ("Significant pairs", evaluation.significant_pairs),
            ("Rows pooled into a headline of their group", evaluation.pooled_rows),
        ]
    return "\n".join(["| metric | value |", "|---|---:|", *(f"| {k} | {_fmt(v)} |" for k, v in rows)])


def write_report(
    path: Path,
    *,
    summary: ValidationSummary,
    history: Sequence[EpochRecord],
    best_epoch: int,
    start_epoch: int,
    stopped_early: bool,
    evaluation: Evaluation,
    train_rows: int,
    val_rows: int,
    label_rule: str,
    notes: Sequence[str],
    plots: bool = True,
) -> None:
    """The Markdown training report, beside the plots it links."""
    best = next((r for r in history if r.epoch == best_epoch), None)
    highlights = [
        f"- Data: {summary.rows_kept} rows kept of {summary.rows_read} read "
        f"({train_rows} training, {val_rows} validation).",
        f"- Quality label: {label_rule}; positive share {_fmt(evaluation.label_positive_rate, 3)}.",
    ]
    if best is not None:
        highlights.append(
            f"- Best epoch {best_epoch}: validation loss {best.val_loss:.5f}, "
            f"accuracy {best.val_accuracy:.3f}, MAE {best.val_mae:.4f}."
        )
    if start_epoch:
        highlights.append(f"- Continued from epoch {start_epoch} of a previous run (weights not reset).")
    highlights.append(
        f"- Stopped {'early (no validation improvement)' if stopped_early else 'after the last epoch'} "
        f"at epoch {history[-1].epoch if history else start_epoch}."
    )
    if evaluation.ctr_mae_normalized is not None and evaluation.ctr_mae_baseline_normalized:
        gain = 1 - evaluation.ctr_mae_normalized / evaluation.ctr_mae_baseline_normalized
        highlights.append(f"- CTR MAE is {gain:+.1%} better than predicting the training mean.")
    if evaluation.pairs is not None:
        highlights.append(
            "- Pairwise accuracy compares headlines within a group: packages of one group sharing "
            "a headline (case and whitespace ignored) were pooled first "
            f"({evaluation.pooled_rows} rows merged; clicks and impressions summed, predictions averaged)."
        )
    if evaluation.notice:
        highlights.append(f"- Note: {evaluation.notice}.")
    parts = [
        "# Training report",
        "",
        "## CSV validation summary",
        "",
        "```",
        summary.render(),
        "```",
        "",
        "## Highlights",
        "",
        *highlights,
        "",
        "## Epochs",
        "",
        "Train loss, accuracy and MAE run over each epoch's batches (dropout on, weights changing);",
        "validation figures are measured after the epoch.",
        "",
        epoch_table(history, best_epoch),
        "",
        "## Validation metrics (best checkpoint)",
        "",
        metrics_table(evaluation),
        "",
    ]
    if plots:
        parts += [
            "## Plots",
            "",
            f"![Metric curves]({CURVES_PNG})",
            "",
            f"![Predicted vs true CTR]({SCATTER_PNG})",
            "",
        ]
    parts += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    path.write_text("\n".join(parts), encoding="utf-8")
    logger.info("wrote training report to %s", path)
