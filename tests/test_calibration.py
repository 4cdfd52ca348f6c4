"""training.calibration (Platt scaling) and artifact.scaling (CTR target scaling)."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from artifact.scaling import TargetScaling
from training.calibration import CalibrationReport, PlattCalibrator, calibrate
from training.metrics import expected_calibration_error


def _distorted(seed: int, n: int = 50_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels ~ Bernoulli(p) with p uniform; returns (labels, true p, distorted p**3)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    labels = (rng.uniform(size=n) < p).astype(int)
    return labels, p, p**3


def _logit(p: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.log(p) - np.log1p(-p)
    return out


# --------------------------------------------------------------------------- PlattCalibrator


def test_identity_apply_is_clipped_identity() -> None:
    p = np.array([0.0, 1e-9, 0.1, 0.5, 0.9, 1.0 - 1e-9, 1.0])
    out = PlattCalibrator.identity().apply(p)
    np.testing.assert_allclose(out, np.clip(p, 1e-7, 1 - 1e-7), rtol=1e-9)
    assert PlattCalibrator.identity() == PlattCalibrator(a=1.0, b=0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_platt_reduces_ece_on_distorted_data(seed: int) -> None:
    labels, _, distorted = _distorted(seed)
    calibrator, report = calibrate(labels, distorted)
    assert isinstance(report, CalibrationReport)
    assert report.n == labels.size
    assert report.ece_before == pytest.approx(expected_calibration_error(labels, distorted))
    assert report.ece_before > 0.15
    assert report.ece_after < 0.5 * report.ece_before
    assert report.ece_after == pytest.approx(
        expected_calibration_error(labels, calibrator.apply(distorted)), abs=1e-15
    )
    # p**3 -> logit is roughly stretched: the fitted slope shrinks it back.
    assert 0.0 < calibrator.a < 1.0


def test_platt_recovers_known_parameters() -> None:
    rng = np.random.default_rng(3)
    raw = rng.uniform(0.01, 0.99, size=100_000)
    true_p = 1.0 / (1.0 + np.exp(-(2.0 * _logit(raw) - 0.5)))
    labels = (rng.uniform(size=raw.size) < true_p).astype(int)
    calibrator = PlattCalibrator.fit(labels, raw)
    assert calibrator.a == pytest.approx(2.0, abs=0.06)
    assert calibrator.b == pytest.approx(-0.5, abs=0.06)


def test_platt_matches_unregularised_logistic_regression() -> None:
    from sklearn.linear_model import LogisticRegression

    labels, _, distorted = _distorted(5, n=5_000)
    x = _logit(np.clip(distorted, 1e-7, 1 - 1e-7)).reshape(-1, 1)
    reference = LogisticRegression(C=1e8, tol=1e-10, max_iter=10_000).fit(x, labels)
    calibrator = PlattCalibrator.fit(labels, distorted)
    assert calibrator.a == pytest.approx(float(reference.coef_[0, 0]), rel=1e-3)
    assert calibrator.b == pytest.approx(float(reference.intercept_[0]), rel=1e-3, abs=1e-3)


@settings(max_examples=40, deadline=None)
@given(
    a=st.floats(0.0, 20.0),
    b=st.floats(-20.0, 20.0),
    probs=arrays(np.float64, st.integers(1, 50), elements=st.floats(0.0, 1.0)),
)
def test_apply_is_monotonic_and_in_range(a: float, b: float, probs: np.ndarray) -> None:
    out = PlattCalibrator(a=a, b=b).apply(np.sort(probs))
    assert out.shape == probs.shape
    assert np.all(np.isfinite(out))
    assert np.all((out >= 0.0) & (out <= 1.0))
    assert np.all(np.diff(out) >= 0.0)


def test_fitted_apply_is_monotonic() -> None:
    labels, _, distorted = _distorted(4, n=10_000)
    calibrator = PlattCalibrator.fit(labels, distorted)
    grid = np.linspace(0.0, 1.0, 10_001)
    assert np.all(np.diff(calibrator.apply(grid)) >= 0.0)


def test_apply_is_stable_at_extremes() -> None:
    calibrator = PlattCalibrator(a=50.0, b=-30.0)
    out = calibrator.apply([0.0, 1.0, 0.5])
    assert np.all(np.isfinite(out))
    assert out[0] < 1e-100
    assert out[1] == pytest.approx(1.0)


def test_apply_keeps_shape_and_accepts_scalars() -> None:
    calibrator = PlattCalibrator(a=1.5, b=0.2)
    assert calibrator.apply(np.full((2, 3), 0.4)).shape == (2, 3)
    assert calibrator.apply(0.4).shape == ()


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_fit_is_identity_with_warning(label: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="training.calibration"):
        calibrator = PlattCalibrator.fit([label] * 10, np.linspace(0.05, 0.95, 10))
    assert calibrator == PlattCalibrator.identity()
    assert any("single class" in r.getMessage() for r in caplog.records)


def test_perfect_separation_gives_finite_monotonic_fit() -> None:
    labels = np.array([0] * 50 + [1] * 50)
    probs = np.r_[np.linspace(0.01, 0.4, 50), np.linspace(0.6, 0.99, 50)]
    calibrator = PlattCalibrator.fit(labels, probs)
    assert math.isfinite(calibrator.a)
    assert math.isfinite(calibrator.b)
    assert calibrator.a > 1.0
    out = calibrator.apply(probs)
    assert np.all(out[labels == 0] < 0.5)
    assert np.all(out[labels == 1] > 0.5)


def test_anti_correlated_scores_do_not_flip_ranking() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=2_000)
    labels = (rng.uniform(size=p.size) < 1.0 - p).astype(int)
    assert PlattCalibrator.fit(labels, p).a >= 0.0


def test_dict_round_trip_through_json() -> None:
    labels, _, distorted = _distorted(1, n=2_000)
    calibrator = PlattCalibrator.fit(labels, distorted)
    restored = PlattCalibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    assert restored == calibrator
    assert PlattCalibrator.from_dict({"a": 2, "b": 0}).a == 2.0
    assert isinstance(PlattCalibrator.from_dict({"a": 2, "b": 0}).a, float)


@pytest.mark.parametrize(
    "data",
    [{"a": 1.0}, {"a": 1.0, "b": 0.0, "c": 1.0}, {"a": "1", "b": 0.0}, {"a": math.nan, "b": 0.0}, [1, 0]],
)
def test_from_dict_rejects_bad_data(data: Any) -> None:
    with pytest.raises(ValueError, match="expected"):
        PlattCalibrator.from_dict(data)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: PlattCalibrator.fit([0, 1], [0.2]), "equal length"),
        (lambda: PlattCalibrator.fit([], []), "at least one value"),
        (lambda: PlattCalibrator.fit([0, 1], [0.2, math.nan]), "finite"),
        (lambda: PlattCalibrator.fit([0, 3], [0.2, 0.3]), "binary labels"),
        (lambda: PlattCalibrator.identity().apply([0.2, math.nan]), "finite"),
        (lambda: PlattCalibrator.identity().apply([0.2, 1.5]), r"in \[0, 1\]"),
        (lambda: PlattCalibrator(a=math.inf, b=0.0), "finite"),
        (lambda: calibrate([0, 1], [0.2, 0.3, 0.4]), "equal length"),
        (lambda: calibrate([0, 1], [0.2, 0.3], n_bins=0), "n_bins"),
    ],
)
def test_calibration_input_validation(call: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_calibrator_is_frozen() -> None:
    calibrator = PlattCalibrator.identity()
    with pytest.raises(AttributeError):
        calibrator.a = 2.0  # type: ignore[misc]


# --------------------------------------------------------------------------- TargetScaling


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, st.integers(1, 40), elements=st.floats(0.0, 1.0)))
def test_target_scaling_round_trip_and_exact_range(raw: np.ndarray) -> None:
    scaling = TargetScaling.fit(raw)
    normalized = scaling.normalize(raw)
    np.testing.assert_allclose(scaling.to_raw(normalized), raw, rtol=0.0, atol=1e-12)
    if scaling.log_max > scaling.log_min:
        assert normalized.min() == 0.0
        assert normalized.max() == 1.0
        assert np.all((normalized >= 0.0) & (normalized <= 1.0))
    else:
        assert np.all(normalized == 0.0)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.integers(2, 40), elements=st.floats(0.0, 1e4)))
def test_target_scaling_round_trip_large_values(raw: np.ndarray) -> None:
    scaling = TargetScaling.fit(raw)
    np.testing.assert_allclose(scaling.to_raw(scaling.normalize(raw)), raw, rtol=1e-12, atol=1e-12)


def test_target_scaling_values() -> None:
    raw = np.array([0.0, 0.05, 0.2, 1.0])
    scaling = TargetScaling.fit(raw)
    assert scaling.log_min == 0.0
    assert scaling.log_max == math.log1p(1.0)
    np.testing.assert_allclose(scaling.normalize(raw), np.log1p(raw) / math.log(2.0), rtol=1e-15)
    # Outside the fitting range nothing is clipped, and to_raw still inverts.
    assert scaling.normalize([3.0])[0] > 1.0
    assert scaling.to_raw(scaling.normalize([3.0]))[0] == pytest.approx(3.0, rel=1e-14)
    assert scaling.normalize(np.full((2, 2), 0.2)).shape == (2, 2)


def test_target_scaling_constant_input() -> None:
    scaling = TargetScaling.fit([0.1, 0.1, 0.1])
    assert scaling.log_min == scaling.log_max
    np.testing.assert_array_equal(scaling.normalize([0.1, 0.3]), [0.0, 0.0])
    assert scaling.to_raw([0.0, 0.7]) == pytest.approx([0.1, 0.1], rel=1e-14)


def test_target_scaling_dict_round_trip() -> None:
    scaling = TargetScaling.fit([0.01, 0.02, 0.5])
    restored = TargetScaling.from_dict(json.loads(json.dumps(scaling.to_dict())))
    assert restored == scaling


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: TargetScaling.fit([]), "at least one value"),
        (lambda: TargetScaling.fit([0.1, math.nan]), "finite"),
        (lambda: TargetScaling.fit([0.1, math.inf]), "finite"),
        (lambda: TargetScaling.fit([0.1, -0.2]), ">= 0"),
        (lambda: TargetScaling.fit(["x"]), "numeric"),
        (lambda: TargetScaling(log_min=1.0, log_max=0.5), "log_min <= log_max"),
        (lambda: TargetScaling(log_min=math.nan, log_max=0.5), "finite"),
        (lambda: TargetScaling.fit([0.1, 0.2]).normalize([math.nan]), "finite"),
        (lambda: TargetScaling.fit([0.1, 0.2]).to_raw([math.inf]), "finite"),
        (lambda: TargetScaling.from_dict({"log_min": 0.0}), "expected a dict"),
    ],
)
def test_target_scaling_validation(call: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- held-out calibration


def _overconfident(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true_p = rng.uniform(0.05, 0.95, n)
    labels = (rng.random(n) < true_p).astype(float)
    return labels, 1.0 / (1.0 + np.exp(-3.0 * np.log(true_p / (1 - true_p)) - 0.5))


def test_cross_fitted_probabilities_judge_each_row_by_a_fit_without_it() -> None:
    from training.calibration import cross_fitted_probabilities

    labels, probs = _overconfident(3, 400)
    out = cross_fitted_probabilities(labels, probs, folds=2, seed=0)
    assert out is not None and out.shape == probs.shape
    # Each half's probabilities come from a calibrator fitted on the other half only: refitting on
    # the rows a prediction was made for gives different numbers.
    in_sample = PlattCalibrator.fit(labels, probs).apply(probs)
    assert not np.allclose(out, in_sample)
    # Recover the folds: for one of the two calibrators fitted on "the other half", the rows it
    # judged are exactly reproduced.
    rng = np.random.default_rng(0)
    fold = np.empty(len(labels), dtype=int)
    for cls in (0.0, 1.0):
        rows = np.flatnonzero(labels == cls)
        fold[rows] = rng.permutation(rows.size) % 2
    for k in (0, 1):
        judged = fold == k
        expected = PlattCalibrator.fit(labels[~judged], probs[~judged]).apply(probs[judged])
        np.testing.assert_allclose(out[judged], expected)


def test_calibrate_reports_a_held_out_ece_or_none() -> None:
    from training.calibration import cross_fitted_probabilities

    labels, probs = _overconfident(4, 600)
    _, report = calibrate(labels, probs)
    assert report.ece_after_heldout is not None
    held_out = cross_fitted_probabilities(labels, probs)
    assert held_out is not None
    assert report.ece_after_heldout == expected_calibration_error(labels, held_out)
    # Judged on rows it never saw, calibration is no better than on the rows it was fitted on, here.
    assert report.ece_after_heldout >= report.ece_after - 0.01
    assert report.to_dict()["ece_after_heldout"] == report.ece_after_heldout
    # One positive row cannot be split across two folds: no held-out figure, and no error.
    _, tiny = calibrate([1.0] + [0.0] * 9, np.linspace(0.1, 0.9, 10))
    assert tiny.ece_after_heldout is None
