"""Faults of a 3-broker Apache Kafka cluster under a scoring worker (``make test-kafka`` only).

One cluster of three combined KRaft nodes for the module; the worker creates its
topics with replication 3 (``TOPIC_REPLICATION=3``) and they inherit the cluster's
``min.insync.replicas=2``; the worker produces with ``acks=all`` and the replay
producer too. Three faults, each during a 30,000-event replay:

(a) SIGKILL of the broker leading the first input partition;
(b) a rolling restart of all three brokers (each stopped and started again once the
    replicas are back in sync);
(c) SIGKILL of the worker at the same moment as SIGKILL of the group coordinator's broker,
    with a second worker taking over.

After each, an independent consumer reads the output topic to the end, counting
records (no watermarks): every id the replay delivered is scored at least once and
duplicates stay within a bound derived from the commit interval. The figures are
printed (``-s``) and recorded in ``benchmarks/README.md``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from headline_scorer.apache_kafka import ApacheKafkaCluster
from stream.asyncio_util import run_sync
from tests.stream_harness import BackgroundReplay, Topics, WorkerProcess, template_registry

pytestmark = [pytest.mark.faults, pytest.mark.cluster, pytest.mark.slow]

EVENTS = 30_000
PARTITIONS = 4
COMMIT_INTERVAL = 0.5  # WorkerProcess's COMMIT_INTERVAL_SECONDS
SESSION_TIMEOUT = 6  # the worker's group session timeout (a dead worker leaves the group sooner)
SCORED = "headline_scorer_events_scored_total{}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafkaCluster]:
    with ApacheKafkaCluster(3, log_dir=tmp_path_factory.mktemp("cluster")) as kafka:
        yield kafka


@pytest.fixture
def kafka(cluster: ApacheKafkaCluster) -> Iterator[ApacheKafkaCluster]:
    """The module's cluster with every node running, before and after the test."""
    cluster.start()
    yield cluster
    cluster.start()


@pytest.fixture
def registry_root(tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(template_registry()[0], tmp_path / "registry"))


def _worker(
    kafka: ApacheKafkaCluster, registry: Path, topics: Topics, app_id: str, log: Path
) -> WorkerProcess:
    env = {"TOPIC_REPLICATION": "3", "BROKER_SESSION_TIMEOUT_SECONDS": str(SESSION_TIMEOUT)}
    return WorkerProcess(kafka.bootstrap, registry, topics, app_id, log, extra_env=env)


def _replay(kafka: ApacheKafkaCluster, topic: str, rate: float) -> BackgroundReplay:
    """The 30,000-event replay; acks from every in-sync replica, so an acknowledged event is durable."""
    client = {"bootstrap_servers": kafka.bootstrap, "acks": "all", "request_timeout_ms": 60_000}
    return BackgroundReplay(kafka.bootstrap, topic, limit=EVENTS, rate=rate, client_kwargs=client).start()


class ScoreWatch:
    """Samples the scored-events counter of the current worker every 0.1 s, on its own thread."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="score-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, AssertionError):
                self.samples.append((time.monotonic(), self.worker.metrics().get(SCORED, 0.0)))
            self._stop.wait(0.1)

    def switch(self, worker: WorkerProcess) -> None:
        self.worker = worker

    def scored(self) -> float:
        return self.samples[-1][1] if self.samples else 0.0

    def wait_for(self, count: float, timeout: float) -> float:
        """Seconds until the counter reaches ``count``."""
        started = time.monotonic()
        while self.scored() < count:
            assert time.monotonic() - started < timeout, f"fewer than {count:.0f} scores in {timeout} s"
            time.sleep(0.05)
        return time.monotonic() - started

    def peak_rate(self, window: float = 1.0) -> float:
        """The highest scoring rate over any ``window`` seconds (events/s) seen by this watch."""
        best, j = 0.0, 0
        for i, (t, n) in enumerate(self.samples):
            while self.samples[j][0] < t - window:
                j += 1
            if j < i and n >= self.samples[j][1]:
                best = max(best, (n - self.samples[j][1]) / max(t - self.samples[j][0], 0.1))
        return best

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


async def _read_to_end(
    bootstrap: str, topic: str, expected: set[str], timeout: float, quiet: float
) -> Counter[str]:
    """Every record of ``topic`` counted by id: read until all ``expected`` ids arrived and
    nothing new came for ``quiet`` seconds (an independent consumer, no group, no watermarks)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    ids: Counter[str] = Counter()
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    ids[json.loads(record.value)["id"]] += 1
                    last_new = time.monotonic()
            if expected <= ids.keys() and time.monotonic() - last_new >= quiet:
                break
    finally:
        await consumer.stop()
    return ids


