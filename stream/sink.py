"""Keyed records to a topic through aiokafka's batch API, and proof that the broker stored them.

One batch per destination partition per call instead of one ``send`` per
record (a single-message produce request costs the embedded broker 70-118 µs of
CPU, measured).
Partitions are chosen like the Java client's default partitioner (murmur2 of
the key), so records with the same key always land on the same partition, on
any broker.

Every produced batch is recorded in a :class:`DeliveryLedger`. An offset
commit covers the outputs of the records it commits, so before every commit
:meth:`BatchSink.verify_stored` must pass:

1. every batch produced so far was acknowledged (acks=all) without error;
2. the destination topics exist on the broker (asked without auto-creating
   them) with the partition count the records were routed by;
3. each written partition's end offset lies beyond the last acknowledged
   batch, and acknowledged offsets never went backwards in between.

Before producing, the sink also asks the broker (at most every
``topic_check_seconds``) whether the destination topics exist, and while the
broker does not answer, the batch waits. A topic that went missing while the
worker runs means the broker lost data or someone deleted it: the sink fails
(latches) before producing anything into the void, and the worker stops
without committing; its restart re-creates the topics (``CREATE_TOPICS``) and
resumes from the committed offsets. Re-creating them in place would not do:
the consumer's in-memory positions and offsets predate the loss.

Why 2 and 3: a broker that lost its topics (the embedded broker after a
restart: memory storage) acknowledges produce requests to unknown topics with
no error and stores nothing; and a topic deleted and re-created between a
produce and the commit has lost what it was acknowledged for. Any failure
latches: the ledger refuses every later commit, and the worker stops so that
it restarts from the last committed offsets (``stream/app.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka.partitioner import murmur2

from artifact.errors import HeadlineScorerError
from stream.faust_adapter import CommitRefusedError, TopicState

logger = logging.getLogger(__name__)

Header = tuple[str, bytes]
TopicPartitionKey = tuple[str, int]


class DeliveryFailedError(CommitRefusedError):
    """The broker did not acknowledge a batch of outputs (after the producer's retries)."""


class UnstoredOutputError(CommitRefusedError):
    """The broker acknowledged outputs that it does not hold (missing topic, rewound partition)."""


class EndOffsetUnknownError(HeadlineScorerError):
    """The broker gave no end offset for a partition now (no leader, or a partition error).

    Not a :class:`CommitRefusedError`: nothing is proven lost, the commit is only postponed.
    """


class OutputTopicMissingError(UnstoredOutputError):
    """A destination topic disappeared (or changed its partitions) while the worker was running."""


@dataclass(frozen=True, slots=True)
class OutRecord:
    key: bytes | None
    value: bytes | None
    headers: Sequence[Header] = ()
    # the destination partition; None: chosen from the key (:func:`partition_for`)
    partition: int | None = None


def partition_for(key: bytes | None, n_partitions: int, fallback: int) -> int:
    """Java-compatible default partitioning; keyless records use ``fallback``."""
    if key is None:
        return fallback % n_partitions
    return int(murmur2(key) & 0x7FFFFFFF) % n_partitions


class Probe(Protocol):
    """The broker's view of topics (:class:`stream.faust_adapter.BrokerProbe`)."""

    async def topics(self, names: Sequence[str]) -> dict[str, TopicState]: ...

    async def end_offsets(self, partitions: Sequence[TopicPartitionKey]) -> dict[TopicPartitionKey, int]: ...


@dataclass
class DeliveryLedger:
    """Produced batches not yet proven stored, and the first failure (which latches)."""

    on_failure: Callable[[BaseException], None] = lambda exc: None
    failure: BaseException | None = None
    pending: set[asyncio.Future[Any]] = field(default_factory=set)
    # highest acknowledged base offset per partition since the last verification
    unverified: dict[TopicPartitionKey, int] = field(default_factory=dict)

    def fail(self, exc: BaseException) -> None:
        if self.failure is None:
            logger.error("outputs not stored; offsets will not be committed: %s", exc)
            self.failure = exc
            self.on_failure(exc)

    def track(self, fut: asyncio.Future[Any], topic: str, partition: int) -> None:
        self.pending.add(fut)
        fut.add_done_callback(lambda f: self._delivered(f, topic, partition))

    def _delivered(self, fut: asyncio.Future[Any], topic: str, partition: int) -> None:
        self.pending.discard(fut)
        if fut.cancelled():
            self.fail(DeliveryFailedError(f"delivery to {topic}[{partition}] was cancelled"))
            return
        exc = fut.exception()
        if exc is not None:
            self.fail(DeliveryFailedError(f"delivery to {topic}[{partition}] failed: {exc!r}"))
            return
        offset = int(getattr(fut.result(), "offset", -1))
        if offset < 0:  # acknowledged without an offset (e.g. a duplicate the broker already had)
            return
        tp = (topic, partition)
        previous = self.unverified.get(tp)
        if previous is not None and offset <= previous:
            self.fail(
                UnstoredOutputError(
                    f"{topic}[{partition}] acknowledged offset {offset} after {previous}: the partition "
                    "was re-created or truncated, and the outputs acknowledged before are gone"
                )
            )
            return
        self.unverified[tp] = offset

    async def wait_delivered(self) -> None:
        """Wait until every batch enqueued so far is acknowledged (or failed)."""
        if self.pending:
            await asyncio.wait(set(self.pending))

    async def verify(self, probe: Probe, partitions: Mapping[str, int]) -> None:
        """Raise unless every batch enqueued so far is stored (see the module docstring).

        ``partitions``: the partition count each topic's records were routed by. Broker errors
        (unreachable, timeout) propagate and prove nothing: the commit waits for the next try.
        """
        if self.failure is None:
            await self.wait_delivered()
        if self.failure is not None:
            raise self.failure
        snapshot = dict(self.unverified)
        if not snapshot:
            return
        problem = await self._check_topics(probe, {t for t, _ in snapshot}, partitions)
        if problem is None:
            ends = await probe.end_offsets(sorted(snapshot))
            unknown = sorted(tp for tp in snapshot if ends.get(tp, -1) < 0)
            if unknown:
                # no leader or an error for the partition (a leader moving between brokers): the
                # broker proved nothing either way, so this commit waits for the next try
                topic, part = unknown[0]
                raise EndOffsetUnknownError(
                    f"{topic}[{part}] has no end offset now ({len(unknown)} partitions without one)"
                )
            short = {tp: (off, ends[tp]) for tp, off in snapshot.items() if ends[tp] <= off}
            if short:
                (topic, part), (off, end) = sorted(short.items())[0]
                problem = (
                    f"{topic}[{part}] ends at offset {end} but a batch was acknowledged at offset {off} "
                    f"({len(short)} partitions short)"
                )
        if problem is not None:
            self.fail(UnstoredOutputError(problem))
            raise UnstoredOutputError(problem)
        for tp, offset in snapshot.items():
            if self.unverified.get(tp) == offset:
                del self.unverified[tp]

    async def check_topics(self, probe: Probe, partitions: Mapping[str, int]) -> None:
        """Latch a failure when a topic holding unverified or pending outputs is gone (periodic check)."""
        if self.failure is not None or not (self.unverified or self.pending):
            return
        problem = await self._check_topics(probe, set(partitions), partitions)
        if problem is not None:
            self.fail(UnstoredOutputError(problem))

    @staticmethod
    async def _check_topics(probe: Probe, topics: set[str], partitions: Mapping[str, int]) -> str | None:
        if not topics:
            return None
        states = await probe.topics(sorted(topics))
        for name in sorted(topics):
            state = states[name]
            if not state.exists:
                return (
                    f"output topic {name} does not exist on the broker (error code {state.error_code}); "
                    "outputs acknowledged for it were not stored"
                )
            expected = partitions.get(name)
            if expected is not None and len(state.partitions) != expected:
                return (
                    f"output topic {name} has {len(state.partitions)} partitions, records were routed "
                    f"for {expected}: it was re-created"
                )
        return None


@dataclass
class BatchSink:
    """Sends :class:`OutRecord` lists with an aiokafka producer and proves them stored before commits."""

    producer: Any  # aiokafka.AIOKafkaProducer, started
    probe: Probe
    ledger: DeliveryLedger = field(default_factory=DeliveryLedger)
    topic_check_seconds: float = 0.5
    retry_seconds: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _partitions: dict[str, int] = field(default_factory=dict)
    _round_robin: int = 0
    _checked_at: dict[str, float] = field(default_factory=dict)

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Return once the broker confirmed ``topics`` exist as routed; raise (and latch) when one is gone."""
        if self.ledger.failure is not None:
            raise self.ledger.failure
        now = self.clock()
        due = [t for t in topics if now - self._checked_at.get(t, -1e18) >= self.topic_check_seconds]
        if not due:
            return
        warned = False
        while True:
            try:
                states = await self.probe.topics(due)
                break
            except Exception as exc:  # unreachable or timed out: produce nothing until it answers
                if not warned:
                    logger.warning("broker does not answer (%r); outputs wait until it does", exc)
                    warned = True
                await asyncio.sleep(self.retry_seconds)
        for topic in due:
            state = states[topic]
            known = self._partitions.get(topic)
            if not state.exists:
                problem = f"output topic {topic} is missing on the broker (error code {state.error_code})"
            elif known is not None and known != len(state.partitions):
                problem = f"output topic {topic} has {len(state.partitions)} partitions, was {known}"
            else:
                self._partitions[topic] = len(state.partitions)
                continue
            error = OutputTopicMissingError(f"{problem}: the broker lost data or the topic was re-created")
            self.ledger.fail(error)
            raise error
        checked = self.clock()
        for topic in due:
            self._checked_at[topic] = checked

    async def _n_partitions(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            parts = await self.producer.partitions_for(topic)
            n = len(parts)
            self._partitions[topic] = n
        return n

    async def send(self, topic: str, records: Sequence[OutRecord]) -> int:
        """Enqueue ``records``; returns the number of batches. Delivery is tracked, not awaited."""
        if not records:
            return 0
        if self.ledger.failure is not None:  # nothing more is committed: do not pile up more outputs
            raise self.ledger.failure
        n = await self._n_partitions(topic)
        self._round_robin += 1
        by_partition: dict[int, list[OutRecord]] = {}
        for record in records:
            if record.partition is None:
                partition = partition_for(record.key, n, self._round_robin)
            elif 0 <= record.partition < n:
                partition = record.partition
            else:
                raise ValueError(f"record for {topic}[{record.partition}]: the topic has {n} partitions")
            by_partition.setdefault(partition, []).append(record)
        batches = 0
        for partition, recs in by_partition.items():
            batch = self.producer.create_batch()
            for rec in recs:
                headers = list(rec.headers)
                if batch.append(key=rec.key, value=rec.value, timestamp=None, headers=headers) is None:
                    await self._send_batch(batch, topic, partition)
                    batches += 1
                    batch = self.producer.create_batch()
                    if batch.append(key=rec.key, value=rec.value, timestamp=None, headers=headers) is None:
                        raise ValueError(f"record of {len(rec.value or b'')} bytes does not fit a batch")
            await self._send_batch(batch, topic, partition)
            batches += 1
        return batches

    async def _send_batch(self, batch: Any, topic: str, partition: int) -> None:
        batch.close()
        fut: asyncio.Future[Any] = await self.producer.send_batch(batch, topic, partition=partition)
        self.ledger.track(fut, topic, partition)

    @property
    def pending(self) -> set[asyncio.Future[Any]]:
        return self.ledger.pending

    async def wait_delivered(self) -> None:
        """Wait until every enqueued batch is acknowledged (or failed)."""
        await self.ledger.wait_delivered()

    async def verify_stored(self) -> None:
        """Raise :class:`CommitRefusedError` unless everything sent so far is stored (before a commit)."""
        await self.ledger.verify(self.probe, self._partitions)

    async def check_topics(self) -> None:
        """Periodic: latch a failure when a topic with outputs not yet proven stored has disappeared."""
        await self.ledger.check_topics(self.probe, self._partitions)
