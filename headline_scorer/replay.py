"""The load generator: CSV rows replayed as headline events at a steady rate.

Rows come from a CSV through a column mapping (``training.data``, pandas only);
each becomes a :class:`stream.events.HeadlineEvent` JSON value keyed by its id,
with ``published_at`` = the time it is sent. Sending is rate-limited in small
ticks and batched by the producer (``linger_ms``). Optionally a share of the
slots carries an invalid record instead (one of each dead-letter reason in
turn) so the demo shows the dead-letter path; the report says how many of each
were sent, which is exactly what the scorer should dead-letter. Headline events
carry the row's A/B ``group`` when the mapping has one.

Outcomes (:func:`replay_outcomes`): the realized impressions and clicks of the
same rows as outcome events on ``OUTCOMES_TOPIC`` (key = id, JSON ``{id,
impressions, clicks, group, at}``), optionally in cumulative steps: step ``k``
of ``n`` reports ``floor(count * k / n)`` of each count, so every id's counts
only grow and end at the row's totals.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

import orjson

from artifact.errors import HeadlineScorerError
from stream.dlq import DeadLetterReason, rfc3339_utc

logger = logging.getLogger(__name__)

INVALID_KINDS: Final[tuple[DeadLetterReason, ...]] = (
    "not_json",
    "schema",
    "not_utf8",
    "null_value",
    "too_large",
)
MAX_PENDING: Final = 10_000


class ReplayError(HeadlineScorerError):
    """The replay could not run (bad arguments, unreachable broker)."""


class ReplayRow(NamedTuple):
    id: str
    title: str
    category: str | None
    group: str | None = None


class OutcomeRow(NamedTuple):
    """A headline's final realized counts (the last of its cumulative outcome events)."""

    id: str
    impressions: int
    clicks: int
    group: str | None = None


@dataclass
class ReplayReport:
    """What was sent: valid events, invalid ones by the reason the scorer should give, delivery failures."""

    valid: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    seconds: float = 0.0
    valid_ids: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.valid + sum(self.invalid.values())

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def render(self) -> str:
        invalid = ", ".join(f"{k} {v}" for k, v in sorted(self.invalid.items())) or "none"
        return (
            f"sent {self.sent} records in {self.seconds:.2f} s ({self.rate:.0f}/s): {self.valid} valid, "
            f"invalid: {invalid}; delivery failures: {self.failed}"
        )


def load_rows(data: Path, mapping: str | Path = "seed") -> list[ReplayRow]:
    """Ids, titles and categories of a CSV (validated by ``training.data``)."""
    from training.data import load_dataset
    from training.mapping import resolve_mapping

    dataset = load_dataset(data, resolve_mapping(mapping))
    categories = dataset.categories or [None] * len(dataset)
    groups = dataset.groups.tolist() if dataset.groups is not None else [None] * len(dataset)
    return [
        ReplayRow(str(i), t, c, g or None)
        for i, t, c, g in zip(dataset.ids.tolist(), dataset.titles, categories, groups, strict=True)
    ]


def load_outcomes(data: Path, mapping: str | Path = "seed") -> list[OutcomeRow]:
    """Ids with their clicks and impressions (and group) of a CSV; the mapping must map both counts."""
    from training.data import load_dataset
    from training.mapping import resolve_mapping

    dataset = load_dataset(data, resolve_mapping(mapping))
    if dataset.clicks is None or dataset.impressions is None:
        raise ReplayError(
            f"{data}: mapping {mapping!s} gives no clicks and impressions; outcomes need both columns"
        )
    groups = dataset.groups.tolist() if dataset.groups is not None else [None] * len(dataset)
    return [
        OutcomeRow(str(i), int(imp), int(clk), g or None)
        for i, imp, clk, g in zip(
            dataset.ids.tolist(), dataset.impressions, dataset.clicks, groups, strict=True
        )
    ]


def event_value(row: ReplayRow, published_at: str, round_no: int = 0) -> tuple[str, bytes]:
    """(id, JSON value) of ``row``; ids of later rounds over the data get a ``~N`` suffix."""
    event_id = row.id if round_no == 0 else f"{row.id}~{round_no}"
    value = {"id": event_id, "title": row.title, "category": row.category, "published_at": published_at}
    if row.group is not None:
        value["group"] = row.group
    return event_id, orjson.dumps(value)


