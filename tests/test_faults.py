"""Faults: a worker killed mid-replay, a broker restarted under load, bad model versions, a lost worker.

Real worker processes on a real broker; every check is made on what the
output topic holds (read by an independent consumer) and on the workers' own
``/metrics`` and ``/ready``. The broker tests use only the ``embedded_broker``
fixture's interface (``bootstrap``, ``start``, ``stop``, ``restart`` with empty
storage), so they run on any broker behind it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from artifact.manifest import MANIFEST_FILE, MODEL_FILE
from artifact.registry import CURRENT_FILE, Registry, atomic_write_text
from stream.asyncio_util import run_sync
from stream.settings import StreamSettings
from stream.topics import TopicSpec, create_topics, scorer_topics
from tests.export_support import clock_from, sample_checkpoint, sample_data
from tests.stream_harness import (
    BackgroundReplay,
    Topics,
    WorkerProcess,
    consume_until,
    event,
    produce,
    template_registry,
)

pytestmark = [pytest.mark.faults, pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "rules"


@pytest.fixture
def registry_root(tmp_path: Path) -> Path:
    """Two versions of the sample model, the first current (copied per test)."""
    return Path(shutil.copytree(template_registry()[0], tmp_path / "registry"))


def _worker(
    bootstrap: str,
    registry: Path,
    topics: Topics,
    tmp_path: Path,
    app_id: str,
    n: int = 0,
    env: dict[str, str] | None = None,
) -> WorkerProcess:
    log = tmp_path / f"worker-{n}.log"
    return WorkerProcess(bootstrap, registry, topics, app_id, log, extra_env=dict(env or {}))


def _valid(n: int, prefix: str) -> list[tuple[bytes, bytes]]:
    return [
        (f"{prefix}-{i}".encode(), event(f"{prefix}-{i}", f"Headline {prefix} number {i}")) for i in range(n)
    ]


def _scored_ids(bootstrap: str, topic: str, expected: int, timeout: float = 90.0) -> Counter[str]:
    out = asyncio.run(consume_until(bootstrap, [topic], expected, timeout=timeout, distinct=True))
    return Counter(json.loads(v)["id"] for _, _, v, _ in out if v is not None)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{worker.log()[-3000:]}"
        time.sleep(0.1)


def _metric(worker: WorkerProcess, name: str) -> float:
    return worker.metrics().get(name, 0.0)


def _summed(metrics: dict[str, float], name: str) -> float:
    """The sum of every series of ``name`` (all label values)."""
    return sum(v for k, v in metrics.items() if k.startswith(name + "{"))


# --- SIGKILL mid-replay ---------------------------------------------------------------------------


def test_sigkill_during_a_20000_event_replay_then_restart_scores_every_event(
    kafka_bootstrap: str, registry_root: Path, tmp_path: Path
) -> None:
    n = 20_000
    topics = Topics.unique()
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    fast = {"BROKER_SESSION_TIMEOUT_SECONDS": "6"}  # the killed member leaves the group sooner
    first = _worker(kafka_bootstrap, registry_root, topics, tmp_path, app_id, env=fast).start()
    second: WorkerProcess | None = None
    try:
        first.wait_ready()
        replay = BackgroundReplay(kafka_bootstrap, topics.input, limit=n, rate=2500).start()
        _wait_for(
            lambda: _metric(first, "headline_scorer_events_scored_total{}") >= 2000, 30, "scores", first
        )
        assert replay.running, "the kill must land while the replay is still sending"
        scored_before_kill = _metric(first, "headline_scorer_events_scored_total{}")
        first.stop(signal.SIGKILL)
        assert first.proc is not None and first.proc.returncode == -signal.SIGKILL
        second = _worker(kafka_bootstrap, registry_root, topics, tmp_path, app_id, 1, env=fast).start()
        report = replay.join()
        assert report.failed == 0 and report.valid == n
        ids = _scored_ids(kafka_bootstrap, topics.output, n, timeout=120)
        assert set(ids) == set(report.valid_ids)  # every event scored at least once
        duplicates = sum(ids.values()) - n
        assert 0 <= duplicates < n
        assert 0 < scored_before_kill < n
        assert _metric(second, "headline_scorer_events_scored_total{}") >= n - scored_before_kill
        print(f"killed after {scored_before_kill:.0f} scores; {duplicates} events scored twice")
    finally:
        first.stop()
        if second is not None:
            assert second.stop() == 0, second.log()[-3000:]


# --- the broker goes away and comes back ---------------------------------------------------------


async def _committed_total(bootstrap: str, group: str, topic: str, partitions: int = 4) -> int:
    """Sum of the group's committed offsets on ``topic`` (read without joining the group)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        offsets = [await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)]
    finally:
        await consumer.stop()
    return sum(offset for offset in offsets if offset is not None and offset > 0)


