"""Live model quality: the joined outcomes measured against the scores, per model version.

The join (:mod:`stream.join`) hands every joined update to :meth:`LiveQuality.labelled` as a
:class:`Labelled` row: one (headline id, model version) with the id's latest cumulative outcome.
A row counts once its outcome has at least ``min_impressions`` impressions; a newer outcome of the
same (id, version) replaces the older row. Each version's window holds its latest ``max_events``
rows whose outcome arrived (by the injected clock) within ``max_seconds``. :meth:`LiveQuality.publish`
recomputes the gauges from the windows (the worker calls it from housekeeping on the scoring thread):

- ``headline_scorer_live_ctr_mae{model_version,role,scale}``: mean |predicted - observed CTR|,
  ``raw`` (``ctr`` vs ``clicks / impressions``) and ``normalized`` (``ctr_normalized`` vs the
  model's :class:`~artifact.scaling.TargetScaling` of the observed CTR, unclipped like
  ``evaluate``'s target);
- ``headline_scorer_live_calibration_error``: :func:`artifact.measures.expected_calibration_error`
  (10 equal-width bins, as ``evaluate``'s ``quality_ece``) of ``quality_prob`` against the realized
  quality label, which is the model's manifest ``label_rule`` applied to the window: ``group_mean``
  (CTR above the mean CTR of its group's rows in the window; rows without a group have no label) or
  ``median (threshold T)`` (normalized observed CTR above T). ``..._live_quality_positive_share`` and
  ``..._live_quality_mean_prob`` are the share of positive labels and the mean probability over the
  same rows;
- ``headline_scorer_live_pairwise_accuracy`` and ``..._live_pairs``:
  :func:`artifact.pairwise.pairwise_accuracy` over the rows with a group, exactly as ``evaluate``
  calls it (observed ``clicks / impressions``, predicted ``ctr_normalized``, the counts, headlines
  pooled by title; each title normalized once, on arrival), so the live value equals ``evaluate`` on
  the same rows (exactly in the same row order; a pooled mean of three or more different predictions
  may round differently in another order);
- ``headline_scorer_live_labelled_events``: rows in the window; ``headline_scorer_label_coverage``:
  the share of the version's events scored within the last ``max_seconds`` that have a row in the
  window (the events come from :meth:`LiveQuality.scored`);
- ``headline_scorer_label_delay_seconds`` (histogram, no labels): ``outcome_at - scored_at`` of the
  row with which an id first reaches ``min_impressions``, once per id;
- ``headline_scorer_model_reference{model_version,metric}``: the manifest's validation metrics that
  the live gauges compare with (:data:`stream.quality_measures.REFERENCE_METRICS`).

The figures are computed by :func:`stream.quality_measures.measure` (pure functions of a window).

Gauges are NaN when there is nothing to compute. Every version has one role (current or shadow):
:meth:`LiveQuality.set_model` of a version retires the version that held its role before (its rows
and series disappear), :meth:`LiveQuality.clear` forgets a role's version (a shadow that was
cleared), and rows or scored counts of versions not set are ignored, so the label values stay
bounded by the versions the worker serves.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry, Gauge

from artifact.manifest import Manifest
from artifact.pairwise import headline_key
from stream.metrics import PREFIX, ArrayHistogram
from stream.quality_measures import (
    REFERENCE_METRICS,
    ModelTerms,
    QualitySnapshot,
    WindowRows,
    measure,
)

logger = logging.getLogger(__name__)

Role = Literal["current", "shadow"]
ROLES: Final[tuple[Role, ...]] = ("current", "shadow")
SCALES: Final = ("raw", "normalized")
#: Seconds from scoring to the outcome that reaches the minimum impressions (minutes to a week).
DELAY_BUCKETS: Final = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    43200.0,
    86400.0,
    259200.0,
    604800.0,
)
#: Scored counts are kept in this many buckets per window (coverage's denominator is exact to a bucket).
SCORED_BUCKETS: Final = 3600


@dataclass(frozen=True, slots=True)
class Labelled:
    """One (id, model version) with its latest outcome (cumulative counts)."""

    id: str
    title: str
    group: str | None
    model_version: str
    role: Role
    ctr: float
    ctr_normalized: float
    quality_prob: float
    impressions: int
    clicks: int
    scored_at: float
    outcome_at: float


class _Codes:
    """Small integer codes for the strings of the rows held (reference counted, so bounded)."""

    def __init__(self) -> None:
        self._codes: dict[str, list[int]] = {}  # value -> [code, rows holding it]
        self._next = 0

    def acquire(self, value: str) -> int:
        entry = self._codes.get(value)
        if entry is None:
            entry = self._codes[value] = [self._next, 0]
            self._next += 1
        entry[1] += 1
        return entry[0]

    def release(self, value: str) -> None:
        entry = self._codes[value]
        entry[1] -= 1
        if entry[1] == 0:
            del self._codes[value]

    def __len__(self) -> int:
        return len(self._codes)


@dataclass(slots=True)
class _Row:
    arrived: float  # by the clock, when its latest outcome came
    slot: int  # its values' index in the series' columns
    impressions: int
    clicks: int
    title: str
    group: str | None
    key: str  # headline_key(title), computed once


_FLOAT_COLUMNS: Final = ("ctr", "ctr_normalized", "quality_prob", "impressions", "clicks", "scored_at")


class _Series:
    """One model version: its role, manifest terms, window rows (values in columns) and scored counts."""

    def __init__(self, role: Role, terms: ModelTerms, codes: _Codes) -> None:
        self.role = role
        self.terms = terms
        self.rows: OrderedDict[str, _Row] = OrderedDict()  # by id, oldest arrival first
        # scored events in buckets of SCORED_BUCKETS-th of the window: [first scored_at, events]
        self.scored: deque[list[float]] = deque()
        self.scored_total = 0
        self._codes = codes
        self._free: list[int] = []
        # one slot per row held; columns() takes the occupied slots (order does not matter)
        self._occupied = np.zeros(0, dtype=np.bool_)
        self._floats = {name: np.zeros(0) for name in _FLOAT_COLUMNS}
        self._groups = np.zeros(0, dtype=np.int64)
        self._keys = np.zeros(0, dtype=np.int64)

    def put(self, row: Labelled, key: str, arrived: float) -> None:
        """Hold ``row`` (replacing the row of its id) as the newest arrival."""
        held = self.rows.pop(row.id, None)
        if held is not None:
            self._release(held)
        slot = self._slot()
        floats = self._floats
        floats["ctr"][slot] = row.ctr
        floats["ctr_normalized"][slot] = row.ctr_normalized
        floats["quality_prob"][slot] = row.quality_prob
        floats["impressions"][slot] = row.impressions
        floats["clicks"][slot] = row.clicks
        floats["scored_at"][slot] = row.scored_at
        self._groups[slot] = -1 if row.group is None else self._codes.acquire("g" + row.group)
        self._keys[slot] = self._codes.acquire("k" + key)
        self._occupied[slot] = True
        self.rows[row.id] = _Row(arrived, slot, row.impressions, row.clicks, row.title, row.group, key)

    def _slot(self) -> int:
        if not self._free:
            size = self._occupied.size
            extra = max(64, size)

            def grow(array: NDArray[Any], fill: float | int | bool) -> NDArray[Any]:
                return np.concatenate([array, np.full(extra, fill, dtype=array.dtype)])

            self._occupied = grow(self._occupied, False)
            self._floats = {name: grow(column, 0.0) for name, column in self._floats.items()}
            self._groups = grow(self._groups, -1)
            self._keys = grow(self._keys, 0)
            self._free = list(range(size + extra - 1, size - 1, -1))
        return self._free.pop()

    def _release(self, row: _Row) -> None:
        if row.group is not None:
            self._codes.release("g" + row.group)
        self._codes.release("k" + row.key)
        self._occupied[row.slot] = False
        self._free.append(row.slot)

    def evict(self, now: float, max_events: int, max_seconds: float) -> None:
        horizon = now - max_seconds
        rows = self.rows
        while rows and (len(rows) > max_events or next(iter(rows.values())).arrived < horizon):
            self._release(rows.popitem(last=False)[1])
        while self.scored and self.scored[0][0] < horizon:
            self.scored_total -= int(self.scored.popleft()[1])

    def add_scored(self, scored_at: float, count: int, bucket_seconds: float) -> None:
        last = self.scored[-1] if self.scored else None
        if last is not None and last[0] <= scored_at < last[0] + bucket_seconds:
            last[1] += count
        else:
            self.scored.append([scored_at, float(count)])
        self.scored_total += count

    def drop(self) -> None:
        """Release every row (the version is retired)."""
        for row in self.rows.values():
            self._release(row)
        self.rows.clear()

    def columns(self) -> WindowRows:
        """The rows' values (copies, safe to use outside the lock), in slot order."""
        slots = np.flatnonzero(self._occupied)
        f = {name: column[slots] for name, column in self._floats.items()}
        return WindowRows(
            f["ctr"],
            f["ctr_normalized"],
            f["quality_prob"],
            f["impressions"],
            f["clicks"],
            f["scored_at"],
            self._groups[slots],
            self._keys[slots],
        )


