"""Run one scorer worker until it is told to stop (SIGTERM/SIGINT) or stops itself (non-zero exit)."""

from __future__ import annotations

import logging

import faust

from stream.app import ScorerWorker, build_app
from stream.asyncio_util import run_sync
from stream.settings import StreamSettings
from stream.topics import TopicError, ensure_topics_sync, scorer_topics

logger = logging.getLogger(__name__)


def make_worker(worker: ScorerWorker, *, loglevel: str = "INFO") -> faust.Worker:
    """faust's worker for ``worker.app``: signal handling, graceful stop, our logging kept."""
    return faust.Worker(
        worker.faust_app,
        loglevel=loglevel.lower().replace("warning", "warn"),
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
    )


async def missing_topics(settings: StreamSettings, *, timeout: float = 10.0) -> list[str]:
    """The scorer's topics that do not exist on the broker (asked without creating them)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs(), request_timeout_ms=int(timeout * 1000))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return [spec.name for spec in scorer_topics(settings) if spec.name not in existing]


def prepare_topics(settings: StreamSettings) -> None:
    """Create the missing topics (``CREATE_TOPICS``), or refuse to start when one is missing.

    A restart after outputs were lost (a topic deleted or a broker that lost its data) passes
    here: with ``CREATE_TOPICS`` the topics come back before anything is consumed.
    """
    if settings.create_topics:
        ensure_topics_sync(settings)
        return
    missing = run_sync(missing_topics(settings))
    if missing:
        raise TopicError(
            f"topics {', '.join(missing)} do not exist and CREATE_TOPICS is false: create them "
            "(partitions as TOPIC_PARTITIONS) and start the worker again"
        )


def run_worker(settings: StreamSettings) -> None:
    prepare_topics(settings)
    worker = build_app(settings)
    logger.info(
        "worker %s: brokers %s, %s -> %s (dead letters %s), registry %s, http :%d",
        settings.scorer_app_id,
        settings.kafka_bootstrap_servers,
        settings.input_topic,
        settings.output_topic,
        settings.dlq_topic,
        settings.model_registry,
        settings.web_port,
    )
    runner = make_worker(worker, loglevel=settings.log_level)
    try:
        runner.execute_from_commandline()
    finally:
        worker.shutdown_pools()
