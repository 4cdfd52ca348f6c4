"""artifact/drift.py (PSI, bins, reference) and stream/drift.py (the sliding window): detection on synthetic
streams with a known change."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifact.drift import (
    NUMERIC_SIGNALS,
    DriftReference,
    bin_indices,
    bin_proportions,
    build_drift_reference,
    categorical_psi,
    psi,
)
from artifact.errors import DriftReferenceError
from stream.drift import SlidingWindowDrift

CATEGORIES = {"news": 0.5, "sport": 0.3, "tech": 0.2, "__other__": 0.0}


def reference_psi(p: list[float], q: list[float], eps: float = 1e-4) -> float:
    """The contract's formula, written out term by term."""
    total = 0.0
    for pi, qi in zip(p, q, strict=True):
        pi, qi = max(pi, eps), max(qi, eps)
        total += (qi - pi) * math.log(qi / pi)
    return total


def draw(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    """One batch of the five numeric signals; ``shift`` moves ``ctr`` by that many standard deviations."""
    return {
        "ctr": rng.normal(0.02 + 0.01 * shift, 0.01, n),
        "quality_prob": rng.beta(2, 5, n),
        "title_chars": rng.normal(60, 15, n).round(),
        "title_words": rng.poisson(9, n).astype(float),
        "unknown_token_share": rng.beta(1, 9, n),
    }


def make_reference(seed: int = 0, n: int = 200_000) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    sample = draw(rng, n)
    numeric = {}
    for name, values in sample.items():
        edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)[1:-1]))
        numeric[name] = {"edges": edges.tolist(), "proportions": bin_proportions(values, edges).tolist()}
    return {"numeric": numeric, "categorical": {"category": {"proportions": CATEGORIES}}}


def draw_categories(rng: np.random.Generator, n: int, drifted: bool = False) -> list[str | None]:
    if drifted:  # a new category takes a third of the stream
        return list(rng.choice(["news", "sport", "tech", "crypto"], n, p=[0.3, 0.2, 0.15, 0.35]))
    return list(rng.choice(["news", "sport", "tech"], n, p=[0.5, 0.3, 0.2]))


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return make_reference()


def test_psi_matches_the_formula() -> None:
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    rng = np.random.default_rng(1)
    for _ in range(20):
        p, q = rng.dirichlet(np.ones(7)), rng.dirichlet(np.ones(7) * 0.3)
        q[rng.integers(7)] = 0.0  # an empty bin is floored at eps
        assert psi(p, q) == pytest.approx(reference_psi(list(p), list(q)), rel=1e-12)
        assert psi(p, q, eps=1e-3) == pytest.approx(reference_psi(list(p), list(q), 1e-3), rel=1e-12)


