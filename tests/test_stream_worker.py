"""The scorer worker end to end: real broker, real worker processes, real model registry."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from artifact.registry import CURRENT_FILE, Registry, atomic_write_text
from tests.stream_harness import Topics, WorkerProcess, consume_until, event, produce, template_registry

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TITLES = [
    "Ten things nobody tells you about saving for retirement",
    "City council approves new bike lanes downtown",
    "Why this tiny startup is taking on the cloud giants",
    "Scientists discover a new species of deep-sea fish",
    "The one trick that makes your laptop battery last longer",
]


@pytest.fixture
def registry(tmp_path: Path) -> tuple[Path, str, str]:
    root, first, second = template_registry()
    dest = tmp_path / "registry"
    shutil.copytree(root, dest)
    return dest, first, second


def _worker(
    bootstrap: str, registry: Path, topics: Topics, tmp_path: Path, app_id: str, n: int = 0
) -> WorkerProcess:
    return WorkerProcess(bootstrap, registry, topics, app_id, tmp_path / f"worker-{n}.log")


def _valid(n: int, prefix: str = "ev") -> list[tuple[bytes, bytes]]:
    return [(f"{prefix}-{i}".encode(), event(f"{prefix}-{i}", TITLES[i % len(TITLES)])) for i in range(n)]


INVALID: dict[str, tuple[bytes | None, bytes | None]] = {
    "not_utf8": (b"bad-1", b'{"id": "x", "title": "\xff\xfe"}'),
    "not_json": (b"bad-2", b'{"id": "x", "title": '),
    "schema": (b"bad-3", b'{"id": "x"}'),
    "too_large": (b"bad-4", json.dumps({"id": "big", "title": "a" * 100_000}).encode()),
    "null_value": (b"bad-5", None),
}


def _parse_scores(
    records: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]], topic: str
) -> list[dict[str, object]]:
    return [json.loads(v) for t, _, v, _ in records if t == topic and v is not None]


def test_valid_and_invalid_events_are_scored_or_dead_lettered(
    kafka_bootstrap: str, registry: tuple[Path, str, str], tmp_path: Path
) -> None:
    root, current, _ = registry
    topics = Topics.unique()
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    worker = _worker(kafka_bootstrap, root, topics, tmp_path, app_id).start()
    try:
        seconds_to_ready = worker.wait_ready()
        assert (tmp_path / f"faust-{app_id}").is_dir()  # SCORER_DATA_DIR, not the system temp dir
        assert not (Path(tempfile.gettempdir()) / f"headline-scorer-{app_id}").exists()
        n_valid = 300
        records = _valid(n_valid) + list(INVALID.values())
        asyncio.run(produce(kafka_bootstrap, topics.input, records))
        out = asyncio.run(consume_until(kafka_bootstrap, [topics.output, topics.dlq], n_valid + len(INVALID)))
        scores = _parse_scores(out, topics.output)
        assert sorted(s["id"] for s in scores) == sorted(f"ev-{i}" for i in range(n_valid))
        assert {s["model_version"] for s in scores} == {current}
        for s in scores:
            assert 0.0 <= float(s["quality_prob"]) <= 1.0  # type: ignore[arg-type]
            assert isinstance(s["quality_label"], bool)
        dead = [(k, v, dict(h)) for t, k, v, h in out if t == topics.dlq]
        reasons = {h["dlq.reason"].decode(): (k, v) for k, v, h in dead}
        assert len(dead) == len(INVALID)
        assert reasons == INVALID  # original key and bytes unchanged, right reason each
        for _, _, headers in dead:
            assert headers["dlq.source_topic"].decode() == topics.input
            assert int(headers["dlq.source_offset"]) >= 0
        time.sleep(1.5)  # one housekeeping tick
        metrics = worker.metrics()
        assert metrics["headline_scorer_events_consumed_total{}"] == n_valid + len(INVALID)
        assert metrics["headline_scorer_events_scored_total{}"] == n_valid
        for reason in INVALID:
            assert metrics[f"headline_scorer_events_dead_lettered_total{{reason={reason}}}"] == 1
        assert metrics["headline_scorer_events_dead_lettered_total{reason=scoring_error}"] == 0
        assert metrics[f"headline_scorer_model_info{{version={current}}}"] == 1
        assert metrics["headline_scorer_ready{}"] == 1
        assert worker.get("/live")[0] == 200
        assert seconds_to_ready < 60
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]


def test_sigkill_mid_stream_then_restart_scores_every_event(
    kafka_bootstrap: str, registry: tuple[Path, str, str], tmp_path: Path
) -> None:
    root, _, _ = registry
    topics = Topics.unique()
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    worker = _worker(kafka_bootstrap, root, topics, tmp_path, app_id).start()
    restarted: WorkerProcess | None = None
    n = 6000
    try:
        worker.wait_ready()
        asyncio.run(produce(kafka_bootstrap, topics.input, _valid(n)))
        # kill once some, but not all, scores are out
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if worker.metrics().get("headline_scorer_events_scored_total{}", 0) > 500:
                break
            time.sleep(0.05)
        worker.stop(signal.SIGKILL)
        restarted = _worker(kafka_bootstrap, root, topics, tmp_path, app_id, 1).start()
        restarted.wait_ready()
        out = asyncio.run(consume_until(kafka_bootstrap, [topics.output], n, timeout=90, distinct=True))
        ids = Counter(json.loads(v)["id"] for _, _, v, _ in out if v is not None)
        assert set(ids) == {f"ev-{i}" for i in range(n)}  # at least once
        assert sum(ids.values()) >= n
    finally:
        worker.stop()
        if restarted is not None:
            restarted.stop()


def test_hot_reload_switches_version_without_loss_and_rejects_a_broken_one(
    kafka_bootstrap: str, registry: tuple[Path, str, str], tmp_path: Path
) -> None:
    root, first, second = registry
    reg = Registry(root)
    topics = Topics.unique()
    worker = _worker(kafka_bootstrap, root, topics, tmp_path, f"t-{uuid.uuid4().hex[:6]}").start()
    try:
        worker.wait_ready()
        asyncio.run(produce(kafka_bootstrap, topics.input, _valid(200, "a")))
        reg.promote(second)
        deadline = time.monotonic() + 20
        while worker.metrics().get(f"headline_scorer_model_info{{version={second}}}") != 1:
            assert time.monotonic() < deadline, worker.log()[-3000:]
            time.sleep(0.2)
        asyncio.run(produce(kafka_bootstrap, topics.input, _valid(200, "b")))
        # a broken version: its ONNX file corrupted on disk and CURRENT pointed at it behind the
        # registry's back (promote() itself refuses a version that does not load)
        (reg.version_dir(first) / "model.onnx").write_bytes(b"not an onnx model")
        atomic_write_text(root / CURRENT_FILE, first + "\n")
        deadline = time.monotonic() + 20
        while worker.metrics().get("headline_scorer_model_reload_failures_total{reason=load_failed}", 0) < 1:
            assert time.monotonic() < deadline, worker.log()[-3000:]
            time.sleep(0.2)
        asyncio.run(produce(kafka_bootstrap, topics.input, _valid(200, "c")))
        out = asyncio.run(consume_until(kafka_bootstrap, [topics.output], 600, distinct=True))
        scores = _parse_scores(out, topics.output)
        by_prefix: dict[str, set[str]] = {}
        for s in scores:
            by_prefix.setdefault(str(s["id"]).split("-")[0], set()).add(str(s["model_version"]))
        assert {str(s["id"]) for s in scores} >= {f"{p}-{i}" for p in "abc" for i in range(200)}
        assert by_prefix["b"] == {second}
        assert by_prefix["c"] == {second}  # the broken version never served
        metrics = worker.metrics()
        assert metrics[f"headline_scorer_model_info{{version={second}}}"] == 1
        assert f"headline_scorer_model_info{{version={first}}}" not in metrics
        assert metrics["headline_scorer_model_reloads_total{}"] == 1
    finally:
        worker.stop()


def test_two_workers_share_partitions_and_one_takes_over(
    kafka_bootstrap: str, registry: tuple[Path, str, str], tmp_path: Path
) -> None:
    root, _, _ = registry
    topics = Topics.unique()
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    a = _worker(kafka_bootstrap, root, topics, tmp_path, app_id, 0).start()
    b = _worker(kafka_bootstrap, root, topics, tmp_path, app_id, 1).start()
    try:
        a.wait_ready()
        b.wait_ready()
        # both ready: each holds at least one partition of the input topic
        asyncio.run(produce(kafka_bootstrap, topics.input, _valid(400, "p")))
        first = asyncio.run(consume_until(kafka_bootstrap, [topics.output], 400, distinct=True))
        assert {json.loads(v)["id"] for _, _, v, _ in first if v} == {f"p-{i}" for i in range(400)}
        scored_a = a.metrics()["headline_scorer_events_scored_total{}"]
        scored_b = b.metrics()["headline_scorer_events_scored_total{}"]
        assert scored_a > 0 and scored_b > 0  # both held partitions
        assert a.stop() == 0
        asyncio.run(produce(kafka_bootstrap, topics.input, _valid(400, "q")))
        out = asyncio.run(consume_until(kafka_bootstrap, [topics.output], 800, timeout=90, distinct=True))
        assert {json.loads(v)["id"] for _, _, v, _ in out if v} >= {f"q-{i}" for i in range(400)}
    finally:
        a.stop()
        b.stop()


def test_sigterm_commits_so_a_restarted_worker_does_not_rescore(
    kafka_bootstrap: str, registry: tuple[Path, str, str], tmp_path: Path
) -> None:
    root, _, _ = registry
    topics = Topics.unique()
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    worker = _worker(kafka_bootstrap, root, topics, tmp_path, app_id, 0).start()
    restarted: WorkerProcess | None = None
    try:
        worker.wait_ready()
        asyncio.run(produce(kafka_bootstrap, topics.input, _valid(500, "s")))
        asyncio.run(consume_until(kafka_bootstrap, [topics.output], 500, distinct=True))
        assert worker.stop(signal.SIGTERM) == 0  # graceful: finish, commit, exit 0
        assert "Traceback" not in worker.log()
        restarted = _worker(kafka_bootstrap, root, topics, tmp_path, app_id, 1).start()
        restarted.wait_ready()
        asyncio.run(produce(kafka_bootstrap, topics.input, _valid(100, "t")))
        out = asyncio.run(consume_until(kafka_bootstrap, [topics.output], 600, distinct=True))
        ids = Counter(json.loads(v)["id"] for _, _, v, _ in out if v is not None)
        assert len(ids) == 600
        assert sum(ids.values()) == 600  # nothing scored twice: the offsets were committed at stop
    finally:
        worker.stop()
        if restarted is not None:
            restarted.stop()


def test_sigterm_while_waiting_for_a_first_model_stops_at_once_and_loses_nothing(
    kafka_bootstrap: str, registry: tuple[Path, str, str], tmp_path: Path
) -> None:
    root, _, _ = registry
    empty = tmp_path / "empty-registry"
    empty.mkdir()
    topics = Topics.unique()
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    waiting = _worker(kafka_bootstrap, empty, topics, tmp_path, app_id, 0).start()
    restarted: WorkerProcess | None = None
    try:
        asyncio.run(produce(kafka_bootstrap, topics.input, _valid(50, "w")))
        deadline = time.monotonic() + 60
        while "records wait for a first model" not in waiting.log():
            assert time.monotonic() < deadline, waiting.log()[-3000:]
            assert waiting.proc is not None and waiting.proc.poll() is None, waiting.log()[-3000:]
            time.sleep(0.2)
        started = time.monotonic()
        assert waiting.stop(signal.SIGTERM, timeout=30) == 0
        assert time.monotonic() - started < 20  # it does not wait for a model that never comes
        assert "Traceback" not in waiting.log()
        # the batch was dropped unacked: a worker with a model scores all 50 events
        restarted = _worker(kafka_bootstrap, root, topics, tmp_path, app_id, 1).start()
        restarted.wait_ready()
        out = asyncio.run(consume_until(kafka_bootstrap, [topics.output], 50, distinct=True))
        assert {json.loads(v)["id"] for _, _, v, _ in out if v} == {f"w-{i}" for i in range(50)}
    finally:
        waiting.stop()
        if restarted is not None:
            restarted.stop()
