"""Scores joined with their outcomes, keyed by headline id, in a changelog-backed table.

The state is faust's table ``headline-join`` (:data:`TABLE_NAME`; changelog
topic ``<SCORER_APP_ID>-headline-join-changelog``, raw keys and values: the id
in UTF-8 and an :class:`Entry` as JSON). faust's table manager restores the
table's local store from the changelog when partitions are assigned, so a
restarted worker, or the new owner of a partition after a rebalance, keeps the
join. :class:`Join` is the pure core, without Kafka: it reads and updates the
store directly (:class:`JoinStore`) and returns what must be produced
(:class:`JoinOutput`): changelog records (partition = the partition of the
record that caused the change; tombstones for expired entries), labelled rows
for ``LABELLED_TOPIC`` and dead letters for bad outcomes. The worker produces
them through its ``BatchSink``, so the delivery ledger and the commit gate
cover them like the scores (``stream/app.py``). It runs on the scoring thread.

An entry per id holds the scores per model version (role current or shadow,
at most :data:`MAX_VERSIONS_PER_ENTRY`), the event's title, category, group and
event time, and the latest outcome. Whichever arrives first waits for the other.

Outcomes, counted in ``headline_scorer_join_outcomes_total{result}``:

* ``matched``: the id's score was there; the joined row changed.
* ``pending``: stored before its score (the score finds it later:
  ``headline_scorer_join_scores_matched_total``).
* ``stale``: counts not newer than the stored ones (equal counts, or a record
  at or before the one already joined: a re-delivery after a restart): ignored.
* ``late``: taken longer than ``JOIN_RETENTION_SECONDS`` ago: dropped.

Lower cumulative counts than the stored ones are a bad outcome: dead-lettered
with reason ``counts_decreased``. An event or outcome whose record key is not
its id is scored (events) but not joined: it may sit in another partition than
the id's other records (``headline_scorer_join_skipped_total{reason="key_not_id"}``).

Retention: an entry untouched for ``JOIN_RETENTION_SECONDS`` is deleted by
:meth:`Join.sweep` (a tombstone in the changelog); one that never met its other
side is counted in ``headline_scorer_join_expired_total{side}`` (``score``: no
outcome came; ``outcome``: no score came).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol, get_args

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from stream.dlq import (
    DEFAULT_MAX_RECORD_BYTES,
    OUTCOME_DEAD_LETTER_REASONS,
    OutcomeDeadLetterReason,
    dead_letter_headers,
    dead_letter_record,
)
from stream.events import EventRejected
from stream.join_state import Entry, JoinStore, Outcome, Score, labelled_row
from stream.outcomes import OutcomeEvent, decode_outcome, outcome_time_seconds
from stream.quality import Labelled, Role
from stream.sink import OutRecord

if TYPE_CHECKING:
    from artifact.manifest import Manifest
    from stream.scoring import InRecord, ScoredBatch

logger = logging.getLogger(__name__)

TABLE_NAME: Final = "headline-join"
MAX_VERSIONS_PER_ENTRY: Final = 8
#: Most entries one sweep deletes (the rest wait for the next one, the scoring thread is shared).
MAX_EXPIRED_PER_SWEEP: Final = 20_000

OutcomeResult = Literal["matched", "pending", "stale", "late"]
OUTCOME_RESULTS: Final[tuple[OutcomeResult, ...]] = get_args(OutcomeResult)
ExpiredSide = Literal["score", "outcome"]
EXPIRED_SIDES: Final[tuple[ExpiredSide, ...]] = get_args(ExpiredSide)
SkipReason = Literal["key_not_id"]
SKIP_REASONS: Final[tuple[SkipReason, ...]] = get_args(SkipReason)


def changelog_topic_name(app_id: str) -> str:
    """faust's name for the table's changelog topic."""
    return f"{app_id}-{TABLE_NAME}-changelog"


# --- live quality (stream/quality.py implements it) ---------------------------------------------


class LiveQuality(Protocol):
    """What the join calls of live quality (``stream.quality.LiveQuality``), on the scoring thread."""

    def set_model(self, version: str, role: Role, manifest: Manifest) -> None: ...

    def clear(self, role: Role) -> None: ...

    def scored(self, version: str, role: Role, scored_at: float, count: int) -> None: ...

    def labelled(self, rows: Sequence[Labelled]) -> None: ...

    def publish(self) -> None: ...


# --- metrics ------------------------------------------------------------------------------------


class JoinMetrics:
    """The join's metrics, registered on the worker's registry (names are an interface: deploy/)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p, r = "headline_scorer", registry
        self.outcomes_consumed = Counter(
            f"{p}_outcomes_consumed", "Records read from the outcomes topic.", registry=r
        )
        self.outcomes_dead_lettered = Counter(
            f"{p}_outcomes_dead_lettered",
            "Outcome records sent to the dead-letter topic.",
            ["reason"],
            registry=r,
        )
        for reason in OUTCOME_DEAD_LETTER_REASONS:
            self.outcomes_dead_lettered.labels(reason)
        self.outcomes = Counter(
            f"{p}_join_outcomes",
            "Valid outcomes by what the join did with them (matched, pending, stale, late).",
            ["result"],
            registry=r,
        )
        for result in OUTCOME_RESULTS:
            self.outcomes.labels(result)
        self.scores_matched = Counter(
            f"{p}_join_scores_matched", "Scores (current version) that found a waiting outcome.", registry=r
        )
        self.expired = Counter(
            f"{p}_join_expired",
            "Entries deleted by the retention without a match (side: what was there).",
            ["side"],
            registry=r,
        )
        for side in EXPIRED_SIDES:
            self.expired.labels(side)
        self.entries = Gauge(f"{p}_join_entries", "Ids held in the join table by this worker.", registry=r)
        self.skipped = Counter(
            f"{p}_join_skipped",
            "Records not joined (their record key is not their id).",
            ["reason"],
            registry=r,
        )
        for skip in SKIP_REASONS:
            self.skipped.labels(skip)
        # children resolved once (labels() costs microseconds on the hot path)
        self.result = {result: self.outcomes.labels(result) for result in OUTCOME_RESULTS}
        self.key_not_id = self.skipped.labels("key_not_id")