async def _topic_names(bootstrap: str) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def _wait_exit(worker: WorkerProcess, timeout: float, what: str) -> int:
    assert worker.proc is not None
    try:
        return worker.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"timed out waiting for {what}:\n{worker.log()[-3000:]}") from None


def _lose_the_broker_and_send(embedded_broker: Any, topics: Topics, n: int) -> None:
    """The broker comes back empty; the input topic is created again and ``n`` events arrive."""
    bootstrap = embedded_broker.bootstrap
    embedded_broker.restart()  # empty storage: topics, records, offsets and the group are gone
    run_sync(create_topics({"bootstrap_servers": bootstrap}, [TopicSpec(topics.input, 4)]))
    assert not {topics.output, topics.dlq} & run_sync(_topic_names(bootstrap))
    asyncio.run(produce(bootstrap, topics.input, _valid(n, "after")))


def test_a_broker_restarted_empty_loses_no_outputs(
    embedded_broker: Any, registry_root: Path, tmp_path: Path
) -> None:
    """Issue 13: the output topics vanish with the broker's storage; 4,000 events arrive afterwards.

    The broker may acknowledge produce requests to a missing topic (the embedded broker does,
    storing nothing), so the worker checks: the output topics before producing, and that every
    output is stored before each commit. It commits nothing for the lost topics and stops with a
    non-zero exit; its restart (what a restart policy does) re-creates the topics and scores all
    4,000, counted by an independent consumer on the broker.
    """
    bootstrap = embedded_broker.bootstrap
    topics = Topics.unique()
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    first = _worker(bootstrap, registry_root, topics, tmp_path, app_id).start()
    second: WorkerProcess | None = None
    try:
        first.wait_ready()  # its producer's metadata lists the output topics (read at start-up)
        n = 4000
        _lose_the_broker_and_send(embedded_broker, topics, n)

        code = _wait_exit(first, 120, "the worker to stop on the missing output topics")
        assert code != 0 and "missing on the broker" in first.log(), first.log()[-3000:]
        assert run_sync(_committed_total(bootstrap, app_id, topics.input)) == 0  # nothing committed

        second = _worker(bootstrap, registry_root, topics, tmp_path, app_id, 1).start()
        ids = _scored_ids(bootstrap, topics.output, n, timeout=180)
        assert set(ids) == {f"after-{i}" for i in range(n)}, second.log()[-3000:]
        assert {topics.output, topics.dlq} <= run_sync(_topic_names(bootstrap))
        _wait_for(
            lambda: run_sync(_committed_total(bootstrap, app_id, topics.input)) == n,
            60,
            "the commits",
            second,
        )
        assert second.get("/ready")[0] == 200
    finally:
        first.stop()
        if second is not None:
            assert second.stop() == 0, second.log()[-3000:]


def test_a_without_create_topics_the_restart_waits_for_the_operator(
    embedded_broker: Any, registry_root: Path, tmp_path: Path
) -> None:
    bootstrap = embedded_broker.bootstrap
    topics = Topics.unique()
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    env = {"CREATE_TOPICS": "false"}
    settings = StreamSettings.from_env(
        input_topic=topics.input, output_topic=topics.output, dlq_topic=topics.dlq, scorer_app_id=app_id
    )
    run_sync(create_topics({"bootstrap_servers": bootstrap}, scorer_topics(settings)))  # all the worker needs
    first = _worker(bootstrap, registry_root, topics, tmp_path, app_id, env=env).start()
    second: WorkerProcess | None = None
    try:
        first.wait_ready()
        _lose_the_broker_and_send(embedded_broker, topics, 500)
        assert _wait_exit(first, 120, "the worker to stop") != 0

        refused = _worker(bootstrap, registry_root, topics, tmp_path, app_id, 1, env=env).start()
        assert _wait_exit(refused, 60, "the restart to refuse") != 0
        assert "CREATE_TOPICS is false" in refused.log()
        assert not {topics.output, topics.dlq} & run_sync(_topic_names(bootstrap))  # it created none
        assert run_sync(_committed_total(bootstrap, app_id, topics.input)) == 0

        run_sync(  # the operator creates them
            create_topics(
                {"bootstrap_servers": bootstrap},
                [spec for spec in scorer_topics(settings) if spec.name != topics.input],
            )
        )
        second = _worker(bootstrap, registry_root, topics, tmp_path, app_id, 2, env=env).start()
        ids = _scored_ids(bootstrap, topics.output, 500, timeout=120)
        assert set(ids) == {f"after-{i}" for i in range(500)}, second.log()[-3000:]
    finally:
        first.stop()
        if second is not None:
            assert second.stop() == 0, second.log()[-3000:]


