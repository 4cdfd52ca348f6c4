"""The consumer-lag gauge checked against Apache Kafka's own offsets (``make test-kafka`` only).

``headline_scorer_consumer_lag_messages`` must equal, per input partition, the
partition's end offset minus the group's committed offset as the admin and
consumer APIs report them, once the worker is idle: after it caught up (zero
everywhere) and while a known backlog waits for it. The embedded broker's high
watermark counts record batches (10 records in one batch: high watermark 1), so
its end offsets are no reference: the test runs against Apache Kafka only.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from artifact.registry import CURRENT_FILE, atomic_write_text
from tests.conftest import apache_mode
from tests.stream_harness import Topics, WorkerProcess, event, produce, template_registry

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.skipif(not apache_mode(), reason="needs Apache Kafka's offsets (KAFKA_BROKER=apache)"),
]

PARTITIONS = 4


def _lag(worker: WorkerProcess, topic: str) -> dict[int, float]:
    """The worker's lag gauge per partition of ``topic`` (empty while its web server is not up)."""
    try:
        metrics = worker.metrics()
    except OSError:
        return {}
    out = {}
    for name, value in metrics.items():
        found = re.fullmatch(r"headline_scorer_consumer_lag_messages\{partition=(\d+),topic=(.+)\}", name)
        if found is not None and found.group(2) == topic:
            out[int(found.group(1))] = value
    return out


async def _kafka_lag(bootstrap: str, group: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """``(end offsets, committed offsets)`` per partition, from Apache Kafka's consumer and admin APIs."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await consumer.stop()
        await admin.close()
    return (
        {tp.partition: int(offset) for tp, offset in ends.items()},
        {tp.partition: max(0, int(meta.offset)) for tp, meta in committed.items()},
    )


def _until(
    condition: Callable[[], Any], timeout: float, what: str, worker: WorkerProcess, seen: list[Any]
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {seen}\n{worker.log()[-3000:]}"
        time.sleep(0.25)


def _events(prefix: str, n: int) -> list[tuple[bytes, bytes]]:
    return [(f"{prefix}-{i}".encode(), event(f"{prefix}-{i}", f"Headline {prefix} {i}")) for i in range(n)]


def test_lag_gauge_matches_end_minus_committed_offsets(kafka_bootstrap: str, tmp_path: Path) -> None:
    registry = Path(shutil.copytree(template_registry()[0], tmp_path / "registry"))
    current = (registry / CURRENT_FILE).read_text(encoding="utf-8")
    topics = Topics.unique()
    group = f"lag-{uuid.uuid4().hex[:6]}"

    def worker(n: int) -> WorkerProcess:
        return WorkerProcess(kafka_bootstrap, registry, topics, group, tmp_path / f"worker-{n}.log").start()

    seen: list[Any] = []

    def settled(w: WorkerProcess) -> tuple[dict[int, int], dict[int, int], dict[int, float]] | None:
        """Kafka's view and the gauge, once they agree (the gauge is refreshed every second)."""
        ends, committed = asyncio.run(_kafka_lag(kafka_bootstrap, group, topics.input))
        gauge = _lag(w, topics.input)
        expected = {p: ends[p] - committed.get(p, 0) for p in range(PARTITIONS)}
        seen[:] = [f"gauge {gauge}, end - committed {expected}"]
        return (ends, committed, gauge) if gauge == expected else None

    # 1. a worker that caught up: every partition at zero, and nothing left uncommitted
    first = worker(0)
    try:
        first.wait_ready()
        asyncio.run(produce(kafka_bootstrap, topics.input, _events("a", 400)))
        ends, committed, gauge = _until(
            lambda: (s := settled(first)) and sum(s[1].values()) == 400 and s, 60, "caught up", first, seen
        )
        assert sum(ends.values()) == 400 and all(ends.values()), "the keys spread over every partition"
        assert committed == ends and gauge == dict.fromkeys(range(PARTITIONS), 0.0)
    finally:
        assert first.stop() == 0, first.log()[-3000:]  # SIGTERM commits

    # 2. a known backlog: 600 more events while the next worker has no model to score them with
    (registry / CURRENT_FILE).unlink()
    asyncio.run(produce(kafka_bootstrap, topics.input, _events("b", 600)))
    second = worker(1)
    try:
        ends, committed, gauge = _until(
            lambda: len(_lag(second, topics.input)) == PARTITIONS and settled(second),
            90,
            "the backlog in the lag gauge",
            second,
            seen,
        )
        backlog = {p: ends[p] - committed[p] for p in range(PARTITIONS)}
        assert sum(committed.values()) == 400 and sum(backlog.values()) == 600, (ends, committed)
        assert gauge == {p: float(n) for p, n in backlog.items()}
        assert second.get("/ready")[0] == 503  # no model yet

        # 3. the model arrives: the backlog is scored, committed, and the gauge returns to zero
        atomic_write_text(registry / CURRENT_FILE, current)
        ends, committed, gauge = _until(
            lambda: (s := settled(second)) and s[1] == s[0] and s, 90, "the backlog scored", second, seen
        )
        assert sum(ends.values()) == 1000 and gauge == dict.fromkeys(range(PARTITIONS), 0.0)
    finally:
        atomic_write_text(registry / CURRENT_FILE, current)  # a worker waiting for a model ignores SIGTERM
        assert second.stop() == 0, second.log()[-3000:]
