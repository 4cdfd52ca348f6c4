"""Evaluation metrics for the CTR regression head and the quality classification head.

Pure functions over numpy arrays (numpy, scipy and scikit-learn); the A/B-test
view (pairwise accuracy within groups) is in :mod:`training.pairwise`. Every
public function validates its inputs at the boundary and raises ``ValueError``
with an "expected X, got Y" message; none of them emits warnings, so they are
safe under ``filterwarnings = error``. Degenerate inputs (a constant side for
Spearman, a single class for ROC AUC, no comparable pairs) give ``nan``
instead of a warning.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

# --------------------------------------------------------------------------- validation


def as_float_array(name: str, values: ArrayLike, *, allow_empty: bool = False) -> FloatArray:
    """Return ``values`` as a finite 1-D float64 array or raise ``ValueError``."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected numeric values, got {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name}: expected at least one value, got an empty array")
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name}: expected finite values, got {n_bad} NaN/inf value(s)")
    return arr


def as_labels(name: str, values: ArrayLike) -> FloatArray:
    """Return binary labels as a float64 array of 0.0/1.0 or raise ``ValueError``."""
    arr = as_float_array(name, values)
    bad = (arr != 0.0) & (arr != 1.0)
    if np.any(bad):
        raise ValueError(f"{name}: expected binary labels 0/1, got value {float(arr[bad][0])!r}")
    return arr


def as_probabilities(name: str, values: ArrayLike) -> FloatArray:
    """Return probabilities as a float64 array within [0, 1] or raise ``ValueError``."""
    arr = as_float_array(name, values)
    bad = (arr < 0.0) | (arr > 1.0)
    if np.any(bad):
        raise ValueError(f"{name}: expected probabilities in [0, 1], got value {float(arr[bad][0])!r}")
    return arr


def check_same_length(**arrays: NDArray[np.generic]) -> int:
    """Return the common length of ``arrays`` or raise ``ValueError`` naming the lengths."""
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"expected arrays of equal length, got {described}")
    return next(iter(lengths.values()))


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


def choose_threshold(labels: ArrayLike, probs: ArrayLike) -> float:
    """The decision threshold that maximises F1 on these (validation) rows.

    Candidates are the distinct probabilities plus 0.5 (a row is positive when
    ``prob >= threshold``). Among candidates with the maximal F1 the one closest
    to 0.5 wins, then the smaller one, so the result is deterministic and 0.5 is
    kept whenever it is as good as any other threshold. Single-class labels give 0.5.
    """
    y = as_labels("labels", labels)
    p = as_probabilities("probs", probs)
    n = check_same_length(labels=y, probs=p)
    n_positive = float(np.sum(y))
    if n_positive == 0.0 or n_positive == n:
        return 0.5

    order = np.argsort(p, kind="stable")
    p_sorted = p[order]
    # positives_from[i] = number of positive labels among rows i.. (ascending order); length n + 1.
    positives_from = np.concatenate([np.cumsum(y[order][::-1])[::-1], [0.0]])
    candidates = np.unique(np.concatenate([p_sorted, [0.5]]))
    first_positive = np.searchsorted(p_sorted, candidates, side="left")
    tp = positives_from[first_positive]
    n_predicted = (n - first_positive).astype(np.float64)
    f1 = 2.0 * tp / (n_predicted + n_positive)  # exact ratios of integers: ties compare equal

    best = candidates[f1 == np.max(f1)]
    distance = np.abs(best - 0.5)
    # ``best`` is ascending, so argmin picks the smaller one among equally close thresholds.
    return float(best[np.argmin(distance)])


def expected_calibration_error(labels: ArrayLike, probs: ArrayLike, n_bins: int = 10) -> float:
    """Equal-width-bin expected calibration error of the positive-class probability.

    Bin ``i`` holds probabilities in ``[i / n_bins, (i + 1) / n_bins)`` (the last bin
    also holds 1.0); ECE is the count-weighted mean over non-empty bins of
    ``|share of positive labels - mean probability|``.
    """
    y = as_labels("labels", labels)
    p = as_probabilities("probs", probs)
    n = check_same_length(labels=y, probs=p)
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins: expected a positive integer, got {n_bins!r}")
    n_bins = int(n_bins)
    inner_edges = np.arange(1, n_bins) / n_bins  # exactly i / n_bins, unlike np.linspace
    bins = np.searchsorted(inner_edges, p, side="right")
    sum_labels = np.bincount(bins, weights=y, minlength=n_bins)
    sum_probs = np.bincount(bins, weights=p, minlength=n_bins)
    # |mean(y) - mean(p)| * count / n == |sum(y) - sum(p)| / n, and empty bins contribute 0.
    return float(np.sum(np.abs(sum_labels - sum_probs)) / n)
