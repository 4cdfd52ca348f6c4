"""Hostile input: every record is scored or dead-lettered with a reason, and the worker never crashes.

Two levels: :class:`stream.scoring.BatchScorer` alone with a real loaded model
(a hypothesis property, no Kafka), then one real worker process fed one batch
of fixed hostile cases plus a derandomized hypothesis corpus, checked against
its ``/metrics`` counters and against what the output and dead-letter topics hold.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from artifact.runtime import ScoringModel, load_model
from stream.asyncio_util import run_sync
from stream.dlq import (
    DEAD_LETTER_REASONS,
    HEADER_ORIGINAL_VALUE_BYTES,
    HEADER_ORIGINAL_VALUE_SHA256,
    HEADER_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_TRUNCATED,
)
from stream.drift import SlidingWindowDrift
from stream.events import EventRejected, decode_event
from stream.metrics import ScorerMetrics
from stream.scoring import BatchScorer, InRecord
from stream.topics import DLQ_MAX_MESSAGE_BYTES, TopicSpec, create_topics
from tests.export_support import exported_version
from tests.hostile_corpus import (
    FIXED_CASES,
    MAX_EVENT_BYTES,
    ONE_MB,
    SCORED,
    Case,
    generated_values,
    record_keys,
    record_timestamps_ms,
    record_values,
)
from tests.stream_harness import Topics, WorkerProcess, consume_until, produce, template_registry

# --- BatchScorer alone ---------------------------------------------------------------------------


@cache
def _model() -> ScoringModel:
    return load_model(exported_version())


def _batch_scorer(registry: CollectorRegistry) -> BatchScorer:
    def drift_factory(model: ScoringModel) -> SlidingWindowDrift:
        return SlidingWindowDrift.from_mapping(model.manifest.drift, max_events=500, max_seconds=60)

    return BatchScorer(ScorerMetrics(registry), max_event_bytes=MAX_EVENT_BYTES, drift_factory=drift_factory)


_records = st.lists(st.tuples(record_keys, record_values, record_timestamps_ms), max_size=24)


@pytest.mark.slow
@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_records)
def test_batch_scorer_accounts_for_every_record(
    drawn: list[tuple[bytes | None, bytes | None, int | None]],
) -> None:
    records = [InRecord(k, v, "headlines", i % 4, i, ts) for i, (k, v, ts) in enumerate(drawn)]
    registry = CollectorRegistry()
    scorer = _batch_scorer(registry)
    result = scorer.process(_model(), records)
    scorer.publish_drift()

    assert len(result.scores) + len(result.dead_letters) == len(records)
    seen: Counter[int] = Counter()
    for out in result.dead_letters:
        headers = dict(out.headers)
        offset = int(headers[HEADER_SOURCE_OFFSET])
        seen[offset] += 1
        assert out.value == records[offset].value  # the original bytes, unchanged
        assert out.key == records[offset].key
        reason = headers[HEADER_REASON].decode()
        assert reason in DEAD_LETTER_REASONS
        assert reason == _expected(records[offset].value)
    for out in result.scores:
        score = json.loads(out.value or b"")
        offset = score["source_offset"]
        seen[offset] += 1
        assert _expected(records[offset].value) == SCORED
        assert out.key == score["id"].encode()
        assert 0.0 <= score["quality_prob"] <= 1.0
    assert seen == Counter(range(len(records)))  # each record exactly once

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    dead = sum(sample("headline_scorer_events_dead_lettered_total", reason=r) for r in DEAD_LETTER_REASONS)
    assert sample("headline_scorer_events_consumed_total") == len(records)
    assert sample("headline_scorer_events_scored_total") == len(result.scores)
    assert dead == len(result.dead_letters)


@pytest.mark.slow
@pytest.mark.parametrize("case", FIXED_CASES, ids=lambda c: c.name)
def test_batch_scorer_fixed_cases(case: Case) -> None:
    record = InRecord(case.record_key, case.value, "headlines", 0, 7, case.timestamp_ms)
    result = _batch_scorer(CollectorRegistry()).process(_model(), [record])
    if result.scores:
        assert len(result.scores) == 1 and not result.dead_letters
        outcome = SCORED
    else:
        assert len(result.dead_letters) == 1
        outcome = dict(result.dead_letters[0].headers)[HEADER_REASON].decode()
    assert outcome in case.allowed


@pytest.mark.slow
@pytest.mark.parametrize(
    ("published_at", "timestamp_ms", "expected"),
    [
        ("9999-12-31T23:59:59-14:00", None, "schema"),  # year 10000 in UTC
        ("0001-01-01T00:00:00+14:00", None, "schema"),  # year 0 in UTC
        ("0001-01-01T00:00:00-14:00", None, "0001-01-01T14:00:00Z"),
        (None, 2**62, "now"),  # a Kafka CreateTime no datetime can hold: the scoring time instead
        (None, -1, "now"),
        (None, 1_767_225_600_000, "2026-01-01T00:00:00Z"),
    ],
)
def test_event_times_outside_the_datetime_range(
    published_at: str | None, timestamp_ms: int | None, expected: str
) -> None:
    value = json.dumps({"id": "t", "title": "A headline", "published_at": published_at}).encode()
    result = _batch_scorer(CollectorRegistry()).process(
        _model(), [InRecord(b"t", value, "headlines", 0, 0, timestamp_ms)]
    )
    if expected == "schema":
        (dead,) = result.dead_letters
        headers = dict(dead.headers)
        assert headers[HEADER_REASON] == b"schema"
        assert b"published_at" in headers["dlq.error"] and b"1-9999" in headers["dlq.error"]
        return
    (score,) = [json.loads(s.value or b"") for s in result.scores]
    if expected == "now":
        assert score["event_time"] == score["scored_at"]
    else:
        assert score["event_time"] == expected


@pytest.mark.slow
def test_large_rejects_keep_key_bytes_and_reason_and_are_cut_only_beyond_the_cap() -> None:
    """Half the batch large: each large event is one ``too_large`` dead letter with its original key
    and bytes; only a value beyond the dead-letter cap is cut, with its size and sha256."""
    valid = [json.dumps({"id": f"v{i}", "title": f"Headline number {i}"}).encode() for i in range(8)]
    large = [b'{"id": "L", "title": "' + b"y" * (MAX_EVENT_BYTES + 1000 * i) + b'"}' for i in range(8)]
    huge = b"z" * (8 * ONE_MB)
    values = [v for pair in zip(valid, large, strict=True) for v in pair] + [huge]
    records = [InRecord(f"key-{i}".encode(), v, "headlines", 2, 40 + i, None) for i, v in enumerate(values)]
    registry = CollectorRegistry()
    scorer = BatchScorer(
        ScorerMetrics(registry), max_event_bytes=MAX_EVENT_BYTES, max_dead_letter_bytes=ONE_MB
    )
    result = scorer.process(_model(), records)

    assert sorted(json.loads(s.value or b"")["id"] for s in result.scores) == sorted(
        f"v{i}" for i in range(8)
    )
    assert len(result.dead_letters) == 9
    for dead in result.dead_letters:
        headers = dict(dead.headers)
        offset = int(headers[HEADER_SOURCE_OFFSET])
        original = records[offset - 40]
        assert headers[HEADER_REASON] == b"too_large"
        assert (
            headers["dlq.error"]
            == f"value is {len(original.value or b'')} bytes; the limit is 65536".encode()
        )
        assert headers["dlq.source_topic"] == b"headlines" and headers[HEADER_SOURCE_PARTITION] == b"2"
        assert dead.key == original.key
        if original.value is huge:
            assert headers[HEADER_TRUNCATED] == b"value"
            assert headers[HEADER_ORIGINAL_VALUE_BYTES] == str(len(huge)).encode()
            assert headers[HEADER_ORIGINAL_VALUE_SHA256] == hashlib.sha256(huge).hexdigest().encode()
            assert dead.value is not None and huge.startswith(dead.value) and len(dead.value) < ONE_MB
        else:
            assert dead.value == original.value and HEADER_TRUNCATED not in headers
    get = registry.get_sample_value
    assert get("headline_scorer_events_dead_lettered_total", {"reason": "too_large"}) == 9
    assert get("headline_scorer_events_scored_total") == 8


def _expected(value: bytes | None) -> str:
    try:
        decode_event(value, MAX_EVENT_BYTES)
    except EventRejected as exc:
        return exc.reason
    return SCORED


# --- one worker, one batch of hostile records ----------------------------------------------------


@pytest.fixture
def registry_root(tmp_path: Path) -> Path:
    """A copy of the end-to-end tests' registry (two versions of the sample model, the first current)."""
    return Path(shutil.copytree(template_registry()[0], tmp_path / "registry"))


