"""One micro-batch: raw records in, score records and dead-letter records out.

Pure CPU work without Kafka, run off the event loop by the app. Every input
record leaves as exactly one output: a score on the output topic or its
original bytes on the dead-letter topic with the reason in its headers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from artifact.errors import HeadlineScorerError
from artifact.runtime import ScoreBatch, ScoringModel
from stream.dlq import DEFAULT_MAX_RECORD_BYTES, DeadLetterReason, dead_letter_headers, dead_letter_record
from stream.drift import SlidingWindowDrift
from stream.events import EventRejected, HeadlineEvent, decode_event, encode_scores, event_time_seconds
from stream.metrics import ScorerMetrics
from stream.sink import OutRecord

if TYPE_CHECKING:
    from stream.shadow import ShadowScorer

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InRecord:
    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None  # Kafka record timestamp


@dataclass(frozen=True)
class ScoredBatch:
    """One model call's events and scores, column by column (what the join and the shadow read)."""

    records: list[OutRecord]  # the score records, in the order of ``events``
    events: list[tuple[InRecord, HeadlineEvent]]
    scores: ScoreBatch
    event_times: list[float]
    model_version: str
    scored_at: float


@dataclass
class BatchResult:
    scores: list[OutRecord] = field(default_factory=list)
    dead_letters: list[OutRecord] = field(default_factory=list)
    # the current version's scored batches (usually one; more when a failing batch was split up)
    scored: list[ScoredBatch] = field(default_factory=list)
    # the shadow version's scored batches and score records (SHADOW_OUTPUT_TOPIC; stream/shadow.py)
    shadow: list[ScoredBatch] = field(default_factory=list)
    shadow_scores: list[OutRecord] = field(default_factory=list)


def scored_batch(
    version: str,
    pairs: Sequence[tuple[InRecord, HeadlineEvent]],
    scores: ScoreBatch,
    event_times: list[float],
    scored_at: float,
) -> ScoredBatch:
    """The score records of ``pairs`` (key = id) as ``version`` scored them, with the batch's columns."""
    values = encode_scores(
        [ev.id for _, ev in pairs],
        scores.ctr,
        scores.ctr_normalized,
        scores.quality_prob,
        scores.quality_label,
        model_version=version,
        event_times=event_times,
        scored_at=scored_at,
        partitions=[rec.partition for rec, _ in pairs],
        offsets=[rec.offset for rec, _ in pairs],
    )
    records = [OutRecord(ev.id.encode(), value) for (_, ev), value in zip(pairs, values, strict=True)]
    return ScoredBatch(records, list(pairs), scores, event_times, version, scored_at)


class BatchScorer:
    def __init__(
        self,
        metrics: ScorerMetrics,
        *,
        max_event_bytes: int,
        max_dead_letter_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        drift_factory: Callable[[ScoringModel], SlidingWindowDrift] | None = None,
        clock: Callable[[], float] = time.time,
        shadow: ShadowScorer | None = None,
    ) -> None:
        self.metrics = metrics
        self.max_event_bytes = max_event_bytes
        self.max_dead_letter_bytes = max_dead_letter_bytes
        self.drift_factory = drift_factory
        self.drift: SlidingWindowDrift | None = None
        self._drift_version: str | None = None
        self.clock = clock
        # scores what the current model scored with the shadow version too (None: SHADOW_ENABLED=false)
        self.shadow = shadow

    def _dead_letter(self, record: InRecord, reason: DeadLetterReason, error: str, out: BatchResult) -> None:
        headers = dead_letter_headers(
            reason=reason,
            error=error,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            now=datetime.fromtimestamp(self.clock(), UTC),
        )
        key, value, headers = dead_letter_record(
            record.key, record.value, headers, self.max_dead_letter_bytes
        )
        out.dead_letters.append(OutRecord(key, value, headers))
        self.metrics.dead_lettered(reason)
        logger.debug(
            "%s[%d]@%d dead-lettered (%s): %s", record.topic, record.partition, record.offset, reason, error
        )

    def process(self, model: ScoringModel, records: Sequence[InRecord]) -> BatchResult:
        out = BatchResult()
        self.metrics.consumed(len(records))
        valid: list[tuple[InRecord, HeadlineEvent]] = []
        for record in records:
            try:
                valid.append((record, decode_event(record.value, self.max_event_bytes)))
            except EventRejected as exc:
                self._dead_letter(record, exc.reason, exc.message, out)
        if not valid:
            return out
        started = time.perf_counter()
        scored_at = self.clock()
        try:
            batches = [self._score(model, valid, scored_at)]
        except Exception as exc:  # a batch failed: isolate the event(s) that fail alone
            logger.warning("batch of %d failed to score (%r); scoring one by one", len(valid), exc)
            batches = []
            for pair in valid:
                try:
                    batches.append(self._score(model, [pair], scored_at))
                except Exception as single_exc:
                    self._dead_letter(pair[0], "scoring_error", repr(single_exc), out)
        inference = time.perf_counter() - started
        for scored in batches:
            out.scores.extend(scored.records)
        out.scored = batches
        try:  # observability must never cost an event: failures here are logged, not raised
            self._observe(model, batches, scored_at, inference)
        except Exception:
            logger.exception("metrics or drift update failed for a batch of %d scores", len(out.scores))
        if self.shadow is not None:
            self.shadow.process(out)  # never raises: a shadow failure costs no main score
        return out

    def _score(
        self, model: ScoringModel, pairs: Sequence[tuple[InRecord, HeadlineEvent]], scored_at: float
    ) -> ScoredBatch:
        """Score and encode ``pairs``; any failure here is the batch's (or the event's) scoring error."""
        scores = model.score([ev.title for _, ev in pairs], [ev.category for _, ev in pairs])
        if len(scores) != len(pairs) or not np.all(np.isfinite(scores.quality_prob)):
            raise HeadlineScorerError("model returned a wrong number of scores or non-finite values")
        event_times = [event_time_seconds(ev, rec.timestamp_ms, scored_at) for rec, ev in pairs]
        return scored_batch(model.version, pairs, scores, event_times, scored_at)

    def _observe(
        self, model: ScoringModel, batches: Sequence[ScoredBatch], scored_at: float, inference_seconds: float
    ) -> None:
        for scored in batches:
            self.metrics.observe_batch(
                len(scored.records),
                inference_seconds,
                latencies=[scored_at - t for t in scored.event_times],
                ctr=scored.scores.ctr,
                quality=scored.scores.quality_prob,
            )
            drift = self._drift_for(model)
            if drift is not None:
                drift.update(scored.scores.signals, scored.scores.categories, scored.scores.category_known)

    def publish_drift(self) -> None:
        """Export the drift window's PSI per signal and unseen-category share, and the shadow's
        agreement window (scoring thread only)."""
        if self.shadow is not None:  # first: a drift failure must not freeze the shadow's gauges
            try:
                self.shadow.publish()
            except Exception:  # observability of the shadow never stops the housekeeping
                logger.exception("publishing the shadow agreement failed")
        if self.drift is not None:
            snapshot = self.drift.compute()
            self.metrics.set_drift(snapshot.psi, snapshot.unseen_share)

    def _drift_for(self, model: ScoringModel) -> SlidingWindowDrift | None:
        """The drift window of the serving model (a new model brings a new reference)."""
        if self.drift_factory is None:
            return None
        if self._drift_version != model.version:
            self.drift = self.drift_factory(model)
            self._drift_version = model.version
        return self.drift