# --- the core -----------------------------------------------------------------------------------


@dataclass
class JoinOutput:
    """What one join step must produce; ``changelog`` records carry their partition."""

    changelog: list[OutRecord] = field(default_factory=list)
    labelled: list[OutRecord] = field(default_factory=list)
    dead_letters: list[OutRecord] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changelog or self.labelled or self.dead_letters)


@dataclass
class _Step:
    """Changes of one step, one record per key (the last state wins)."""

    changed: dict[bytes, bytes | None] = field(default_factory=dict)  # entry JSON; None: tombstone
    partitions: dict[bytes, int] = field(default_factory=dict)
    labelled: dict[bytes, Entry] = field(default_factory=dict)
    quality: dict[tuple[str, str], Labelled] = field(default_factory=dict)
    dead_letters: list[OutRecord] = field(default_factory=list)


class Join:
    """Applies scores and outcomes to the store; see the module docstring."""

    def __init__(
        self,
        store: JoinStore,
        metrics: JoinMetrics,
        *,
        retention_seconds: float,
        quality: LiveQuality | None = None,
        max_outcome_bytes: int = 65536,
        max_dead_letter_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention_seconds <= 0:
            raise ValueError(f"expected retention_seconds > 0, got {retention_seconds}")
        self.store = store
        self.metrics = metrics
        self.retention_seconds = retention_seconds
        self.quality = quality
        self.max_outcome_bytes = max_outcome_bytes
        self.max_dead_letter_bytes = max_dead_letter_bytes
        self.clock = clock
        # id -> (touched, partition), oldest first: what the retention sweep walks
        self._index: OrderedDict[bytes, tuple[float, int]] = OrderedDict()
        self._models: dict[Role, str | None] = {}  # the version live quality knows per role

    def __len__(self) -> int:
        return len(self._index)

    # -- models ----------------------------------------------------------------------------------
    def set_model(self, version: str | None, role: Role, manifest: Manifest | None = None) -> None:
        """Tell live quality which version serves in ``role`` (None: none, a shadow that was cleared);
        it is told only when that changes."""
        if self.quality is None or self._models.get(role) == version:
            return
        if version is None or manifest is None:
            if self._models.get(role) is not None:
                self.quality.clear(role)
            self._models[role] = None
            return
        self._models[role] = version
        self.quality.set_model(version, role, manifest)

    # -- the hot path ----------------------------------------------------------------------------
    def apply(
        self,
        scored: Sequence[ScoredBatch] = (),
        shadow: Sequence[ScoredBatch] = (),
        outcomes: Sequence[InRecord] = (),
    ) -> JoinOutput:
        """Join a batch: the current version's scores, then the shadow's, then the outcome records."""
        now = self.clock()
        step = _Step()
        if self.quality is not None:
            for batch, role in [*((b, "current") for b in scored), *((b, "shadow") for b in shadow)]:
                if batch.events:
                    self.quality.scored(batch.model_version, role, batch.scored_at, len(batch.events))  # type: ignore[arg-type]
        with self.store.lock:
            for batch in scored:
                self._apply_scores(batch, "current", now, step)
            for batch in shadow:
                self._apply_scores(batch, "shadow", now, step)
            if outcomes:
                self.metrics.outcomes_consumed.inc(len(outcomes))
            for record in outcomes:
                self._apply_outcome(record, now, step)
            out = self._finish(step)
        self._publish_labelled(step)
        return out

    def _load(self, key: bytes) -> Entry | None:
        value = self.store.get(key)
        if value is None:
            return None
        try:
            return Entry.decode(value)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            # written by an incompatible version of the worker: start the id afresh
            logger.warning("join entry %r is unreadable (%r); replaced", key[:64], exc)
            return None

    def _save(self, key: bytes, entry: Entry, now: float, step: _Step) -> None:
        entry.touched = now
        value = entry.encode()
        self.store.put(key, value)
        index = self._index
        if key in index:
            index.move_to_end(key)
        index[key] = (now, entry.partition)
        step.changed[key] = value
        step.partitions[key] = entry.partition

    def _apply_scores(self, batch: ScoredBatch, role: Role, now: float, step: _Step) -> None:
        scores = batch.scores
        ctr = scores.ctr.tolist()
        ctr_normalized = scores.ctr_normalized.tolist()
        quality_prob = scores.quality_prob.tolist()
        version = batch.model_version
        for i, (record, event) in enumerate(batch.events):
            key = event.id.encode()
            if record.key != key:
                if role == "current":  # the shadow scored the same events: counted once
                    self.metrics.key_not_id.inc()
                continue
            entry = self._load(key) or Entry(id=event.id, partition=record.partition, touched=now)
            entry.partition = record.partition
            entry.title = event.title
            entry.category = event.category
            entry.group = event.group
            entry.event_time = batch.event_times[i]
            entry.scores[version] = Score(role, ctr[i], ctr_normalized[i], quality_prob[i], batch.scored_at)
            if len(entry.scores) > MAX_VERSIONS_PER_ENTRY:
                oldest = min(entry.scores, key=lambda v: entry.scores[v].scored_at)
                del entry.scores[oldest]
            self._save(key, entry, now, step)
            if entry.outcome is not None:
                if role == "current":
                    self.metrics.scores_matched.inc()
                step.labelled[key] = entry
                self._quality_row(entry, version, step)

    def _apply_outcome(self, record: InRecord, now: float, step: _Step) -> None:
        try:
            outcome = decode_outcome(record.value, self.max_outcome_bytes)
        except EventRejected as exc:
            self._dead_letter(record, exc.reason, exc.message, now, step)
            return
        key = outcome.id.encode()
        if record.key != key:
            self.metrics.key_not_id.inc()
            return
        at = outcome_time_seconds(outcome, record.timestamp_ms, now)
        if at < now - self.retention_seconds:
            self.metrics.result["late"].inc()
            return
        entry = self._load(key)
        if entry is not None and entry.outcome is not None:
            stored = entry.outcome
            if stored.partition == record.partition and record.offset <= stored.offset:
                self.metrics.result["stale"].inc()  # a re-delivery of a record already joined
                return
            if outcome.impressions < stored.impressions or outcome.clicks < stored.clicks:
                self._dead_letter(
                    record,
                    "counts_decreased",
                    f"impressions {outcome.impressions}, clicks {outcome.clicks} are below the stored "
                    f"impressions {stored.impressions}, clicks {stored.clicks} of id {outcome.id[:128]!r}",
                    now,
                    step,
                )
                return
            if outcome.impressions == stored.impressions and outcome.clicks == stored.clicks:
                self.metrics.result["stale"].inc()
                return
        if entry is None:
            entry = Entry(id=outcome.id, partition=record.partition, touched=now)
        entry.partition = record.partition
        entry.outcome = _outcome(outcome, at, record)
        self._save(key, entry, now, step)
        if entry.current_score() is None and not entry.scores:
            self.metrics.result["pending"].inc()
            return
        self.metrics.result["matched"].inc()
        step.labelled[key] = entry
        for version in entry.scores:
            self._quality_row(entry, version, step)

    def _dead_letter(
        self, record: InRecord, reason: OutcomeDeadLetterReason, error: str, now: float, step: _Step
    ) -> None:
        headers = dead_letter_headers(reason, error, record.topic, record.partition, record.offset, now)
        key, value, headers = dead_letter_record(
            record.key, record.value, headers, self.max_dead_letter_bytes
        )
        step.dead_letters.append(OutRecord(key, value, headers))
        self.metrics.outcomes_dead_lettered.labels(reason).inc()
        logger.debug(
            "outcome %s[%d]@%d dead-lettered (%s): %s",
            record.topic,
            record.partition,
            record.offset,
            reason,
            error,
        )

    def _quality_row(self, entry: Entry, version: str, step: _Step) -> None:
        score, outcome = entry.scores.get(version), entry.outcome
        if score is None or outcome is None or self.quality is None:
            return
        step.quality[(entry.id, version)] = Labelled(
            id=entry.id,
            title=entry.title or "",
            group=outcome.group if outcome.group is not None else entry.group,
            model_version=version,
            role=score.role,
            ctr=score.ctr,
            ctr_normalized=score.ctr_normalized,
            quality_prob=score.quality_prob,
            impressions=outcome.impressions,
            clicks=outcome.clicks,
            scored_at=score.scored_at,
            outcome_at=outcome.at,
        )

    def _finish(self, step: _Step) -> JoinOutput:
        out = JoinOutput(dead_letters=step.dead_letters)
        partitions = step.partitions
        out.changelog = [OutRecord(key, value, (), partitions[key]) for key, value in step.changed.items()]
        for key, entry in step.labelled.items():
            row = labelled_row(entry)
            if row is not None:
                out.labelled.append(OutRecord(key, row))
        self.metrics.entries.set(len(self._index))
        return out

    def _publish_labelled(self, step: _Step) -> None:
        if self.quality is not None and step.quality:
            try:  # observability never costs an event
                self.quality.labelled(list(step.quality.values()))
            except Exception:
                logger.exception("live quality failed to take %d labelled rows", len(step.quality))

    # -- retention -------------------------------------------------------------------------------
    def sweep(self, limit: int = MAX_EXPIRED_PER_SWEEP) -> JoinOutput:
        """Delete entries untouched for the retention; their tombstones go to the changelog."""
        cutoff = self.clock() - self.retention_seconds
        step = _Step()
        index = self._index
        with self.store.lock:
            while index and len(step.changed) < limit:
                key, (touched, partition) = next(iter(index.items()))
                if touched > cutoff:
                    break
                del index[key]
                entry = self._load(key)
                self.store.delete(key)
                step.changed[key] = None
                step.partitions[key] = partition
                if entry is not None and entry.outcome is None and entry.scores:
                    self.metrics.expired.labels("score").inc()
                elif entry is not None and entry.outcome is not None and not entry.scores:
                    self.metrics.expired.labels("outcome").inc()
            return self._finish(step)

    def rebuild(self, partitions: Iterable[int] | None = None) -> int:
        """Re-read the index from the store (after faust restored it); entries of partitions not in
        ``partitions`` (when given) are dropped from the local store (another worker owns them).
        Returns the number of entries held."""
        owned = None if partitions is None else set(partitions)
        with self.store.lock:
            rows: list[tuple[float, bytes, int]] = []
            for key, value in self.store.snapshot():
                try:
                    entry = Entry.decode(value)
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    logger.warning("join entry %r is unreadable; dropped from the local store", key[:64])
                    self.store.delete(key)
                    continue
                if owned is not None and entry.partition not in owned:
                    self.store.delete(key)
                    continue
                rows.append((entry.touched, key, entry.partition))
            rows.sort()
            self._index = OrderedDict((key, (touched, partition)) for touched, key, partition in rows)
            self.metrics.entries.set(len(self._index))
            return len(self._index)


def _outcome(outcome: OutcomeEvent, at: float, record: InRecord) -> Outcome:
    return Outcome(outcome.impressions, outcome.clicks, at, outcome.group, record.partition, record.offset)
