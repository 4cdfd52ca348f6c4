"""A prototype of the fix proposed for the scorer's CPU per event (benchmark contender only).

The scorer's own hot path (``stream.app.Scorer.handle``: decode, ``BatchScorer`` in the scoring
thread, ``BatchSink``, health, metrics) fed by whole fetched batches straight from the consumer,
instead of one faust ``Event`` per message through ``Conductor.on_message`` -> ``Stream`` ->
``take_events`` -> per-event ack. faust still runs the group membership, the offset commits
(messages are tracked and acked through ``Consumer.track_message`` / ``Consumer.ack``, so its
commit timer and the ``CommitGate`` work unchanged), the web server and the timers.

Not production code: no gap handling for compacted topics and a fetched batch is dropped while
flow is suspended (a rebalance; it is fetched again after the seek). Run by
``python -m benchmarks.baselines scorer-batchpath``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import stream.app
from stream.settings import StreamSettings
from stream.transport import ScorerConsumer, ScorerFaustApp, ScorerTransport
from stream.worker import make_worker

BatchHandler = Callable[[Sequence[Any]], Awaitable[None]]


class _Event:
    """What ``Scorer.handle`` reads from a faust event: its ``message``."""

    __slots__ = ("message",)

    def __init__(self, message: Any) -> None:
        self.message = message


class BatchPathConsumer(ScorerConsumer):
    batch_handler: BatchHandler
    batch_max_events: int = 256

    async def _drain_messages(self, fetcher: Any) -> None:
        handler = self.batch_handler
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        try:
            while not (self._stopped.is_set() or fetcher._stopped.is_set()):
                batch = []
                async for tp, message in self.getmany(timeout=1.0):
                    read_offset = get_read_offset(tp)
                    if read_offset is not None and message.offset < read_offset:
                        continue
                    batch.append(message)
                if not batch or self.suspend_flow.is_set():
                    await asyncio.sleep(0)
                    continue
                size = self.batch_max_events
                for start in range(0, len(batch), size):  # micro-batches of BATCH_MAX_EVENTS
                    chunk = batch[start : start + size]
                    for message in chunk:
                        self.track_message(message)
                    await handler([_Event(m) for m in chunk])
                    for message in chunk:
                        self.ack(message)
                        set_read_offset(message.tp, message.offset)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise


class BatchPathTransport(ScorerTransport):
    Consumer = BatchPathConsumer


class BatchPathApp(ScorerFaustApp):
    def _new_transport(self) -> Any:
        return BatchPathTransport(self.conf.broker_consumer, self, loop=self.loop)


def run_scorer_batchpath(settings: StreamSettings) -> None:
    stream.app.ScorerFaustApp = BatchPathApp  # type: ignore[misc]  # this process only
    scorer = stream.app.build_app(settings)
    BatchPathConsumer.batch_handler = staticmethod(scorer.handle)  # type: ignore[assignment]
    BatchPathConsumer.batch_max_events = settings.batch_max_events
    make_worker(scorer, loglevel="WARNING").execute_from_commandline()
