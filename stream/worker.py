"""Run one scorer worker until it is told to stop (SIGTERM/SIGINT)."""

from __future__ import annotations

import logging

import faust

from stream.app import Scorer, build_app
from stream.settings import StreamSettings

logger = logging.getLogger(__name__)


def make_worker(scorer: Scorer, *, loglevel: str = "INFO") -> faust.Worker:
    """faust's worker for ``scorer.app``: signal handling, graceful stop, our logging kept."""
    return faust.Worker(
        scorer.app,
        loglevel=loglevel.lower().replace("warning", "warn"),
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
    )


def run_worker(settings: StreamSettings) -> None:
    scorer = build_app(settings)
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
    worker = make_worker(scorer, loglevel=settings.log_level)
    try:
        worker.execute_from_commandline()
    finally:
        scorer.shutdown_pools()
