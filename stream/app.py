"""The scorer as a faust-streaming app.

Flow per micro-batch of the input topic (raw bytes in):

1. faust's consumer fetches records; :class:`~stream.faust_adapter.ScorerConsumer`
   hands them to :meth:`ScorerWorker.handle_batch` in batches of up to
   ``BATCH_MAX_EVENTS`` (sooner once the oldest has waited ``BATCH_MAX_WAIT_SECONDS``),
   instead of one event at a time through faust's stream machinery: on two cores
   faust's per-event stream/agent/ack path alone costs more CPU per event than the
   whole scoring budget (``benchmarks/README.md``).
2. :class:`~stream.scoring.BatchScorer` decodes, validates and scores the batch
   in a worker thread (onnxruntime releases the GIL; the event loop keeps
   heart-beating and serving HTTP).
3. Scores go to the output topic, rejects to the dead-letter topic, through
   :class:`~stream.sink.BatchSink` (one produce batch per partition, acks=all,
   idempotent producer unless ``PRODUCER_IDEMPOTENCE=false``).
4. The batch's records are acked after :meth:`ScorerWorker.handle_batch` returned;
   faust commits acked offsets every ``COMMIT_INTERVAL_SECONDS`` after flushing
   the producer, and only once :meth:`ScorerWorker.verify_before_commit` proved
   every output produced so far stored (``stream/sink.py``).

Failures, each on its own path:

* **Outputs not stored** (a delivery failed, or the broker acknowledged outputs
  it does not hold: a topic missing or re-created, checked before producing and
  before every commit): no offset is committed any more, ``/ready`` turns
  false, and the worker stops with a non-zero exit code.
  Its restart (the Deployment's or compose's restart policy) resumes from the
  last committed offsets, re-creating missing topics when ``CREATE_TOPICS`` is
  true, and produces the lost outputs again: nothing is lost, duplicates are
  bounded by what was produced since the last commit.
* **Processing error** (a bug in decoding or scoring, not a bad event: bad
  events become dead letters): the batch is not acked, so it is never
  committed, and the worker stops with a non-zero exit code.
* **Broker unreachable**: deliveries and commits wait (the idempotent producer
  retries without a deadline), ``/ready`` turns false after
  ``READY_TIMEOUT_SECONDS``, and everything resumes when the broker is back.

Batches run one after another, so per-partition order is kept. A batch that is
in flight when the worker is told to stop (SIGTERM) or loses its partitions is
finished before its records are acked; records fetched before a rebalance are
not processed (the new owner reads them from the committed offset).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from artifact.errors import HeadlineScorerError
from artifact.registry import Registry
from artifact.runtime import ScoringModel
from stream.drift import SlidingWindowDrift
from stream.faust_adapter import (
    AdapterConfig,
    BrokerProbe,
    CommitRefusedError,
    ScorerFaustApp,
    abort_deliveries,
    create_app,
    producer_client,
)
from stream.health import Health
from stream.metrics import ScorerMetrics
from stream.reload import Loader, ModelHolder
from stream.scoring import BatchResult, BatchScorer, InRecord
from stream.settings import StreamSettings
from stream.shadow import ShadowMetrics, ShadowScorer
from stream.sink import BatchSink, DeliveryLedger
from stream.topics import DLQ_MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)

#: Largest produce batch (bytes): under Kafka's default ``message.max.bytes`` (1,048,588).
PRODUCER_MAX_BATCH_BYTES = 1_000_000

PROBE_TIMEOUT_SECONDS = 2.0


class ProcessingError(HeadlineScorerError):
    """A batch could not be processed (not a bad event: those are dead-lettered)."""


@dataclass
class ScorerWorker:
    """Everything one worker process holds; built by :func:`build_app`. The consumer's batch hooks."""

    settings: StreamSettings
    metrics: ScorerMetrics
    registry: CollectorRegistry
    holder: ModelHolder
    batch_scorer: BatchScorer
    health: Health
    clock: Callable[[], float]
    ledger: DeliveryLedger = field(default_factory=DeliveryLedger)
    sink: BatchSink | None = None
    probe: BrokerProbe | None = None

    def __post_init__(self) -> None:
        self.app: ScorerFaustApp | None = None
        self._score_pool = ThreadPoolExecutor(1, thread_name_prefix="score")
        self._load_pool = ThreadPoolExecutor(1, thread_name_prefix="model-load")
        self._last_offsets: dict[tuple[str, int], int] = {}
        self._lag_series: set[tuple[str, int]] = set()
        self._stopping: asyncio.Task[None] | None = None
        self.ledger.on_failure = self._outputs_lost

    @property
    def faust_app(self) -> ScorerFaustApp:
        if self.app is None:
            raise RuntimeError("the worker has no faust app yet (build it with build_app)")
        return self.app

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

    # -- producer side: started with faust's producer ---------------------------
    def start_sink(self) -> BatchSink:
        """The sink on faust's started producer (the sink owns the handle from then on)."""
        if self.sink is None:
            producer = producer_client(self.faust_app)
            self.probe = BrokerProbe.of_producer(producer, timeout=PROBE_TIMEOUT_SECONDS)
            self.sink = BatchSink(producer, self.probe, self.ledger)
        return self.sink

    # -- the hot path (BatchHooks) ----------------------------------------------
    async def handle_batch(self, messages: Sequence[Any]) -> None:
        """Process one batch of faust messages to the end (the consumer finishes it on stop)."""
        try:
            await self._process(messages)
        except CommitRefusedError:
            raise  # outputs already lost: the worker is stopping (see _outputs_lost)
        except Exception as exc:
            # Never let these events be acked and committed: the batch stays unacked and the worker stops.
            logger.exception("batch processing failed; the worker stops without committing it")
            self._stop(ProcessingError(f"batch processing failed: {exc!r}"))
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
        sink = self.start_sink()
        await sink.ensure_topics((self.settings.output_topic, self.settings.dlq_topic))
        await sink.send(self.settings.output_topic, result.scores)
        await sink.send(self.settings.dlq_topic, result.dead_letters)
        await self.send_shadow_scores(sink, result)
        self.health.processed()

    async def send_shadow_scores(self, sink: BatchSink, result: BatchResult) -> None:
        """The shadow version's scores (``stream/shadow.py``) to SHADOW_OUTPUT_TOPIC, never to the
        output topic; the topic is checked only when a batch has shadow scores."""
        if result.shadow_scores:
            await sink.ensure_topics((self.settings.shadow_output_topic,))
            await sink.send(self.settings.shadow_output_topic, result.shadow_scores)

    def commit_refusal(self) -> BaseException | None:
        return self.ledger.failure

    async def verify_before_commit(self, offsets: Mapping[TP, int]) -> bool:
        try:
            await self.start_sink().verify_stored()
        except CommitRefusedError:
            raise  # outputs lost: the ledger latched and the worker is stopping
        except Exception as exc:  # the broker did not answer: nothing proven, nothing committed
            logger.warning("cannot prove the outputs stored now (%r); this commit is skipped", exc)
            return False
        return True

    def committed(self, offsets: Mapping[TP, int]) -> None:
        self.health.committed()
        self.metrics.committed(self.clock())

    # -- failures -------------------------------------------------------------
    def _outputs_lost(self, exc: BaseException) -> None:
        self.health.outputs_lost(str(exc))
        self.metrics.set_ready(False)
        logger.critical(
            "outputs were not stored (%s); no offset will be committed, the worker stops and its restart "
            "resumes from the last committed offsets",
            exc,
        )
        self._stop(exc)

    def _stop(self, exc: BaseException) -> None:
        """Crash the faust app (non-zero exit); batches still waiting in the producer are failed."""
        if self._stopping is not None or self.app is None:
            return
        if self.sink is not None:
            abort_deliveries(self.sink.producer, exc)
        self._stopping = asyncio.get_running_loop().create_task(self.app.crash(exc))

    # -- periodic ------------------------------------------------------------
    async def probe_broker(self) -> None:
        """Ask the broker about the three topics (readiness) and check the outputs' topics still exist."""
        if self.sink is None:
            try:
                self.start_sink()
            except Exception:  # faust's producer is not started yet
                return
        assert self.probe is not None and self.sink is not None
        settings = self.settings
        try:
            states = await self.probe.topics(
                [settings.input_topic, settings.output_topic, settings.dlq_topic]
            )
            self.health.broker_answered()
            self.health.topics_missing = sorted(name for name, state in states.items() if not state.exists)
            await self.sink.check_topics()
        except Exception as exc:  # unreachable or timed out: readiness shows it, nothing is decided here
            logger.debug("broker probe failed: %r", exc)

    def update_lag(self) -> None:
        consumer = self.faust_app.consumer
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
        # one produce batch per partition holds up to 1 MB (the 16 KB default put every large dead
        # letter in a batch of its own, one broker round trip each; 1 MB fits any topic's default limit)
        "producer_max_batch_size": PRODUCER_MAX_BATCH_BYTES,
        "web_enabled": True,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "web_in_thread": False,
        "datadir": str(settings.data_dir),
    }