def test_b_ready_turns_503_while_the_broker_is_down_and_200_when_it_is_back(
    embedded_broker: Any, registry_root: Path, tmp_path: Path
) -> None:
    bootstrap = embedded_broker.bootstrap
    topics = Topics.unique()
    env = {"READY_TIMEOUT_SECONDS": "5"}
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    worker = _worker(bootstrap, registry_root, topics, tmp_path, app_id, env=env).start()
    try:
        worker.wait_ready()
        pid = worker.proc.pid if worker.proc else None
        assert worker.get("/ready")[0] == 200

        embedded_broker.stop()
        down_at = time.monotonic()
        _wait_for(lambda: worker.get("/ready")[0] == 503, 15, "/ready to turn 503", worker)
        status, body = worker.get("/ready")
        assert status == 503 and b"broker" in body, body
        _wait_for(lambda: _metric(worker, "headline_scorer_ready{}") == 0, 5, "the ready gauge at 0", worker)
        assert time.monotonic() - down_at < 20, "the outage must outlast the detection"
        while time.monotonic() - down_at < 20:  # a 20 s outage: not ready all along
            assert worker.get("/ready")[0] == 503
            time.sleep(0.5)

        embedded_broker.start()
        settings = StreamSettings.from_env(
            input_topic=topics.input, output_topic=topics.output, dlq_topic=topics.dlq, scorer_app_id=app_id
        )
        run_sync(
            create_topics({"bootstrap_servers": bootstrap}, scorer_topics(settings))
        )  # every topic it uses
        _wait_for(lambda: worker.get("/ready")[0] == 200, 60, "/ready back to 200", worker)
        assert worker.get("/live")[0] == 200
        asyncio.run(produce(bootstrap, topics.input, _valid(100, "back")))
        ids = _scored_ids(bootstrap, topics.output, 100, timeout=60)
        assert {f"back-{i}" for i in range(100)} <= set(ids)
        assert worker.proc is not None and worker.proc.poll() is None and worker.proc.pid == pid
        _wait_for(lambda: _metric(worker, "headline_scorer_ready{}") == 1, 10, "the ready gauge at 1", worker)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]


def test_broker_restart_under_load_every_later_event_is_scored(
    embedded_broker: Any, registry_root: Path, tmp_path: Path
) -> None:
    """A broker that loses its storage under load: the worker either resumes in place (nothing it
    had not committed was lost) or stops non-zero without committing and is restarted; every event
    sent after the restart is scored either way."""
    bootstrap = embedded_broker.bootstrap
    topics = Topics.unique()
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    worker = _worker(bootstrap, registry_root, topics, tmp_path, app_id).start()
    restarted: WorkerProcess | None = None
    try:
        worker.wait_ready()
        replay = BackgroundReplay(bootstrap, topics.input, limit=3000, rate=1000).start()
        _wait_for(
            lambda: _metric(worker, "headline_scorer_events_scored_total{}") >= 500, 30, "scores", worker
        )
        assert replay.running
        embedded_broker.restart()  # memory storage: topics, offsets and the group are gone
        run_sync(
            create_topics(
                {"bootstrap_servers": bootstrap},
                [TopicSpec(t, 4) for t in (topics.input, topics.output, topics.dlq)],
            )
        )
        replay.join()  # sends during the outage may fail; that is the producer's business

        asyncio.run(produce(bootstrap, topics.input, _valid(500, "after")))
        deadline = time.monotonic() + 60
        while worker.proc is not None and worker.proc.poll() is None and time.monotonic() < deadline:
            if {f"after-{i}" for i in range(500)} <= set(_scored_ids(bootstrap, topics.output, 500, 2)):
                break
        if worker.proc is not None and worker.proc.poll() is not None:
            assert worker.proc.returncode != 0 and "not stored" in worker.log(), worker.log()[-3000:]
            restarted = _worker(bootstrap, registry_root, topics, tmp_path, app_id, 1).start()
        # the output topic may already hold 500 scores of the replay: read until the "after" ids are in
        after = {f"after-{i}" for i in range(500)}
        deadline = time.monotonic() + 120
        ids = _scored_ids(bootstrap, topics.output, 500, timeout=30)
        while not after <= set(ids) and time.monotonic() < deadline:
            ids = _scored_ids(bootstrap, topics.output, len(ids) + 1, timeout=10)
        assert after <= set(ids), (worker.log() if restarted is None else restarted.log())[-3000:]
        live = restarted or worker
        _wait_for(lambda: live.get("/ready")[0] == 200, 30, "ready again", live)
        assert live.get("/live")[0] == 200
    finally:
        worker.stop()
        if restarted is not None:
            assert restarted.stop() == 0, restarted.log()[-3000:]


