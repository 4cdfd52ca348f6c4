"""Readiness and liveness (injected clock) and the delivery ledger's proof of storage (fake broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from stream.faust_adapter import TopicState
from stream.health import Health
from stream.sink import (
    DeliveryFailedError,
    DeliveryLedger,
    EndOffsetUnknownError,
    OutputTopicMissingError,
    UnstoredOutputError,
)


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _ready_health(clock: FakeClock, **kwargs: float) -> Health:
    health = Health(clock=clock, **kwargs)
    health.model_loaded = True
    health.partitions_assigned = 2
    return health


def test_ready_needs_a_model_and_partitions() -> None:
    health = Health(clock=FakeClock(), stall_seconds=30, ready_timeout_seconds=10)
    assert health.ready() == (False, "no model loaded")
    health.model_loaded = True
    assert health.ready() == (False, "no partitions assigned")
    health.partitions_assigned = 2
    assert health.ready() == (True, "ok")


def test_ready_turns_false_when_the_broker_stops_answering_and_back_when_it_answers() -> None:
    clock = FakeClock()
    health = _ready_health(clock, ready_timeout_seconds=10)
    for _ in range(10):  # the probe answers every second
        clock.now += 1
        health.broker_answered()
        assert health.ready() == (True, "ok")
    clock.now += 10  # exactly the timeout: still ready
    assert health.ready()[0] is True
    clock.now += 0.5
    assert health.ready() == (False, "no answer from the broker for 10 s")
    clock.now += 12
    assert health.ready() == (False, "no answer from the broker for 22 s")
    health.heartbeat()
    assert health.live() == (True, "ok")  # nothing processed is waiting: an outage alone is not death
    health.broker_answered()
    assert health.ready() == (True, "ok")


def test_ready_turns_false_when_processed_events_wait_for_their_commit() -> None:
    clock = FakeClock()
    health = _ready_health(clock, ready_timeout_seconds=10, stall_seconds=30)
    clock.now += 100  # idle for long: the old commit does not count against the next batch
    health.heartbeat()
    health.broker_answered()
    health.processed()
    clock.now += 1
    health.broker_answered()
    assert health.ready() == (True, "ok")
    health.committed()
    health.processed()  # a later batch
    clock.now += 9
    health.processed()  # the oldest uncommitted one counts
    health.broker_answered()
    assert health.ready() == (True, "ok")
    clock.now += 2
    health.broker_answered()  # the broker answers metadata but commits do not go through
    assert health.ready() == (False, "processed events not committed for 11 s")
    health.heartbeat()
    assert health.live() == (True, "ok")
    clock.now += 20
    health.heartbeat()
    assert health.live() == (False, "processed events not committed for 31 s")
    health.committed()
    assert health.ready() == (True, "ok") and health.live() == (True, "ok")


def test_missing_topics_and_lost_outputs_make_the_worker_unready() -> None:
    clock = FakeClock()
    health = _ready_health(clock)
    health.topics_missing = ["headline-scores"]
    assert health.ready() == (False, "topics missing on the broker: headline-scores")
    health.topics_missing = []
    health.outputs_lost("output topic x is missing")
    assert health.ready() == (False, "outputs not stored, stopping: output topic x is missing")


def test_live_follows_the_event_loop_heartbeat() -> None:
    clock = FakeClock()
    health = Health(clock=clock, stall_seconds=30)
    clock.now += 31
    assert health.live() == (False, "event loop heartbeat 31 s ago")
    health.heartbeat()
    assert health.live() == (True, "ok")


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Health(clock=FakeClock(), ready_timeout_seconds=0)


# --- the delivery ledger ---------------------------------------------------------------------------


@dataclass
class Record:
    offset: int


@dataclass
class FakeBroker:
    """What a broker says about topics: partitions per topic and end offset per partition."""

    partitions: dict[str, int] = field(default_factory=dict)
    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    calls: int = 0

    async def topics(self, names: Sequence[str]) -> dict[str, TopicState]:
        self.calls += 1
        return {
            n: TopicState(n, frozenset(range(self.partitions[n])))
            if n in self.partitions
            else TopicState(n, frozenset(), 3)
            for n in names
        }

    async def end_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {tp: self.ends.get(tp, -1) for tp in partitions}


def _acked(ledger: DeliveryLedger, topic: str, partition: int, offset: int) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[object] = loop.create_future()
    ledger.track(fut, topic, partition)
    fut.set_result(Record(offset))


async def _settle() -> None:
    await asyncio.sleep(0)  # done callbacks run on the next loop step


def test_ledger_passes_only_what_the_broker_holds() -> None:
    async def run() -> None:
        failures: list[BaseException] = []
        ledger = DeliveryLedger(on_failure=failures.append)
        broker = FakeBroker({"scores": 4}, {("scores", 0): 10, ("scores", 1): 3})
        await ledger.verify(broker, {"scores": 4})  # nothing produced: nothing to prove
        assert broker.calls == 0
        _acked(ledger, "scores", 0, 9)
        _acked(ledger, "scores", 1, 2)
        await _settle()
        await ledger.verify(broker, {"scores": 4})
        assert ledger.unverified == {} and failures == []
        # the broker restarted empty: it acknowledges but holds nothing (end offset 0)
        broker.ends = {("scores", 0): 0}
        _acked(ledger, "scores", 0, 0)
        await _settle()
        with pytest.raises(UnstoredOutputError, match=r"scores\[0\] ends at offset 0"):
            await ledger.verify(broker, {"scores": 4})
        assert len(failures) == 1
        with pytest.raises(UnstoredOutputError):  # latched: every later commit is refused
            await ledger.verify(broker, {"scores": 4})

    asyncio.run(run())


def test_ledger_fails_on_a_missing_topic_a_rewound_partition_and_a_failed_delivery() -> None:
    async def run() -> None:
        ledger = DeliveryLedger()
        _acked(ledger, "scores", 0, 5)
        await _settle()
        with pytest.raises(UnstoredOutputError, match="does not exist"):
            await ledger.verify(FakeBroker({}), {"scores": 4})

        ledger = DeliveryLedger()
        _acked(ledger, "scores", 0, 5)
        _acked(ledger, "scores", 0, 0)  # offsets went backwards before any check: re-created topic
        await _settle()
        assert isinstance(ledger.failure, UnstoredOutputError)

        ledger = DeliveryLedger()
        _acked(ledger, "scores", 0, 5)
        await _settle()
        with pytest.raises(UnstoredOutputError, match="1 partitions, records were routed for 4"):
            await ledger.verify(FakeBroker({"scores": 1}, {("scores", 0): 6}), {"scores": 4})

        ledger = DeliveryLedger()
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        ledger.track(fut, "scores", 2)
        fut.set_exception(TimeoutError("request timed out"))
        with pytest.raises(DeliveryFailedError, match=r"scores\[2\] failed"):
            await ledger.verify(FakeBroker({"scores": 4}), {"scores": 4})

    asyncio.run(run())


def test_ledger_waits_for_pending_deliveries_before_it_decides() -> None:
    async def run() -> None:
        ledger = DeliveryLedger()
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        ledger.track(fut, "scores", 1)
        broker = FakeBroker({"scores": 4}, {("scores", 1): 8})
        verifying = asyncio.ensure_future(ledger.verify(broker, {"scores": 4}))
        await asyncio.sleep(0.01)
        assert not verifying.done()  # the commit waits for the acknowledgement
        fut.set_result(Record(7))
        await verifying
        assert ledger.failure is None

    asyncio.run(run())


def test_periodic_check_latches_when_a_topic_with_unproven_outputs_disappears() -> None:
    async def run() -> None:
        ledger = DeliveryLedger()
        await ledger.check_topics(FakeBroker({}), {"scores": 4})  # nothing unproven: nothing decided
        assert ledger.failure is None
        _acked(ledger, "scores", 3, 1)
        await _settle()
        await ledger.check_topics(FakeBroker({}), {"scores": 4})
        assert isinstance(ledger.failure, UnstoredOutputError)

    asyncio.run(run())


def test_output_topic_missing_error_is_an_unstored_output_error() -> None:
    assert issubclass(OutputTopicMissingError, UnstoredOutputError)


class SilentBroker(FakeBroker):
    async def topics(self, names: Sequence[str]) -> dict[str, TopicState]:
        raise TimeoutError("no answer")


def test_an_unreachable_broker_proves_nothing_and_decides_nothing() -> None:
    async def run() -> None:
        ledger = DeliveryLedger()
        _acked(ledger, "scores", 0, 5)
        await _settle()
        with pytest.raises(TimeoutError):  # the commit is skipped, not refused for good
            await ledger.verify(SilentBroker(), {"scores": 4})
        assert ledger.failure is None and ledger.unverified == {("scores", 0): 5}
        await ledger.verify(FakeBroker({"scores": 4}, {("scores", 0): 6}), {"scores": 4})  # back
        assert ledger.unverified == {}

    asyncio.run(run())


def test_a_partition_without_an_end_offset_postpones_the_commit_and_latches_nothing() -> None:
    async def run() -> None:
        ledger = DeliveryLedger()
        _acked(ledger, "scores", 0, 5)
        _acked(ledger, "scores", 1, 2)
        await _settle()
        moving = FakeBroker({"scores": 4}, {("scores", 0): 6})  # scores[1]: leader moving, no offset
        with pytest.raises(EndOffsetUnknownError, match=r"scores\[1\] has no end offset"):
            await ledger.verify(moving, {"scores": 4})
        assert ledger.failure is None
        assert ledger.unverified == {("scores", 0): 5, ("scores", 1): 2}  # still to be proven
        await ledger.verify(FakeBroker({"scores": 4}, {("scores", 0): 6, ("scores", 1): 3}), {"scores": 4})
        assert ledger.unverified == {} and ledger.failure is None

    asyncio.run(run())