def outcome_steps(row: OutcomeRow, steps: int) -> list[tuple[int, int]]:
    """(impressions, clicks) of each cumulative update: growing, changed each time, ending at the totals.

    Steps that would report no impressions, or the same counts as the step before, are left out.
    """
    if steps < 1:
        raise ReplayError(f"expected at least 1 outcome step, got {steps}")
    out: list[tuple[int, int]] = []
    for k in range(1, steps + 1):
        counts = (row.impressions * k // steps, row.clicks * k // steps)
        if counts[0] > 0 and (not out or counts != out[-1]):
            out.append(counts)
    return out


def outcome_value(row: OutcomeRow, impressions: int, clicks: int, at: str) -> bytes:
    """The JSON value of one outcome event (stream/schemas/headline-outcome.schema.json)."""
    value: dict[str, object] = {"id": row.id, "impressions": impressions, "clicks": clicks, "at": at}
    if row.group is not None:
        value["group"] = row.group
    return orjson.dumps(value)


def invalid_value(kind: DeadLetterReason, n: int, max_event_bytes: int) -> bytes | None:
    """A record value the scorer must dead-letter with reason ``kind``."""
    if kind == "not_json":
        return b'{"id": "invalid-%d", "title": ' % n
    if kind == "schema":
        return orjson.dumps({"id": f"invalid-{n}", "title": "   "})
    if kind == "not_utf8":
        return b'{"id": "invalid-%d", "title": "caf\xe9"}' % n
    if kind == "null_value":
        return None
    if kind == "too_large":
        return orjson.dumps({"id": f"invalid-{n}", "title": "x" * (max_event_bytes + 1)})
    raise ValueError(f"expected one of {INVALID_KINDS}, got {kind!r}")


async def replay_events(
    rows: Sequence[ReplayRow],
    *,
    client_kwargs: Mapping[str, Any],
    topic: str,
    rate: float | None = 1000.0,
    limit: int | None = None,
    invalid_share: float = 0.0,
    max_event_bytes: int = 65536,
    seed: int = 0,
    linger_ms: int = 5,
    keep_ids: bool = False,
    clock: Callable[[], float] = time.time,
) -> ReplayReport:
    """Send ``limit`` events (default: one pass over ``rows``, cycling when ``limit`` is larger).

    ``rate`` is events per second (None or 0: as fast as the producer takes them).
    ``client_kwargs`` are aiokafka arguments (``StreamSettings.kafka_client_kwargs()``).
    """
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    if not rows:
        raise ReplayError("no rows to replay")
    if not 0.0 <= invalid_share <= 1.0:
        raise ReplayError(f"expected an invalid share within [0, 1], got {invalid_share}")
    if rate is not None and rate < 0:
        raise ReplayError(f"expected a rate >= 0 events/s, got {rate}")
    total = len(rows) if limit is None else limit
    rng = random.Random(seed)
    report = ReplayReport()
    invalid: Counter[str] = Counter()
    pending: list[asyncio.Future[Any]] = []
    producer = AIOKafkaProducer(
        **client_kwargs, linger_ms=linger_ms, max_request_size=max(1 << 20, 2 * max_event_bytes)
    )
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise ReplayError(f"cannot reach the broker: {exc!r}") from exc
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    try:
        while sent < total:
            elapsed = loop.time() - start
            due = total if not rate else min(total, int(elapsed * rate) + 1)
            if due <= sent:
                await asyncio.sleep(max(0.001, (sent + 1) / rate - elapsed) if rate else 0)
                continue
            due = min(due, sent + 5000)  # yield to the loop between chunks
            published = rfc3339_utc(clock())
            for n in range(sent, due):
                if invalid_share and rng.random() < invalid_share:
                    kind = INVALID_KINDS[sum(invalid.values()) % len(INVALID_KINDS)]
                    key, value = f"invalid-{n}".encode(), invalid_value(kind, n, max_event_bytes)
                    invalid[kind] += 1
                else:
                    row = rows[n % len(rows)]
                    event_id, value = event_value(row, published, n // len(rows))
                    key = event_id.encode()
                    report.valid += 1
                    if keep_ids:
                        report.valid_ids.append(event_id)
                pending.append(await producer.send(topic, value=value, key=key))
            sent = due
            if len(pending) >= MAX_PENDING:
                report.failed += await _settle(pending)
        report.failed += await _settle(pending)
    finally:
        report.seconds = loop.time() - start
        report.invalid = dict(invalid)
        await producer.stop()
    logger.info("replay to %s: %s", topic, report.render())
    return report


async def replay_outcomes(
    rows: Sequence[OutcomeRow],
    *,
    client_kwargs: Mapping[str, Any],
    topic: str,
    rate: float | None = 1000.0,
    steps: int = 1,
    only_ids: Collection[str] | None = None,
    linger_ms: int = 5,
    clock: Callable[[], float] = time.time,
) -> ReplayReport:
    """Send the outcome events of ``rows`` (those in ``only_ids`` when given), ``steps`` rounds deep.

    Round ``k`` sends every id's ``k``-th cumulative update (:func:`outcome_steps`), so all ids
    progress together as real counts would; ``at`` is the time each is sent. ``rate``: events per
    second (None or 0: as fast as the producer takes them). ``report.valid`` counts outcome events.
    """
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    if rate is not None and rate < 0:
        raise ReplayError(f"expected a rate >= 0 events/s, got {rate}")
    wanted = None if only_ids is None else set(only_ids)
    chosen = [row for row in rows if wanted is None or row.id in wanted]
    if not chosen:
        raise ReplayError("no outcome rows to replay")
    updates = [outcome_steps(row, steps) for row in chosen]
    order = [
        (row, counts[k])
        for k in range(steps)
        for row, counts in zip(chosen, updates, strict=True)
        if k < len(counts)
    ]
    report = ReplayReport()
    pending: list[asyncio.Future[Any]] = []
    producer = AIOKafkaProducer(**client_kwargs, linger_ms=linger_ms)
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise ReplayError(f"cannot reach the broker: {exc!r}") from exc
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        for n, (row, (impressions, clicks)) in enumerate(order):
            if rate:
                wait = n / rate - (loop.time() - start)
                if wait > 0.001:
                    await asyncio.sleep(wait)
            value = outcome_value(row, impressions, clicks, rfc3339_utc(clock()))
            pending.append(await producer.send(topic, value=value, key=row.id.encode()))
            report.valid += 1
            if len(pending) >= MAX_PENDING:
                report.failed += await _settle(pending)
        report.failed += await _settle(pending)
    finally:
        report.seconds = loop.time() - start
        await producer.stop()
    logger.info("outcome replay to %s: %s", topic, report.render())
    return report


async def _settle(pending: list[asyncio.Future[Any]]) -> int:
    """Wait for the deliveries in ``pending`` (emptied); return how many failed."""
    results = await asyncio.gather(*pending, return_exceptions=True)
    pending.clear()
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        logger.warning("%d deliveries failed, first: %r", len(failures), failures[0])
    return len(failures)
