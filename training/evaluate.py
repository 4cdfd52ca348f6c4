"""Evaluating a trained model on any labelled CSV (and predicting on any CSV)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from training.data import HeadlineData
from training.metrics import classification_metrics, expected_calibration_error, regression_metrics
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
    quality_roc_auc: float | None = None
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


def evaluate_predictions(
    model: TrainedModel, data: HeadlineData, predictions: Predictions, baseline_mean: float | None = None
) -> Evaluation:
    """Metrics of ``predictions`` against the targets in ``data``.

    Targets are built with the model's own scaling and label rule.
    """
    if not data.has_target:
        return Evaluation(mode="inference", rows=len(data), notice=inference_notice(data))
    targets = build_targets(data, model.scaling, model.label_rule)
    reg = regression_metrics(targets.normalized, predictions.ctr_normalized)
    cls = classification_metrics(targets.labels, predictions.quality_prob, model.quality_threshold)
    raw_mae = None
    if targets.raw is not None and predictions.ctr is not None:
        raw_mae = float(np.mean(np.abs(targets.raw - predictions.ctr)))
    result: dict[str, object] = {
        "mode": "evaluate",
        "rows": len(data),
        "ctr_mae_normalized": _num(reg.mae),
        "ctr_rmse_normalized": _num(reg.rmse),
        "ctr_mae_raw": raw_mae,
        "ctr_spearman": _num(reg.spearman),
        "ctr_mae_baseline_normalized": (
            None if baseline_mean is None else float(np.mean(np.abs(targets.normalized - baseline_mean)))
        ),
        "quality_roc_auc": _num(cls.roc_auc),
        "quality_f1": _num(cls.f1),
        "quality_accuracy": _num(cls.accuracy),
        "quality_threshold": model.quality_threshold,
        "quality_ece": _num(expected_calibration_error(targets.labels, predictions.quality_prob)),
        "quality_ece_uncalibrated": _num(
            expected_calibration_error(targets.labels, predictions.quality_prob_raw)
        ),
        "label_positive_rate": _num(cls.positive_rate),
        "prediction_positive_rate": float(np.mean(predictions.quality_label)) if len(predictions) else None,
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
    predictions = model.predict(data.titles, data.categories)
    return evaluate_predictions(model, data, predictions), predictions


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
