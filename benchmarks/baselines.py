"""The reference contenders of the stream benchmarks, each a process configured like the scorer.

Run as ``python -m benchmarks.baselines KIND`` with the scorer's environment variables
(``KAFKA_BOOTSTRAP_SERVERS``, ``INPUT_TOPIC``, ``OUTPUT_TOPIC``, ``SCORER_APP_ID``,
``MODEL_REGISTRY``, ``FETCH_MAX_WAIT_MS``, ``BATCH_MAX_EVENTS``, ``BATCH_MAX_WAIT_SECONDS``):

``faust-single``
    a stock ``faust.App`` agent that decodes each event (``stream.events.decode_event``) and
    forwards its value with ``await topic.send`` one at a time (issue 4's "bare faust agent").
``faust-batch``
    a stock ``faust.App`` agent with ``stream.take_events(BATCH_MAX_EVENTS,
    within=BATCH_MAX_WAIT_SECONDS)`` forwarding each batch through the producer's batch API
    (``stream.sink.BatchSink``), no decoding (issue 4's "bare faust batch forwarder").
``faust-batch-tuned``
    the same forwarder on the scorer's tuned transport (``stream.faust_adapter.ScorerFaustApp``: configurable
    fetch wait, inline per-message hand-off): the framework floor of the scorer's design.
``scorer-inline``
    the scorer itself (``stream.app.build_app``) with its scoring executor replaced by one that runs
    the batch inline on the event loop: measures what the hand-off to the scoring thread costs.
``aiokafka-score``
    a plain aiokafka loop: ``getmany`` -> ``decode_event`` -> ``ScoringModel.score`` (the same
    runtime loader) -> ``encode_scores`` -> batch produce; the practical ceiling without a framework.
``aiokafka-batchscorer``
    the same loop with the scorer's own ``stream.scoring.BatchScorer`` (metrics, drift window,
    latency histogram) instead of the bare calls: the scorer minus faust.
``aiokafka-forward``
    a plain aiokafka loop that decodes and forwards values in batches (the latency reference).

Both faust contenders use the scorer's faust settings (``stream.app.faust_kwargs``) with the
web server off, but faust's stock transport (its fetch wait of 1.5 s included).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import tempfile
import time
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream.events import EventRejected, decode_event
from stream.settings import StreamSettings
from stream.sink import BatchSink, OutRecord

KINDS = (
    "faust-single",
    "faust-batch",
    "faust-batch-tuned",
    "aiokafka-score",
    "aiokafka-batchscorer",
    "aiokafka-forward",
    "scorer-inline",
)
logger = logging.getLogger("benchmarks.baselines")


def _faust_app(settings: StreamSettings, *, tuned: bool = False) -> Any:
    import faust

    from stream.app import adapter_config, faust_kwargs
    from stream.faust_adapter import ScorerFaustApp

    kwargs = faust_kwargs(settings)
    kwargs.update(web_enabled=False, datadir=tempfile.mkdtemp(prefix="bench-faust-"))
    if not tuned:
        return faust.App(settings.scorer_app_id, **kwargs)
    app = ScorerFaustApp(settings.scorer_app_id, **kwargs)
    # the tuned transport (fetch wait, producer) under faust's own agent path: no batch topic
    app.adapter_config = adapter_config(settings.model_copy(update={"input_topic": "bench-no-batch-topic"}))
    app.hooks = _AgentPathHooks()
    return app


class _AgentPathHooks:
    """Commit hooks of the tuned transport when records go through a faust agent (no batches)."""

    async def handle_batch(self, messages: Any) -> None:
        raise AssertionError("no batch topic in this benchmark")

    def commit_refusal(self) -> BaseException | None:
        return None

    async def verify_before_commit(self, offsets: Any) -> bool:
        return True

    def committed(self, offsets: Any) -> None:
        return None

    def abandonable(self) -> bool:
        return False

    def rebalance_started(self) -> None:
        return None

    async def table_recovered(self, partitions: frozenset[int]) -> None:
        return None


class InlineExecutor(Executor):
    """Runs the submitted call at once on the caller's thread (here: the event loop)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def run_scorer_inline(settings: StreamSettings) -> None:
    from stream.app import build_app
    from stream.worker import make_worker

    worker = build_app(settings)
    worker._score_pool = InlineExecutor()  # type: ignore[assignment]
    make_worker(worker, loglevel="WARNING").execute_from_commandline()