# --- bad model versions and a failed publish while a worker serves --------------------------------


def _alert_metric() -> str:
    """The metric the model-reload alert fires on (from the shipped Prometheus rules)."""
    for path in sorted(RULES.glob("*.y*ml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if rule.get("alert", "").endswith("ModelReloadFailed"):
                    names = [
                        w
                        for w in rule["expr"].replace("(", " ").replace("{", " ").split()
                        if w.startswith("headline_scorer_")
                    ]
                    assert len(names) == 1, rule["expr"]
                    return str(names[0])
    raise AssertionError(f"no ModelReloadFailed alert in {RULES}")


def _serving(worker: WorkerProcess) -> set[str]:
    return {k for k, v in worker.metrics().items() if k.startswith("headline_scorer_model_info") and v == 1}


def _score_batch(bootstrap: str, topics: Topics, prefix: str, n: int = 50) -> set[str]:
    """Send ``n`` events (batches "a", "b", ... in turn); the model versions their scores carry."""
    asyncio.run(produce(bootstrap, topics.input, _valid(n, prefix)))
    total = n * (ord(prefix) - ord("a") + 1)  # batches "a", "b", ... so far
    out = asyncio.run(consume_until(bootstrap, [topics.output], total, timeout=30, distinct=True))
    scores = [json.loads(v) for _, _, v, _ in out if v is not None and json.loads(v)["id"].startswith(prefix)]
    assert {s["id"] for s in scores} == {f"{prefix}-{i}" for i in range(n)}
    return {s["model_version"] for s in scores}


def test_bad_versions_and_a_failed_publish_leave_the_old_model_serving(
    kafka_bootstrap: str, registry_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from export.build import export_version

    alert_metric = _alert_metric()
    registry = Registry(registry_root)
    first, second = registry.versions()
    assert registry.current_version() == first
    topics = Topics.unique()
    worker = _worker(kafka_bootstrap, registry_root, topics, tmp_path, f"t-{uuid.uuid4().hex[:6]}").start()
    try:
        worker.wait_ready()
        pid = worker.proc.pid if worker.proc else None
        assert _score_batch(kafka_bootstrap, topics, "a") == {first}

        # 1. a publish that fails on a full disk: nothing changes for the worker
        staged = tmp_path / "staged"
        ticks = clock_from()
        third = export_version(sample_checkpoint(), sample_data(), staged, clock=lambda: next(ticks)).version

        def disk_full(*_: object, **__: object) -> None:
            raise OSError(28, "No space left on device")

        for owner, name in ((Path, "rename"), (os, "replace")):  # the version's rename, the CURRENT swap
            with monkeypatch.context() as patch:
                patch.setattr(owner, name, disk_full)
                with pytest.raises(OSError, match="No space left"):
                    registry.publish(staged)
            assert registry.current_version() == first
            assert (registry_root / CURRENT_FILE).read_text(encoding="utf-8") == first + "\n"
        assert not [p for p in registry_root.iterdir() if p.name.startswith((".staging", ".CURRENT"))]
        time.sleep(1.5)  # a few reload polls
        assert _serving(worker) == {f"headline_scorer_model_info{{version={first}}}"}
        assert _summed(worker.metrics(), "headline_scorer_model_reload_failures_total") == 0
        assert _score_batch(kafka_bootstrap, topics, "b") == {first}

        # 2. a corrupt model file: promote refuses it; a CURRENT pointed at it anyway is rejected
        model = registry.version_dir(second) / MODEL_FILE
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(data))
        with pytest.raises(Exception, match="refusing to promote"):
            registry.promote(second)
        assert registry.current_version() == first
        atomic_write_text(registry_root / CURRENT_FILE, second + "\n")  # e.g. written by an older tool
        _wait_for(
            lambda: _summed(worker.metrics(), alert_metric) >= 1, 20, "a counted reload failure", worker
        )
        assert _score_batch(kafka_bootstrap, topics, "c") == {first}

        # 3. a manifest whose hashes do not match the files
        if third not in registry.versions():  # the CURRENT-swap failure above left it published
            registry.publish(staged, make_current=False)
        manifest_path = registry.version_dir(third) / MANIFEST_FILE
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest["files"][MODEL_FILE] = "0" * 64
        manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
        with pytest.raises(Exception, match="refusing to promote"):
            registry.promote(third)
        atomic_write_text(registry_root / CURRENT_FILE, third + "\n")
        _wait_for(lambda: _summed(worker.metrics(), alert_metric) >= 2, 20, "a second reload failure", worker)
        assert _score_batch(kafka_bootstrap, topics, "d") == {first}

        metrics = worker.metrics()
        assert _summed(metrics, alert_metric) == 2  # what the alert fires on, exposed and nonzero
        assert _serving(worker) == {f"headline_scorer_model_info{{version={first}}}"}
        assert metrics["headline_scorer_model_reloads_total{}"] == 0
        assert "rejected" in worker.log() and first in worker.log()
        assert worker.proc is not None and worker.proc.poll() is None and worker.proc.pid == pid
        assert worker.get("/ready")[0] == 200 and worker.get("/live")[0] == 200
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]


# --- two workers, one SIGKILLed -------------------------------------------------------------------


def _lag_partitions(worker: WorkerProcess, topic: str) -> set[str]:
    """Partitions of ``topic`` the worker exports a lag gauge for."""
    found = (
        re.fullmatch(r"headline_scorer_consumer_lag_messages\{partition=(\d+),topic=(.+)\}", k)
        for k in worker.metrics()
    )
    return {m.group(1) for m in found if m is not None and m.group(2) == topic}


def _assigned(worker: WorkerProcess, topic: str) -> set[int]:
    """Input partitions of the worker's latest assignment, from its log (aiokafka's INFO line)."""
    lines = [line for line in worker.log().splitlines() if "Setting newly assigned partitions" in line]
    if not lines:
        return set()
    return {int(p) for p in re.findall(rf"topic='{re.escape(topic)}', partition=(\d+)", lines[-1])}


def test_two_workers_one_sigkilled_partitions_move_and_nothing_is_lost(
    kafka_bootstrap: str, registry_root: Path, tmp_path: Path
) -> None:
    topics = Topics.unique()
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    fast = {"BROKER_SESSION_TIMEOUT_SECONDS": "6"}  # a dead member is noticed sooner
    a = _worker(kafka_bootstrap, registry_root, topics, tmp_path, app_id, 0, env=fast).start()
    b = _worker(kafka_bootstrap, registry_root, topics, tmp_path, app_id, 1, env=fast).start()
    try:
        a.wait_ready()
        b.wait_ready()
        _wait_for(
            lambda: len(_assigned(a, topics.input)) == 2 and len(_assigned(b, topics.input)) == 2,
            60,
            "both workers holding partitions",
            a,
        )
        assert _assigned(a, topics.input) | _assigned(b, topics.input) == {0, 1, 2, 3}
        replay = BackgroundReplay(kafka_bootstrap, topics.input, limit=6000, rate=1500).start()
        _wait_for(lambda: _metric(a, "headline_scorer_events_scored_total{}") >= 300, 30, "a scoring", a)
        assert replay.running
        a.stop(signal.SIGKILL)
        report = replay.join()
        ids = _scored_ids(kafka_bootstrap, topics.output, report.valid, timeout=120)
        assert set(ids) == set(report.valid_ids), b.log()[-3000:]  # nothing lost
        assert _assigned(b, topics.input) == {0, 1, 2, 3}  # a's partitions moved to b
        _wait_for(lambda: len(_lag_partitions(b, topics.input)) == 4, 30, "b's lag for every partition", b)
        assert b.get("/ready")[0] == 200
    finally:
        a.stop()
        assert b.stop() == 0, b.log()[-3000:]
