"""headline_scorer/embedded_broker.py + stream/topics.py against a real Kafka-protocol broker (Tansu)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from headline_scorer.embedded_broker import BrokerError, EmbeddedBroker
from stream.asyncio_util import answers_metadata, free_port, run_sync
from stream.settings import StreamSettings
from stream.topics import TopicSpec, create_topics, ensure_topics, ensure_topics_sync, scorer_topics

pytestmark = pytest.mark.kafka


async def produce(
    client_kwargs: dict[str, Any], topic: str, records: list[tuple[bytes | None, bytes | None]]
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**client_kwargs, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k, headers=[("h", b"1")]) for k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def describe(client_kwargs: dict[str, Any], names: list[str]) -> dict[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_kwargs)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
    finally:
        await admin.close()


def test_produce_and_consume_through_the_session_broker(
    kafka_client_kwargs: dict[str, Any],
    topic_factory: Callable[..., str],
    read_topic: Callable[..., list[Any]],
) -> None:
    topic = topic_factory(partitions=3)
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(30)] + [(b"tomb", None)]
    run_sync(produce(kafka_client_kwargs, topic, sent))
    records = read_topic(topic, expected=len(sent))
    assert sorted((r.key, r.value) for r in records if r.value is not None) == sorted(sent[:-1])
    assert [r.value for r in records if r.key == b"tomb"] == [None]
    assert {r.partition for r in records} <= {0, 1, 2}
    assert all(r.headers == (("h", b"1"),) for r in records)


def test_topic_factory_makes_partitions(
    kafka_client_kwargs: dict[str, Any], topic_factory: Callable[..., str]
) -> None:
    a, b = topic_factory(partitions=4), topic_factory(partitions=1, prefix="other")
    assert a != b and b.startswith("other-")
    assert run_sync(describe(kafka_client_kwargs, [a, b])) == {a: 4, b: 1}


def test_ensure_topics_is_idempotent(kafka_bootstrap: str, kafka_client_kwargs: dict[str, Any]) -> None:
    suffix = free_port()  # any unique number
    settings = StreamSettings.from_env(
        kafka_bootstrap_servers=kafka_bootstrap,
        input_topic=f"in-{suffix}",
        output_topic=f"out-{suffix}",
        dlq_topic=f"dlq-{suffix}",
        outcomes_topic=f"outcomes-{suffix}",
        labelled_topic=f"labelled-{suffix}",
        shadow_output_topic=f"shadow-{suffix}",
        scorer_app_id=f"app-{suffix}",
        topic_partitions=2,
    )
    names = [spec.name for spec in scorer_topics(settings)]
    assert {settings.input_topic, settings.output_topic, settings.dlq_topic} <= set(names)
    assert sorted(ensure_topics_sync(settings)) == sorted(names)
    assert ensure_topics_sync(settings) == []
    assert run_sync(ensure_topics(settings)) == []
    assert run_sync(describe(kafka_client_kwargs, names)) == dict.fromkeys(names, 2)
    # one missing among existing ones: only that one is created
    extra = TopicSpec(f"extra-{suffix}", 1)
    assert run_sync(create_topics(kafka_client_kwargs, [TopicSpec(names[0], 2), extra])) == [extra.name]


@pytest.fixture
def tansu() -> Iterator[EmbeddedBroker]:
    """An embedded broker itself (``embedded_broker`` is Apache Kafka with ``KAFKA_BROKER=apache``)."""
    with EmbeddedBroker() as broker:
        yield broker


def test_restart_on_the_same_port(tansu: EmbeddedBroker, read_topic: Callable[..., list[Any]]) -> None:
    embedded_broker = tansu
    kwargs = {"bootstrap_servers": embedded_broker.bootstrap}
    run_sync(create_topics(kwargs, [TopicSpec("before", 1)]))
    port, pid = embedded_broker.port, embedded_broker.pid
    embedded_broker.restart()
    assert embedded_broker.running and embedded_broker.port == port and embedded_broker.pid != pid
    assert run_sync(answers_metadata(embedded_broker.bootstrap))
    # memory storage: the restarted broker starts empty, and works
    assert run_sync(create_topics(kwargs, [TopicSpec("before", 1)])) == ["before"]
    run_sync(produce(kwargs, "before", [(b"k", b"v")]))
    embedded_broker.kill()
    assert not embedded_broker.running
    assert not run_sync(answers_metadata(embedded_broker.bootstrap, timeout=0.5))
    embedded_broker.start()  # after a crash, on the same port again
    assert embedded_broker.port == port and run_sync(answers_metadata(embedded_broker.bootstrap))
    embedded_broker.stop()
    assert not embedded_broker.running
    assert not embedded_broker.log_path.exists()  # a clean stop removes its own log


def test_failed_start_is_a_broker_error(tmp_path: Any) -> None:
    fake = tmp_path / "not-a-broker"
    fake.write_text("#!/bin/sh\necho 'address in use' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrokerError, match=r"exited with code 3.*address in use"):
        EmbeddedBroker(binary=fake, log_path=tmp_path / "broker.log").start()


def test_run_sync_inside_a_running_loop() -> None:
    async def outer() -> int:
        async def inner() -> int:
            return 41

        return run_sync(inner()) + 1

    assert asyncio.run(outer()) == 42
