"""CTR target scaling shared by the trainer and the runtime.

The model's CTR head predicts ``normalized = (log1p(ctr) - log_min) / (log_max - log_min)``
where ``log_min``/``log_max`` are the extremes of ``log1p(ctr)`` on the training
rows; ``to_raw`` is the exact inverse. Lives in ``artifact`` (numpy only) so the
runtime loader needs nothing from ``training``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def _finite_array(name: str, values: ArrayLike) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected numeric values, got {exc}") from exc
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name}: expected finite values, got {n_bad} NaN/inf value(s)")
    return arr


def finite_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name}: expected a finite number, got {type(value).__name__} {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name}: expected a finite number, got {result!r}")
    return result


@dataclass(frozen=True, slots=True)
class TargetScaling:
    """Min-max scaling of ``log1p(ctr)``; fitted on the training rows only."""

    log_min: float
    log_max: float

    def __post_init__(self) -> None:
        log_min = finite_float("log_min", self.log_min)
        log_max = finite_float("log_max", self.log_max)
        if log_max < log_min:
            raise ValueError(f"expected log_min <= log_max, got log_min={log_min!r} > log_max={log_max!r}")
        object.__setattr__(self, "log_min", log_min)
        object.__setattr__(self, "log_max", log_max)

    @classmethod
    def fit(cls, raw_ctr: ArrayLike) -> Self:
        """Extremes of ``log1p(raw_ctr)``; raw CTR must be non-empty, finite and ``>= 0``."""
        raw = _finite_array("raw_ctr", raw_ctr)
        if raw.size == 0:
            raise ValueError("raw_ctr: expected at least one value, got an empty array")
        if np.any(raw < 0.0):
            raise ValueError(f"raw_ctr: expected values >= 0, got {float(raw[raw < 0.0].flat[0])!r}")
        logs = np.log1p(raw)
        return cls(log_min=float(np.min(logs)), log_max=float(np.max(logs)))

    @property
    def span(self) -> float:
        return self.log_max - self.log_min

    def normalize(self, raw_ctr: ArrayLike) -> FloatArray:
        """``(log1p(raw) - log_min) / (log_max - log_min)``; zeros when the span is 0.

        Values outside the fitting range map outside [0, 1]; nothing is clipped.
        """
        raw = _finite_array("raw_ctr", raw_ctr)
        if np.any(raw <= -1.0):
            raise ValueError(f"raw_ctr: expected values > -1, got {float(raw[raw <= -1.0].flat[0])!r}")
        span = self.span
        if span == 0.0:
            return np.zeros(raw.shape, dtype=np.float64)
        out: FloatArray = (np.log1p(raw) - self.log_min) / span
        return out

    def to_raw(self, normalized: ArrayLike) -> FloatArray:
        """Inverse of ``normalize``: ``expm1(normalized * (log_max - log_min) + log_min)``."""
        norm = _finite_array("normalized", normalized)
        out: FloatArray = np.expm1(norm * self.span + self.log_min)
        return out

    def to_dict(self) -> dict[str, float]:
        return {"log_min": self.log_min, "log_max": self.log_max}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if not isinstance(data, dict) or set(data) != {"log_min", "log_max"}:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"TargetScaling: expected a dict with keys ['log_max', 'log_min'], got {got}")
        return cls(log_min=data["log_min"], log_max=data["log_max"])