@dataclass
class Outcome:
    name: str
    events: int
    scored_ids: int
    duplicates: int
    bound: int
    recovery_seconds: float
    run_seconds: float
    notes: dict[str, Any] = field(default_factory=dict)

    def report(self) -> str:
        extra = "".join(f"; {k} {v}" for k, v in self.notes.items())
        return (
            f"[cluster fault {self.name}] events {self.events}, scored ids {self.scored_ids}, "
            f"duplicates {self.duplicates} (bound {self.bound}), recovery {self.recovery_seconds:.1f} s, "
            f"run {self.run_seconds:.1f} s{extra}"
        )


def _check(
    name: str,
    kafka: ApacheKafkaCluster,
    topics: Topics,
    report: Any,
    watch: ScoreWatch,
    incidents: int,
    recovery: float,
    started: float,
    **notes: Any,
) -> Outcome:
    """Every delivered id scored at least once; duplicates within the commit-interval bound."""
    assert report.failed == 0 and report.valid == EVENTS, report.render()
    expected = set(report.valid_ids)
    assert len(expected) == EVENTS
    ids = run_sync(_read_to_end(kafka.bootstrap, topics.output, expected, timeout=180, quiet=3.0))
    missing = expected - ids.keys()
    assert not missing, f"{len(missing)} ids never scored, e.g. {sorted(missing)[:5]}"
    assert ids.keys() <= expected
    duplicates = sum(ids.values()) - len(ids)
    # At-least-once: a fault replays what was scored but not yet committed. Offsets are committed every
    # COMMIT_INTERVAL; a batch in flight and the producer's retries of one request add at most one more
    # interval; a member that loses its partitions rewinds to the last commit once. So per fault the
    # worker rescores at most what it scores in two commit intervals, at the fastest rate it reached.
    peak = max(watch.peak_rate(), report.valid / max(report.seconds, 1e-3))
    bound = int(incidents * 2 * COMMIT_INTERVAL * peak) + incidents * PARTITIONS * 256
    outcome = Outcome(
        name, EVENTS, len(ids), duplicates, bound, recovery, time.monotonic() - started, dict(notes)
    )
    print(outcome.report())
    assert 0 <= duplicates <= bound, outcome.report()
    return outcome