N_GENERATED = 300


def _corpus() -> list[tuple[bytes, bytes | None, int | None, frozenset[str] | None]]:
    """(key, value, timestamp_ms, allowed outcomes or None for generated ones); keys are unique."""
    rows: list[tuple[bytes, bytes | None, int | None, frozenset[str] | None]] = [
        (case.record_key, case.value, case.timestamp_ms, case.allowed) for case in FIXED_CASES
    ]
    for i, value in enumerate(generated_values(N_GENERATED)):
        rows.append((f"hyp-{i}".encode(), value, None, None))
    return rows


@pytest.mark.kafka
@pytest.mark.slow
def test_worker_scores_or_dead_letters_every_hostile_record(
    kafka_bootstrap: str,
    registry_root: Path,
    read_topic: Callable[..., list[Any]],
    tmp_path: Path,
) -> None:
    corpus = _corpus()
    assert len({key for key, *_ in corpus}) == len(corpus)
    assert any(v is not None and len(v) > ONE_MB for _, v, _, _ in corpus)
    topics = Topics.unique()
    # Apache Kafka refuses records over 1 MB and CreateTime over an hour ahead by default (the embedded
    # broker takes anything): this input topic takes both, so every hostile record reaches the worker.
    accept_all = {
        "max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES),
        "message.timestamp.after.max.ms": str(2**63 - 1),
    }
    run_sync(
        create_topics({"bootstrap_servers": kafka_bootstrap}, [TopicSpec(topics.input, 4, config=accept_all)])
    )
    worker = WorkerProcess(
        kafka_bootstrap, registry_root, topics, f"t-{uuid.uuid4().hex[:6]}", tmp_path / "worker.log"
    ).start()
    try:
        worker.wait_ready()
        pid = worker.proc.pid if worker.proc else None
        asyncio.run(
            produce(
                kafka_bootstrap,
                topics.input,
                [(key, value) for key, value, _, _ in corpus],
                timestamps=[ts for _, _, ts, _ in corpus],
                max_request_size=4 * ONE_MB,  # the 1 MB title must reach the worker, which refuses it
            )
        )
        inputs = read_topic(topics.input, len(corpus), timeout=30)
        assert len(inputs) == len(corpus)
        by_source = {(r.partition, r.offset): r for r in inputs}
        out = asyncio.run(
            consume_until(kafka_bootstrap, [topics.output, topics.dlq], len(corpus), timeout=60)
        )

        outcome: dict[bytes, str] = {}
        sources: Counter[tuple[int, int]] = Counter()
        for topic, key, value, headers in out:
            if topic == topics.dlq:
                h = dict(headers)
                source = (int(h[HEADER_SOURCE_PARTITION]), int(h[HEADER_SOURCE_OFFSET]))
                original = by_source[source]
                assert (key, value) == (original.key, original.value), "dead letters keep key and bytes"
                verdict = h[HEADER_REASON].decode()
            else:
                score = json.loads(value or b"")
                source = (score["source_partition"], score["source_offset"])
                original = by_source[source]
                verdict = SCORED
            sources[source] += 1
            outcome[original.key] = verdict
        assert sources == Counter(by_source.keys()), (
            "every record left exactly once, as a score or a dead letter"
        )

        for key, value, _, allowed in corpus:
            if allowed is not None:
                assert outcome[key] in allowed, (key[:40], value[:80] if value else value, outcome[key])
            else:  # generated: the worker agrees with the library's verdict
                assert outcome[key] == _expected(value), (key, value)
        assert {outcome[key] for key, *_ in corpus} >= {SCORED, *set(DEAD_LETTER_REASONS) - {"scoring_error"}}

        time.sleep(1.5)  # one housekeeping tick
        metrics = worker.metrics()
        per_reason = Counter(outcome.values())
        assert metrics["headline_scorer_events_consumed_total{}"] == len(corpus)
        assert metrics["headline_scorer_events_scored_total{}"] == per_reason[SCORED]
        for reason in DEAD_LETTER_REASONS:
            assert (
                metrics[f"headline_scorer_events_dead_lettered_total{{reason={reason}}}"]
                == per_reason[reason]
            )
        dead = sum(
            metrics[f"headline_scorer_events_dead_lettered_total{{reason={r}}}"] for r in DEAD_LETTER_REASONS
        )
        assert (
            metrics["headline_scorer_events_consumed_total{}"]
            == metrics["headline_scorer_events_scored_total{}"] + dead
        )

        assert worker.proc is not None and worker.proc.poll() is None and worker.proc.pid == pid
        assert worker.get("/live")[0] == 200
        assert worker.get("/ready")[0] == 200
        assert metrics["headline_scorer_ready{}"] == 1
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
