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
   With the join (``JOIN_ENABLED``), the batch also holds records of the outcomes
   topic: on the same thread, the scored events and the outcomes go through
   :class:`~stream.join.Join`, whose changelog records, labelled rows and bad
   outcomes (dead letters) are produced through the same sink, so the delivery
   ledger and the commit gate cover them; the join's table store is restored
   by faust on every assignment before any batch runs.
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
from stream import quality
from stream.drift import SlidingWindowDrift
from stream.faust_adapter import (
    AdapterConfig,
    BrokerProbe,
    CommitRefusedError,
    ScorerFaustApp,
    TableStore,
    abort_deliveries,
    create_app,
    producer_client,
)
from stream.health import Health
from stream.join import TABLE_NAME, Join, JoinMetrics, JoinOutput, LiveQuality, changelog_topic_name
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
    # the join (JOIN_ENABLED; built with the app's table) and live quality (None: not exported)
    join: Join | None = None
    quality: LiveQuality | None = None

    def __post_init__(self) -> None:
        self.app: ScorerFaustApp | None = None
        # False while faust restores the join table (no sweep may touch the store then)
        self.join_ready = False
        self._join_partitions: frozenset[int] = frozenset()
        self._score_pool = ThreadPoolExecutor(1, thread_name_prefix="score")
        self._load_pool = ThreadPoolExecutor(1, thread_name_prefix="model-load")
        self._last_offsets: dict[tuple[str, int], int] = {}
        self._lag_series: set[tuple[str, int]] = set()
        self._stopping: asyncio.Task[None] | None = None
        self._waiting_for_model = False
        self._told_no_model = False
        self._polled = False
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
        self._polled = True
        self.health.model_loaded = self.holder.model is not None

    async def _wait_for_model(self) -> Any:
        self._waiting_for_model = True
        try:
            # until a whole poll has returned: the current model is set before the shadow is loaded,
            # and the first batches would go without shadow scores
            while self.holder.model is None or not self._polled:
                await self.poll_model()
                if self.holder.model is None:
                    if not self._told_no_model:
                        logger.warning(
                            "records wait for a first model in %s (nothing is scored or committed until "
                            "one is published)",
                            self.settings.model_registry,
                        )
                        self._told_no_model = True
                    await asyncio.sleep(self.settings.reload_poll_seconds)
        finally:
            self._waiting_for_model = False
        return self.holder.model

    def abandonable(self) -> bool:
        return self._waiting_for_model

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
        joined: JoinOutput | None = None
        if self.join is None:
            result = await loop.run_in_executor(self._score_pool, self.batch_scorer.process, model, records)
        else:
            result, joined = await loop.run_in_executor(
                self._score_pool, self._score_and_join, model, records
            )
        sink = self.start_sink()
        await sink.ensure_topics((self.settings.output_topic, self.settings.dlq_topic))
        await sink.send(self.settings.output_topic, result.scores)
        await sink.send(self.settings.dlq_topic, result.dead_letters)
        await self.send_shadow_scores(sink, result)
        if joined is not None:
            await self._send_joined(sink, joined)
        self.health.processed()

    async def send_shadow_scores(self, sink: BatchSink, result: BatchResult) -> None:
        """The shadow version's scores (``stream/shadow.py``) to SHADOW_OUTPUT_TOPIC, never to the
        output topic; the topic is checked only when a batch has shadow scores."""
        if result.shadow_scores:
            await sink.ensure_topics((self.settings.shadow_output_topic,))
            await sink.send(self.settings.shadow_output_topic, result.shadow_scores)

    async def _send_joined(self, sink: BatchSink, joined: JoinOutput) -> None:
        """The join's bad outcomes, changelog records and labelled rows (the commit gate covers them)."""
        settings = self.settings
        changelog = changelog_topic_name(settings.scorer_app_id)
        await sink.ensure_topics((changelog, settings.labelled_topic))
        await sink.send(settings.dlq_topic, joined.dead_letters)
        await sink.send(changelog, joined.changelog)
        await sink.send(settings.labelled_topic, joined.labelled)

    def _score_and_join(self, model: ScoringModel, records: list[InRecord]) -> tuple[BatchResult, JoinOutput]:
        """Score the batch's events, then join scores and outcomes (scoring thread)."""
        assert self.join is not None
        input_topic = self.settings.input_topic
        events = [r for r in records if r.topic == input_topic]
        outcomes = [r for r in records if r.topic != input_topic]
        result = self.batch_scorer.process(model, events) if events else BatchResult()
        self._tell_quality_models(model)
        return result, self.join.apply(result.scored, result.shadow, outcomes)

    def _tell_quality_models(self, model: ScoringModel) -> None:
        if self.join is None or self.join.quality is None:
            return
        self.join.set_model(model.version, "current", model.manifest)
        shadow = self.holder.shadow_model  # None without a shadow version (or with SHADOW_ENABLED=false)
        if shadow is None:
            self.join.set_model(None, "shadow")
        else:
            self.join.set_model(shadow.version, "shadow", shadow.manifest)

    # -- the join table (BatchHooks) --------------------------------------------------------------
    def rebalance_started(self) -> None:
        self.join_ready = False

    async def table_recovered(self, partitions: frozenset[int]) -> None:
        """faust restored the table's store: rebuild the join's index from it (scoring thread)."""
        if self.join is None:
            return
        loop = asyncio.get_running_loop()
        held = await loop.run_in_executor(self._score_pool, self.join.rebuild, partitions)
        self._join_partitions = partitions
        inputs = self._input_partitions()
        if inputs is not None and inputs != partitions:
            logger.error(
                "the join table's changelog partitions %s are not the input partitions %s: the input, "
                "outcomes and changelog topics must have the same partition count (TOPIC_PARTITIONS); "
                "outcomes will not meet their scores",
                sorted(partitions),
                sorted(inputs),
            )
        logger.info("join table restored: %d ids in partitions %s", held, sorted(partitions))
        self.join_ready = True

    def _input_partitions(self) -> frozenset[int] | None:
        try:
            assignment = self.faust_app.consumer.assignment()
        except Exception:  # consumer not started
            return None
        return frozenset(tp.partition for tp in assignment if tp.topic == self.settings.input_topic)

    async def join_housekeeping(self) -> None:
        """Expire old entries (tombstones to the changelog) and publish live quality (scoring thread)."""
        if self.join is None:
            return
        app = self.faust_app
        ready, generation = self.join_ready, app.consumer_generation_id
        loop = asyncio.get_running_loop()
        expired = await loop.run_in_executor(self._score_pool, self._sweep_and_publish, ready)
        if not expired.changelog:
            return
        if not self.join_ready or generation != app.consumer_generation_id:
            # a rebalance began meanwhile: the new owner's restore decides (the entries expire again)
            logger.info("join sweep of %d ids not written: a rebalance began", len(expired.changelog))
            return
        sink = self.start_sink()
        changelog = changelog_topic_name(self.settings.scorer_app_id)
        await sink.ensure_topics((changelog,))
        await sink.send(changelog, expired.changelog)

    def _sweep_and_publish(self, ready: bool) -> JoinOutput:
        assert self.join is not None
        expired = self.join.sweep() if ready else JoinOutput()
        if self.join.quality is not None:
            try:  # observability never stops the worker
                self.join.quality.publish()
            except Exception:
                logger.exception("live quality failed to publish")
        return expired

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
            topics = [settings.input_topic, settings.output_topic, settings.dlq_topic]
            if self.join is not None:
                topics += [settings.outcomes_topic, settings.labelled_topic]
            states = await self.probe.topics(topics)
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
        batch_topics = set(self.faust_app.adapter_config.batch_topics)
        assignment = {tp for tp in assignment if tp.topic in batch_topics}  # not the table's changelog
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
        # the join table's changelog partitions follow the input's; no standby copies on other workers
        "table_standby_replicas": 0,
        "web_enabled": True,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "web_in_thread": False,
        "datadir": str(settings.data_dir),
    }


def adapter_config(settings: StreamSettings) -> AdapterConfig:
    join = settings.join_enabled
    return AdapterConfig(
        batch_topics=(settings.input_topic, settings.outcomes_topic) if join else (settings.input_topic,),
        join_table=TABLE_NAME if join else None,
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
    if worker.app.join_table is not None:
        worker.quality = live_quality(settings, registry, clock)
        worker.join = Join(
            TableStore(worker.app.join_table),
            JoinMetrics(registry),
            retention_seconds=settings.join_retention_seconds,
            quality=worker.quality,
            max_outcome_bytes=settings.max_event_bytes,
            max_dead_letter_bytes=settings.dlq_max_record_bytes,
            clock=clock,
        )
    _wire(worker)
    return worker


def live_quality(
    settings: StreamSettings, registry: CollectorRegistry, clock: Callable[[], float]
) -> LiveQuality:
    """The live-quality gauges the join feeds (``stream/quality.py``), on the worker's registry."""
    return quality.LiveQuality(
        registry,
        max_events=settings.quality_window_events,
        max_seconds=settings.quality_window_seconds,
        min_impressions=settings.quality_min_impressions,
        clock=clock,
    )


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
        await worker.join_housekeeping()

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