def _assert_replicated(kafka: ApacheKafkaCluster, topics: Topics) -> None:
    """The worker created its topics with 3 replicas, and they require 2 in sync."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    for topic in (topics.input, topics.output, topics.dlq):
        partitions = kafka.partitions(topic)
        assert len(partitions) == PARTITIONS and all(len(p["replicas"]) == 3 for p in partitions.values())

    async def min_isr() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            found = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t) for t in (topics.input, topics.output)]
            )
        finally:
            await admin.close()
        return {
            str(entry[1])
            for response in found
            for resource in response.resources
            for entry in resource[4]
            if entry[0] == "min.insync.replicas"
        }

    assert run_sync(min_isr()) == {"2"}


def _coordinator(kafka: ApacheKafkaCluster, group: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    async def find() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.live_bootstrap())
        await admin.start()
        try:
            return int(await admin.find_coordinator(group))
        finally:
            await admin.close()

    return run_sync(find())


@dataclass
class Scenario:
    """One fault test on the module's cluster: its topics, workers, replay and score watch.

    Every worker it starts is stopped at teardown (the ``scenario`` fixture), and must exit
    cleanly unless the test killed it (:meth:`kill`) or it exited before it was ready
    (:meth:`supervised_worker`).
    """

    kafka: ApacheKafkaCluster
    registry: Path
    tmp_path: Path
    app_id: str = field(default_factory=lambda: f"fault-{uuid.uuid4().hex[:6]}")
    topics: Topics = field(default_factory=Topics.unique)
    started: float = field(default_factory=time.monotonic)
    watch: ScoreWatch | None = None
    _workers: list[WorkerProcess] = field(default_factory=list)
    _exempt: set[int] = field(default_factory=set)  # ids of workers not expected to exit cleanly

    def worker(self, log_name: str = "worker.log") -> WorkerProcess:
        """A worker started on the scenario's topics and group, ready."""
        worker = _worker(self.kafka, self.registry, self.topics, self.app_id, self.tmp_path / log_name)
        self._workers.append(worker.start())
        worker.wait_ready(timeout=120)
        return worker

    def supervised_worker(self, attempts: int = 5) -> tuple[WorkerProcess, int]:
        """A worker that is started again whenever it exits before it is ready; ``(worker, restarts)``."""
        for attempt in range(attempts):
            try:
                return self.worker(f"worker-1-{attempt}.log"), attempt
            except AssertionError:
                worker = self._workers[-1]
                if worker.proc is not None and worker.proc.poll() is None:
                    raise
                self._exempt.add(id(worker))
                time.sleep(1.0)  # the back-off of a restart policy
        raise AssertionError(f"the replacement worker failed to start {attempts} times")

    def kill(self, worker: WorkerProcess) -> None:
        """SIGKILL ``worker`` (it is then not expected to exit cleanly)."""
        self._exempt.add(id(worker))
        worker.stop(signal.SIGKILL)
        assert worker.proc is not None and worker.proc.returncode == -signal.SIGKILL

    def watch_scores(self, worker: WorkerProcess) -> ScoreWatch:
        self.watch = ScoreWatch(worker)
        return self.watch

    def replay(self, rate: float) -> BackgroundReplay:
        return _replay(self.kafka, self.topics.input, rate)

    def check(self, name: str, report: Any, *, incidents: int, recovery: float, **notes: Any) -> Outcome:
        assert self.watch is not None, "watch the scores before the fault"
        return _check(
            name, self.kafka, self.topics, report, self.watch, incidents, recovery, self.started, **notes
        )

    def close(self) -> None:
        """Stop the watch and every worker; a worker the test did not kill must exit with 0."""
        if self.watch is not None:
            self.watch.stop()
        failures = [
            f"{worker.log_path.name} exited with {code}:\n{worker.log()[-3000:]}"
            for worker in self._workers
            if (code := worker.stop()) != 0 and id(worker) not in self._exempt
        ]
        assert not failures, "\n".join(failures)


@pytest.fixture
def scenario(kafka: ApacheKafkaCluster, registry_root: Path, tmp_path: Path) -> Iterator[Scenario]:
    run = Scenario(kafka, registry_root, tmp_path)
    yield run
    run.close()


# --- (a) SIGKILL of a partition leader -----------------------------------------------------------


def test_sigkill_of_the_partition_leader_during_a_30000_event_replay(
    kafka: ApacheKafkaCluster, scenario: Scenario
) -> None:
    topics = scenario.topics
    worker = scenario.worker()
    _assert_replicated(kafka, topics)
    watch = scenario.watch_scores(worker)
    replay = scenario.replay(rate=2500)
    watch.wait_for(5000, timeout=60)
    assert replay.running, "the kill must land while the replay is still sending"
    victim = kafka.leader(topics.input, 0)
    at_kill = watch.scored()
    killed = time.monotonic()
    kafka.kill(victim)
    recovery = watch.wait_for(at_kill + 1000, timeout=120)
    # the controller fences a killed node after its broker session expires (seconds): until
    # then the metadata still names it, while the other partitions keep being scored
    moved_by = time.monotonic() + 60
    new_leader = kafka.leader(topics.input, 0)
    while new_leader == victim and time.monotonic() < moved_by:
        time.sleep(0.5)
        new_leader = kafka.leader(topics.input, 0)
    assert new_leader != victim
    report = replay.join(timeout=300)
    kafka.start(victim)  # back with its data; it catches up and rejoins the ISR
    in_sync = kafka.wait_in_sync([topics.input, topics.output])
    watch.wait_for(EVENTS, timeout=180)
    scenario.check(
        "a: leader SIGKILL",
        report,
        incidents=1,
        recovery=recovery,
        killed_node=victim,
        new_leader=new_leader,
        scored_at_kill=int(at_kill),
        rejoined_isr_s=round(in_sync + time.monotonic() - killed, 1),
    )
    assert worker.proc is not None and worker.proc.poll() is None  # the worker rode it out


