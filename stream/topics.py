"""Creating the scorer's topics (input, output, dead-letter) idempotently with aiokafka's admin client.

Existing topics are left as they are; a partition count that differs from the
settings is logged, never changed (repartitioning would reshuffle keys).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from artifact.errors import HeadlineScorerError
from stream.asyncio_util import run_sync
from stream.settings import StreamSettings

logger = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36  # Kafka error code


class TopicError(HeadlineScorerError):
    """A topic could not be created or described."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


# A dead letter is the input record plus ~250 bytes of headers: an input record right at the
# broker's size limit must still fit, or the worker could never commit past it.
DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
COMPACTED: Mapping[str, str] = {"cleanup.policy": "compact"}


def scorer_topics(settings: StreamSettings) -> list[TopicSpec]:
    """Every topic the scorer reads or writes, described by ``settings``.

    The outcomes topic has the input's partition count: both are keyed by headline id, so an
    id's event and its outcomes meet in one partition number (the join, ``stream/join.py``).
    The labelled topic is compacted: it keeps the latest joined row per id. With the join, the
    join table's changelog (faust's name ``<SCORER_APP_ID>-headline-join-changelog``, compacted, the
    input's partition count) is listed too, so it exists when ``CREATE_TOPICS`` is false (faust
    creates it itself only when it may create topics).
    """
    parts, replication = settings.topic_partitions, settings.topic_replication
    join = (
        [TopicSpec(f"{settings.scorer_app_id}-headline-join-changelog", parts, replication, COMPACTED)]
        if settings.join_enabled
        else []
    )
    return [
        TopicSpec(settings.input_topic, parts, replication),
        TopicSpec(settings.output_topic, parts, replication),
        TopicSpec(settings.dlq_topic, parts, replication, {"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)}),
        TopicSpec(settings.outcomes_topic, parts, replication),
        TopicSpec(settings.labelled_topic, parts, replication, {"cleanup.policy": "compact"}),
        TopicSpec(settings.shadow_output_topic, parts, replication),
        *join,
    ]


async def create_topics(
    client_kwargs: Mapping[str, Any], specs: Sequence[TopicSpec], *, timeout: float = 10.0
) -> list[str]:
    """Create the topics of ``specs`` that do not exist; return the names created.

    ``client_kwargs`` are aiokafka client arguments (``bootstrap_servers`` and security,
    :meth:`StreamSettings.kafka_client_kwargs`).
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(**client_kwargs, request_timeout_ms=int(timeout * 1000))
    try:
        await admin.start()
        existing = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
        for spec in specs:
            if spec.name in existing and existing[spec.name] != spec.partitions:
                logger.warning(
                    "topic %s exists with %s partitions; the settings ask for %s (left unchanged)",
                    spec.name,
                    existing[spec.name],
                    spec.partitions,
                )
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication, topic_configs=dict(s.config)) for s in missing],
            timeout_ms=int(timeout * 1000),
        )
    except KafkaError as exc:
        raise TopicError(f"cannot create topics {[s.name for s in specs]}: {exc!r}") from exc
    finally:
        await admin.close()
    created = []
    for topic, code, *rest in response.topic_errors:
        if code == 0:
            created.append(topic)
        elif code != TOPIC_ALREADY_EXISTS:  # created meanwhile by another worker: fine
            message = rest[0] if rest and rest[0] else f"error code {code}"
            raise TopicError(f"cannot create topic {topic}: {message}")
    for name in created:
        logger.info("created topic %s", name)
    return created


async def ensure_topics(settings: StreamSettings, *, timeout: float = 10.0) -> list[str]:
    """Create the scorer's input, output and dead-letter topics unless they exist; return those created."""
    return await create_topics(settings.kafka_client_kwargs(), scorer_topics(settings), timeout=timeout)


def ensure_topics_sync(settings: StreamSettings, *, timeout: float = 10.0) -> list[str]:
    """:func:`ensure_topics` for synchronous callers (CLI, demo)."""
    return run_sync(ensure_topics(settings, timeout=timeout))


async def delete_topics(
    client_kwargs: Mapping[str, Any], names: Sequence[str], *, timeout: float = 10.0
) -> None:
    """Delete ``names`` (test clean-up on a shared broker)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_kwargs, request_timeout_ms=int(timeout * 1000))
    try:
        await admin.start()
        await admin.delete_topics(list(names), timeout_ms=int(timeout * 1000))
    finally:
        await admin.close()
