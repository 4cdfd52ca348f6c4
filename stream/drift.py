"""Drift of the scored stream against the training reference: PSI over a sliding window.

The reference is the manifest's ``drift`` mapping (contracts.md)::

    {"numeric": {"<signal>": {"edges": [e1, ..., e_{k-1}], "proportions": [p1, ..., pk]}},
     "categorical": {"category": {"proportions": {"<category>": p, ..., "__other__": p}}}}

A value ``v`` falls into bin ``searchsorted(edges, v, side="right")``; a missing
category counts as ``__missing__``, a category the reference does not name as
``__other__``. ``PSI = sum_i (q_i - p_i) ln(q_i / p_i)`` with ``p`` and ``q``
floored at ``eps``. Common reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 drift.

Pure functions (:func:`bin_proportions`, :func:`psi`, :func:`categorical_psi`)
do the arithmetic; :class:`SlidingWindowDrift` keeps bucketed counts of the last
N events and/or T seconds, so an update costs O(batch), not O(window).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from artifact.errors import ArtifactError

NUMERIC_SIGNALS: Final = ("ctr", "quality_prob", "title_chars", "title_words", "unknown_token_share")
CATEGORICAL_SIGNAL: Final = "category"
MISSING: Final = "__missing__"
OTHER: Final = "__other__"
EPSILON: Final = 1e-4

IntArray = NDArray[np.intp]
FloatArray = NDArray[np.float64]


class DriftReferenceError(ArtifactError):
    """A drift reference (manifest ``drift`` field) that cannot be used."""


def bin_indices(values: ArrayLike, edges: ArrayLike) -> IntArray:
    """The bin of each value: ``searchsorted(edges, v, side="right")`` (NaN falls in the last bin)."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values, dtype=np.float64), "right")


def bin_proportions(values: ArrayLike, edges: ArrayLike) -> FloatArray:
    """Share of ``values`` in each of the ``len(edges) + 1`` bins (all zeros for no values)."""
    edges_arr = np.asarray(edges, dtype=np.float64)
    counts = np.bincount(bin_indices(values, edges_arr), minlength=edges_arr.size + 1).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


def psi(reference: ArrayLike, observed: ArrayLike, eps: float = EPSILON) -> float:
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


def category_key(category: str | None, names: Mapping[str, int]) -> str:
    """The reference key an observed category counts under (``__missing__``, a name, or ``__other__``)."""
    key = MISSING if category is None else category
    return key if key in names else OTHER


def categorical_psi(
    reference: Mapping[str, float], categories: Sequence[str | None], eps: float = EPSILON
) -> float:
    """PSI of observed ``categories`` against reference proportions by category name."""
    names = list(reference)
    if OTHER not in reference:
        names.append(OTHER)
    index = {name: i for i, name in enumerate(names)}
    p = np.array([reference.get(name, 0.0) for name in names], dtype=np.float64)
    counts = np.bincount([index[category_key(c, index)] for c in categories], minlength=len(names))
    q = counts / counts.sum() if len(categories) else counts.astype(np.float64)
    return psi(p, q, eps)


@dataclass(frozen=True)
class NumericReference:
    edges: FloatArray
    proportions: FloatArray


