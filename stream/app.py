"""The scorer as a faust-streaming app.

Flow per micro-batch of the input topic (raw bytes in):

1. faust's consumer fetches records; :class:`~stream.transport.ScorerConsumer`
   hands them to :meth:`Scorer.handle` in batches of up to ``BATCH_MAX_EVENTS``
   (sooner once the oldest has waited ``BATCH_MAX_WAIT_SECONDS``), instead of one event at a time
   through faust's stream machinery: on two cores faust's per-event
   stream/agent/ack path alone costs more CPU per event than the whole scoring
   budget (``benchmarks/README.md``).
2. :class:`~stream.scoring.BatchScorer` decodes, validates and scores the batch
   in a worker thread (onnxruntime releases the GIL; the event loop keeps
   heart-beating and serving HTTP).
3. Scores go to the output topic, rejects to the dead-letter topic, through
   :class:`~stream.sink.BatchSink` (one produce batch per partition).
4. The batch's records are acked after :meth:`Scorer.handle` returned; faust
   commits acked offsets every ``COMMIT_INTERVAL_SECONDS`` after flushing the
   producer, and :class:`~stream.transport.CommitGate` refuses any commit after
   a failed delivery: offsets are committed only for events whose score or
   dead-letter record the broker acknowledged (at-least-once).

Batches run one after another, so per-partition order is kept. A batch that is
in flight when the worker is told to stop (SIGTERM) or loses its partitions is
finished before its records are acked; records fetched before a rebalance are
not processed (the new owner reads them from the committed offset).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from artifact.registry import Registry
from artifact.runtime import ScoringModel
from stream.drift import SlidingWindowDrift
from stream.health import Health
from stream.metrics import ScorerMetrics
from stream.reload import Loader, ModelHolder
from stream.scoring import BatchScorer, InRecord
from stream.settings import StreamSettings
from stream.sink import BatchSink
from stream.topics import DLQ_MAX_MESSAGE_BYTES
from stream.transport import CommitGate, ScorerFaustApp

logger = logging.getLogger(__name__)


@dataclass
class Scorer:
    """Everything one worker process holds; built by :func:`build_app`."""

    settings: StreamSettings
    app: ScorerFaustApp
    metrics: ScorerMetrics
    registry: CollectorRegistry
    holder: ModelHolder
    batch_scorer: BatchScorer
    health: Health
    gate: CommitGate
    clock: Callable[[], float]
    sink: BatchSink | None = None

    def __post_init__(self) -> None:
        self._score_pool = ThreadPoolExecutor(1, thread_name_prefix="score")
        self._load_pool = ThreadPoolExecutor(1, thread_name_prefix="model-load")
        self._last_offsets: dict[tuple[str, int], int] = {}
        self._lag_series: set[tuple[str, int]] = set()

    # -- model -------------------------------------------------------------
    async def poll_model(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._load_pool, self.holder.poll)
        self.health.model_loaded = self.holder.model is not None

    async def _wait_for_model(self) -> Any:
        while self.holder.model is None:
            await self.poll_model()
            if self.holder.model is None:
                await asyncio.sleep(self.settings.reload_poll_seconds)
        return self.holder.model

    # -- the hot path --------------------------------------------------------
    async def handle(self, messages: Sequence[Any]) -> None:
        """Process one batch of faust messages to the end (the consumer finishes it on stop)."""
        try:
            await self._process(messages)
        except Exception as exc:
            # Never let these events be acked and committed: block commits and stop the worker.
            self.gate.delivery_failed(exc)
            logger.exception("batch processing failed; the worker stops without committing it")
            await self.app.crash(exc)
            raise

    async def _process(self, messages: Sequence[Any]) -> None:
        model = await self._wait_for_model()
        records = []
        for msg in messages:
            records.append(
                InRecord(
                    msg.key,
                    msg.value,
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    None if msg.timestamp is None else int(msg.timestamp * 1000),
                )
            )
            self._last_offsets[(msg.topic, msg.partition)] = msg.offset
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._score_pool, self.batch_scorer.process, model, records)
        sink = self._sink()
        await sink.send(self.settings.output_topic, result.scores)
        await sink.send(self.settings.dlq_topic, result.dead_letters)
        self.health.processed()

    def _sink(self) -> BatchSink:
        if self.sink is None:
            # faust owns the aiokafka producer; the batch API needs the client itself
            producer: Any = self.app.producer
            self.sink = BatchSink(producer._ensure_producer(), self.gate)
        return self.sink

    # -- periodic ------------------------------------------------------------
    def update_lag(self) -> None:
        consumer = self.app.consumer
        try:
            assignment = consumer.assignment()
        except Exception:  # consumer not started yet
            return
        self.health.partitions_assigned = len(assignment)
        held = {(tp.topic, tp.partition) for tp in assignment}
        revoked = self._lag_series - held
        if revoked:  # partitions moved to another worker: their lag is not ours to report
            self.metrics.forget_partitions(revoked)
            for key in revoked:  # if they come back, another worker may have moved them on
                self._last_offsets.pop(key, None)
        self._lag_series = held
        for tp in assignment:
            highwater = consumer.highwater(tp)
            last = self._last_offsets.get((tp.topic, tp.partition))
            if last is None:  # nothing processed here yet: the group's committed offset is the position
                committed = getattr(consumer, "_committed_offset", {}).get(tp)
                last = committed - 1 if committed else None
            if highwater is None or highwater < 0:
                continue
            # lag = records after the last processed one; the embedded broker's high
            # watermark can lag the real end (it counts batches), so clamp at zero.
            lag = highwater - (last + 1 if last is not None else 0)
            self.metrics.set_lag(tp.topic, tp.partition, max(0, lag))

    async def publish_drift(self) -> None:
        """Drift gauges from the window; on the scoring thread, which owns the window."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._score_pool, self.batch_scorer.publish_drift)

    def committed(self, offsets: Any) -> None:
        self.health.committed()
        self.metrics.committed(self.clock())

    def shutdown_pools(self) -> None:
        self._score_pool.shutdown(wait=True)
        self._load_pool.shutdown(wait=False, cancel_futures=True)


