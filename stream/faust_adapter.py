"""The one module that touches faust's and aiokafka's internals.

faust runs the consumer group, the fetches, offset tracking and commits, the
producer, the web server, the timers and the join's table (its changelog and
restore). The scorer needs the things below that faust does not offer
publicly; each is done here, in a subclass or a small function, so faust
itself stays unpatched and an upgrade that breaks an assumption fails
``tests/test_faust_adapter.py`` instead of the stream:

* **Fetch wait.** faust hard-codes ``fetch_max_wait_ms=1500`` for its worker
  consumer. On brokers that do not answer a waiting Fetch early (the embedded
  broker, ``KNOWN.md``) that wait becomes end-to-end latency, so the value comes
  from :class:`AdapterConfig`.
* **Batches instead of a stream.** faust's fetch loop hands records one at a
  time to its stream machinery (two tasks per message, and the per-event stream
  cost exceeded the scorer's CPU budget). :class:`ScorerConsumer` collects the
  records of the batch topics (the input and, with the join, the outcomes) into
  batches of up to ``batch_max_events`` (or ``batch_max_wait_seconds``) and
  hands them to :meth:`BatchHooks.handle_batch` together; they are acked
  (become committable) only after it returned. A handler that raises leaves its
  records unacked: they are never committed. Records of other topics (a table's
  changelog while faust restores it) take faust's own path (the conductor puts
  them in the table manager's changelog queue, which its recovery applies).
* **The join table.** With :attr:`AdapterConfig.join_table`, a faust table
  (:class:`JoinTable`, raw keys and values) is registered, so faust's table
  manager declares its changelog topic and restores its store on every
  assignment; faust's assignor assigns the co-partitioned input, outcomes and
  changelog partitions (same partition count) together. The worker writes the
  changelog itself (``stream/join.py``): :class:`TableStore` gives it the
  store and the lock that keeps faust's restore apart from the scoring thread.
  :meth:`BatchHooks.rebalance_started` and :meth:`BatchHooks.table_recovered`
  tell the worker when the store is being restored and when it is complete
  (after the records buffered by faust's recovery are applied: on a broker whose
  high watermark counts batches, faust stops reading at the last batch's first
  record and buffers the rest). :meth:`ScorerConsumer.highwaters` therefore
  reports the offset after the last stored record: the broker's high watermark,
  raised by reading the partition from there to its end.
* **Commit gate.** Before every offset commit, after faust flushed the producer,
  :meth:`BatchHooks.verify_before_commit` must pass (it proves the outputs are
  stored, ``stream/sink.py``); :meth:`BatchHooks.commit_refusal` refuses commits
  for good once a delivery was lost, before faust even flushes.
* **Producer.** acks=all and, when :attr:`AdapterConfig.producer_idempotence`,
  aiokafka's idempotent producer (faust enables it only for transactions). The
  aiokafka producer itself is handed to the sink (:func:`producer_client`), which
  uses its batch API; :class:`BrokerProbe` reads topic metadata (without
  auto-creating topics) and end offsets through its client.
* **Seek on assignment.** faust keeps a partition's old read position when the
  group has no committed offset for it (a broker that lost its offsets); the
  scorer starts such a partition from the beginning (``perform_seek``).
* **Stall detector.** faust's monitor notes per partition when its stream last
  took an event; :func:`mark_inbound` does that for the records of a batch.

Verified with the versions in :data:`VERIFIED_FAUST` and :data:`VERIFIED_AIOKAFKA`;
:data:`PRIVATE_METHODS` and :data:`PRIVATE_ATTRIBUTES` list every private name used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import faust
from faust.transport.consumer import ensure_TP
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from artifact.errors import HeadlineScorerError

logger = logging.getLogger(__name__)

# Inclusive ranges of the installed versions this module was verified with. On an upgrade outside
# them, re-verify the private names below (tests/test_faust_adapter.py checks their existence and
# signatures) and the behaviour they rely on (the kafka and faults tests), then widen the range.
VERIFIED_FAUST: tuple[str, str] = ("0.15.3", "0.15.3")
VERIFIED_AIOKAFKA: tuple[str, str] = ("0.14.0", "0.14.0")


@dataclass(frozen=True, slots=True)
class PrivateMethod:
    """A private method this module overrides or calls: where it is defined and its parameters."""

    owner: str  # dotted path of the class
    name: str
    parameters: tuple[str, ...]  # names, ``self`` first


@dataclass(frozen=True, slots=True)
class PrivateAttribute:
    owner: str  # dotted path of the class whose instances carry it
    name: str


PRIVATE_METHODS: tuple[PrivateMethod, ...] = (
    PrivateMethod(
        "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread",
        "_create_worker_consumer",
        ("self", "transport"),
    ),
    PrivateMethod("faust.transport.drivers.aiokafka.Consumer", "_new_consumer_thread", ("self",)),
    PrivateMethod("faust.transport.drivers.aiokafka.Consumer", "_commit", ("self", "offsets")),
    PrivateMethod("faust.transport.consumer.Consumer", "_drain_messages", ("self", "fetcher")),
    PrivateMethod(
        "faust.transport.consumer.Consumer", "_add_gap", ("self", "tp", "offset_from", "offset_to")
    ),
    PrivateMethod("faust.transport.drivers.aiokafka.Producer", "_settings_extra", ("self",)),
    PrivateMethod("faust.transport.drivers.aiokafka.Producer", "_ensure_producer", ("self",)),
    PrivateMethod("faust.app.base.App", "_new_transport", ("self",)),
    PrivateMethod(
        "aiokafka.producer.message_accumulator.MessageAccumulator", "fail_all", ("self", "exception")
    ),
)

PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = (
    PrivateAttribute("aiokafka.AIOKafkaConsumer", "_fetch_max_wait_ms"),
    PrivateAttribute("aiokafka.AIOKafkaProducer", "_message_accumulator"),
    PrivateAttribute("faust.transport.drivers.aiokafka.Consumer", "_stopped"),
    PrivateAttribute("faust.transport.consumer.Fetcher", "_stopped"),
    PrivateAttribute("faust.transport.drivers.aiokafka.Consumer", "_read_offset"),
    PrivateAttribute("faust.transport.drivers.aiokafka.Consumer", "_committed_offset"),
    PrivateAttribute("faust.transport.drivers.aiokafka.Consumer", "_commit_every"),
    PrivateAttribute("faust.transport.drivers.aiokafka.Consumer", "_n_acked"),
    PrivateAttribute("faust.sensors.monitor.Monitor", "stream_inbound_time"),
)


class AdapterError(HeadlineScorerError):
    """faust or aiokafka did not behave as this adapter expects."""


class CommitRefusedError(HeadlineScorerError):
    """An offset commit was refused because outputs it would cover are not known to be stored."""


@dataclass(frozen=True, slots=True)
class AdapterConfig:
    """What the adapter needs from the settings (built once, passed in; never read from the app)."""

    batch_topics: tuple[str, ...]
    fetch_max_wait_ms: int = 1500
    batch_max_events: int = 256
    batch_max_wait_seconds: float = 0.02
    producer_idempotence: bool = True
    # the name of the join's faust table (stream/join.py); None: no table
    join_table: str | None = None

    def __post_init__(self) -> None:
        if not self.batch_topics or not all(self.batch_topics):
            raise ValueError(f"expected one or more batch topic names, got {self.batch_topics!r}")
        if len(set(self.batch_topics)) != len(self.batch_topics):
            raise ValueError(f"expected distinct batch topics, got {self.batch_topics!r}")
        if self.join_table is not None and not self.join_table:
            raise ValueError("expected a join table name or None, got an empty string")
        if self.fetch_max_wait_ms < 0:
            raise ValueError(f"expected fetch_max_wait_ms >= 0, got {self.fetch_max_wait_ms}")
        if self.batch_max_events < 1:
            raise ValueError(f"expected batch_max_events >= 1, got {self.batch_max_events}")
        if self.batch_max_wait_seconds <= 0:
            raise ValueError(f"expected batch_max_wait_seconds > 0, got {self.batch_max_wait_seconds}")


class BatchHooks(Protocol):
    """What the app plugs into the consumer."""

    async def handle_batch(self, messages: Sequence[Any]) -> None:
        """Process faust messages (``key``, ``value``, ``topic``, ``partition``, ``offset``, ...)."""

    def abandonable(self) -> bool:
        """True while the batch in flight has produced nothing and may be dropped unacked on stop
        (it waits for a first model): stopping then does not wait for it."""

    def commit_refusal(self) -> BaseException | None:
        """Why no commit may happen any more (None: commits allowed)."""

    async def verify_before_commit(self, offsets: Mapping[TP, int]) -> bool:
        """True when every output the commit covers is proven stored; False when that cannot be told
        now (broker unreachable: the commit is skipped); :class:`CommitRefusedError` when outputs
        were lost."""

    def committed(self, offsets: Mapping[TP, int]) -> None:
        """The broker accepted the commit of ``offsets``."""

    def rebalance_started(self) -> None:
        """A rebalance began: the join table's store is about to be restored (event loop)."""

    async def table_recovered(self, partitions: frozenset[int]) -> None:
        """faust restored the join table's store for these (changelog = input) partitions."""


