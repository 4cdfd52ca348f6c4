"""The join on a real broker: outcomes meet scores in either order, restart and rebalance keep it."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.stream_harness import (
    Record,
    Topics,
    WorkerProcess,
    consume_until,
    event,
    produce,
    template_registry,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TITLES = [
    "Ten things nobody tells you about saving for retirement",
    "City council approves new bike lanes downtown",
    "Why this tiny startup is taking on the cloud giants",
    "Scientists discover a new species of deep-sea fish",
]


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    root, _, _ = template_registry()
    dest = tmp_path / "registry"
    shutil.copytree(root, dest)
    return dest


class JoinTopics:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.base = Topics.unique()
        self.outcomes = f"outcomes-{tag}"
        self.labelled = f"labelled-{tag}"
        self.shadow = f"shadow-{tag}"
        self.app_id = f"join-{tag}"

    def worker(self, bootstrap: str, registry: Path, workdir: Path) -> WorkerProcess:
        """A worker whose data dir (``workdir/faust-<app id>``) is its own: a fresh local store."""
        workdir.mkdir(parents=True, exist_ok=True)
        env = {
            "OUTCOMES_TOPIC": self.outcomes,
            "LABELLED_TOPIC": self.labelled,
            "SHADOW_OUTPUT_TOPIC": self.shadow,
            "JOIN_ENABLED": "true",
        }
        return WorkerProcess(
            bootstrap, registry, self.base, self.app_id, workdir / "worker.log", extra_env=env
        )


def events(ids: list[str]) -> list[tuple[bytes, bytes]]:
    return [(i.encode(), event(i, TITLES[n % len(TITLES)])) for n, i in enumerate(ids)]


def outcomes(ids: list[str], impressions: int = 500, clicks: int = 20) -> list[tuple[bytes, bytes]]:
    return [
        (i.encode(), json.dumps({"id": i, "impressions": impressions, "clicks": clicks}).encode())
        for i in ids
    ]


def metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    key = f"{name}{{{','.join(f'{k}={v}' for k, v in sorted(labels.items()))}}}"
    return worker.metrics().get(key, 0.0)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0, *workers: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    logs = "\n".join(w.log()[-3000:] for w in workers)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def labelled_rows(records: list[Record], topic: str) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for t, _, value, _ in records:
        if t == topic and value is not None:
            row = json.loads(value)
            latest[row["id"]] = row
    return latest


async def committed_records(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offsets of ``topic`` summed (read without joining the group)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        offsets = [await consumer.committed(TopicPartition(topic, p)) for p in range(4)]
    finally:
        await consumer.stop()
    return sum(offset for offset in offsets if offset is not None and offset > 0)


def wait_committed(worker: WorkerProcess, topic: str, records: int) -> None:
    """Until the worker's group committed ``records`` records of ``topic``."""
    wait_for(
        lambda: asyncio.run(committed_records(worker.bootstrap, worker.app_id, topic)) >= records,
        f"{records} records of {topic} committed",
        30.0,
        worker,
    )


def test_outcomes_before_and_after_their_scores_match_and_bad_ones_are_dead_lettered(
    kafka_bootstrap: str, registry: Path, tmp_path: Path
) -> None:
    topics = JoinTopics()
    worker = topics.worker(kafka_bootstrap, registry, tmp_path / "w").start()
    try:
        worker.wait_ready()
        early = [f"early-{i}" for i in range(6)]
        late = [f"late-{i}" for i in range(6)]
        asyncio.run(produce(kafka_bootstrap, topics.outcomes, outcomes(early, 300, 12)))
        wait_for(
            lambda: metric(worker, "headline_scorer_join_outcomes_total", result="pending") == len(early),
            "pending outcomes",
            60.0,
            worker,
        )
        asyncio.run(produce(kafka_bootstrap, topics.base.input, events(early + late)))
        asyncio.run(consume_until(kafka_bootstrap, [topics.base.output], len(early + late)))
        bad = [
            (b"bad-json", b"{nope"),
            (b"late-0", json.dumps({"id": "late-0", "impressions": 1, "clicks": 2}).encode()),
        ]
        decreased = outcomes(["late-1"], 100, 1)
        asyncio.run(produce(kafka_bootstrap, topics.outcomes, [*outcomes(late, 400, 30), *bad, *decreased]))
        out = asyncio.run(consume_until(kafka_bootstrap, [topics.labelled], len(early + late), distinct=True))
        rows = labelled_rows(out, topics.labelled)
        assert sorted(rows) == sorted(early + late)
        assert {rows[i]["impressions"] for i in early} == {300}
        assert {(rows[i]["impressions"], rows[i]["clicks"]) for i in late} == {(400, 30)}
        assert all(rows[i]["title"] in TITLES and rows[i]["model_version"] for i in rows)
        m = worker.metrics()
        assert m["headline_scorer_join_outcomes_total{result=pending}"] == len(early)
        assert m["headline_scorer_join_outcomes_total{result=matched}"] == len(late)
        assert m["headline_scorer_join_scores_matched_total{}"] == len(early)
        assert m["headline_scorer_outcomes_consumed_total{}"] == len(early) + len(late) + 3
        dlq = asyncio.run(consume_until(kafka_bootstrap, [topics.base.dlq], 3))
        reasons = sorted(dict(h)["dlq.reason"].decode() for _, _, _, h in dlq)
        assert reasons == ["counts_decreased", "not_json", "schema"]
        assert {dict(h)["dlq.source_topic"].decode() for _, _, _, h in dlq} == {topics.outcomes}
        assert m["headline_scorer_outcomes_dead_lettered_total{reason=counts_decreased}"] == 1
        assert m["headline_scorer_outcomes_dead_lettered_total{reason=not_json}"] == 1
        assert m["headline_scorer_join_entries{}"] == len(early + late)
        # live quality is fed by the join (every joined outcome has >= QUALITY_MIN_IMPRESSIONS = 100)
        version = rows[late[0]]["model_version"]
        labels = {"model_version": version, "role": "current"}
        wait_for(
            lambda: metric(worker, "headline_scorer_live_labelled_events", **labels) == len(early + late),
            "live quality over the joined rows",
            30.0,
            worker,
        )
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]


