"""Pairwise accuracy over headline pairs (``pairwise_accuracy(..., titles=...)``, training/pairwise.py).

Packages of one A/B test that share a headline (they differ only in the image) are one
headline: they are pooled (clicks and impressions summed, predictions averaged) before
pairs are formed, and only pairs of distinct headlines count.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from training.pairwise import headline_key, pairwise_accuracy, two_proportion_z


def _pair_score(pred_a: float, pred_b: float, obs_a: float, obs_b: float) -> float:
    if pred_a == pred_b:
        return 0.5
    return 1.0 if (pred_a > pred_b) == (obs_a > obs_b) else 0.0


def _reference(
    groups: list[Any],
    titles: list[str],
    predicted: list[float],
    clicks: list[float],
    imps: list[float],
) -> tuple[float, int, float, int, int]:
    """The definition, written out: pool (group, headline), then compare every pair of headlines."""
    pooled: dict[tuple[Any, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for g, t, p, c, m in zip(groups, titles, predicted, clicks, imps, strict=True):
        key = (g, " ".join(t.casefold().split()))
        entry = pooled[key]
        entry[0] += c
        entry[1] += m
        entry[2] += p
        entry[3] += 1
    heads = [(g, c / m, p / k, c, m) for (g, _), (c, m, p, k) in pooled.items()]
    scores, sig_scores = [], []
    for i, a in enumerate(heads):
        for b in heads[i + 1 :]:
            if a[0] != b[0] or a[1] == b[1]:
                continue
            s = _pair_score(a[2], b[2], a[1], b[1])
            scores.append(s)
            pooled_p = (a[3] + b[3]) / (a[4] + b[4])
            var = pooled_p * (1 - pooled_p) * (1 / a[4] + 1 / b[4])
            if var > 0 and abs((a[3] / a[4] - b[3] / b[4]) / math.sqrt(var)) > 1.96:
                sig_scores.append(s)
    acc = sum(scores) / len(scores) if scores else math.nan
    sig = sum(sig_scores) / len(sig_scores) if sig_scores else math.nan
    return acc, len(scores), sig, len(sig_scores), len(groups) - len(heads)


def test_hand_built_test_pools_image_variants() -> None:
    # One A/B test: "Cats win" twice (two images, one with odd case and spacing) and "Dogs lose".
    titles = ["Cats win", "  CATS   win ", "Dogs lose"]
    clicks, imps = [10.0, 30.0, 15.0], [100.0, 100.0, 100.0]
    predicted = [0.6, 0.6, 0.4]
    observed = [c / m for c, m in zip(clicks, imps, strict=True)]
    groups = ["t1"] * 3

    # Per package: (cats1, cats2) tie in the prediction -> 0.5; (cats1 0.10 < dogs 0.15) but
    # predicted above -> 0; (cats2 0.30 > dogs 0.15) predicted above -> 1: 1.5 / 3.
    packages = pairwise_accuracy(groups, observed, predicted, clicks, imps)
    assert (packages.pairs, packages.accuracy, packages.pooled_rows) == (3, 1.5 / 3, 0)

    # Per headline: cats = (10 + 30) / (100 + 100) = 0.20 > dogs 0.15, predicted 0.6 > 0.4 -> 1 pair, right.
    headlines = pairwise_accuracy(groups, observed, predicted, clicks, imps, titles=titles)
    assert headlines.pairs == 1
    assert headlines.accuracy == 1.0
    assert headlines.pooled_rows == 1
    z = float(two_proportion_z(40.0, 200.0, 15.0, 100.0))  # about 1.05: not significant
    assert abs(z) < 1.96
    assert headlines.significant_pairs == 0
    _, ref_pairs, _, ref_sig_pairs, ref_pooled = _reference(groups, titles, predicted, clicks, imps)
    assert (headlines.pairs, headlines.significant_pairs, headlines.pooled_rows) == (
        ref_pairs,
        ref_sig_pairs,
        ref_pooled,
    )


def test_pooled_mean_prediction_decides_the_order() -> None:
    # The pooled headline's prediction is the mean of its packages' predictions: (0.2 + 0.6) / 2 = 0.4,
    # below the other headline's 0.5, while its pooled CTR (40 / 200) is above 15 / 100: wrong order.
    result = pairwise_accuracy(
        ["t"] * 3,
        [0.1, 0.3, 0.15],
        [0.2, 0.6, 0.5],
        [10, 30, 15],
        [100, 100, 100],
        titles=["a b", "a  b", "c"],
    )
    assert (result.pairs, result.accuracy, result.pooled_rows) == (1, 0.0, 1)


def test_significance_uses_the_pooled_counts() -> None:
    # Each "Cats" package alone is not significantly above "Dogs" (z about 1.88); pooled they are.
    clicks, imps = [15.0, 15.0, 16.0], [100.0, 100.0, 200.0]
    alone = [float(two_proportion_z(15.0, 100.0, 16.0, 200.0))] * 2
    pooled = float(two_proportion_z(30.0, 200.0, 16.0, 200.0))
    assert max(abs(z) for z in alone) < 1.96 < abs(pooled)
    args = (["t"] * 3, [0.15, 0.15, 0.08], [0.5, 0.5, 0.1], clicks, imps)
    packages = pairwise_accuracy(*args)
    assert (packages.pairs, packages.significant_pairs) == (2, 0)  # the two Cats packages tie in CTR
    headlines = pairwise_accuracy(*args, titles=["Cats", "cats", "Dogs"])
    assert (headlines.pairs, headlines.significant_pairs, headlines.accuracy_significant) == (1, 1, 1.0)


def test_without_counts_the_observed_ctr_is_averaged() -> None:
    # "x" pooled: observed (0.1 + 0.5) / 2 = 0.3 > "y" 0.2; predicted (0.3 + 0.3) / 2 = 0.3 > 0.1: right.
    result = pairwise_accuracy(["g"] * 3, [0.1, 0.5, 0.2], [0.3, 0.3, 0.1], titles=["x", "X", "y"])
    assert (result.pairs, result.accuracy, result.pooled_rows, result.significant_pairs) == (1, 1.0, 1, 0)
    assert math.isnan(result.accuracy_significant)


def test_same_title_in_different_groups_is_not_pooled() -> None:
    result = pairwise_accuracy(
        ["g1", "g1", "g2", "g2"], [0.1, 0.2, 0.3, 0.1], [0.1, 0.2, 0.3, 0.4], titles=["a", "b", "a", "b"]
    )
    assert (result.pairs, result.accuracy, result.pooled_rows) == (2, 0.5, 0)


def test_headline_key_ignores_case_whitespace_and_unicode_form() -> None:
    assert headline_key("  Cats\tWIN\u00a0today ") == headline_key("cats win today")
    assert headline_key("ﬁne") == headline_key("fine")  # NFKC ligature
    assert headline_key("cats win") != headline_key("cats won")
    long_a, long_b = "x" * 5000 + "a", "x" * 5000 + "b"
    assert headline_key(long_a) != headline_key(long_b)  # compared in full, not cut


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("string_ids", [False, True])
def test_matches_the_written_out_definition(seed: int, string_ids: bool) -> None:
    rng = np.random.default_rng(seed)
    n = 160
    raw_groups = rng.integers(0, 25, size=n)
    groups: list[Any] = [f"test-{g}" for g in raw_groups] if string_ids else raw_groups.tolist()
    vocabulary = ["Cats win", "cats  WIN", "Dogs lose", "A or B", "a or b ", "News"]
    titles = [vocabulary[i] for i in rng.integers(0, len(vocabulary), size=n)]
    imps = rng.integers(1, 400, size=n).astype(float)
    clicks = rng.binomial(imps.astype(int), rng.uniform(0.0, 0.2, size=n)).astype(float)
    predicted = np.round(rng.uniform(size=n), 1)  # ties between headlines too
    result = pairwise_accuracy(groups, clicks / imps, predicted, clicks, imps, titles=titles)
    acc, pairs, sig, sig_pairs, pooled = _reference(
        groups, titles, predicted.tolist(), clicks.tolist(), imps.tolist()
    )
    assert (result.pairs, result.significant_pairs, result.pooled_rows) == (pairs, sig_pairs, pooled)
    assert pooled > 0 and pairs > 0 and sig_pairs > 0
    assert result.accuracy == pytest.approx(acc, rel=1e-12)
    assert result.accuracy_significant == pytest.approx(sig, rel=1e-12)


def test_distinct_titles_give_the_per_package_figures() -> None:
    rng = np.random.default_rng(7)
    n = 300
    groups = rng.integers(0, 40, size=n)
    imps = rng.integers(50, 500, size=n).astype(float)
    clicks = rng.binomial(imps.astype(int), 0.1).astype(float)
    predicted = rng.uniform(size=n)
    plain = pairwise_accuracy(groups, clicks / imps, predicted, clicks, imps)
    titled = pairwise_accuracy(
        groups, clicks / imps, predicted, clicks, imps, titles=[f"t{i}" for i in range(n)]
    )
    assert plain == titled
    assert plain.pooled_rows == 0


@pytest.mark.parametrize(
    ("titles", "message"),
    [(["a", "b"], "equal length"), (["a", 3, "c"], "expected strings"), ([["a"], ["b"], ["c"]], "1-D")],
)
def test_bad_titles_are_rejected(titles: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pairwise_accuracy([1, 1, 1], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], titles=titles)
