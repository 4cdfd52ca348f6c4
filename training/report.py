"""Training artifacts: metric curves, predicted-vs-true scatter, and the Markdown report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from numpy.typing import NDArray

from training.baselines import BaselineMetrics
from training.calibration import CalibrationReport
from training.data import ValidationSummary
from training.evaluate import Evaluation
from training.train import EpochRecord

logger = logging.getLogger(__name__)

CURVES_PNG = "metric_curves.png"
SCATTER_PNG = "ctr_scatter.png"
RELIABILITY_PNG = "reliability.png"
REPORT_MD = "report.md"


def plot_curves(
    history: Sequence[EpochRecord], path: Path, resumed_at: int = 0, best_epoch: int | None = None
) -> None:
    """Train and validation loss, quality accuracy and CTR MAE per epoch; the best epoch marked."""
    epochs = [r.epoch for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = (
        ("Hybrid loss", "loss", "train_loss", "val_loss"),
        ("Quality accuracy", "accuracy", "train_accuracy", "val_accuracy"),
        ("CTR MAE (normalized)", "mean absolute error", "train_mae", "val_mae"),
    )
    best = next((r for r in history if r.epoch == best_epoch), None)
    for ax, (title, ylabel, train_key, val_key) in zip(axes, panels, strict=True):
        # Epochs from a checkpoint written before train accuracy/MAE were recorded have gaps (NaN).
        train_values = [np.nan if getattr(r, train_key) is None else getattr(r, train_key) for r in history]
        ax.plot(epochs, train_values, marker=".", label="train")
        ax.plot(epochs, [getattr(r, val_key) for r in history], marker=".", label="validation")
        if best is not None:
            ax.axvline(best.epoch, color="tab:green", linestyle=":", linewidth=1.2)
            ax.plot([best.epoch], [getattr(best, val_key)], marker="*", markersize=12, color="tab:green",
                    linestyle="none", label=f"best epoch ({best.epoch})")  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if resumed_at:
            ax.axvline(resumed_at + 0.5, color="grey", linestyle="--", linewidth=1, label="resumed")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: Above this many points the scatter becomes a hexbin density plot.
HEXBIN_ABOVE = 1500


def plot_scatter(true: NDArray[np.float64], predicted: NDArray[np.float64], path: Path) -> None:
    """Predicted vs true normalized CTR on validation rows, with the identity line.

    A few hundred points are drawn as a translucent scatter; thousands as a hexbin density
    (log colour scale), so dense regions stay readable.
    """
    fig, ax = plt.subplots(figsize=(5.6, 5))
    lo = float(min(true.min(initial=0.0), predicted.min(initial=0.0)))
    hi = float(max(true.max(initial=1.0), predicted.max(initial=1.0)))
    if len(true) > HEXBIN_ABOVE:
        hb = ax.hexbin(true, predicted, gridsize=45, bins="log", mincnt=1, cmap="viridis",
                       extent=(lo, hi, lo, hi))  # fmt: skip
        fig.colorbar(hb, ax=ax, label="rows per cell (log)")
    else:
        alpha = float(np.clip(300.0 / max(len(true), 1), 0.25, 0.8))
        ax.scatter(true, predicted, s=10, alpha=alpha, edgecolors="none")
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1, label="identity")
    ax.set_xlabel("true normalized CTR")
    ax.set_ylabel("predicted normalized CTR")
    ax.set_title(f"Validation: predicted vs true CTR ({len(true)} rows)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(
    labels: NDArray[np.float64],
    curves: Sequence[tuple[str, NDArray[np.float64], float | None]],
    path: Path,
    n_bins: int = 10,
) -> None:
    """Reliability diagram: share of positive labels against mean predicted probability per bin.

    ``curves`` are (name, probabilities, ECE) on the same rows; the bins are the ECE's
    (``training.metrics.expected_calibration_error``). A histogram of the probabilities is below.
    """
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.6, 6.2), sharex=True, height_ratios=(3, 1))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    inner = np.arange(1, n_bins) / n_bins
    for name, probs, ece in curves:
        bins = np.searchsorted(inner, probs, side="right")
        counts = np.bincount(bins, minlength=n_bins)
        filled = counts > 0
        mean_p = np.bincount(bins, weights=probs, minlength=n_bins)[filled] / counts[filled]
        share = np.bincount(bins, weights=labels, minlength=n_bins)[filled] / counts[filled]
        label = name if ece is None else f"{name} (ECE {ece:.3f})"
        ax.plot(mean_p, share, marker="o", label=label)
        hist.hist(probs, bins=edges, histtype="step", linewidth=1.5, label=name)
    ax.set_ylabel("share of positive labels")
    ax.set_title(f"Quality reliability on the validation rows ({len(labels)})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    hist.set_xlabel("predicted probability (bins of the ECE)")
    hist.set_ylabel("rows")
    hist.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def escape_cell(value: object) -> str:
    """A Markdown table cell: pipes escaped, line breaks and surrounding space removed."""
    text = " ".join(str(value).split())
    return text.replace("\\", "\\\\").replace("|", "\\|")


def table(header: Sequence[str], align: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table whose every cell (header included) is escaped."""

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(escape_cell(c) for c in cells) + " |"

    return "\n".join([line(header), "|" + "|".join(align) + "|", *(line(r) for r in rows)])


