"""Platt scaling of the quality head's probabilities.

``PlattCalibrator`` maps a raw probability ``p`` to ``sigmoid(a * logit(p) + b)``.
Fitting is a two-parameter logistic regression on the clipped logit of the raw
probabilities, solved with L-BFGS-B under a very weak ridge penalty towards the
identity map (which keeps the fit finite under perfect separation), with
``a >= 0`` so calibration never reverses the model's ranking. ``apply`` uses
numpy only, so the runtime can use it without scipy.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize

from artifact.scaling import finite_float as _finite_float
from training.metrics import as_labels, as_probabilities, check_same_length, expected_calibration_error

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

#: Probabilities are clipped to [EPS, 1 - EPS] before the logit.
EPS = 1e-7
#: Weight of the ridge penalty ``((a - 1)^2 + b^2) / 2`` added to the mean log loss.
RIDGE = 1e-6


def _logit(probs: FloatArray) -> FloatArray:
    p = np.clip(probs, EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: FloatArray) -> FloatArray:
    """Overflow-free logistic function."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


@dataclass(frozen=True, slots=True)
class PlattCalibrator:
    """``p' = sigmoid(a * logit(clip(p)) + b)``; ``a = 1, b = 0`` is the identity (up to clipping)."""

    a: float
    b: float

    def __post_init__(self) -> None:
        for name in ("a", "b"):
            object.__setattr__(self, name, _finite_float(name, getattr(self, name)))

    @classmethod
    def identity(cls) -> Self:
        return cls(a=1.0, b=0.0)

    @classmethod
    def fit(cls, labels: ArrayLike, probs: ArrayLike) -> Self:
        """Fit ``a, b`` by logistic regression of ``labels`` on ``logit(probs)``.

        Single-class labels carry no calibration information: the identity is
        returned and a warning is logged.
        """
        y = as_labels("labels", labels)
        p = as_probabilities("probs", probs)
        n = check_same_length(labels=y, probs=p)
        n_positive = int(np.count_nonzero(y))
        if n_positive in (0, n):
            logger.warning(
                "Platt calibration: labels hold a single class (%d of %d positive); using identity",
                n_positive,
                n,
            )
            return cls.identity()

        x = _logit(p)

        def loss_and_grad(params: FloatArray) -> tuple[float, FloatArray]:
            a, b = float(params[0]), float(params[1])
            z = a * x + b
            # mean of log(1 + e^z) - y z, computed stably
            loss = float(np.mean(np.logaddexp(0.0, z) - y * z)) + 0.5 * RIDGE * ((a - 1.0) ** 2 + b**2)
            residual = _sigmoid(z) - y
            grad = np.array(
                [float(np.mean(residual * x)) + RIDGE * (a - 1.0), float(np.mean(residual)) + RIDGE * b]
            )
            return loss, grad

        result = minimize(
            loss_and_grad,
            x0=np.array([1.0, 0.0]),
            jac=True,
            method="L-BFGS-B",
            bounds=[(0.0, None), (None, None)],
            options={"maxiter": 1000, "ftol": 1e-14, "gtol": 1e-10},
        )
        a_fit, b_fit = float(result.x[0]), float(result.x[1])
        if not result.success:
            logger.warning("Platt calibration: optimiser did not converge: %s", result.message)
        if not (math.isfinite(a_fit) and math.isfinite(b_fit)):
            logger.warning("Platt calibration: non-finite fit (a=%r, b=%r); using identity", a_fit, b_fit)
            return cls.identity()
        return cls(a=a_fit, b=b_fit)

    def apply(self, probs: ArrayLike) -> FloatArray:
        """Calibrated probabilities (same shape as ``probs``; numpy only)."""
        try:
            p = np.asarray(probs, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"probs: expected numeric values, got {exc}") from exc
        if not np.all(np.isfinite(p)):
            raise ValueError("probs: expected finite values, got NaN/inf")
        if np.any((p < 0.0) | (p > 1.0)):
            lo, hi = float(p.min()), float(p.max())
            raise ValueError(f"probs: expected probabilities in [0, 1], got range [{lo!r}, {hi!r}]")
        out: FloatArray = _sigmoid(self.a * _logit(p) + self.b)
        return out

    def to_dict(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if not isinstance(data, dict) or set(data) != {"a", "b"}:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"PlattCalibrator: expected a dict with keys ['a', 'b'], got {got}")
        return cls(a=data["a"], b=data["b"])


#: Folds of the cross-fitted ECE (each fold is judged by a calibrator fitted on the others).
CROSS_FIT_FOLDS = 2


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    """ECE of the probabilities before and after calibration.

    ``ece_after`` is measured on the rows the calibrator was fitted on (optimistic);
    ``ece_after_heldout`` is cross-fitted: the rows are split into folds (stratified by label),
    each fold calibrated by a calibrator fitted on the other folds, and the ECE taken over the
    pooled out-of-fold probabilities. ``None`` when a fold would hold a single class.
    """

    ece_before: float
    ece_after: float
    n: int
    ece_after_heldout: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "ece_after_heldout": self.ece_after_heldout,
            "n": self.n,
        }


def cross_fitted_probabilities(
    labels: ArrayLike, probs: ArrayLike, folds: int = CROSS_FIT_FOLDS, seed: int = 0
) -> FloatArray | None:
    """Out-of-fold calibrated probabilities: each row calibrated by a fit on the other folds.

    Folds are drawn per label class (stratified) with ``seed``. ``None`` when some training
    part would hold a single class (too few rows of one class).
    """
    y = as_labels("labels", labels)
    p = as_probabilities("probs", probs)
    n = check_same_length(labels=y, probs=p)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds: expected an integer >= 2, got {folds!r}")
    rng = np.random.default_rng(seed)
    fold = np.empty(n, dtype=np.int64)
    for cls in (0.0, 1.0):
        rows = np.flatnonzero(y == cls)
        if rows.size < folds:
            return None
        fold[rows] = rng.permutation(rows.size) % folds
    out = np.empty(n)
    for k in range(folds):
        judged = fold == k
        out[judged] = PlattCalibrator.fit(y[~judged], p[~judged]).apply(p[judged])
    return out


def calibrate(
    labels: ArrayLike, probs: ArrayLike, n_bins: int = 10
) -> tuple[PlattCalibrator, CalibrationReport]:
    """Fit a ``PlattCalibrator`` on these rows; report ECE before, after (same rows) and cross-fitted."""
    y = as_labels("labels", labels)
    p = as_probabilities("probs", probs)
    n = check_same_length(labels=y, probs=p)
    ece_before = expected_calibration_error(y, p, n_bins=n_bins)
    calibrator = PlattCalibrator.fit(y, p)
    ece_after = expected_calibration_error(y, calibrator.apply(p), n_bins=n_bins)
    held_out = cross_fitted_probabilities(y, p)
    ece_heldout = None if held_out is None else expected_calibration_error(y, held_out, n_bins=n_bins)
    report = CalibrationReport(ece_before=ece_before, ece_after=ece_after, n=n, ece_after_heldout=ece_heldout)
    return calibrator, report
