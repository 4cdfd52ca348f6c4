"""Pure numpy measures shared by training's evaluation and the stream's live quality.

Input validation at the boundary ("expected X, got Y" ``ValueError``, no warnings) and the
expected calibration error. Numpy only, so the serving side (:mod:`stream.quality`) computes
live calibration with the very function ``evaluate`` uses; :mod:`training.metrics` re-exports
every name.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


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