def run_faust(kind: str, settings: StreamSettings) -> None:
    import faust

    from stream.faust_adapter import BrokerProbe, producer_client

    app = _faust_app(settings, tuned=kind == "faust-batch-tuned")
    source = app.topic(settings.input_topic, key_serializer="raw", value_serializer="raw")
    target = app.topic(settings.output_topic, key_serializer="raw", value_serializer="raw")
    max_bytes = settings.max_event_bytes

    if kind == "faust-single":

        async def forward(stream: Any) -> None:
            async for event in stream.events():
                value = event.value
                try:
                    decode_event(value, max_bytes)
                except EventRejected:
                    continue
                await target.send(key=event.key, value=value)

    else:
        sinks: list[BatchSink] = []

        async def forward(stream: Any) -> None:
            async for events in stream.take_events(
                settings.batch_max_events, within=settings.batch_max_wait_seconds
            ):
                if not sinks:
                    producer = producer_client(app)
                    sinks.append(BatchSink(producer, BrokerProbe.of_producer(producer)))
                records = [OutRecord(e.message.key, e.message.value) for e in events]
                await sinks[0].send(settings.output_topic, records)

    app.agent(source, name="bench.forward")(forward)
    worker = faust.Worker(app, loglevel="warn", quiet=True, override_logging=False, redirect_stdouts=False)
    worker.execute_from_commandline()


async def run_aiokafka(kind: str, settings: StreamSettings) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from prometheus_client import CollectorRegistry

    from artifact.registry import Registry
    from stream.events import encode_scores, event_time_seconds
    from stream.faust_adapter import BrokerProbe
    from stream.metrics import ScorerMetrics
    from stream.scoring import BatchScorer, InRecord

    client = settings.kafka_client_kwargs()
    model = None if kind == "aiokafka-forward" else Registry(Path(settings.model_registry)).load_current()
    batch_scorer = BatchScorer(ScorerMetrics(CollectorRegistry()), max_event_bytes=settings.max_event_bytes)
    if kind == "aiokafka-batchscorer":
        from stream.drift import SlidingWindowDrift

        assert model is not None
        batch_scorer.drift_factory = lambda m: SlidingWindowDrift.from_mapping(
            m.manifest.drift,
            max_events=settings.drift_window_events,
            max_seconds=settings.drift_window_seconds,
        )
    consumer = AIOKafkaConsumer(
        settings.input_topic,
        **client,
        group_id=settings.scorer_app_id,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=int(settings.commit_interval_seconds * 1000),
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=int(settings.broker_session_timeout_seconds * 1000),
        heartbeat_interval_ms=int(max(1.0, settings.broker_session_timeout_seconds / 5) * 1000),
    )
    producer = AIOKafkaProducer(**client, acks="all", linger_ms=2)
    await producer.start()
    await consumer.start()
    sink = BatchSink(producer, BrokerProbe.of_producer(producer))
    max_bytes = settings.max_event_bytes
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=200, max_records=settings.batch_max_events)
            messages = [m for batch in fetched.values() for m in batch]
            if not messages:
                continue
            if kind == "aiokafka-forward":
                out = []
                for m in messages:
                    try:
                        decode_event(m.value, max_bytes)
                    except EventRejected:
                        continue
                    out.append(OutRecord(m.key, m.value))
            elif kind == "aiokafka-batchscorer":
                assert model is not None
                records = [
                    InRecord(m.key, m.value, m.topic, m.partition, m.offset, m.timestamp) for m in messages
                ]
                out = batch_scorer.process(model, records).scores
            else:
                assert model is not None
                events, kept = [], []
                for m in messages:
                    try:
                        events.append(decode_event(m.value, max_bytes))
                        kept.append(m)
                    except EventRejected:
                        continue
                scores = model.score([e.title for e in events], [e.category for e in events])
                now = time.time()
                values = encode_scores(
                    [e.id for e in events],
                    scores.ctr,
                    scores.ctr_normalized,
                    scores.quality_prob,
                    scores.quality_label,
                    model_version=model.version,
                    event_times=[
                        event_time_seconds(e, m.timestamp, now) for e, m in zip(events, kept, strict=True)
                    ],
                    scored_at=now,
                    partitions=[m.partition for m in kept],
                    offsets=[m.offset for m in kept],
                )
                out = [OutRecord(e.id.encode(), v) for e, v in zip(events, values, strict=True)]
            await sink.send(settings.output_topic, out)
    finally:
        await sink.wait_delivered()
        await consumer.stop()
        await producer.stop()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in KINDS:
        sys.stderr.write(f"usage: python -m benchmarks.baselines {{{'|'.join(KINDS)}}}\n")
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    settings = StreamSettings.from_env()
    if args[0] == "scorer-inline":
        run_scorer_inline(settings)
    elif args[0].startswith("faust"):
        run_faust(args[0], settings)
    else:
        asyncio.run(run_aiokafka(args[0], settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