@dataclass(frozen=True)
class DriftReference:
    """A validated drift reference: numeric bins per signal and category proportions."""

    numeric: dict[str, NumericReference]
    category_names: tuple[str, ...]  # always ends with __other__
    category_proportions: FloatArray

    @classmethod
    def from_mapping(cls, drift: Mapping[str, Any] | Any) -> DriftReference:
        """Validate the manifest's ``drift`` value (a mapping, or a pydantic model of it)."""
        if hasattr(drift, "model_dump"):
            drift = drift.model_dump()
        if not isinstance(drift, Mapping):
            raise DriftReferenceError(f"drift reference: expected a mapping, got {type(drift).__name__}")
        numeric: dict[str, NumericReference] = {}
        for signal, spec in (drift.get("numeric") or {}).items():
            edges = np.asarray(spec["edges"], dtype=np.float64)
            props = _proportions(f"numeric.{signal}", spec["proportions"])
            if edges.ndim != 1 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
                raise DriftReferenceError(
                    f"drift reference numeric.{signal}: expected strictly increasing edges"
                )
            if props.size != edges.size + 1:
                raise DriftReferenceError(
                    f"drift reference numeric.{signal}: expected {edges.size + 1} proportions for "
                    f"{edges.size} edges, got {props.size}"
                )
            numeric[str(signal)] = NumericReference(edges, props)
        cat_spec = (drift.get("categorical") or {}).get(CATEGORICAL_SIGNAL)
        by_name: dict[str, float] = dict(cat_spec["proportions"]) if cat_spec else {OTHER: 1.0}
        names = [n for n in by_name if n != OTHER] + [OTHER]
        cat_props = _proportions("categorical.category", [by_name.get(n, 0.0) for n in names])
        return cls(numeric, tuple(names), cat_props)

    @property
    def signals(self) -> tuple[str, ...]:
        """Every monitored signal: the numeric ones, then ``category``."""
        return (*self.numeric, CATEGORICAL_SIGNAL)


def _proportions(where: str, values: Any) -> FloatArray:
    props = np.asarray(values, dtype=np.float64)
    if props.ndim != 1 or props.size == 0 or not np.all(np.isfinite(props)) or (props < 0).any():
        raise DriftReferenceError(f"drift reference {where}: expected non-negative finite proportions")
    if not math.isclose(float(props.sum()), 1.0, abs_tol=1e-6):
        raise DriftReferenceError(
            f"drift reference {where}: expected proportions summing to 1, got {props.sum()}"
        )
    return props


@dataclass(frozen=True)
class DriftSnapshot:
    """PSI per signal over the current window (NaN below ``min_events``) and the unseen-category share."""

    events: int
    psi: dict[str, float]
    unseen_share: float


@dataclass
class _Bucket:
    time: float
    bins: dict[str, IntArray]
    categories: IntArray
    unseen: NDArray[np.bool_]
    start: int = 0

    @property
    def size(self) -> int:
        return int(self.categories.size) - self.start


