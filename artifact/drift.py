"""Drift of scored events against the training rows: the reference, its bins and PSI (one definition).

Export builds the reference from the training rows (:func:`build_drift_reference`)
and stores it in ``manifest.json`` under ``drift``; the stream's sliding window
(``stream/drift.py``) bins the scored events the same way and compares::

    "drift": {
      "numeric": {"<signal>": {"edges": [e1, ..., e_{k-1}], "proportions": [p1, ..., pk]}},
      "categorical": {"category": {"proportions": {"<category>": p, ..., "__other__": p}}}
    }

* Signals: :data:`NUMERIC_SIGNALS` (the runtime's ``ScoreBatch.signals``) and
  :data:`CATEGORICAL_SIGNAL`; a reference holds exactly these.
* ``edges`` are the strictly increasing interior cut points of quantile bins
  (outer bins open-ended); a value ``v`` falls into bin
  ``numpy.searchsorted(edges, v, side="right")`` (NaN: the last bin).
* Categories: a missing or empty category counts as ``__missing__``
  (:func:`category_key`); an observed category the reference does not name
  counts as ``__other__``, which is 0 in a reference built from training rows.
* ``PSI = sum_i (q_i - p_i) ln(q_i / p_i)`` with ``p`` and ``q`` floored at
  ``eps`` (:data:`PSI_EPSILON`). Common reading: < 0.1 stable, 0.1-0.25
  moderate, > 0.25 drift.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from artifact.errors import DriftReferenceError

NUMERIC_SIGNALS: Final = ("ctr", "quality_prob", "title_chars", "title_words", "unknown_token_share")
CATEGORICAL_SIGNAL: Final = "category"
CATEGORICAL_SIGNALS: Final = (CATEGORICAL_SIGNAL,)
#: Every monitored signal: the numeric ones, then ``category``.
DRIFT_SIGNALS: Final = (*NUMERIC_SIGNALS, CATEGORICAL_SIGNAL)
OTHER_CATEGORY: Final = "__other__"
MISSING_CATEGORY: Final = "__missing__"
PSI_EPSILON: Final = 1e-4
DEFAULT_BINS: Final = 10
_SUM_TOLERANCE = 1e-6

IntArray = NDArray[np.intp]
FloatArray = NDArray[np.float64]


def bin_indices(values: ArrayLike, edges: ArrayLike) -> IntArray:
    """The bin of each value: ``searchsorted(edges, v, side="right")`` (NaN falls in the last bin)."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values, dtype=np.float64), "right")


def bin_proportions(values: ArrayLike, edges: ArrayLike) -> FloatArray:
    """Share of ``values`` in each of the ``len(edges) + 1`` bins (all zeros for no values)."""
    edges_arr = np.asarray(edges, dtype=np.float64)
    counts = np.bincount(bin_indices(values, edges_arr), minlength=edges_arr.size + 1).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


def psi(reference: ArrayLike, observed: ArrayLike, eps: float = PSI_EPSILON) -> float:
    """Population stability index of ``observed`` proportions against ``reference`` ones."""
    p = np.asarray(reference, dtype=np.float64)
    q = np.asarray(observed, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(
            f"expected two 1-d proportion vectors of one length, got shapes {p.shape} and {q.shape}"
        )
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))) or (p < 0).any() or (q < 0).any():
        raise ValueError("expected finite, non-negative proportions")
    if not eps > 0:
        raise ValueError(f"expected eps > 0, got {eps!r}")
    p = np.maximum(p, eps)
    q = np.maximum(q, eps)
    return float(np.sum((q - p) * np.log(q / p)))


def category_key(category: str | None) -> str:
    """The key a category counts under (``None`` or empty: ``__missing__``), in training and in the stream."""
    return category if category else MISSING_CATEGORY


def categorical_psi(
    reference: Mapping[str, float], categories: Sequence[str | None], eps: float = PSI_EPSILON
) -> float:
    """PSI of observed ``categories`` against reference proportions by category name."""
    names = [name for name in reference if name != OTHER_CATEGORY] + [OTHER_CATEGORY]
    index = {name: i for i, name in enumerate(names)}
    other = index[OTHER_CATEGORY]
    p = np.array([reference.get(name, 0.0) for name in names], dtype=np.float64)
    counts = np.bincount([index.get(category_key(c), other) for c in categories], minlength=len(names))
    q = counts / counts.sum() if len(categories) else counts.astype(np.float64)
    return psi(p, q, eps)


def _check_proportions(values: Sequence[float], what: str) -> None:
    if not values or any(not math.isfinite(p) or p < 0.0 for p in values):
        raise ValueError(f"{what}: expected non-negative finite proportions, got {list(values)}")
    if abs(sum(values) - 1.0) > _SUM_TOLERANCE:
        raise ValueError(f"{what}: expected proportions summing to 1, got {sum(values)!r}")