def faust_credentials(settings: StreamSettings) -> Any:
    """faust's credentials object for the configured security protocol (None for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = settings.ssl_context()
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    assert settings.kafka_sasl_password is not None  # the settings validator requires it
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=context,
    )


def faust_kwargs(settings: StreamSettings) -> dict[str, Any]:
    return {
        "broker": settings.broker_urls(),
        "broker_credentials": faust_credentials(settings),
        "broker_session_timeout": settings.broker_session_timeout_seconds,
        "broker_request_timeout": max(90.0, settings.broker_session_timeout_seconds * 3),
        "broker_heartbeat_interval": max(1.0, settings.broker_session_timeout_seconds / 5),
        "broker_commit_interval": settings.commit_interval_seconds,
        "consumer_auto_offset_reset": "earliest",
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication,
        "topic_allow_declare": settings.create_topics,
        "producer_acks": -1,
        "producer_linger_ms": 2,
        "producer_max_request_size": DLQ_MAX_MESSAGE_BYTES,
        "web_enabled": True,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "web_in_thread": False,
        "datadir": str(settings.data_dir),
    }


def build_app(
    settings: StreamSettings,
    *,
    registry: CollectorRegistry | None = None,
    loader: Loader | None = None,
    clock: Callable[[], float] = time.time,
) -> Scorer:
    """A fresh faust app and its collaborators (tests build several per process)."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = ScorerMetrics(registry, clock=clock)
    gate = CommitGate()
    app = ScorerFaustApp(settings.scorer_app_id, **faust_kwargs(settings))
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    app.commit_gate = gate
    holder = ModelHolder(
        Registry(Path(settings.model_registry)),
        metrics,
        intra_op_threads=settings.onnx_intra_op_threads,
        rows_per_call=settings.onnx_rows_per_call,
        loader=loader,
        warm_batch=settings.batch_max_events,
    )

    def drift_factory(model: ScoringModel) -> SlidingWindowDrift:
        return SlidingWindowDrift.from_mapping(
            model.manifest.drift,
            max_events=settings.drift_window_events,
            max_seconds=settings.drift_window_seconds,
        )

    scorer = Scorer(
        settings=settings,
        app=app,
        metrics=metrics,
        registry=registry,
        holder=holder,
        batch_scorer=BatchScorer(
            metrics, max_event_bytes=settings.max_event_bytes, drift_factory=drift_factory, clock=clock
        ),
        health=Health(clock=clock, stall_seconds=max(30.0, 10 * settings.commit_interval_seconds)),
        gate=gate,
        clock=clock,
    )
    gate.on_commit.append(scorer.committed)
    _wire(scorer)
    return scorer


def _wire(scorer: Scorer) -> None:
    app, settings = scorer.app, scorer.settings
    input_topic = app.topic(settings.input_topic, key_serializer="raw", value_serializer="raw")

    app.batch_consumer(
        input_topic,
        scorer.handle,
        max_events=settings.batch_max_events,
        max_wait_seconds=settings.batch_max_wait_seconds,
    )

    async def load_first_model() -> None:
        await scorer.poll_model()

    app.task(load_first_model)

    async def reload_timer() -> None:
        await scorer.poll_model()

    app.timer(settings.reload_poll_seconds, name="headline_scorer.reload")(reload_timer)

    async def housekeeping() -> None:
        scorer.health.heartbeat()
        scorer.update_lag()
        ready, _ = scorer.health.ready()
        scorer.metrics.set_ready(ready)
        await scorer.publish_drift()

    app.timer(1.0, name="headline_scorer.housekeeping")(housekeeping)

    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp wants the charset apart from the content type
        return web.bytes(
            generate_latest(scorer.registry),
            content_type=CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4",
        )

    async def ready_page(web: Any, request: Any) -> Any:
        scorer.update_lag()
        ok, why = scorer.health.ready()
        return web.json(
            {"ready": ok, "reason": why, "model_version": scorer.holder.version}, status=200 if ok else 503
        )

    async def live_page(web: Any, request: Any) -> Any:
        ok, why = scorer.health.live()
        return web.json({"live": ok, "reason": why}, status=200 if ok else 503)

    app.page("/metrics")(metrics_page)
    app.page("/ready")(ready_page)
    app.page("/live")(live_page)
