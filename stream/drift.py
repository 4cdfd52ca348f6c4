"""The stream's drift window: PSI of the last N events and/or T seconds against the training reference.

The reference, the signal names, the binning, the category keys and PSI are
defined once in :mod:`artifact.drift`; this module only keeps bucketed counts
of a sliding window, so an update costs O(batch), not O(window). The worker
exports :meth:`SlidingWindowDrift.compute` to Prometheus
(``stream.metrics.ScorerMetrics.set_drift``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from artifact.drift import (
    CATEGORICAL_SIGNAL,
    NUMERIC_SIGNALS,
    OTHER_CATEGORY,
    PSI_EPSILON,
    DriftReference,
    FloatArray,
    IntArray,
    bin_indices,
    category_key,
    psi,
)


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
    _edges: dict[str, FloatArray] = field(init=False, repr=False)
    _numeric_proportions: dict[str, FloatArray] = field(init=False, repr=False)
    _category_proportions: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_events is None and self.max_seconds is None:
            raise ValueError("expected max_events or max_seconds (or both), got neither")
        if self.max_events is not None and self.max_events < 1:
            raise ValueError(f"expected max_events >= 1, got {self.max_events}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"expected max_seconds > 0, got {self.max_seconds}")
        self._category_index = {name: i for i, name in enumerate(self.reference.category_names)}
        bins = self.reference.numeric
        self._edges = {name: np.asarray(bins[name].edges, dtype=np.float64) for name in NUMERIC_SIGNALS}
        self._numeric_proportions = {
            name: np.asarray(bins[name].proportions, dtype=np.float64) for name in NUMERIC_SIGNALS
        }
        self._category_proportions = self.reference.category_proportions
        self.reset()

    @classmethod
    def from_mapping(
        cls,
        drift: Mapping[str, Any] | DriftReference,
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
        self._counts = {s: np.zeros(p.size, np.int64) for s, p in self._numeric_proportions.items()}
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
            for name, edges in self._edges.items():
                if name not in signals:
                    raise ValueError(f"expected signal {name!r} in the update, got {sorted(signals)}")
                idx = bin_indices(signals[name], edges)
                if idx.shape != (n,):
                    raise ValueError(f"signal {name!r}: expected {n} values, got shape {idx.shape}")
                bins[name] = idx
                self._counts[name] += np.bincount(idx, minlength=edges.size + 1)
            index = self._category_index
            other = index[OTHER_CATEGORY]
            cats = np.fromiter((index.get(category_key(c), other) for c in categories), np.intp, n)
            if category_known is None:
                unseen = cats == other
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

    def compute(self, eps: float = PSI_EPSILON) -> DriftSnapshot:
        """PSI per signal over the window; NaN while it holds fewer than ``min_events`` events."""
        self._evict()
        n = self._events
        result: dict[str, float] = {}
        for name, proportions in self._numeric_proportions.items():
            result[name] = psi(proportions, self._counts[name] / n, eps) if n >= self.min_events else math.nan
        result[CATEGORICAL_SIGNAL] = (
            psi(self._category_proportions, self._category_counts / n, eps)
            if n >= self.min_events
            else math.nan
        )
        return DriftSnapshot(events=n, psi=result, unseen_share=self._unseen / n if n else math.nan)
