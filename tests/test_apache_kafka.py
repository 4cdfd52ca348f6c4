"""headline_scorer/apache_kafka.py: the jar cache, and a real node's restart and clean-up semantics.

The node tests start Apache Kafka, so they run with ``KAFKA_BROKER=apache`` only
(``make test-kafka``); the cache tests need neither java nor the network.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from headline_scorer.apache_kafka import (
    KAFKA_VERSION,
    ApacheKafkaBroker,
    ApacheKafkaError,
    cache_root,
    kafka_jars,
    new_cluster_id,
)
from stream.asyncio_util import answers_metadata, run_sync
from stream.topics import TopicSpec, create_topics
from tests.conftest import apache_mode

ROOT = Path(__file__).resolve().parents[1]
apache_only = pytest.mark.skipif(not apache_mode(), reason="starts Apache Kafka (KAFKA_BROKER=apache)")


def test_a_cached_fetch_is_reused_without_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = tmp_path / f"apache-kafka-{KAFKA_VERSION}"
    cached.mkdir()
    (cached / ".complete").write_text(KAFKA_VERSION, encoding="utf-8")
    monkeypatch.setenv("PATH", "")  # no mvn: a fetch would fail
    assert kafka_jars(cache=tmp_path) == cached
    monkeypatch.setenv("HEADLINE_SCORER_CACHE", str(tmp_path))
    assert cache_root() == tmp_path and kafka_jars() == cached


def test_without_maven_the_error_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ApacheKafkaError, match="needs 'mvn'"):
        kafka_jars("4.1.1", cache=tmp_path)
    assert not list(tmp_path.iterdir()), "a failed fetch leaves nothing behind"


def test_cluster_ids_are_kraft_uuids() -> None:
    ids = {new_cluster_id() for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 22 and "=" not in i for i in ids)


def _topics(bootstrap: str) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    async def names() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    return run_sync(names())


@apache_only
@pytest.mark.kafka
@pytest.mark.slow
def test_kill_keeps_the_data_and_restart_empties_it(own_broker: Any) -> None:
    assert isinstance(own_broker, ApacheKafkaBroker)
    port, pid = own_broker.port, own_broker.pid
    topic = f"keep-{uuid.uuid4().hex[:8]}"
    run_sync(create_topics({"bootstrap_servers": own_broker.bootstrap}, [TopicSpec(topic, 2)]))

    own_broker.kill()  # a crash: the log survives on disk
    assert not own_broker.running
    assert not run_sync(answers_metadata(own_broker.bootstrap, timeout=0.5))
    own_broker.start()
    assert own_broker.port == port and own_broker.pid != pid
    assert topic in _topics(own_broker.bootstrap)

    own_broker.restart()  # same port, empty storage, like the embedded broker
    assert own_broker.running and own_broker.port == port
    assert topic not in _topics(own_broker.bootstrap)
    own_broker.stop()
    assert not own_broker.running
    assert own_broker.log_path.is_file() and "Kafka Server started" in own_broker.log_path.read_text()


@apache_only
@pytest.mark.kafka
@pytest.mark.slow
def test_the_jvm_dies_with_its_parent(tmp_path: Path) -> None:
    """SIGKILL of the process that started a node takes the node down (PR_SET_PDEATHSIG)."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from headline_scorer.apache_kafka import ApacheKafkaBroker
        broker = ApacheKafkaBroker(log_dir=Path({str(tmp_path)!r})).start()
        print(broker.pid, broker.bootstrap, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline().split()
        assert line, "the child did not start a broker"
        jvm, bootstrap = int(line[0]), line[1]
        assert run_sync(answers_metadata(bootstrap))
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 20
        while Path(f"/proc/{jvm}").exists() and _state(jvm) != "Z":
            assert time.monotonic() < deadline, "the JVM outlived its parent"
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"
