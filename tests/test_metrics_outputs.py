"""training/metrics.py, the parts a reader of the report leans on: a meaningful quality threshold,
degeneracy warnings, the rank-sum AUC and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.metrics import (
    bootstrap_interval,
    choose_threshold,
    degeneracy_warnings,
    fast_roc_auc,
)


def _weak_model(n: int = 2000, base: float = 0.48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels near balance and calibrated-looking probabilities that barely separate them.

    Shaped like Upworthy's quality head: probabilities bunched around the base rate, a slight
    shift for positives (AUC about 0.55).
    """
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < base).astype(float)
    probs = np.clip(base + 0.02 * labels + rng.normal(0.0, 0.05, n), 0.0, 1.0)
    return labels, probs


def test_f1_threshold_degenerates_on_a_weak_model_and_youden_does_not() -> None:
    labels, probs = _weak_model()
    # The old objective: F1 is maximised by calling most rows positive (and, without the band on
    # the predicted share that now applies to both objectives, every row).
    f1_share = float(np.mean(probs >= choose_threshold(labels, probs, "f1")))
    assert f1_share > 0.8
    youden = choose_threshold(labels, probs)
    share = float(np.mean(probs >= youden))
    assert 0.05 <= share <= 0.95
    assert abs(share - labels.mean()) < abs(f1_share - labels.mean())
    predicted = (probs >= youden).astype(float)
    assert degeneracy_warnings(labels, predicted) == []

    def balanced_accuracy(threshold: float) -> float:
        predicted = probs >= threshold
        return float((np.mean(predicted[labels == 1]) + np.mean(~predicted[labels == 0])) / 2)

    assert balanced_accuracy(youden) > balanced_accuracy(choose_threshold(labels, probs, "f1")) + 0.02


def test_threshold_never_labels_every_row_positive() -> None:
    # Perfectly uninformative probabilities: all-positive and all-negative are outside the band,
    # so the threshold predicts about the base rate positive.
    labels = np.array([1.0, 0.0] * 50)
    probs = np.full(100, 0.5)
    threshold = choose_threshold(labels, probs)
    share = float(np.mean(probs >= threshold))
    assert share in (0.0, 1.0)  # one distinct probability: no threshold can split it ...
    assert degeneracy_warnings(labels, (probs >= threshold).astype(float))  # ... and that is flagged


def test_threshold_with_few_distinct_probabilities_falls_back_to_the_base_rate() -> None:
    labels = np.array([1.0] * 30 + [0.0] * 70)
    probs = np.array([0.9] * 1 + [0.4] * 99)  # only 1 % could be predicted positive
    # No candidate predicts between 5 % and 95 % positive: the fallback is the base-rate quantile.
    assert choose_threshold(labels, probs) == float(np.quantile(probs, 0.7, method="higher")) == 0.4


def test_degeneracy_warnings_name_each_problem() -> None:
    labels = np.array([1.0] * 48 + [0.0] * 52)
    all_high = np.ones(100)
    found = degeneracy_warnings(labels, all_high)
    assert any("prediction is degenerate: 100.0% of the 100 rows are predicted positive" in w for w in found)
    assert any("accuracy 0.480 is below the majority-class baseline 0.520" in w for w in found)
    assert not any("label is degenerate" in w for w in found)

    skewed = np.array([1.0] * 97 + [0.0] * 3)
    found = degeneracy_warnings(skewed, skewed)
    assert found == [
        "the quality label is degenerate: 97.0% of the 100 rows are positive",
        "the quality prediction is degenerate: 97.0% of the 100 rows are predicted positive "
        "(label positive share 97.0%)",
    ]

    balanced = np.array([1.0, 0.0] * 50)
    assert degeneracy_warnings(balanced, balanced) == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_roc_auc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 500).astype(float)
    scores = np.round(rng.random(500) + 0.3 * labels, 1)
    assert fast_roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert np.isnan(fast_roc_auc(np.ones(5), scores[:5]))


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_rows() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 100), rng.normal(1.0, 1.0, 10_000)
    lo_s, hi_s = bootstrap_interval(lambda i: float(small[i].mean()), len(small)) or (0, 0)
    lo_l, hi_l = bootstrap_interval(lambda i: float(large[i].mean()), len(large), samples=300) or (0, 0)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 5
    # The standard error of a mean of 100 N(0, 1) rows is 0.1: the 95 % interval is about 0.39 wide.
    assert 0.3 < hi_s - lo_s < 0.5
    # Same seed, same resamples.
    assert bootstrap_interval(lambda i: float(small[i].mean()), 100) == (lo_s, hi_s)
    assert bootstrap_interval(lambda i: 0.0, 1) is None


def test_cluster_bootstrap_counts_clusters_not_rows() -> None:
    # 20 clusters of 50 identical rows: really 20 observations, not 1,000.
    rng = np.random.default_rng(1)
    values = np.repeat(rng.normal(0.0, 1.0, 20), 50)
    clusters = np.repeat(np.arange(20), 50).astype(np.intp)
    naive = bootstrap_interval(lambda i: float(values[i].mean()), len(values))
    clustered = bootstrap_interval(lambda i: float(values[i].mean()), len(values), clusters)
    assert naive is not None and clustered is not None
    assert clustered[1] - clustered[0] > 4 * (naive[1] - naive[0])
    with pytest.raises(ValueError, match="clusters: expected 1000 codes"):
        bootstrap_interval(lambda i: 0.0, 1000, clusters[:10])


def test_bootstrap_interval_is_none_when_the_statistic_is_mostly_undefined() -> None:
    # Undefined (nan) on about three resamples in four.
    assert bootstrap_interval(lambda i: float("nan") if i[0] % 4 else 1.0, 100) is None
    assert bootstrap_interval(lambda i: float("nan") if i[0] % 4 == 0 else 1.0, 100) == (1.0, 1.0)