@dataclass
class SlidingWindowDrift:
    """PSI of the last ``max_events`` events and/or the last ``max_seconds`` against a reference.

    Feed it one batch at a time with :meth:`update`; read :meth:`compute`. ``clock`` gives the
    time of each batch (monotonic seconds; inject a fake one in tests).
    """

    reference: DriftReference
    max_events: int | None = 5000
    max_seconds: float | None = 900.0
    min_events: int = 100
    clock: Callable[[], float] = time.monotonic
    _buckets: deque[_Bucket] = field(default_factory=deque, init=False, repr=False)
    _counts: dict[str, NDArray[np.int64]] = field(init=False, repr=False)
    _category_counts: NDArray[np.int64] = field(init=False, repr=False)
    _unseen: int = field(default=0, init=False, repr=False)
    _events: int = field(default=0, init=False, repr=False)
    _category_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_events is None and self.max_seconds is None:
            raise ValueError("expected max_events or max_seconds (or both), got neither")
        if self.max_events is not None and self.max_events < 1:
            raise ValueError(f"expected max_events >= 1, got {self.max_events}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"expected max_seconds > 0, got {self.max_seconds}")
        self._category_index = {name: i for i, name in enumerate(self.reference.category_names)}
        self.reset()

    @classmethod
    def from_mapping(
        cls,
        drift: Mapping[str, Any] | Any,
        *,
        max_events: int | None = 5000,
        max_seconds: float | None = 900.0,
        min_events: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> SlidingWindowDrift:
        """A window over the manifest's ``drift`` value (validated by :meth:`DriftReference.from_mapping`)."""
        return cls(DriftReference.from_mapping(drift), max_events, max_seconds, min_events, clock)

    def reset(self) -> None:
        """Forget every event (for example after a model swap with a new reference)."""
        self._buckets.clear()
        self._counts = {s: np.zeros(r.proportions.size, np.int64) for s, r in self.reference.numeric.items()}
        self._category_counts = np.zeros(len(self.reference.category_names), np.int64)
        self._unseen = 0
        self._events = 0

    def __len__(self) -> int:
        """Events currently in the window (after evicting what has aged out)."""
        self._evict()
        return self._events

    def update(
        self,
        signals: Mapping[str, ArrayLike],
        categories: Sequence[str | None],
        category_known: ArrayLike | None = None,
    ) -> None:
        """Add one batch: numeric ``signals`` by name, ``categories`` as the model saw them.

        ``category_known`` (the model's verdict) defines the unseen share; without it a category
        is unseen when the reference does not name it.
        """
        n = len(categories)
        if n:
            bins: dict[str, IntArray] = {}
            for name, ref in self.reference.numeric.items():
                if name not in signals:
                    raise ValueError(f"expected signal {name!r} in the update, got {sorted(signals)}")
                idx = bin_indices(signals[name], ref.edges)
                if idx.shape != (n,):
                    raise ValueError(f"signal {name!r}: expected {n} values, got shape {idx.shape}")
                bins[name] = idx
                self._counts[name] += np.bincount(idx, minlength=ref.proportions.size)
            index = self._category_index
            cats = np.fromiter((index[category_key(c, index)] for c in categories), np.intp, n)
            if category_known is None:
                unseen = cats == index[OTHER]
            else:
                unseen = ~np.asarray(category_known, dtype=np.bool_)
                if unseen.shape != (n,):
                    raise ValueError(f"category_known: expected {n} values, got shape {unseen.shape}")
            self._category_counts += np.bincount(cats, minlength=len(index))
            self._unseen += int(unseen.sum())
            self._events += n
            self._buckets.append(_Bucket(self.clock(), bins, cats, unseen))
        self._evict()

    def _evict(self) -> None:
        if self.max_seconds is not None:
            horizon = self.clock() - self.max_seconds
            while self._buckets and self._buckets[0].time <= horizon:
                self._drop(self._buckets[0], self._buckets[0].size)
                self._buckets.popleft()
        if self.max_events is not None:
            while self._events > self.max_events:
                oldest = self._buckets[0]
                take = min(oldest.size, self._events - self.max_events)
                self._drop(oldest, take)
                oldest.start += take
                if oldest.size == 0:
                    self._buckets.popleft()

    def _drop(self, bucket: _Bucket, count: int) -> None:
        part = slice(bucket.start, bucket.start + count)
        for name, idx in bucket.bins.items():
            self._counts[name] -= np.bincount(idx[part], minlength=self._counts[name].size)
        self._category_counts -= np.bincount(bucket.categories[part], minlength=self._category_counts.size)
        self._unseen -= int(bucket.unseen[part].sum())
        self._events -= count

    def counts(self) -> dict[str, NDArray[np.int64]]:
        """Current bin counts per signal (``category`` in the order of ``reference.category_names``)."""
        self._evict()
        return {
            **{k: v.copy() for k, v in self._counts.items()},
            CATEGORICAL_SIGNAL: self._category_counts.copy(),
        }

    def compute(self, eps: float = EPSILON) -> DriftSnapshot:
        """PSI per signal over the window; NaN while it holds fewer than ``min_events`` events."""
        self._evict()
        n = self._events
        result: dict[str, float] = {}
        for name, ref in self.reference.numeric.items():
            result[name] = (
                psi(ref.proportions, self._counts[name] / n, eps) if n >= self.min_events else math.nan
            )
        result[CATEGORICAL_SIGNAL] = (
            psi(self.reference.category_proportions, self._category_counts / n, eps)
            if n >= self.min_events
            else math.nan
        )
        return DriftSnapshot(events=n, psi=result, unseen_share=self._unseen / n if n else math.nan)
