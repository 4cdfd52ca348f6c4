"""training.metrics against reference implementations (sklearn, scipy, brute-force loops)."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    recall_score,
    roc_auc_score,
)

from training.metrics import (
    ClassificationMetrics,
    RegressionMetrics,
    choose_threshold,
    classification_metrics,
    expected_calibration_error,
    regression_metrics,
)
from training.pairwise import PairwiseResult, pairwise_accuracy, two_proportion_z

SEEDS = [0, 1, 2, 3, 4]


def _binary_data(seed: int, n: int, *, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    probs = np.clip(0.3 * labels + rng.uniform(0.0, 0.7, size=n), 0.0, 1.0)
    if ties:
        probs = np.round(probs, 1)
    return labels, probs


def _f1(labels: np.ndarray, probs: np.ndarray, threshold: float) -> float:
    """Brute-force F1 at one threshold (checked against sklearn in test_f1_helper_matches_sklearn)."""
    predicted = probs >= threshold
    tp = int(np.sum(predicted & (labels == 1)))
    denominator = int(predicted.sum()) + int(labels.sum())
    return 2 * tp / denominator if denominator else 0.0


@pytest.mark.parametrize("threshold", [0.0, 0.35, 0.5, 1.0])
def test_f1_helper_matches_sklearn(threshold: float) -> None:
    labels, probs = _binary_data(0, 100, ties=True)
    expected = f1_score(labels, (probs >= threshold).astype(int), zero_division=0)
    assert _f1(labels, probs, threshold) == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- regression


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
def test_regression_metrics_match_references(seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.uniform(size=300)
    y_pred = np.clip(y_true + rng.normal(scale=0.2, size=300), 0.0, 1.0)
    if ties:
        y_true, y_pred = np.round(y_true, 1), np.round(y_pred, 1)
    result = regression_metrics(y_true, y_pred)
    assert isinstance(result, RegressionMetrics)
    assert result.n == 300
    assert result.mae == pytest.approx(mean_absolute_error(y_true, y_pred), rel=1e-12)
    assert result.rmse == pytest.approx(math.sqrt(mean_squared_error(y_true, y_pred)), rel=1e-12)
    assert result.spearman == pytest.approx(spearmanr(y_true, y_pred).statistic, rel=1e-12)


def test_regression_metrics_accept_lists() -> None:
    result = regression_metrics([0.0, 0.5, 1.0], [0.1, 0.4, 0.9])
    assert result.n == 3
    assert result.spearman == pytest.approx(1.0)
    assert result.mae == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [([0.3, 0.3, 0.3], [0.1, 0.2, 0.3]), ([0.1, 0.2, 0.3], [0.5, 0.5, 0.5]), ([0.4], [0.2])],
)
def test_spearman_is_nan_for_constant_side(y_true: list[float], y_pred: list[float]) -> None:
    # filterwarnings = error: scipy's ConstantInputWarning would fail this test.
    result = regression_metrics(y_true, y_pred)
    assert math.isnan(result.spearman)
    assert math.isfinite(result.mae)


# --------------------------------------------------------------------------- classification


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("ties", [False, True])
def test_classification_metrics_match_sklearn(seed: int, threshold: float, ties: bool) -> None:
    labels, probs = _binary_data(seed, 250, ties=ties)
    result = classification_metrics(labels, probs, threshold)
    assert isinstance(result, ClassificationMetrics)
    predicted = (probs >= threshold).astype(int)
    assert result.roc_auc == pytest.approx(roc_auc_score(labels, probs), rel=1e-12)
    assert result.f1 == pytest.approx(f1_score(labels, predicted, zero_division=0), rel=1e-12)
    assert result.accuracy == pytest.approx(accuracy_score(labels, predicted), rel=1e-12)
    assert result.precision == pytest.approx(precision_score(labels, predicted, zero_division=0), rel=1e-12)
    assert result.recall == pytest.approx(recall_score(labels, predicted, zero_division=0), rel=1e-12)
    assert result.n_positive == int(labels.sum())
    assert result.n_negative == int((labels == 0).sum())
    assert result.positive_rate == pytest.approx(labels.mean())
    assert result.threshold == threshold


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 1]), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]),
)
def test_classification_metrics_property(rows: list[tuple[int, float]], threshold: float) -> None:
    labels = np.array([r[0] for r in rows])
    probs = np.array([r[1] for r in rows])
    result = classification_metrics(labels, probs, threshold)
    predicted = (probs >= threshold).astype(int)
    if len(set(labels.tolist())) == 2:
        assert result.roc_auc == pytest.approx(roc_auc_score(labels, probs))
    else:
        assert math.isnan(result.roc_auc)
    assert result.f1 == pytest.approx(f1_score(labels, predicted, zero_division=0, labels=[0, 1]))
    assert result.precision == pytest.approx(
        precision_score(labels, predicted, zero_division=0, labels=[0, 1])
    )
    assert result.recall == pytest.approx(recall_score(labels, predicted, zero_division=0, labels=[0, 1]))
    assert result.accuracy == pytest.approx(accuracy_score(labels, predicted))


@pytest.mark.parametrize("label", [0, 1])
def test_classification_metrics_single_class_is_nan_auc_without_warning(label: int) -> None:
    result = classification_metrics([label] * 5, [0.1, 0.4, 0.5, 0.6, 0.9])
    assert math.isnan(result.roc_auc)
    assert result.positive_rate == float(label)
    assert result.n_positive == 5 * label
    assert result.n_negative == 5 * (1 - label)
    if label == 0:
        assert result.precision == 0.0
        assert result.recall == 0.0
        assert result.f1 == 0.0


def test_threshold_is_inclusive() -> None:
    result = classification_metrics([0, 1], [0.2, 0.6], threshold=0.6)
    assert result.recall == 1.0
    assert result.precision == 1.0


# --------------------------------------------------------------------------- choose_threshold


def _youden(labels: np.ndarray, probs: np.ndarray, threshold: float) -> float:
    predicted = probs >= threshold
    positive = labels == 1
    return float(np.mean(predicted[positive]) - np.mean(predicted[~positive]))


def _in_band(labels: np.ndarray, probs: np.ndarray, threshold: float) -> bool:
    base = float(np.mean(labels))
    share = float(np.mean(probs >= threshold))
    return min(0.05, base / 2) <= share <= max(0.95, (1 + base) / 2)


def _reference_threshold(labels: np.ndarray, probs: np.ndarray, objective: str) -> float:
    """Brute force: best score among candidates whose predicted positive share is in the band."""
    score = _f1 if objective == "f1" else _youden
    candidates = [t for t in sorted({*probs.tolist(), 0.5}) if _in_band(labels, probs, t)]
    if not candidates:
        return float(np.quantile(probs, 1 - np.mean(labels), method="higher"))
    scores = [score(labels, probs, t) for t in candidates]
    best = max(scores)
    tied = [t for t, s in zip(candidates, scores, strict=True) if math.isclose(s, best, rel_tol=1e-12)]
    return float(min(tied, key=lambda t: (abs(t - 0.5), t)))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("objective", ["youden", "f1"])
def test_choose_threshold_maximises_its_objective(seed: int, ties: bool, objective: str) -> None:
    labels, probs = _binary_data(seed, 200, ties=ties)
    threshold = choose_threshold(labels, probs, objective)  # type: ignore[arg-type]
    assert 0.0 <= threshold <= 1.0
    score = _f1 if objective == "f1" else _youden
    chosen = score(labels, probs, threshold)
    grid = [t for t in np.linspace(0.0, 1.0, 201) if _in_band(labels, probs, t)]
    assert chosen >= max(score(labels, probs, t) for t in grid) - 1e-12
    assert threshold == _reference_threshold(labels, probs, objective)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 1]), st.sampled_from([0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0])),
        min_size=2,
        max_size=25,
    ),
    st.sampled_from(["youden", "f1"]),
)
def test_choose_threshold_property(rows: list[tuple[int, float]], objective: str) -> None:
    labels = np.array([r[0] for r in rows])
    probs = np.array([r[1] for r in rows])
    threshold = choose_threshold(labels, probs, objective)  # type: ignore[arg-type]
    if len(set(labels.tolist())) < 2:
        assert threshold == 0.5
    else:
        assert threshold == _reference_threshold(labels, probs, objective)


def test_choose_threshold_prefers_half_when_tied() -> None:
    # Any threshold in (0.2, 0.8] separates perfectly: 0.5 is kept.
    assert choose_threshold([0, 1], [0.2, 0.8]) == 0.5


def test_choose_threshold_moves_away_from_half_when_better() -> None:
    assert choose_threshold([0, 1, 1], [0.1, 0.2, 0.3]) == 0.2
    assert choose_threshold([0, 0, 1], [0.6, 0.7, 0.9]) == 0.9


def test_choose_threshold_is_deterministic_under_permutation() -> None:
    labels, probs = _binary_data(7, 300, ties=True)
    perm = np.random.default_rng(1).permutation(300)
    assert choose_threshold(labels, probs) == choose_threshold(labels[perm], probs[perm])


@pytest.mark.parametrize("label", [0, 1])
def test_choose_threshold_single_class(label: int) -> None:
    assert choose_threshold([label] * 4, [0.1, 0.2, 0.9, 0.95]) == 0.5


# --------------------------------------------------------------------------- ECE


def _reference_ece(labels: np.ndarray, probs: np.ndarray, n_bins: int) -> float:
    total = 0.0
    for i in range(n_bins):
        lo, hi = i / n_bins, (i + 1) / n_bins
        in_bin = [
            k for k in range(len(probs)) if (lo <= probs[k] < hi) or (i == n_bins - 1 and probs[k] == 1.0)
        ]
        if in_bin:
            acc = sum(labels[k] for k in in_bin) / len(in_bin)
            conf = sum(probs[k] for k in in_bin) / len(in_bin)
            total += len(in_bin) / len(probs) * abs(acc - conf)
    return total


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_bins", [1, 5, 10, 15])
def test_ece_matches_reference(seed: int, n_bins: int) -> None:
    rng = np.random.default_rng(seed)
    probs = rng.uniform(size=300)
    probs[:10] = [0.0, 1.0, 0.5, 0.2, 0.4, 0.6, 0.8, 0.999999, 1e-9, 0.1]  # include edge values
    labels = (rng.uniform(size=300) < probs**2).astype(int)
    ece = expected_calibration_error(labels, probs, n_bins=n_bins)
    assert ece == pytest.approx(_reference_ece(labels, probs, n_bins), abs=1e-12)


def test_ece_of_calibrated_and_distorted_data() -> None:
    rng = np.random.default_rng(42)
    p = rng.uniform(size=200_000)
    labels = (rng.uniform(size=p.size) < p).astype(int)
    calibrated = expected_calibration_error(labels, p)
    distorted = expected_calibration_error(labels, p**3)
    assert calibrated < 0.01
    assert distorted > 0.15
    assert distorted > 10 * calibrated


@pytest.mark.parametrize("edge", [0.3, 0.6, 0.7])
def test_ece_bin_edges_are_exact(edge: float) -> None:
    # A probability equal to i / n_bins opens bin i (np.linspace would give 0.6000000000000001).
    below = edge - 0.05
    split = (abs(1.0 - below) + abs(0.0 - edge)) / 2
    assert expected_calibration_error([1, 0], [below, edge], n_bins=10) == pytest.approx(split)
    assert expected_calibration_error([1, 0], [below, edge], n_bins=10) == pytest.approx(
        _reference_ece(np.array([1, 0]), np.array([below, edge]), 10)
    )


def test_ece_extremes() -> None:
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0
    assert expected_calibration_error([1, 0], [0.0, 1.0]) == 1.0


# --------------------------------------------------------------------------- pairwise and z-test


def _reference_z(ca: float, na: float, cb: float, nb: float) -> float:
    pooled = (ca + cb) / (na + nb)
    var = pooled * (1 - pooled) * (1 / na + 1 / nb)
    return 0.0 if var == 0 else (ca / na - cb / nb) / math.sqrt(var)


def _reference_pairwise(
    groups: list[Any],
    observed: np.ndarray,
    predicted: np.ndarray,
    clicks: np.ndarray | None,
    imps: np.ndarray | None,
) -> tuple[float, int, float, int]:
    scores: list[float] = []
    sig_scores: list[float] = []
    n = len(groups)
    for i in range(n):
        for j in range(i + 1, n):
            if groups[i] != groups[j] or observed[i] == observed[j]:
                continue
            if predicted[i] == predicted[j]:
                s = 0.5
            else:
                s = 1.0 if (predicted[i] > predicted[j]) == (observed[i] > observed[j]) else 0.0
            scores.append(s)
            significant = (
                clicks is not None
                and imps is not None
                and abs(_reference_z(clicks[i], imps[i], clicks[j], imps[j])) > 1.96
            )
            if significant:
                sig_scores.append(s)
    acc = sum(scores) / len(scores) if scores else math.nan
    sig = sum(sig_scores) / len(sig_scores) if sig_scores else math.nan
    return acc, len(scores), sig, len(sig_scores)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def _random_ab(seed: int, n: int, n_groups: int, *, string_ids: bool) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    raw_groups = rng.integers(0, n_groups, size=n)
    groups: list[Any] = [f"test-{g}" for g in raw_groups] if string_ids else raw_groups.tolist()
    imps = rng.integers(1, 400, size=n).astype(float)
    imps[: n // 10] = 50.0  # some equal denominators -> equal observed CTR more likely
    clicks = rng.binomial(imps.astype(int), rng.uniform(0.0, 0.2, size=n)).astype(float)
    observed = clicks / imps
    predicted = np.round(observed + rng.normal(scale=0.05, size=n), 2)  # rounding -> prediction ties
    return {
        "groups": groups,
        "observed": observed,
        "predicted": predicted,
        "clicks": clicks,
        "imps": imps,
    }


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("string_ids", [False, True])
def test_pairwise_accuracy_matches_brute_force(seed: int, string_ids: bool) -> None:
    d = _random_ab(seed, 150, 20, string_ids=string_ids)
    result = pairwise_accuracy(d["groups"], d["observed"], d["predicted"], d["clicks"], d["imps"])
    assert isinstance(result, PairwiseResult)
    acc, pairs, sig, sig_pairs = _reference_pairwise(
        d["groups"], d["observed"], d["predicted"], d["clicks"], d["imps"]
    )
    assert result.pairs == pairs
    assert result.significant_pairs == sig_pairs
    assert _same(result.accuracy, acc)
    assert _same(result.accuracy_significant, sig)
    assert pairs > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_pairwise_accuracy_without_counts(seed: int) -> None:
    d = _random_ab(seed, 120, 15, string_ids=False)
    result = pairwise_accuracy(np.array(d["groups"]), d["observed"], d["predicted"])
    acc, pairs, _, _ = _reference_pairwise(d["groups"], d["observed"], d["predicted"], None, None)
    assert result.pairs == pairs
    assert _same(result.accuracy, acc)
    assert math.isnan(result.accuracy_significant)
    assert result.significant_pairs == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", 3]),  # mixed id types are allowed
            st.sampled_from([0.0, 0.1, 0.2]),
            st.sampled_from([0.0, 0.5, 1.0]),
        ),
        min_size=0,
        max_size=12,
    )
)
def test_pairwise_accuracy_property(rows: list[tuple[Any, float, float]]) -> None:
    groups = [r[0] for r in rows]
    observed = np.array([r[1] for r in rows], dtype=float)
    predicted = np.array([r[2] for r in rows], dtype=float)
    if not rows:
        with pytest.raises(ValueError, match="expected at least one value"):
            pairwise_accuracy(groups, observed, predicted)
        return
    grp = np.empty(len(groups), dtype=object)
    grp[:] = groups
    result = pairwise_accuracy(grp, observed, predicted)
    acc, pairs, _, _ = _reference_pairwise(groups, observed, predicted, None, None)
    assert result.pairs == pairs
    assert _same(result.accuracy, acc)


def test_pairwise_accuracy_simple_cases() -> None:
    # Group g1: perfect order; group g2: reversed; g3: single row; equal observed pair skipped.
    result = pairwise_accuracy(
        ["g1", "g1", "g2", "g2", "g3", "g4", "g4"],
        [0.1, 0.2, 0.1, 0.2, 0.5, 0.3, 0.3],
        [0.3, 0.9, 0.9, 0.3, 0.5, 0.1, 0.9],
    )
    assert result.pairs == 2
    assert result.accuracy == 0.5
    tie = pairwise_accuracy([1, 1], [0.1, 0.2], [0.4, 0.4])
    assert tie.accuracy == 0.5
    none = pairwise_accuracy([1, 2], [0.1, 0.2], [0.4, 0.5])
    assert none.pairs == 0
    assert math.isnan(none.accuracy)


def test_pairwise_accuracy_is_fast_on_20k_rows() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    groups = np.repeat(np.arange(n // 10), 10)[rng.permutation(n)]
    imps = rng.integers(100, 10_000, size=n).astype(float)
    clicks = rng.binomial(imps.astype(int), 0.05).astype(float)
    predicted = rng.uniform(size=n)
    pairwise_accuracy(groups[:100], clicks[:100] / imps[:100], predicted[:100])  # warm-up
    start = time.perf_counter()
    result = pairwise_accuracy(groups, clicks / imps, predicted, clicks, imps)
    elapsed = time.perf_counter() - start
    assert result.pairs > 80_000
    assert elapsed < 0.5


@pytest.mark.parametrize("seed", SEEDS)
def test_two_proportion_z_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    na = rng.integers(1, 300, size=n).astype(float)
    nb = rng.integers(1, 300, size=n).astype(float)
    ca = rng.binomial(na.astype(int), 0.1).astype(float)
    cb = rng.binomial(nb.astype(int), 0.1).astype(float)
    ca[:5], cb[:5] = 0.0, 0.0  # zero pooled variance
    ca[5:10], cb[5:10] = na[5:10], nb[5:10]  # pooled proportion 1
    z = two_proportion_z(ca, na, cb, nb)
    expected = [_reference_z(*args) for args in zip(ca, na, cb, nb, strict=True)]
    np.testing.assert_allclose(z, expected, rtol=1e-12, atol=1e-15)
    assert np.all(z[:10] == 0.0)


def test_two_proportion_z_known_value_and_broadcast() -> None:
    # p1 = 0.6, p2 = 0.4, pooled 0.5: z = 0.2 / sqrt(0.25 * 2 / 100) = 2.8284...
    assert two_proportion_z(60, 100, 40, 100) == pytest.approx(2.0 * math.sqrt(2.0))
    z = two_proportion_z([60, 40], 100, 40, 100)
    assert z.shape == (2,)
    assert z[1] == 0.0


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: regression_metrics([0.1, 0.2], [0.1]), "equal length"),
        (lambda: regression_metrics([], []), "at least one value"),
        (lambda: regression_metrics([0.1, math.nan], [0.1, 0.2]), "finite"),
        (lambda: regression_metrics([[0.1]], [[0.1]]), "1-D"),
        (lambda: regression_metrics(["a"], [0.1]), "numeric"),
        (lambda: classification_metrics([0, 1], [0.1, 0.2, 0.3]), "equal length"),
        (lambda: classification_metrics([0, 2], [0.1, 0.2]), "binary labels"),
        (lambda: classification_metrics([0, 1], [0.1, 1.2]), r"probabilities in \[0, 1\]"),
        (lambda: classification_metrics([0, 1], [0.1, math.inf]), "finite"),
        (lambda: classification_metrics([0, 1], [0.1, 0.2], threshold=1.5), "threshold"),
        (lambda: classification_metrics([0, 1], [0.1, 0.2], threshold=math.nan), "threshold"),
        (lambda: choose_threshold([], []), "at least one value"),
        (lambda: choose_threshold([0, 1], [math.nan, 0.2]), "finite"),
        (lambda: expected_calibration_error([0, 1], [0.1, 0.2], n_bins=0), "n_bins"),
        (lambda: expected_calibration_error([0, 1], [0.1]), "equal length"),
        (lambda: pairwise_accuracy([1, 1], [0.1, 0.2], [0.1]), "equal length"),
        (lambda: pairwise_accuracy([1, 1], [0.1, math.nan], [0.1, 0.2]), "finite"),
        (lambda: pairwise_accuracy([1.0, math.nan], [0.1, 0.2], [0.1, 0.2]), "NaN"),
        (lambda: pairwise_accuracy([1, 1], [0.1, 0.2], [0.1, 0.2], clicks=[1, 2]), "together"),
        (lambda: pairwise_accuracy([1, 1], [0.1, 0.2], [0.1, 0.2], [1, 2], [10]), "equal length"),
        (lambda: pairwise_accuracy([1, 1], [0.1, 0.2], [0.1, 0.2], [1, 20], [10, 10]), "clicks <="),
        (lambda: pairwise_accuracy([1, 1], [0.1, 0.2], [0.1, 0.2], [0, 0], [0, 10]), "impressions > 0"),
        (lambda: two_proportion_z([-1], [10], [1], [10]), "clicks >= 0"),
        (lambda: two_proportion_z([1, 2], [10, 10], [1, 2, 3], [10, 10, 10]), "broadcastable"),
        (lambda: two_proportion_z([math.nan], [10], [1], [10]), "finite"),
    ],
)
def test_input_validation(call: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_validation_message_names_the_lengths() -> None:
    with pytest.raises(ValueError, match=r"expected arrays of equal length, got y_true=2, y_pred=1"):
        regression_metrics([0.1, 0.2], [0.1])