def test_psi_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shapes"):
        psi([0.5, 0.5], [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        psi([0.5, 0.5], [-0.1, 1.1])
    with pytest.raises(ValueError, match="eps"):
        psi([1.0], [1.0], eps=0.0)


def test_bins_follow_searchsorted_right() -> None:
    edges = [1.0, 2.0, 3.0]
    assert bin_indices([0.5, 1.0, 1.5, 2.0, 3.0, 9.0, -np.inf, np.inf], edges).tolist() == [
        0,
        1,
        1,
        2,
        3,
        3,
        0,
        3,
    ]
    assert bin_proportions([1.0, 1.0, 2.5, 7.0], edges).tolist() == [0.0, 0.5, 0.25, 0.25]
    assert bin_proportions([], edges).tolist() == [0.0, 0.0, 0.0, 0.0]


def test_categorical_psi_maps_missing_and_unknown() -> None:
    ref = {"a": 0.5, "__missing__": 0.5, "__other__": 0.0}
    assert categorical_psi(ref, ["a", None, "a", None]) == pytest.approx(0.0)
    shifted = categorical_psi(ref, ["a", "zzz", "a", None])  # zzz counts as __other__
    assert shifted == pytest.approx(reference_psi([0.5, 0.5, 0.0], [0.5, 0.25, 0.25]))
    assert categorical_psi({"a": 1.0}, ["b"]) == pytest.approx(reference_psi([1.0, 0.0], [0.0, 1.0]))


def test_reference_validation(reference: dict[str, Any]) -> None:
    parsed = DriftReference.from_mapping(reference)
    assert parsed.signals == (*NUMERIC_SIGNALS, "category")
    assert parsed.category_names == ("news", "sport", "tech", "__other__")
    bad_edges = {"numeric": {"ctr": {"edges": [0.2, 0.1], "proportions": [0.3, 0.3, 0.4]}}}
    with pytest.raises(DriftReferenceError, match="strictly increasing"):
        DriftReference.from_mapping(bad_edges)
    wrong_len = {"numeric": {"ctr": {"edges": [0.1], "proportions": [0.3, 0.3, 0.4]}}}
    with pytest.raises(DriftReferenceError, match="expected 2 proportions for 1 edges"):
        DriftReference.from_mapping(wrong_len)
    bad_sum = {"categorical": {"category": {"proportions": {"a": 0.5}}}}
    with pytest.raises(DriftReferenceError, match="summing to 1"):
        DriftReference.from_mapping(bad_sum)
    with pytest.raises(DriftReferenceError, match="expected a mapping"):
        DriftReference.from_mapping([1, 2])


def test_stable_stream_stays_low_and_injected_change_is_caught(reference: dict[str, Any]) -> None:
    """Change at a known event index: PSI < 0.1 before it, > 0.25 within one window after it."""
    window, batch, change_at, total = 2000, 100, 6000, 10_000
    drift = SlidingWindowDrift.from_mapping(reference, max_events=window, max_seconds=None, min_events=1000)
    rng = np.random.default_rng(42)
    first_alarm: dict[str, int] = {}
    for start in range(0, total, batch):
        drifted = start >= change_at
        drift.update(draw(rng, batch, shift=1.0 if drifted else 0.0), draw_categories(rng, batch, drifted))
        snap = drift.compute()
        seen = start + batch
        if seen < 1000:
            assert all(math.isnan(v) for v in snap.psi.values())
            continue
        for signal, value in snap.psi.items():
            if not drifted or signal not in ("ctr", "category"):
                assert value < 0.1, (signal, seen, value)
            elif value > 0.25:
                first_alarm.setdefault(signal, seen)
    assert set(first_alarm) == {"ctr", "category"}
    for signal, seen in first_alarm.items():
        assert change_at < seen <= change_at + window, (signal, seen)
    final = drift.compute()
    assert final.events == window
    assert final.psi["ctr"] > 0.25 and final.psi["category"] > 0.25
    assert final.unseen_share == pytest.approx(0.35, abs=0.05)  # 'crypto' was never seen in training


def test_time_window_with_injected_clock(reference: dict[str, Any]) -> None:
    now = [1000.0]
    drift = SlidingWindowDrift.from_mapping(
        reference, max_events=None, max_seconds=10.0, min_events=1, clock=lambda: now[0]
    )
    rng = np.random.default_rng(3)
    for step in range(5):
        now[0] = 1000.0 + 3 * step  # batches at t = 0, 3, 6, 9, 12
        drift.update(draw(rng, 50), draw_categories(rng, 50))
    assert len(drift) == 4 * 50  # the batch of t = 0 is exactly 12 s old: evicted by the t=12 update (> 10 s)
    now[0] = 1000.0 + 12 + 9.5
    assert len(drift) == 50  # only t = 12 remains
    now[0] += 1.0
    snap = drift.compute()
    assert snap.events == 0 and math.isnan(snap.unseen_share) and math.isnan(snap.psi["ctr"])


def test_unseen_share_from_the_model_or_the_reference(reference: dict[str, Any]) -> None:
    drift = SlidingWindowDrift.from_mapping(reference, min_events=1)
    signals = draw(np.random.default_rng(0), 4)
    drift.update(signals, ["news", "crypto", None, "tech"])
    assert drift.compute().unseen_share == pytest.approx(0.5)  # crypto and missing are not in the reference
    drift.reset()
    drift.update(
        signals, ["news", "crypto", None, "tech"], category_known=np.array([True, False, True, True])
    )
    assert drift.compute().unseen_share == pytest.approx(0.25)
    with pytest.raises(ValueError, match="expected signal 'ctr'"):
        drift.update({}, ["news"])
    with pytest.raises(ValueError, match="expected 2 values"):
        drift.update({k: v[:1] for k, v in signals.items()}, ["a", "b"])


def test_window_needs_a_bound(reference: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="neither"):
        SlidingWindowDrift.from_mapping(reference, max_events=None, max_seconds=None)


proportions = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=12).filter(
    lambda v: sum(v) > 0
)


@given(proportions, st.data())
def test_psi_is_non_negative_and_zero_on_itself(raw: list[float], data: st.DataObject) -> None:
    p = np.array(raw) / sum(raw)
    other = data.draw(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=len(raw), max_size=len(raw)))
    q = np.array(other) / sum(other) if sum(other) > 0 else np.zeros(len(raw))
    assert psi(p, q) >= 0.0
    assert psi(p, p) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=30),
    st.integers(1, 120),
    st.integers(0, 2**32 - 1),
)
def test_window_counts_equal_a_recount_of_the_last_events(sizes: list[int], window: int, seed: int) -> None:
    quarters = {"edges": [-0.5, 0.0, 0.5], "proportions": [0.25, 0.25, 0.25, 0.25]}
    ref = {
        "numeric": dict.fromkeys(NUMERIC_SIGNALS, quarters),
        "categorical": {"category": {"proportions": {"a": 0.6, "b": 0.4, "__other__": 0.0}}},
    }
    drift = SlidingWindowDrift.from_mapping(ref, max_events=window, max_seconds=None, min_events=1)
    rng = np.random.default_rng(seed)
    values: list[float] = []
    cats: list[str | None] = []
    for size in sizes:
        batch_values = rng.normal(0, 1, size)
        batch_cats = list(rng.choice(np.array(["a", "b", "c", None], dtype=object), size))
        drift.update(dict.fromkeys(NUMERIC_SIGNALS, batch_values), batch_cats)
        values.extend(batch_values.tolist())
        cats.extend(batch_cats)
        expected_n = min(len(values), window)
        assert len(drift) == expected_n
        kept_values, kept_cats = values[len(values) - expected_n :], cats[len(cats) - expected_n :]
        counts = drift.counts()
        assert (
            counts["ctr"].tolist()
            == np.bincount(bin_indices(kept_values, [-0.5, 0.0, 0.5]), minlength=4).tolist()
        )
        names = ["a", "b", "__other__"]
        expected_cats = [
            sum(1 for c in kept_cats if (c if c in ("a", "b") else "__other__") == n) for n in names
        ]
        assert counts["category"].tolist() == expected_cats
        snap = drift.compute()
        if expected_n:
            assert snap.unseen_share == pytest.approx(expected_cats[2] / expected_n)
            assert snap.psi["ctr"] >= 0.0


def test_window_keys_categories_as_the_reference_was_built() -> None:
    """One category_key for both sides: None and "" are both ``__missing__`` in training and in the stream."""
    categories: list[str | None] = ["a", None, "", "a", "b", None]
    values = np.linspace(0.0, 1.0, len(categories))
    reference = build_drift_reference(dict.fromkeys(NUMERIC_SIGNALS, values), categories, n_bins=2)
    assert reference.categorical["category"].proportions["__missing__"] == pytest.approx(0.5)
    drift = SlidingWindowDrift(reference, min_events=1)
    drift.update(dict.fromkeys(NUMERIC_SIGNALS, values), categories)
    snapshot = drift.compute()
    assert snapshot.psi["category"] == pytest.approx(0.0) and snapshot.unseen_share == 0.0
    assert all(value == pytest.approx(0.0) for value in snapshot.psi.values())
