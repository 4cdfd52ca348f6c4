"""The drift reference: binned distributions of the monitored signals on the training rows.

Stored in ``manifest.json`` under ``drift`` (the shape is fixed by the
contract with ``stream/drift.py``)::

    "drift": {
      "numeric": {"<signal>": {"edges": [e1, ..., e_{k-1}], "proportions": [p1, ..., pk]}},
      "categorical": {"category": {"proportions": {"<category>": p, ..., "__other__": p}}}
    }

``edges`` are the strictly increasing interior cut points of quantile bins
(outer bins open-ended); a value ``v`` falls into bin
``numpy.searchsorted(edges, v, side="right")``. Missing categories count as
``__missing__``; ``__other__`` (categories unseen in training) is 0 in the
reference. PSI floors both distributions at ``PSI_EPSILON``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, model_validator

NUMERIC_SIGNALS = ("ctr", "quality_prob", "title_chars", "title_words", "unknown_token_share")
CATEGORICAL_SIGNALS = ("category",)
OTHER_CATEGORY = "__other__"
MISSING_CATEGORY = "__missing__"
PSI_EPSILON = 1e-4
DEFAULT_BINS = 10
_SUM_TOLERANCE = 1e-6


def _check_proportions(values: Sequence[float], what: str) -> None:
    if any(not math.isfinite(p) or p < 0.0 for p in values):
        raise ValueError(f"{what}: expected finite proportions >= 0, got {list(values)}")
    if abs(sum(values) - 1.0) > _SUM_TOLERANCE:
        raise ValueError(f"{what}: expected proportions summing to 1, got {sum(values)!r}")


class NumericBins(BaseModel):
    """Quantile bins of one numeric signal: ``len(proportions) == len(edges) + 1``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    edges: list[float]
    proportions: list[float]

    @model_validator(mode="after")
    def _consistent(self) -> NumericBins:
        if len(self.proportions) != len(self.edges) + 1:
            raise ValueError(
                "expected len(proportions) == len(edges) + 1, "
                f"got {len(self.proportions)} and {len(self.edges)}"
            )
        if any(not math.isfinite(e) for e in self.edges):
            raise ValueError(f"expected finite edges, got {self.edges}")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"expected strictly increasing edges, got {self.edges}")
        _check_proportions(self.proportions, "numeric bins")
        return self

    def bin_of(self, values: ArrayLike) -> NDArray[np.int64]:
        """Bin index of each value (the contract's ``searchsorted(edges, v, side="right")``)."""
        out: NDArray[np.int64] = np.searchsorted(np.asarray(self.edges), np.asarray(values), side="right")
        return out


class CategoricalBins(BaseModel):
    """Category frequencies; always holds ``__other__``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    proportions: dict[str, float]

    @model_validator(mode="after")
    def _consistent(self) -> CategoricalBins:
        if OTHER_CATEGORY not in self.proportions:
            raise ValueError(f"expected a {OTHER_CATEGORY!r} entry, got {sorted(self.proportions)}")
        _check_proportions(list(self.proportions.values()), "categorical bins")
        return self


class DriftReference(BaseModel):
    """Reference distributions of every monitored signal (names fixed by the contract)."""

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
    counts = np.bincount(np.searchsorted(edges, arr, side="right"), minlength=edges.size + 1)
    return NumericBins(edges=edges.tolist(), proportions=(counts / arr.size).tolist())


def category_key(category: str | None) -> str:
    """The reference key of a category as the model sees it (``None``/empty: ``__missing__``)."""
    return category if category else MISSING_CATEGORY


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
        categorical={"category": category_bins(categories)},
    )


def psi(reference: Sequence[float], observed: Sequence[float], epsilon: float = PSI_EPSILON) -> float:
    """Population stability index, both distributions floored at ``epsilon``."""
    p = np.maximum(np.asarray(reference, dtype=np.float64), epsilon)
    q = np.maximum(np.asarray(observed, dtype=np.float64), epsilon)
    if p.shape != q.shape:
        raise ValueError(f"expected distributions of the same length, got {p.shape} and {q.shape}")
    return float(np.sum((q - p) * np.log(q / p)))