def test_a_restarted_worker_restores_the_join_from_the_changelog(
    kafka_bootstrap: str, registry: Path, tmp_path: Path
) -> None:
    topics = JoinTopics()
    ids = [f"r-{i}" for i in range(12)]
    first = topics.worker(kafka_bootstrap, registry, tmp_path / "first").start()
    try:
        first.wait_ready()
        asyncio.run(produce(kafka_bootstrap, topics.base.input, events(ids)))
        asyncio.run(consume_until(kafka_bootstrap, [topics.base.output], len(ids)))
        wait_committed(first, topics.base.input, len(ids))
    finally:
        assert first.stop() == 0, first.log()[-3000:]
    second = topics.worker(kafka_bootstrap, registry, tmp_path / "second").start()  # a fresh data dir
    try:
        second.wait_ready()
        wait_for(
            lambda: metric(second, "headline_scorer_join_entries") == len(ids),
            "the restored table",
            60.0,
            second,
        )
        asyncio.run(produce(kafka_bootstrap, topics.outcomes, outcomes(ids)))
        out = asyncio.run(consume_until(kafka_bootstrap, [topics.labelled], len(ids), distinct=True))
        assert sorted(labelled_rows(out, topics.labelled)) == sorted(ids)
        m = second.metrics()
        assert m["headline_scorer_join_outcomes_total{result=matched}"] == len(ids)
        assert m["headline_scorer_join_outcomes_total{result=pending}"] == 0
        # the scores came from the changelog: the second worker did not score the events again
        assert m["headline_scorer_events_consumed_total{}"] == 0
    finally:
        assert second.stop() == 0, second.log()[-3000:]


def test_a_rebalance_moves_the_join_with_its_partitions(
    kafka_bootstrap: str, registry: Path, tmp_path: Path
) -> None:
    topics = JoinTopics()
    ids = [f"b-{i}" for i in range(40)]
    first = topics.worker(kafka_bootstrap, registry, tmp_path / "a").start()
    second: WorkerProcess | None = None
    try:
        first.wait_ready()
        asyncio.run(produce(kafka_bootstrap, topics.base.input, events(ids)))
        asyncio.run(consume_until(kafka_bootstrap, [topics.base.output], len(ids)))
        wait_committed(first, topics.base.input, len(ids))
        assert metric(first, "headline_scorer_join_entries") == len(ids)
        second = topics.worker(kafka_bootstrap, registry, tmp_path / "b").start()
        second.wait_ready(timeout=90)
        workers = (first, second)

        def split() -> bool:
            a, b = (metric(w, "headline_scorer_join_entries") for w in workers)
            return 0 < b < len(ids) and a + b == len(ids)

        wait_for(split, "the table split between the two workers", 90.0, *workers)
        asyncio.run(produce(kafka_bootstrap, topics.outcomes, outcomes(ids)))
        out = asyncio.run(consume_until(kafka_bootstrap, [topics.labelled], len(ids), distinct=True))
        assert sorted(labelled_rows(out, topics.labelled)) == sorted(ids)
        matched = [metric(w, "headline_scorer_join_outcomes_total", result="matched") for w in workers]
        pending = [metric(w, "headline_scorer_join_outcomes_total", result="pending") for w in workers]
        assert sum(matched) == len(ids) and matched[1] > 0, matched
        assert pending == [0, 0]
        assert metric(second, "headline_scorer_events_consumed_total") == 0  # restored, not re-scored
    finally:
        if second is not None:
            assert second.stop() == 0, second.log()[-3000:]
        assert first.stop() == 0, first.log()[-3000:]
