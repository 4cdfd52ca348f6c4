"""Evaluation metrics for the CTR regression head and the quality classification head.

Pure functions over numpy arrays (numpy, scipy and scikit-learn); the A/B-test
view (pairwise accuracy within groups) is in :mod:`artifact.pairwise`, the input
validation helpers and the expected calibration error in :mod:`artifact.measures`
(numpy only, shared with the stream's live quality) and re-exported here. Every
public function validates its inputs at the boundary and raises ``ValueError``
with an "expected X, got Y" message; none of them emits warnings, so they are
safe under ``filterwarnings = error``. Degenerate inputs (a constant side for
Spearman, a single class for ROC AUC, no comparable pairs) give ``nan``
instead of a warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata, spearmanr
from sklearn.metrics import roc_auc_score

# Re-exported (``X as X``) for the callers that import them from here.
from artifact.measures import FloatArray as FloatArray
from artifact.measures import as_float_array as as_float_array
from artifact.measures import as_labels as as_labels
from artifact.measures import as_probabilities as as_probabilities
from artifact.measures import check_same_length as check_same_length
from artifact.measures import expected_calibration_error as expected_calibration_error

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- validation


def _check_unit_interval(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name}: expected a finite number in [0, 1], got {value!r}")
    return value


# --------------------------------------------------------------------------- regression


@dataclass(frozen=True, slots=True)
class RegressionMetrics:
    """Error and rank agreement of predicted vs. observed (normalized) CTR."""

    mae: float
    rmse: float
    spearman: float  # nan when either side is constant (or n < 2)
    n: int


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> RegressionMetrics:
    """MAE, RMSE and Spearman rank correlation of ``y_pred`` against ``y_true``."""
    true = as_float_array("y_true", y_true)
    pred = as_float_array("y_pred", y_pred)
    n = check_same_length(y_true=true, y_pred=pred)
    err = pred - true
    mae = float(np.mean(np.abs(err)))
    rmse = float(np.sqrt(np.mean(err * err)))
    if n < 2 or np.ptp(true) == 0.0 or np.ptp(pred) == 0.0:
        spearman = float("nan")
    else:
        spearman = float(spearmanr(true, pred).statistic)
    return RegressionMetrics(mae=mae, rmse=rmse, spearman=spearman, n=n)


# --------------------------------------------------------------------------- classification


@dataclass(frozen=True, slots=True)
class ClassificationMetrics:
    """Quality-head metrics; threshold metrics predict positive when ``prob >= threshold``."""

    roc_auc: float  # nan when the labels hold a single class
    f1: float
    accuracy: float
    precision: float  # 0 when nothing is predicted positive
    recall: float  # 0 when there are no positive labels
    positive_rate: float  # share of positive labels (label balance)
    threshold: float
    n_positive: int
    n_negative: int


def classification_metrics(
    labels: ArrayLike, probs: ArrayLike, threshold: float = 0.5
) -> ClassificationMetrics:
    """ROC AUC plus F1/accuracy/precision/recall at ``threshold``.

    Undefined ratios are reported as 0 (scikit-learn's ``zero_division=0``) and
    ROC AUC as ``nan`` for single-class labels, without emitting warnings.
    """
    y = as_labels("labels", labels)
    p = as_probabilities("probs", probs)
    n = check_same_length(labels=y, probs=p)
    thr = _check_unit_interval("threshold", threshold)

    positive = y == 1.0
    predicted = p >= thr
    n_positive = int(np.count_nonzero(positive))
    n_negative = n - n_positive
    tp = int(np.count_nonzero(positive & predicted))
    n_predicted = int(np.count_nonzero(predicted))
    tn = int(np.count_nonzero(~positive & ~predicted))

    precision = tp / n_predicted if n_predicted else 0.0
    recall = tp / n_positive if n_positive else 0.0
    denominator = n_predicted + n_positive
    f1 = 2.0 * tp / denominator if denominator else 0.0
    single_class = n_positive == 0 or n_negative == 0
    roc_auc = float("nan") if single_class else float(roc_auc_score(y, p))
    return ClassificationMetrics(
        roc_auc=roc_auc,
        f1=f1,
        accuracy=(tp + tn) / n,
        precision=precision,
        recall=recall,
        positive_rate=n_positive / n,
        threshold=thr,
        n_positive=n_positive,
        n_negative=n_negative,
    )


#: A class holding more than this share of the rows makes a label or a prediction degenerate.
DEGENERATE_SHARE = 0.95

ThresholdObjective = Literal["youden", "f1"]


def choose_threshold(labels: ArrayLike, probs: ArrayLike, objective: ThresholdObjective = "youden") -> float:
    """The decision threshold chosen on these (validation) rows.

    ``youden`` (the default) maximises Youden's J = TPR - FPR (equivalently balanced accuracy),
    which scores 0 for "everything positive" whatever the base rate; ``f1`` maximises F1, which
    rewards predicting every row positive when the model separates the classes poorly (on
    Upworthy it made 99 % of the headlines "high"). Only thresholds whose predicted positive
    share stays within ``[min(0.05, base / 2), max(0.95, (1 + base) / 2)]`` (``base``: the
    positive share of the labels) are candidates; when none is, the threshold that predicts
    about the base rate positive is returned.

    Candidates are the distinct probabilities plus 0.5 (a row is positive when
    ``prob >= threshold``). Among candidates with the best score the one closest
    to 0.5 wins, then the smaller one, so the result is deterministic and 0.5 is
    kept whenever it is as good as any other threshold. Single-class labels give 0.5.
    """
    if objective not in ("youden", "f1"):
        raise ValueError(f"objective: expected 'youden' or 'f1', got {objective!r}")
    y = as_labels("labels", labels)
    p = as_probabilities("probs", probs)
    n = check_same_length(labels=y, probs=p)
    n_positive = float(np.sum(y))
    if n_positive == 0.0 or n_positive == n:
        return 0.5
    n_negative = n - n_positive
    base = n_positive / n

    order = np.argsort(p, kind="stable")
    p_sorted = p[order]
    # positives_from[i] = number of positive labels among rows i.. (ascending order); length n + 1.
    positives_from = np.concatenate([np.cumsum(y[order][::-1])[::-1], [0.0]])
    candidates = np.unique(np.concatenate([p_sorted, [0.5]]))
    first_positive = np.searchsorted(p_sorted, candidates, side="left")
    tp = positives_from[first_positive]
    n_predicted = (n - first_positive).astype(np.float64)
    if objective == "f1":
        score = 2.0 * tp / (n_predicted + n_positive)  # exact ratios of integers: ties compare equal
    else:
        fp = n_predicted - tp
        score = tp * n_negative - fp * n_positive  # J * P * N, in integers: ties compare equal
    share = n_predicted / n
    allowed = (share >= min(1.0 - DEGENERATE_SHARE, base / 2)) & (
        share <= max(DEGENERATE_SHARE, (1 + base) / 2)
    )
    if not np.any(allowed):
        # Too few distinct probabilities: predict about the base rate positive.
        return float(np.quantile(p, 1.0 - base, method="higher"))
    best = candidates[allowed & (score == np.max(score[allowed]))]
    distance = np.abs(best - 0.5)
    # ``best`` is ascending, so argmin picks the smaller one among equally close thresholds.
    return float(best[np.argmin(distance)])


def degeneracy_warnings(
    labels: ArrayLike, predicted: ArrayLike, *, what: str = "quality", limit: float = DEGENERATE_SHARE
) -> list[str]:
    """Plain-language warnings when a binary label or prediction says little.

    A label or a prediction where one class holds more than ``limit`` of the rows, and an
    accuracy below the majority-class baseline (always predicting the commoner label).
    """
    y = as_labels("labels", labels)
    pred = as_labels("predicted", predicted)
    n = check_same_length(labels=y, predicted=pred)
    warnings: list[str] = []
    label_share = float(np.mean(y))
    pred_share = float(np.mean(pred))
    if max(label_share, 1 - label_share) > limit:
        cls = "positive" if label_share > 0.5 else "negative"
        share = max(label_share, 1 - label_share)
        warnings.append(f"the {what} label is degenerate: {share:.1%} of the {n} rows are {cls}")
    if max(pred_share, 1 - pred_share) > limit:
        cls = "positive" if pred_share > 0.5 else "negative"
        warnings.append(
            f"the {what} prediction is degenerate: {max(pred_share, 1 - pred_share):.1%} of the {n} rows "
            f"are predicted {cls} (label positive share {label_share:.1%})"
        )
    accuracy = float(np.mean(y == pred))
    majority = max(label_share, 1 - label_share)
    if accuracy < majority:
        warnings.append(
            f"{what} accuracy {accuracy:.3f} is below the majority-class baseline {majority:.3f} "
            "(always predicting the commoner label)"
        )
    return warnings


def fast_roc_auc(labels: FloatArray, scores: FloatArray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties averaged; ``nan`` for a single class.

    No input validation: for inner loops (bootstrap) over already validated arrays.
    """
    positive = labels == 1.0
    n_pos = int(np.count_nonzero(positive))
    n_neg = labels.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((np.sum(ranks[positive]) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


#: Bootstrap resamples behind every reported confidence interval.
BOOTSTRAP_SAMPLES = 1000


def bootstrap_interval(
    statistic: Callable[[NDArray[np.intp]], float],
    n: int,
    clusters: NDArray[np.intp] | None = None,
    seed: int = 0,
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``statistic(row_index)`` over ``n`` rows.

    With ``clusters`` (one code per row, e.g. the A/B test) whole clusters are resampled, so
    rows that are not independent are not counted as if they were. The same ``seed`` draws the
    same resamples, so intervals of two models on the same rows are paired. ``None`` when fewer
    than half the resamples give a finite value (e.g. AUC on tiny single-class resamples).
    """
    if n < 2:
        return None
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: expected a number in (0, 1), got {level!r}")
    rng = np.random.default_rng(seed)
    values = np.empty(samples)
    if clusters is None:
        for i in range(samples):
            values[i] = statistic(rng.integers(0, n, n))
    else:
        if len(clusters) != n:
            raise ValueError(f"clusters: expected {n} codes, got {len(clusters)}")
        order = np.argsort(clusters, kind="stable")
        _, starts = np.unique(clusters[order], return_index=True)
        members = np.split(order, starts[1:])
        for i in range(samples):
            chosen = rng.integers(0, len(members), len(members))
            values[i] = statistic(np.concatenate([members[c] for c in chosen]))
    finite = values[np.isfinite(values)]
    if finite.size < samples / 2:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