def adapter_config(settings: StreamSettings) -> AdapterConfig:
    return AdapterConfig(
        batch_topic=settings.input_topic,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        batch_max_events=settings.batch_max_events,
        batch_max_wait_seconds=settings.batch_max_wait_seconds,
        producer_idempotence=settings.producer_idempotence,
    )


def build_app(
    settings: StreamSettings,
    *,
    registry: CollectorRegistry | None = None,
    loader: Loader | None = None,
    clock: Callable[[], float] = time.time,
) -> ScorerWorker:
    """A fresh faust app and its collaborators (tests build several per process)."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = ScorerMetrics(registry, clock=clock)
    shadow_metrics = ShadowMetrics(registry) if settings.shadow_enabled else None
    holder = ModelHolder(
        Registry(Path(settings.model_registry)),
        metrics,
        intra_op_threads=settings.onnx_intra_op_threads,
        rows_per_call=settings.onnx_rows_per_call,
        loader=loader,
        warm_batch=settings.batch_max_events,
        shadow=settings.shadow_enabled,
        shadow_metrics=shadow_metrics,
    )
    shadow = None
    if shadow_metrics is not None:
        shadow = ShadowScorer(
            shadow_metrics,
            lambda: holder.shadow_model,
            window_events=settings.drift_window_events,
            window_seconds=settings.drift_window_seconds,
            clock=clock,
        )

    def drift_factory(model: ScoringModel) -> SlidingWindowDrift:
        return SlidingWindowDrift.from_mapping(
            model.manifest.drift,
            max_events=settings.drift_window_events,
            max_seconds=settings.drift_window_seconds,
        )

    worker = ScorerWorker(
        settings=settings,
        metrics=metrics,
        registry=registry,
        holder=holder,
        batch_scorer=BatchScorer(
            metrics,
            max_event_bytes=settings.max_event_bytes,
            max_dead_letter_bytes=settings.dlq_max_record_bytes,
            drift_factory=drift_factory,
            clock=clock,
            shadow=shadow,
        ),
        health=Health(
            clock=clock,
            stall_seconds=max(30.0, 10 * settings.commit_interval_seconds),
            ready_timeout_seconds=settings.ready_timeout_seconds,
        ),
        clock=clock,
    )
    worker.app = create_app(
        settings.scorer_app_id, adapter_config(settings), worker, **faust_kwargs(settings)
    )
    _wire(worker)
    return worker


def _wire(worker: ScorerWorker) -> None:
    app, settings = worker.faust_app, worker.settings

    async def load_first_model() -> None:
        await worker.poll_model()

    app.task(load_first_model)

    async def reload_timer() -> None:
        await worker.poll_model()

    app.timer(settings.reload_poll_seconds, name="headline_scorer.reload")(reload_timer)

    async def housekeeping() -> None:
        worker.health.heartbeat()
        worker.update_lag()
        await worker.probe_broker()
        ready, _ = worker.health.ready()
        worker.metrics.set_ready(ready)
        await worker.publish_drift()

    app.timer(1.0, name="headline_scorer.housekeeping")(housekeeping)

    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp wants the charset apart from the content type
        return web.bytes(
            generate_latest(worker.registry),
            content_type=CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4",
        )

    async def ready_page(web: Any, request: Any) -> Any:
        worker.update_lag()
        ok, why = worker.health.ready()
        return web.json(
            {"ready": ok, "reason": why, "model_version": worker.holder.version}, status=200 if ok else 503
        )

    async def live_page(web: Any, request: Any) -> Any:
        ok, why = worker.health.live()
        return web.json({"live": ok, "reason": why}, status=200 if ok else 503)

    app.page("/metrics")(metrics_page)
    app.page("/ready")(ready_page)
    app.page("/live")(live_page)