def _row_problem(row: Labelled) -> str | None:
    """Why a joined row cannot be measured (None when it can)."""
    finite = math.isfinite
    if not (
        finite(row.ctr)
        and finite(row.ctr_normalized)
        and finite(row.quality_prob)
        and finite(row.scored_at)
        and finite(row.outcome_at)
    ):
        return "a score or time is not finite"
    if not 0.0 <= row.quality_prob <= 1.0:
        return f"quality_prob {row.quality_prob!r} is outside [0, 1]"
    if not 0 <= row.clicks <= row.impressions:
        return f"expected 0 <= clicks <= impressions, got {row.clicks} clicks, {row.impressions} impressions"
    return None


class LiveQuality:
    """Live quality gauges per model version over a sliding window of joined outcomes.

    ``labelled`` and ``scored`` may be called from any thread; ``publish`` computes outside the lock
    on a copy of the windows' columns.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        max_events: int,
        max_seconds: float,
        min_impressions: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_events < 1:
            raise ValueError(f"max_events: expected >= 1, got {max_events}")
        if not (math.isfinite(max_seconds) and max_seconds > 0):
            raise ValueError(f"max_seconds: expected a finite number > 0, got {max_seconds}")
        if min_impressions < 1:
            raise ValueError(f"min_impressions: expected >= 1, got {min_impressions}")
        self.max_events = max_events
        self.max_seconds = max_seconds
        self.min_impressions = min_impressions
        self._clock = clock
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}
        self._codes = _Codes()  # group and headline-key codes, shared by the versions
        # ids whose label delay was observed; bounded, oldest forgotten first
        self._delay_seen: OrderedDict[str, None] = OrderedDict()
        self._delay_memory = max(4 * max_events, 1000)
        p, r, labels = PREFIX, registry, ["model_version", "role"]
        self.ctr_mae = Gauge(
            f"{p}_live_ctr_mae",
            "Mean absolute error of the predicted CTR against the observed one, raw or normalized.",
            [*labels, "scale"],
            registry=r,
        )
        self.calibration_error = Gauge(
            f"{p}_live_calibration_error",
            "Expected calibration error (10 bins) of quality_prob against the realized quality label.",
            labels,
            registry=r,
        )
        self.positive_share = Gauge(
            f"{p}_live_quality_positive_share",
            "Share of window rows whose realized label is positive.",
            labels,
            registry=r,
        )
        self.mean_prob = Gauge(
            f"{p}_live_quality_mean_prob",
            "Mean quality_prob of the window rows with a realized label.",
            labels,
            registry=r,
        )
        self.pairwise = Gauge(
            f"{p}_live_pairwise_accuracy",
            "Share of same-group headline pairs ordered like their observed CTR.",
            labels,
            registry=r,
        )
        self.pairs = Gauge(f"{p}_live_pairs", "Same-group headline pairs compared.", labels, registry=r)
        self.labelled_events = Gauge(
            f"{p}_live_labelled_events",
            "Rows with an outcome in the live quality window.",
            labels,
            registry=r,
        )
        self.coverage = Gauge(
            f"{p}_label_coverage",
            "Share of the events scored within the window seconds that have a labelled row.",
            labels,
            registry=r,
        )
        self.reference = Gauge(
            f"{p}_model_reference",
            "The model's validation metric from its manifest (compare the live gauges with it).",
            ["model_version", "metric"],
            registry=r,
        )
        self.delay = ArrayHistogram(
            f"{p}_label_delay_seconds",
            "From scoring to the outcome reaching the minimum impressions, once per id.",
            DELAY_BUCKETS,
            r,
        )

    # ------------------------------------------------------------------ feeding

    def set_model(self, version: str, role: Role, manifest: Manifest) -> None:
        """``version`` serves in ``role``; the version that held the role before is retired."""
        if role not in ROLES:
            raise ValueError(f"role: expected one of {ROLES}, got {role!r}")
        terms = ModelTerms.from_manifest(manifest)
        with self._lock:
            for other in [v for v, held in self._series.items() if v != version and held.role == role]:
                self._retire(other)
            series = self._series.get(version)
            fresh = series is None or series.role != role
            if series is None:
                series = self._series[version] = _Series(role, terms, self._codes)
            elif series.role != role:
                self._remove_series(version, series.role)
            series.role, series.terms = role, terms
            for metric in REFERENCE_METRICS:
                with contextlib.suppress(KeyError):
                    self.reference.remove(version, metric)
            for metric, value in terms.reference.items():
                self.reference.labels(version, metric).set(value)
            if fresh:  # the series exist (NaN, 0 events) before the first publish
                self._write(version, role, QualitySnapshot.empty(), math.nan)

    def clear(self, role: Role) -> None:
        """Forget the version serving in ``role`` (a shadow that was cleared)."""
        with self._lock:
            for version, series in list(self._series.items()):
                if series.role == role:
                    self._retire(version)

    def scored(self, version: str, role: Role, scored_at: float, count: int) -> None:
        """``count`` events were scored by ``version`` at ``scored_at`` (unix seconds)."""
        if count <= 0:
            return
        with self._lock:
            series = self._series.get(version)
            if series is None:
                logger.debug("scored events of model %s (%s), which is not set: ignored", version, role)
                return
            series.add_scored(scored_at, count, self.max_seconds / SCORED_BUCKETS)

    def labelled(self, rows: Sequence[Labelled]) -> None:
        """Joined updates; rows below the minimum impressions or of versions not set are ignored."""
        now = self._clock()
        delays: list[float] = []
        with self._lock:
            for row in rows:
                if row.impressions < self.min_impressions:
                    continue
                series = self._series.get(row.model_version)
                if series is None:
                    logger.debug("labelled row of model %s, which is not set: ignored", row.model_version)
                    continue
                problem = _row_problem(row)
                if problem is not None:
                    logger.warning(
                        "labelled row %r of model %s ignored: %s", row.id, row.model_version, problem
                    )
                    continue
                held = series.rows.get(row.id)
                if held is not None and (row.impressions, row.clicks) < (held.impressions, held.clicks):
                    continue  # an older outcome than the one held
                series.put(row, self._headline_key(row), now)
                if row.id not in self._delay_seen:
                    self._delay_seen[row.id] = None
                    if len(self._delay_seen) > self._delay_memory:
                        self._delay_seen.popitem(last=False)
                    delays.append(row.outcome_at - row.scored_at)
            for series in self._series.values():
                series.evict(now, self.max_events, self.max_seconds)
        if delays:
            self.delay.observe(delays)

    def _headline_key(self, row: Labelled) -> str:
        """``headline_key(row.title)``, reused from a row of the same id and title when one is held."""
        for series in self._series.values():
            held = series.rows.get(row.id)
            if held is not None and held.title == row.title:
                return held.key
        return headline_key(row.title)

    # ------------------------------------------------------------------ publishing

    def snapshot(self) -> dict[str, tuple[Role, QualitySnapshot, float]]:
        """Per version: its role, its window's figures and its label coverage."""
        now = self._clock()
        horizon = now - self.max_seconds
        work: list[tuple[str, Role, ModelTerms, WindowRows, int]] = []
        with self._lock:
            for version, series in self._series.items():
                series.evict(now, self.max_events, self.max_seconds)
                work.append((version, series.role, series.terms, series.columns(), series.scored_total))
        result: dict[str, tuple[Role, QualitySnapshot, float]] = {}
        for version, role, terms, columns, scored in work:
            recent = int(np.count_nonzero(columns.scored_at >= horizon))
            coverage = min(1.0, recent / scored) if scored else math.nan
            result[version] = (role, measure(columns, terms), coverage)
        return result

    def publish(self) -> None:
        """Recompute every gauge (housekeeping, about once a second, off the event loop)."""
        snapshots = self.snapshot()
        with self._lock:
            for version, (role, snap, coverage) in snapshots.items():
                series = self._series.get(version)
                if series is not None and series.role == role:  # not retired meanwhile
                    self._write(version, role, snap, coverage)

    def _write(self, version: str, role: Role, snap: QualitySnapshot, coverage: float) -> None:
        labels = (version, role)
        self.ctr_mae.labels(*labels, "raw").set(snap.ctr_mae_raw)
        self.ctr_mae.labels(*labels, "normalized").set(snap.ctr_mae_normalized)
        self.calibration_error.labels(*labels).set(snap.calibration_error)
        self.positive_share.labels(*labels).set(snap.positive_share)
        self.mean_prob.labels(*labels).set(snap.mean_prob)
        self.pairwise.labels(*labels).set(snap.pairwise_accuracy)
        self.pairs.labels(*labels).set(snap.pairs)
        self.labelled_events.labels(*labels).set(snap.events)
        self.coverage.labels(*labels).set(coverage)

    # ------------------------------------------------------------------ retiring

    def _retire(self, version: str) -> None:
        series = self._series.pop(version)
        series.drop()
        self._remove_series(version, series.role)
        for metric in REFERENCE_METRICS:
            with contextlib.suppress(KeyError):
                self.reference.remove(version, metric)

    def _remove_series(self, version: str, role: Role) -> None:
        for gauge in (
            self.calibration_error,
            self.positive_share,
            self.mean_prob,
            self.pairwise,
            self.pairs,
            self.labelled_events,
            self.coverage,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(version, role)
        for scale in SCALES:
            with contextlib.suppress(KeyError):
                self.ctr_mae.remove(version, role, scale)