class NumericBins(BaseModel):
    """Quantile bins of one numeric signal: ``len(proportions) == len(edges) + 1``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    edges: list[float]
    proportions: list[float]

    @model_validator(mode="after")
    def _consistent(self) -> NumericBins:
        if any(not math.isfinite(e) for e in self.edges):
            raise ValueError(f"expected finite edges, got {self.edges}")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"expected strictly increasing edges, got {self.edges}")
        if len(self.proportions) != len(self.edges) + 1:
            raise ValueError(
                f"expected {len(self.edges) + 1} proportions for {len(self.edges)} edges, "
                f"got {len(self.proportions)}"
            )
        _check_proportions(self.proportions, "numeric bins")
        return self

    def bin_of(self, values: ArrayLike) -> IntArray:
        """Bin index of each value (:func:`bin_indices` with these edges)."""
        return bin_indices(values, self.edges)


class CategoricalBins(BaseModel):
    """Category frequencies; always holds ``__other__``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    proportions: dict[str, float]

    @model_validator(mode="after")
    def _consistent(self) -> CategoricalBins:
        _check_proportions(list(self.proportions.values()), "categorical bins")
        if OTHER_CATEGORY not in self.proportions:
            raise ValueError(f"expected a {OTHER_CATEGORY!r} entry, got {sorted(self.proportions)}")
        return self


class DriftReference(BaseModel):
    """Reference distributions of every monitored signal (exactly :data:`DRIFT_SIGNALS`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    numeric: dict[str, NumericBins]
    categorical: dict[str, CategoricalBins]

    @model_validator(mode="after")
    def _signals(self) -> DriftReference:
        if set(self.numeric) != set(NUMERIC_SIGNALS):
            raise ValueError(
                f"expected numeric signals {sorted(NUMERIC_SIGNALS)}, got {sorted(self.numeric)}"
            )
        if set(self.categorical) != set(CATEGORICAL_SIGNALS):
            raise ValueError(
                f"expected categorical signals {sorted(CATEGORICAL_SIGNALS)}, got {sorted(self.categorical)}"
            )
        return self

    @classmethod
    def from_mapping(cls, drift: Mapping[str, Any] | DriftReference) -> DriftReference:
        """Validate the manifest's ``drift`` value; raise :class:`DriftReferenceError`."""
        if isinstance(drift, DriftReference):
            return drift
        if not isinstance(drift, Mapping):
            raise DriftReferenceError(f"drift reference: expected a mapping, got {type(drift).__name__}")
        try:
            return cls.model_validate(drift)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'drift'}: {error['msg']}"
                for error in exc.errors()
            )
            raise DriftReferenceError(f"drift reference: {problems}") from exc

    @property
    def signals(self) -> tuple[str, ...]:
        """Every monitored signal: the numeric ones, then ``category``."""
        return DRIFT_SIGNALS

    @property
    def category_names(self) -> tuple[str, ...]:
        """The reference's categories in stored order, ``__other__`` last."""
        names = self.categorical[CATEGORICAL_SIGNAL].proportions
        return (*(n for n in names if n != OTHER_CATEGORY), OTHER_CATEGORY)

    @property
    def category_proportions(self) -> FloatArray:
        """Proportions in the order of :attr:`category_names`."""
        by_name = self.categorical[CATEGORICAL_SIGNAL].proportions
        return np.array([by_name[n] for n in self.category_names], dtype=np.float64)


def quantile_bins(values: ArrayLike, n_bins: int = DEFAULT_BINS) -> NumericBins:
    """About ``n_bins`` quantile bins of ``values`` (fewer when values repeat).

    Cut points that coincide, or that would leave the lowest bin empty (at or
    below the minimum), are dropped, so every bin of the reference is occupied.
    """
    if n_bins < 1:
        raise ValueError(f"expected n_bins >= 1, got {n_bins}")
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"expected a non-empty array of finite values, got {arr.size} value(s)")
    cuts = np.unique(np.quantile(arr, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))
    edges = cuts[cuts > arr.min()]
    return NumericBins(edges=edges.tolist(), proportions=bin_proportions(arr, edges).tolist())


def category_bins(categories: Sequence[str | None]) -> CategoricalBins:
    """Frequencies of the training categories, ``__missing__`` for none, ``__other__`` = 0."""
    if not categories:
        raise ValueError("expected at least one category value (None counts), got none")
    counts = Counter(category_key(c) for c in categories)
    total = len(categories)
    proportions = {key: counts[key] / total for key in sorted(counts)}
    proportions[OTHER_CATEGORY] = 0.0
    return CategoricalBins(proportions=proportions)


def build_drift_reference(
    numeric: Mapping[str, ArrayLike], categories: Sequence[str | None], n_bins: int = DEFAULT_BINS
) -> DriftReference:
    """The reference from per-row signal values on the training rows."""
    return DriftReference(
        numeric={name: quantile_bins(numeric[name], n_bins) for name in NUMERIC_SIGNALS},
        categorical={CATEGORICAL_SIGNAL: category_bins(categories)},
    )