async def _finish_step(coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
    """Drive a coroutine that suspended on its first step to completion."""
    while True:
        if yielded is None:
            await asyncio.sleep(0)
        else:
            try:
                await asyncio.wait({yielded})
            except asyncio.CancelledError:
                coro.close()
                raise
        try:
            yielded = coro.send(None)
        except StopIteration:
            return


class ScorerConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps the value until start(), when it builds its Fetcher.
        consumer._fetch_max_wait_ms = scorer_app(self.app).adapter_config.fetch_max_wait_ms
        return consumer


class ScorerConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ScorerConsumerThread:
        return ScorerConsumerThread(self, loop=self.loop, beacon=self.beacon)

    @property
    def _hooks(self) -> BatchHooks:
        return scorer_app(self.app).hooks

    async def perform_seek(self) -> None:
        """Seek to the committed offsets, like faust; a partition without one (a new group, or a
        broker that lost the group's offsets) starts from the beginning instead of where this
        process read before, and forgets the offset this process had committed for it."""
        committed = await self.seek_to_committed()
        for tp, offset in committed.items():
            if offset is None or offset < 0:
                await self.seek(ensure_TP(tp), 0)  # below the log start: the reset policy (earliest)
            valid = offset is not None and offset > 0
            self._read_offset[ensure_TP(tp)] = offset if valid else None
            self._committed_offset[ensure_TP(tp)] = offset if valid else None

    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        refusal = self._hooks.commit_refusal()
        if refusal is not None:  # before faust flushes a producer that may never drain
            raise CommitRefusedError(f"offsets are not committed any more: {refusal!r}") from refusal
        return bool(await super().commit(topics, start_new_transaction=start_new_transaction))

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        hooks = self._hooks
        if not await hooks.verify_before_commit(offsets):
            return False  # faust commits these offsets with the next ones that advance
        did_commit = bool(await super()._commit(offsets))
        if did_commit:
            hooks.committed(offsets)
        return did_commit

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        """The broker's high watermarks, raised to the end of what is stored (table recovery reads
        a changelog up to these). A broker whose high watermark counts batches (the embedded
        broker, ``KNOWN.md``) reports less than the last offset + 1 when batches hold several
        records; faust would then stop restoring in the middle of the last batch."""
        marks = dict(await super().highwaters(*partitions))
        behind = {tp: mark for tp, mark in marks.items() if mark is not None and mark > 0}
        if behind:
            marks.update(await self._stored_ends(behind))
        return marks

    async def _stored_ends(self, marks: Mapping[TP, int], timeout: float = 30.0) -> dict[TP, int]:
        """Read each partition from its high watermark - 1 until nothing more comes: the offset after
        its last record (on Apache Kafka, the high watermark itself)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        conf, transport = self.app.conf, cast(Any, self.transport)
        reader = AIOKafkaConsumer(
            bootstrap_servers=faust_aiokafka.server_list(transport.url, transport.default_port),
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
            request_timeout_ms=int(conf.broker_request_timeout * 1000.0),
            **faust_aiokafka.credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
        )
        ends = {tp: int(mark) for tp, mark in marks.items()}
        await reader.start()
        try:
            assigned = {TopicPartition(tp.topic, tp.partition): tp for tp in marks}
            reader.assign(list(assigned))
            for atp, tp in assigned.items():
                reader.seek(atp, ends[tp] - 1)
            pending = set(assigned)
            deadline = time.monotonic() + timeout
            while pending and time.monotonic() < deadline:
                fetched = await reader.getmany(*pending, timeout_ms=200)
                for atp in list(pending):
                    records = fetched.get(atp)
                    if records:
                        tp = assigned[atp]
                        ends[tp] = max(ends[tp], records[-1].offset + 1)
                    else:  # nothing after what was read: the end
                        pending.discard(atp)
        finally:
            await reader.stop()
        return ends

    def _deliverable(self, message: Any) -> bool:
        """False for records fetched before a rebalance (they are fetched again, not acked)."""
        app = self.app
        return bool(
            app.flow_control.is_active()
            and message.generation_id == app.consumer_generation_id
            and not self.suspend_flow.is_set()
        )

    async def _run_batch(self, messages: list[Any]) -> None:
        """Hand ``messages`` to the hooks, then ack them (they become committable).

        A batch in flight when the worker is told to stop is finished first: cancellation
        waits for it, so its records are acked only once their outputs are enqueued; a batch
        still waiting for a first model is dropped unacked instead (the restart reads it again). A
        handler that raises leaves the batch unacked (never committed) and stops the loop.
        """
        messages = [m for m in messages if self._deliverable(m)]
        if not messages:
            return
        for message in messages:
            self.track_message(message)
        mark_inbound(self.app, {m.tp for m in messages})
        task = asyncio.ensure_future(self._hooks.handle_batch(messages))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if self._hooks.abandonable():  # nothing produced yet: drop it unacked (never committed)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise
            await task
            self._ack_all(messages)
            raise
        self._ack_all(messages)

    def _ack_all(self, messages: list[Any]) -> None:
        ack = self.ack
        for message in messages:
            ack(message)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by kafka tests
        # Same loop as faust.transport.consumer.Consumer._drain_messages, minus the
        # two tasks per message (see the module docstring).
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        flow_suspended = self.suspend_flow.is_set
        sleep = asyncio.sleep
        config = scorer_app(self.app).adapter_config
        batch_topics = frozenset(config.batch_topics)
        batch_max = config.batch_max_events
        batch_wait = config.batch_max_wait_seconds
        # Records of the batch topic wait here until the batch is full or its oldest record has
        # waited ``batch_wait``; they are tracked (pending ack) only when handed over, so a
        # rebalance never waits for records nobody is processing yet.
        pending: list[Any] = []
        first_at = 0.0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag("FETCHING")
                timeout = 1.0 if not pending else max(0.0, batch_wait - (time.monotonic() - first_at))
                ait = getmany(timeout=timeout)
                await sleep(0)
                if self.should_stop:
                    continue
                since_yield = 0
                async for tp, message in ait:
                    since_yield += 1
                    if since_yield > 100:
                        await sleep(0)
                        since_yield = 0
                    offset = message.offset
                    read_offset = get_read_offset(tp)
                    if read_offset is not None and offset < read_offset:
                        continue
                    if read_offset and offset - read_offset > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, read_offset + 1, offset)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if message.topic in batch_topics:
                        if not pending:
                            first_at = time.monotonic()
                        pending.append(message)
                        if len(pending) >= batch_max:
                            await self._run_batch(pending)
                            pending = []
                    elif flow_suspended():
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        coro = cast(Coroutine[Any, Any, Any], callback(message))
                        try:
                            yielded = coro.send(None)
                        except StopIteration:
                            pass
                        else:
                            await self.wait_first(_finish_step(coro, yielded), self.suspend_flow.wait())
                    set_read_offset(tp, offset)
                if pending and time.monotonic() - first_at >= batch_wait:
                    await self._run_batch(pending)
                    pending = []
                self.diag.unset_flag("FETCHING")
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                logger.info("broker stopped the consumer while shutting down")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise


class ScorerProducer(faust_aiokafka.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        extra = {**super()._settings_extra(), "acks": "all"}
        if scorer_app(self.app).adapter_config.producer_idempotence:
            extra["enable_idempotence"] = True
        return extra


class ScorerTransport(faust_aiokafka.Transport):
    Consumer = ScorerConsumer
    Producer = ScorerProducer


class ScorerFaustApp(faust.App):
    """faust.App on :class:`ScorerTransport`, carrying the adapter's configuration and hooks."""

    adapter_config: AdapterConfig
    hooks: BatchHooks
    join_table: JoinTable | None = None

    def _new_transport(self) -> Any:
        return ScorerTransport(self.conf.broker_consumer, self, loop=self.loop)

    def on_rebalance_start(self) -> None:
        super().on_rebalance_start()
        self.hooks.rebalance_started()


class JoinTable(faust.Table[bytes, bytes]):
    """faust's table, its store guarded by :attr:`join_lock` while faust writes it (restores)."""

    join_lock: threading.RLock

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        with self.join_lock:
            super().apply_changelog_batch(batch)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        # records faust buffered after it considered the partition read to its high watermark
        cast(Any, self.app.tables).recovery.flush_buffers()
        with self.join_lock:  # the memory store drops the keys of partitions no longer assigned
            await self.data.on_recovery_completed(active_tps, standby_tps)
        await self.call_recover_callbacks()
        changelog = self.changelog_topic.get_topic_name()
        partitions = frozenset(tp.partition for tp in active_tps if tp.topic == changelog)
        await scorer_app(self.app).hooks.table_recovered(partitions)


@dataclass(frozen=True)
class TableStore:
    """:class:`stream.join_state.JoinStore` over a :class:`JoinTable`'s local store (bytes -> bytes)."""

    table: JoinTable

    @property
    def lock(self) -> threading.RLock:
        return self.table.join_lock

    def get(self, key: bytes) -> bytes | None:
        value = self.table.data.get(key)
        return None if value is None else bytes(value)

    def put(self, key: bytes, value: bytes) -> None:
        self.table.data[key] = value

    def delete(self, key: bytes) -> None:
        self.table.data.pop(key, None)

    def snapshot(self) -> list[tuple[bytes, bytes]]:
        return [(bytes(k), bytes(v)) for k, v in list(self.table.data.items()) if v is not None]


def create_app(app_id: str, config: AdapterConfig, hooks: BatchHooks, **faust_options: Any) -> ScorerFaustApp:
    """A faust app that consumes ``config.batch_topics`` in batches handed to ``hooks`` (raw bytes).

    The topics are subscribed through faust's conductor like an agent's, and their records are acked
    (and so committed) only after :meth:`BatchHooks.handle_batch` returned for their batch. With
    ``config.join_table``, the join's table is registered (:attr:`ScorerFaustApp.join_table`).
    """
    app = ScorerFaustApp(app_id, **faust_options)
    app.adapter_config = config
    app.hooks = hooks
    app.topics.add(app.topic(*config.batch_topics, key_serializer="raw", value_serializer="raw"))
    if config.join_table is not None:
        table = JoinTable(
            app,
            name=config.join_table,
            key_type=bytes,  # faust's raw serializers
            value_type=bytes,
            beacon=app.tables.beacon,
            help="scores and outcomes joined by headline id (stream/join.py)",
        )
        table.join_lock = threading.RLock()
        app.tables.add(table)
        app.join_table = table
    return app


def scorer_app(app: Any) -> ScorerFaustApp:
    if not isinstance(app, ScorerFaustApp):
        raise AdapterError(f"expected the scorer's faust app, got {type(app).__name__}")
    return app


# --- functions over faust's and aiokafka's objects ----------------------------------------------


def producer_client(app: faust.App) -> Any:
    """The started aiokafka producer inside faust's producer (raises faust's NotReady before start)."""
    return cast(faust_aiokafka.Producer, app.producer)._ensure_producer()


def mark_inbound(app: Any, tps: Iterable[TP]) -> None:
    """Tell faust's stall detector that these partitions' records were just taken."""
    inbound = app.monitor.stream_inbound_time
    if inbound is None:  # the monitor is not started (no stall detection yet)
        return
    now = time.monotonic()
    for tp in tps:
        inbound[tp] = now


def abort_deliveries(producer: Any, exc: BaseException) -> None:
    """Fail every batch still waiting in ``producer`` (an idempotent producer retries forever otherwise).

    Used only when the worker stops without committing: the failed batches are re-produced after
    the restart, from the committed offsets.
    """
    producer._message_accumulator.fail_all(exc)


@dataclass(frozen=True, slots=True)
class TopicState:
    """A topic as the broker describes it; ``partitions`` is empty when it does not exist."""

    name: str
    partitions: frozenset[int]
    error_code: int = 0

    @property
    def exists(self) -> bool:
        return self.error_code == 0 and bool(self.partitions)


UNKNOWN_TOPIC_OR_PARTITION = 3  # Kafka error code


class BrokerProbe:
    """Metadata and end offsets read through a started aiokafka client, never creating topics.

    aiokafka's own metadata requests ask the broker to auto-create unknown topics; these do not,
    so a topic that is missing is reported missing.
    """

    def __init__(self, client: Any, *, timeout: float = 5.0) -> None:
        self._client = client
        self._timeout = timeout

    @classmethod
    def of_producer(cls, producer: Any, *, timeout: float = 5.0) -> BrokerProbe:
        return cls(producer.client, timeout=timeout)

    def _nodes(self) -> list[Any]:
        return [b.nodeId for b in self._client.cluster.brokers()] or ["bootstrap"]

    async def _send(self, node_id: Any, request: Any) -> Any:
        return await asyncio.wait_for(self._client.send(node_id, request), self._timeout)

    async def topics(self, names: Sequence[str]) -> dict[str, TopicState]:
        """The broker's view of ``names``; raises TimeoutError or aiokafka's errors without an answer."""
        from aiokafka.errors import KafkaConnectionError
        from aiokafka.protocol.metadata import MetadataRequest

        request = MetadataRequest(list(names), allow_auto_topic_creation=False)
        last: BaseException | None = None
        for node_id in self._nodes():
            try:
                response = await self._send(node_id, request)
            except (KafkaConnectionError, TimeoutError, OSError) as exc:
                last = exc
                continue
            found: dict[str, TopicState] = {}
            for topic in response.to_object()["topics"]:
                partitions = frozenset(int(p["partition"]) for p in topic["partitions"])
                found[topic["topic"]] = TopicState(topic["topic"], partitions, int(topic["error_code"]))
            return {n: found.get(n, TopicState(n, frozenset(), UNKNOWN_TOPIC_OR_PARTITION)) for n in names}
        raise TimeoutError(f"no broker answered a metadata request: {last!r}")

    async def end_offsets(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Latest offsets of ``(topic, partition)`` pairs (-1 where the broker reports an error)."""
        from aiokafka.protocol.offset import OffsetRequest
        from aiokafka.structs import TopicPartition

        by_leader: dict[Any, dict[str, list[tuple[int, int]]]] = {}
        out: dict[tuple[str, int], int] = {}
        for topic, partition in partitions:
            leader = self._client.cluster.leader_for_partition(TopicPartition(topic, partition))
            if leader is None or leader < 0:
                out[(topic, partition)] = -1
                continue
            by_leader.setdefault(leader, {}).setdefault(topic, []).append((partition, -1))
        for leader, topics in by_leader.items():
            response = await self._send(leader, OffsetRequest(-1, 0, list(topics.items())))
            for topic in response.to_object()["topics"]:
                for part in topic["partitions"]:
                    offset = int(part["offset"]) if int(part["error_code"]) == 0 else -1
                    out[(topic["topic"], int(part["partition"]))] = offset
        return out