def _fmt(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _interval(ci: tuple[float, float] | None, digits: int = 4) -> str:
    return "" if ci is None else f"{ci[0]:.{digits}f} to {ci[1]:.{digits}f}"


def epoch_table(history: Sequence[EpochRecord], best_epoch: int) -> str:
    header = ("epoch", "train loss", "val loss", "train accuracy", "val accuracy", "train MAE", "val MAE",
              "learning rate")  # fmt: skip
    rows = [
        (
            f"{r.epoch}{' **best**' if r.epoch == best_epoch else ''}",
            f"{r.train_loss:.5f}",
            f"{r.val_loss:.5f}",
            _fmt(r.train_accuracy, 3),
            f"{r.val_accuracy:.3f}",
            _fmt(r.train_mae),
            f"{r.val_mae:.4f}",
            f"{r.learning_rate:.2g}",
        )
        for r in history
    ]
    return table(header, ["---:"] * len(header), rows)


def metrics_table(evaluation: Evaluation, calibration: CalibrationReport | None = None) -> str:
    ev = evaluation
    rows: list[tuple[str, float | int | None, tuple[float, float] | None]] = [
        ("CTR MAE (normalized)", ev.ctr_mae_normalized, ev.ctr_mae_normalized_ci),
        ("CTR MAE, predicting the training mean", ev.ctr_mae_baseline_normalized, None),
        ("CTR MAE (raw CTR units)", ev.ctr_mae_raw, None),
        ("CTR Spearman correlation", ev.ctr_spearman, None),
        ("Quality ROC AUC", ev.quality_roc_auc, ev.quality_roc_auc_ci),
        ("Quality F1 at the chosen threshold", ev.quality_f1, None),
        ("Quality accuracy at the chosen threshold", ev.quality_accuracy, None),
        ("Quality balanced accuracy at the chosen threshold", ev.quality_balanced_accuracy, None),
        ("Majority-class accuracy (always the commoner label)", ev.majority_baseline_accuracy, None),
        ("Quality threshold (chosen on validation, Youden's J)", ev.quality_threshold, None),
        ("Quality ECE, calibrated (on the rows the calibrator was fitted on)", ev.quality_ece, None),
    ]
    if calibration is not None and calibration.ece_after_heldout is not None:
        rows.append(
            ("Quality ECE, calibrated, cross-fitted (held-out rows)", calibration.ece_after_heldout, None)
        )
    rows += [
        ("Quality ECE, uncalibrated", ev.quality_ece_uncalibrated, None),
        ("Label balance (positive share)", ev.label_positive_rate, None),
        ("Predicted positive share", ev.prediction_positive_rate, None),
    ]
    if ev.pairs is not None:
        rows += [
            ("Pairwise accuracy within groups (all headline pairs)", ev.pairwise_accuracy, None),
            ("Headline pairs compared", ev.pairs, None),
            ("Pairwise accuracy (significant pairs, |z| > 1.96)", ev.pairwise_accuracy_significant, None),
            ("Significant pairs", ev.significant_pairs, None),
            ("Rows pooled into a headline of their group", ev.pooled_rows, None),
        ]
    return table(
        ("metric", "value", "95 % bootstrap interval"),
        ("---", "---:", "---:"),
        [(k, _fmt(v), _interval(ci)) for k, v, ci in rows],
    )


def baselines_table(evaluation: Evaluation, baselines: Sequence[BaselineMetrics]) -> str:
    """This model beside the simple baselines, on the same validation rows."""
    pairwise = evaluation.pairs is not None
    header = ["model", "CTR MAE (normalized)", "95 % interval", "CTR Spearman", "quality ROC AUC",
              "95 % interval"]  # fmt: skip
    if pairwise:
        header.append("pairwise accuracy (all headline pairs)")

    def row(name: str, m: Evaluation | BaselineMetrics) -> list[str]:
        mae = (_fmt(m.ctr_mae_normalized), _interval(m.ctr_mae_normalized_ci))
        auc = (_fmt(m.quality_roc_auc, 3), _interval(m.quality_roc_auc_ci, 3))
        cells = [name, *mae, _fmt(m.ctr_spearman, 3), *auc]
        return [*cells, _fmt(m.pairwise_accuracy, 3)] if pairwise else cells

    rows = [row("this model", evaluation), *(row(b.name, b) for b in baselines)]
    return table(header, ["---", *["---:"] * (len(header) - 1)], rows)


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
    baselines: Sequence[BaselineMetrics] = (),
    calibration: CalibrationReport | None = None,
) -> None:
    """The Markdown training report, beside the plots it links.

    Warnings (degenerate label or prediction, accuracy below the majority class) come first;
    the baselines are scored on the same validation rows as the model.
    """
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
    if evaluation.quality_roc_auc is not None:
        auc_best = max((b.quality_roc_auc for b in baselines if b.quality_roc_auc is not None), default=None)
        if auc_best is not None:
            highlights.append(
                f"- Quality ROC AUC {evaluation.quality_roc_auc:.3f} "
                f"({_interval(evaluation.quality_roc_auc_ci, 3) or 'no interval'}) against "
                f"{auc_best:.3f} for a TF-IDF logistic regression on the title (same rows)."
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
        *(
            ["## Warnings", "", *(f"- **{w}**" for w in evaluation.warnings), ""]
            if evaluation.warnings
            else []
        ),
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
        "Intervals: 95 % percentile bootstrap over the validation rows (whole A/B tests resampled",
        "when the data has groups). The threshold is chosen on these same rows, so threshold metrics",
        "are slightly optimistic.",
        "",
        metrics_table(evaluation, calibration),
        "",
    ]
    if baselines:
        parts += [
            "## Baselines (same validation rows)",
            "",
            "Fitted on the same training rows: the training-mean CTR, and word 1-2-gram TF-IDF of the",
            "title with ridge regression (CTR) and logistic regression (quality label).",
            "",
            baselines_table(evaluation, baselines),
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
            f"![Quality reliability diagram]({RELIABILITY_PNG})",
            "",
        ]
    parts += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    path.write_text("\n".join(parts), encoding="utf-8")
    logger.info("wrote training report to %s", path)
