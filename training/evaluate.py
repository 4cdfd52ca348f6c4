"""Evaluating a trained model on any labelled CSV (and predicting on any CSV)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from training.data import HeadlineData
from training.export_rows import stored_rows
from training.metrics import (
    bootstrap_interval,
    classification_metrics,
    degeneracy_warnings,
    expected_calibration_error,
    fast_roc_auc,
    regression_metrics,
)
from training.pairwise import pairwise_accuracy
from training.predict import Predictions, TrainedModel
from training.target import build_targets

logger = logging.getLogger(__name__)

INFERENCE_NOTICE = "no target column in the data: inference-only mode, predictions only, no metrics"


def inference_notice(data: HeadlineData) -> str:
    """The inference-only notice, naming columns that look like a misspelled target column."""
    return INFERENCE_NOTICE + "".join(f"; {h}" for h in data.summary.target_hints)


def _num(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


class Evaluation(BaseModel):
    """Metrics of a model on one data set; ``None`` where a metric is undefined."""

    model_config = ConfigDict(frozen=True)

    mode: Literal["evaluate", "inference"]
    rows: int
    ctr_mae_normalized: float | None = None
    ctr_rmse_normalized: float | None = None
    ctr_mae_raw: float | None = None
    ctr_spearman: float | None = None
    ctr_mae_baseline_normalized: float | None = None
    ctr_mae_normalized_ci_low: float | None = None  # 95 % bootstrap interval
    ctr_mae_normalized_ci_high: float | None = None
    quality_roc_auc: float | None = None
    quality_roc_auc_ci_low: float | None = None
    quality_roc_auc_ci_high: float | None = None
    quality_balanced_accuracy: float | None = None
    majority_baseline_accuracy: float | None = None
    quality_f1: float | None = None
    quality_accuracy: float | None = None
    quality_threshold: float | None = None
    quality_ece: float | None = None
    quality_ece_uncalibrated: float | None = None
    label_positive_rate: float | None = None
    prediction_positive_rate: float | None = None
    pairwise_accuracy: float | None = None
    pairwise_accuracy_significant: float | None = None
    pairs: int | None = None
    significant_pairs: int | None = None
    pooled_rows: int | None = None
    pairwise_score: str | None = None
    notice: str | None = None
    warnings: list[str] | None = None  # degenerate labels or predictions, rows the model trained on

    @property
    def ctr_mae_normalized_ci(self) -> tuple[float, float] | None:
        return _pair(self.ctr_mae_normalized_ci_low, self.ctr_mae_normalized_ci_high)

    @property
    def quality_roc_auc_ci(self) -> tuple[float, float] | None:
        return _pair(self.quality_roc_auc_ci_low, self.quality_roc_auc_ci_high)


def _pair(low: float | None, high: float | None) -> tuple[float, float] | None:
    return None if low is None or high is None else (low, high)


def _bounds(name: str, interval: tuple[float, float] | None) -> dict[str, float | None]:
    low, high = interval if interval is not None else (None, None)
    return {f"{name}_ci_low": low, f"{name}_ci_high": high}


def cluster_codes(data: HeadlineData) -> NDArray[np.intp] | None:
    """One code per row for cluster bootstrap: the A/B test when the data has groups, else ``None``."""
    if data.groups is None:
        return None
    _, codes = np.unique(data.groups, return_inverse=True)
    return codes.astype(np.intp)


def training_overlap_warning(model: TrainedModel, data: HeadlineData) -> str | None:
    """A warning when ``data`` holds rows the model was trained on (its metrics are then optimistic).

    The checkpoint stores the fingerprint of its training file (sha256) and its training titles
    (``training.export_rows``, every one up to the drift sample's cap); either match is named.
    """
    fingerprint = json.loads(model.checkpoint.get("data_fingerprint") or "null")
    same_file = isinstance(fingerprint, dict) and fingerprint.get("sha256") == data.summary.sha256
    rows = stored_rows(model.checkpoint)
    trained = 0
    if rows is not None and len(data):
        titles = set(rows.drift_sample.titles)
        trained = sum(1 for t in data.titles if t in titles)
    if same_file:
        known = f"{trained} of its {len(data)} rows" if rows is not None else "most of its rows"
        return (
            f"{data.summary.file} is the file this model was trained on (same sha256): {known} were "
            "training rows, so these metrics are optimistic; evaluate on rows the model has not seen"
        )
    if trained:
        return (
            f"{trained} of the {len(data)} rows have a title the model was trained on, so these metrics "
            "are optimistic; evaluate on rows the model has not seen"
        )
    return None


def evaluate_predictions(
    model: TrainedModel,
    data: HeadlineData,
    predictions: Predictions,
    baseline_mean: float | None = None,
    *,
    check_training_rows: bool = False,
    bootstrap_seed: int = 0,
) -> Evaluation:
    """Metrics of ``predictions`` against the targets in ``data``.

    Targets are built with the model's own scaling and label rule. AUC and MAE come with 95 %
    bootstrap intervals (whole A/B tests resampled when the data has groups). Degenerate labels or
    predictions (one class above 95 %, accuracy below the majority class) and, with
    ``check_training_rows``, rows the model was trained on are named in ``warnings`` and logged.
    """
    if not data.has_target:
        return Evaluation(mode="inference", rows=len(data), notice=inference_notice(data))
    targets = build_targets(data, model.scaling, model.label_rule)
    reg = regression_metrics(targets.normalized, predictions.ctr_normalized)
    cls = classification_metrics(targets.labels, predictions.quality_prob, model.quality_threshold)
    raw_mae = None
    if targets.raw is not None and predictions.ctr is not None:
        raw_mae = float(np.mean(np.abs(targets.raw - predictions.ctr)))
    clusters = cluster_codes(data)
    true, pred = targets.normalized, predictions.ctr_normalized
    labels, probs = targets.labels, predictions.quality_prob
    predicted = predictions.quality_label.astype(np.float64)
    warnings = degeneracy_warnings(labels, predicted) if len(data) else []
    if check_training_rows:
        overlap = training_overlap_warning(model, data)
        if overlap is not None:
            warnings.append(overlap)
    for warning in warnings:
        logger.warning("%s", warning)
    n_pos, n_neg = cls.n_positive, cls.n_negative
    balanced = None
    if n_pos and n_neg:
        balanced = float((np.mean(predicted[labels == 1.0]) + np.mean(1.0 - predicted[labels == 0.0])) / 2)
    result: dict[str, object] = {
        "mode": "evaluate",
        "rows": len(data),
        "ctr_mae_normalized": _num(reg.mae),
        **_bounds(
            "ctr_mae_normalized",
            bootstrap_interval(
                lambda idx: float(np.mean(np.abs(true[idx] - pred[idx]))), len(data), clusters, bootstrap_seed
            ),
        ),
        "ctr_rmse_normalized": _num(reg.rmse),
        "ctr_mae_raw": raw_mae,
        "ctr_spearman": _num(reg.spearman),
        "ctr_mae_baseline_normalized": (
            None if baseline_mean is None else float(np.mean(np.abs(targets.normalized - baseline_mean)))
        ),
        "quality_roc_auc": _num(cls.roc_auc),
        **_bounds(
            "quality_roc_auc",
            None
            if not (n_pos and n_neg)
            else bootstrap_interval(
                lambda idx: fast_roc_auc(labels[idx], probs[idx]), len(data), clusters, bootstrap_seed
            ),
        ),
        "quality_f1": _num(cls.f1),
        "quality_accuracy": _num(cls.accuracy),
        "quality_balanced_accuracy": balanced,
        "majority_baseline_accuracy": _num(max(cls.positive_rate, 1.0 - cls.positive_rate)),
        "quality_threshold": model.quality_threshold,
        "quality_ece": _num(expected_calibration_error(targets.labels, predictions.quality_prob)),
        "quality_ece_uncalibrated": _num(
            expected_calibration_error(targets.labels, predictions.quality_prob_raw)
        ),
        "label_positive_rate": _num(cls.positive_rate),
        "prediction_positive_rate": float(np.mean(predictions.quality_label)) if len(predictions) else None,
        "warnings": warnings,
    }
    if data.groups is not None:
        # Pairs of headlines: packages of one group with the same headline (image-only variants)
        # are pooled first (training.pairwise.pairwise_accuracy).
        observed = targets.raw if targets.raw is not None else targets.normalized
        pw = pairwise_accuracy(
            data.groups,
            observed,
            predictions.ctr_normalized,
            data.clicks,
            data.impressions,
            titles=data.titles,
        )
        result |= {
            "pairwise_accuracy": _num(pw.accuracy),
            "pairwise_accuracy_significant": _num(pw.accuracy_significant),
            "pairs": pw.pairs,
            "significant_pairs": pw.significant_pairs,
            "pooled_rows": pw.pooled_rows,
        }
        if data.clicks is None or data.impressions is None:
            result["notice"] = (
                "significant pairs need clicks and impressions (a two-proportion z-test); this data has "
                "a CTR column only, so pairwise accuracy is reported over all pairs"
            )
    return Evaluation.model_validate(result)


def evaluate(model: TrainedModel, data: HeadlineData) -> tuple[Evaluation, Predictions]:
    """Predict ``data`` and measure; warns when ``data`` holds rows the model was trained on."""
    predictions = model.predict(data.titles, data.categories)
    return evaluate_predictions(model, data, predictions, check_training_rows=True), predictions


def predictions_frame(data: HeadlineData, predictions: Predictions) -> pd.DataFrame:
    """One row per headline: id, title, category and every prediction (and the target when known)."""
    frame = pd.DataFrame(
        {
            "id": data.ids,
            "title": data.titles,
            "category": data.categories if data.categories is not None else [None] * len(data),
            "ctr": predictions.ctr if predictions.ctr is not None else np.full(len(data), np.nan),
            "ctr_normalized": predictions.ctr_normalized,
            "quality_prob": predictions.quality_prob,
            "quality_label": predictions.quality_label.astype(int),
        }
    )
    if data.groups is not None:
        frame.insert(1, "group", data.groups)
    if data.raw_ctr is not None:
        frame["true_ctr"] = data.raw_ctr
    if data.ctr_normalized_given is not None:
        frame["true_ctr_normalized"] = data.ctr_normalized_given
    return frame


def write_predictions(path: Path, data: HeadlineData, predictions: Predictions) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    predictions_frame(data, predictions).to_csv(path, index=False)
    logger.info("wrote %d predictions to %s", len(data), path)
