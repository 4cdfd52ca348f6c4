"""Simple reference models, fitted on the training rows and scored on the same validation rows.

A reader of the training report sees what the model adds over:

* ``training mean``: predict the training rows' mean normalized CTR for every row (MAE);
* ``TF-IDF ridge``: word 1-2-gram TF-IDF of the title -> ridge regression of the normalized CTR;
* ``TF-IDF logistic``: the same features -> logistic regression of the quality label.

scikit-learn's default word pattern is Unicode-aware, so Hebrew titles tokenise as words.
With a group column the ridge baseline's within-group pairwise accuracy is reported too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from training.metrics import (
    FloatArray,
    as_float_array,
    as_labels,
    bootstrap_interval,
    check_same_length,
    classification_metrics,
    fast_roc_auc,
    regression_metrics,
)

logger = logging.getLogger(__name__)

#: Word 1-2-grams, sublinear term frequency, terms seen in at least two training titles.
WORD_NGRAMS = (1, 2)
MIN_DF = 2
RIDGE_ALPHA = 1.0
LOGISTIC_C = 1.0


class BaselineMetrics(BaseModel):
    """One baseline's figures on the validation rows; ``None`` where undefined."""

    model_config = ConfigDict(frozen=True)

    name: str
    ctr_mae_normalized: float | None = None
    ctr_mae_normalized_ci: tuple[float, float] | None = None
    ctr_spearman: float | None = None
    quality_roc_auc: float | None = None
    quality_roc_auc_ci: tuple[float, float] | None = None
    pairwise_accuracy: float | None = None


@dataclass(frozen=True)
class BaselineInputs:
    """What the baselines are fitted on (training rows) and judged on (validation rows)."""

    train_titles: list[str]
    train_ctr: FloatArray  # normalized CTR
    train_labels: FloatArray
    val_titles: list[str]
    val_ctr: FloatArray
    val_labels: FloatArray
    val_groups: NDArray[np.str_] | None = None

    def __post_init__(self) -> None:
        check_same_length(
            train_titles=np.asarray(self.train_titles, dtype=object),
            train_ctr=as_float_array("train_ctr", self.train_ctr),
            train_labels=as_labels("train_labels", self.train_labels),
        )
        check_same_length(
            val_titles=np.asarray(self.val_titles, dtype=object),
            val_ctr=as_float_array("val_ctr", self.val_ctr),
            val_labels=as_labels("val_labels", self.val_labels),
        )


@dataclass(frozen=True)
class BaselinePredictions:
    """Validation-row predictions of the text baselines (for paired comparisons)."""

    mean_ctr: float
    ridge_ctr: FloatArray
    logistic_prob: FloatArray | None  # None when the training labels hold one class


def fit_baselines(inputs: BaselineInputs) -> BaselinePredictions:
    """Fit the text baselines on the training rows; predict the validation rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge

    vectorizer = TfidfVectorizer(ngram_range=WORD_NGRAMS, sublinear_tf=True, min_df=MIN_DF)
    try:
        x_train = vectorizer.fit_transform(inputs.train_titles)
    except ValueError:  # no term in two titles: fall back to every term
        vectorizer = TfidfVectorizer(ngram_range=WORD_NGRAMS, sublinear_tf=True, min_df=1)
        x_train = vectorizer.fit_transform(inputs.train_titles)
    x_val = vectorizer.transform(inputs.val_titles)
    ridge = Ridge(alpha=RIDGE_ALPHA).fit(x_train, inputs.train_ctr)
    ridge_ctr = np.asarray(ridge.predict(x_val), dtype=np.float64)
    logistic_prob: FloatArray | None = None
    if len(np.unique(inputs.train_labels)) == 2:
        logistic = LogisticRegression(C=LOGISTIC_C, max_iter=2000).fit(
            x_train, inputs.train_labels.astype(int)
        )
        logistic_prob = np.asarray(logistic.predict_proba(x_val)[:, 1], dtype=np.float64)
    return BaselinePredictions(
        mean_ctr=float(np.mean(inputs.train_ctr)), ridge_ctr=ridge_ctr, logistic_prob=logistic_prob
    )


def _none_if_nan(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def _mae_ci(
    true: FloatArray, pred: FloatArray, clusters: NDArray[np.intp] | None, seed: int
) -> tuple[float, float] | None:
    return bootstrap_interval(
        lambda idx: float(np.mean(np.abs(true[idx] - pred[idx]))), len(true), clusters, seed
    )


def _auc_ci(
    labels: FloatArray, probs: FloatArray, clusters: NDArray[np.intp] | None, seed: int
) -> tuple[float, float] | None:
    return bootstrap_interval(lambda idx: fast_roc_auc(labels[idx], probs[idx]), len(labels), clusters, seed)


def baseline_metrics(
    inputs: BaselineInputs,
    predictions: BaselinePredictions,
    *,
    clusters: NDArray[np.intp] | None = None,
    clicks: FloatArray | None = None,
    impressions: FloatArray | None = None,
    observed_ctr: FloatArray | None = None,
    seed: int = 0,
) -> list[BaselineMetrics]:
    """Figures of each baseline on the validation rows (bootstrap intervals over ``clusters`` when given)."""
    true = inputs.val_ctr
    labels = inputs.val_labels
    mean_pred = np.full(len(true), predictions.mean_ctr)
    results = [
        BaselineMetrics(
            name="training mean",
            ctr_mae_normalized=float(np.mean(np.abs(true - mean_pred))),
            ctr_mae_normalized_ci=_mae_ci(true, mean_pred, clusters, seed),
        )
    ]
    reg = regression_metrics(true, predictions.ridge_ctr)
    pairwise: float | None = None
    if inputs.val_groups is not None:
        from training.pairwise import pairwise_accuracy

        pw = pairwise_accuracy(
            inputs.val_groups,
            observed_ctr if observed_ctr is not None else true,
            predictions.ridge_ctr,
            clicks,
            impressions,
            titles=inputs.val_titles,
        )
        pairwise = _none_if_nan(pw.accuracy)
    results.append(
        BaselineMetrics(
            name="TF-IDF ridge (CTR)",
            ctr_mae_normalized=reg.mae,
            ctr_mae_normalized_ci=_mae_ci(true, predictions.ridge_ctr, clusters, seed),
            ctr_spearman=_none_if_nan(reg.spearman),
            pairwise_accuracy=pairwise,
        )
    )
    if predictions.logistic_prob is not None:
        cls = classification_metrics(labels, predictions.logistic_prob)
        results.append(
            BaselineMetrics(
                name="TF-IDF logistic (quality)",
                quality_roc_auc=_none_if_nan(cls.roc_auc),
                quality_roc_auc_ci=_auc_ci(labels, predictions.logistic_prob, clusters, seed),
            )
        )
    return results