# --- (b) rolling restart of every broker ---------------------------------------------------------


def test_rolling_restart_of_all_brokers_under_load(kafka: ApacheKafkaCluster, scenario: Scenario) -> None:
    topics = scenario.topics
    worker = scenario.worker()
    watch = scenario.watch_scores(worker)
    replay = scenario.replay(rate=400)  # ~75 s, longer than the roll
    watch.wait_for(2000, timeout=60)
    steps: list[float] = []
    for node in range(3):
        assert replay.running, f"the replay ended before node {node} was restarted"
        step = time.monotonic()
        kafka.restart(node)  # controlled shutdown: leadership moves away first
        kafka.wait_in_sync([topics.input, topics.output])
        steps.append(time.monotonic() - step)
    report = replay.join(timeout=300)
    watch.wait_for(EVENTS, timeout=180)
    scenario.check(
        "b: rolling restart",
        report,
        incidents=3,
        recovery=max(steps),
        restart_steps_s=[round(s, 1) for s in steps],
    )
    assert worker.proc is not None and worker.proc.poll() is None


# --- (c) a worker and a broker killed together -----------------------------------------------------


def test_worker_sigkill_together_with_the_coordinators_broker(
    kafka: ApacheKafkaCluster, scenario: Scenario
) -> None:
    topics, app_id = scenario.topics, scenario.app_id
    first = scenario.worker("worker-0.log")
    watch = scenario.watch_scores(first)
    replay = scenario.replay(rate=2500)
    watch.wait_for(5000, timeout=60)
    assert replay.running
    victim = _coordinator(kafka, app_id)
    at_kill = watch.scored()
    scenario.kill(first)
    kafka.kill(victim)
    killed = time.monotonic()
    # The replacement starts while a broker is down. A worker that cannot create its topics at
    # start-up exits with an error (seen: faust's CreateTopics sent to the dead node), so it is
    # started again, as a Deployment would restart it; the restarts are reported.
    second, restarts = scenario.supervised_worker()
    watch.switch(second)
    watch.samples.clear()
    watch.wait_for(1000, timeout=180)
    recovery = time.monotonic() - killed
    report = replay.join(timeout=300)
    kafka.start(victim)
    kafka.wait_in_sync([topics.input, topics.output])
    # the second worker scores what the first left uncommitted plus everything after
    watch.wait_for(EVENTS - at_kill, timeout=180)
    scenario.check(
        "c: worker + coordinator SIGKILL",
        report,
        incidents=1,
        recovery=recovery,
        killed_node=victim,
        scored_before_kill=int(at_kill),
        new_coordinator=_coordinator(kafka, app_id),
        replacement_restarts=restarts,
    )


def test_the_cluster_fixture_runs_three_brokers(kafka: ApacheKafkaCluster) -> None:
    """Three brokers on distinct ports, every one a voter; a topic gets 3 replicas by default."""
    assert len(kafka.bootstrap.split(",")) == 3
    assert all(kafka.running(n) for n in range(3))
    assert len({kafka.pid(n) for n in range(3)}) == 3
    topic = f"probe-{uuid.uuid4().hex[:8]}"
    from stream.topics import TopicSpec, create_topics

    run_sync(create_topics({"bootstrap_servers": kafka.bootstrap}, [TopicSpec(topic, 2, 3)]))
    kafka.wait_in_sync([topic], timeout=60)
    assert {len(p["replicas"]) for p in kafka.partitions(topic).values()} == {3}
    assert kafka.leader(topic, 0) in {0, 1, 2}
