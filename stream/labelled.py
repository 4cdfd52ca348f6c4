"""Labelled rows: the worker's joined (score, outcome) rows on ``LABELLED_TOPIC``, exported as a training CSV.

The worker writes one JSON row per headline id each time its joined outcome changes (key = id; the
topic is compacted, so it keeps the latest row per id). :func:`export_labelled` reads the topic from
the beginning to the end offsets it finds when it starts, keeps the latest row per id (a tombstone
removes the id, as compaction would), and writes :data:`LABELLED_COLUMNS` as CSV: the format the
built-in mapping ``outcomes`` (``training/mapping.py``) reads for ``train`` and ``retrain``.

A row that is not valid JSON or not a labelled row is logged with its ``topic[partition]@offset``,
counted in the report and skipped; it never stops the export.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Self

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from artifact.errors import HeadlineScorerError
from stream.dlq import rfc3339_utc

logger = logging.getLogger(__name__)

#: The CSV columns, in order (ISSUE15 "Labelled rows"; the JSON fields of a labelled row).
LABELLED_COLUMNS: Final[tuple[str, ...]] = (
    "id",
    "title",
    "category",
    "group",
    "impressions",
    "clicks",
    "model_version",
    "score_ctr",
    "score_ctr_normalized",
    "score_quality_prob",
    "scored_at",
    "outcome_at",
)
MAX_REPORTED_PROBLEMS: Final = 20


class LabelledExportError(HeadlineScorerError):
    """The labelled topic could not be read to its end (unreachable broker, missing topic, no progress)."""


class LabelledRow(BaseModel):
    """One joined row: a headline's score by one model version and its latest outcome (extras ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    title: Annotated[str, StringConstraints(min_length=1)]
    category: str | None = None
    group: str | None = None
    impressions: NonNegativeInt
    clicks: NonNegativeInt
    model_version: Annotated[str, StringConstraints(min_length=1)]
    score_ctr: float
    score_ctr_normalized: float
    score_quality_prob: float = Field(ge=0.0, le=1.0)
    scored_at: AwareDatetime
    outcome_at: AwareDatetime

    @model_validator(mode="after")
    def _clicks_within_impressions(self) -> Self:
        if self.clicks > self.impressions:
            raise ValueError(f"expected clicks <= impressions, got {self.clicks} > {self.impressions}")
        return self

    def csv_row(self) -> list[str]:
        def when(moment: datetime) -> str:
            return rfc3339_utc(moment)

        return [
            self.id,
            self.title,
            self.category or "",
            self.group or "",
            str(self.impressions),
            str(self.clicks),
            self.model_version,
            repr(self.score_ctr),
            repr(self.score_ctr_normalized),
            repr(self.score_quality_prob),
            when(self.scored_at),
            when(self.outcome_at),
        ]


@dataclass(frozen=True)
class Problem:
    """A record that was skipped, where it is, and why."""

    topic: str
    partition: int
    offset: int
    error: str

    def render(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}: {self.error}"


@dataclass
class ExportReport:
    """What the export read and wrote."""

    topic: str
    out: Path
    records: int = 0
    rows: int = 0
    tombstones: int = 0
    malformed: int = 0
    below_min_impressions: int = 0
    with_group: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    def render(self) -> str:
        return (
            f"wrote {self.rows} labelled rows ({self.with_group} with an A/B group) to {self.out} from "
            f"{self.records} records of {self.topic} in {self.seconds:.1f} s; skipped: "
            f"{self.malformed} malformed, {self.below_min_impressions} below the minimum impressions, "
            f"{self.tombstones} tombstones"
        )


def decode_row(value: bytes) -> LabelledRow:
    """A labelled row from its JSON value; raises ``ValueError`` with a short reason otherwise."""
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    try:
        return LabelledRow.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors())
        raise ValueError(problems) from None


@dataclass
class _Latest:
    """The latest row per id; an id's rows share a partition (keyed by id), so offset order is time order."""

    rows: dict[str, tuple[int, LabelledRow]] = field(default_factory=dict)

    def put(self, partition: int, row: LabelledRow) -> None:
        kept = self.rows.get(row.id)
        if kept is not None and kept[0] != partition and kept[1].outcome_at > row.outcome_at:
            return  # the id moved partitions (topic re-partitioned): the later outcome wins
        self.rows[row.id] = (partition, row)

    def delete(self, key: str) -> None:
        self.rows.pop(key, None)


async def read_labelled(
    client_kwargs: Mapping[str, Any],
    topic: str,
    report: ExportReport,
    *,
    idle_timeout: float = 30.0,
) -> list[LabelledRow]:
    """Every partition of ``topic`` from its beginning to the end offsets found at the start."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(
        **client_kwargs, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    latest = _Latest()
    try:
        try:
            await consumer.start()
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                raise LabelledExportError(f"topic {topic} does not exist (or has no partitions)")
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            begin = await consumer.beginning_offsets(assigned)
            end = await consumer.end_offsets(assigned)
        except KafkaError as exc:
            raise LabelledExportError(f"cannot read {topic}: {exc!r}") from exc
        pending = {tp for tp in assigned if end[tp] > begin[tp]}
        for tp in assigned:
            consumer.seek(tp, begin[tp])
        loop = asyncio.get_running_loop()
        last_progress = loop.time()
        while pending:
            try:
                batches = await consumer.getmany(*pending, timeout_ms=200)
            except KafkaError as exc:
                raise LabelledExportError(f"cannot read {topic}: {exc!r}") from exc
            for tp, records in batches.items():
                for record in records:  # a batch may run past the end offset: its rows are as good
                    report.records += 1
                    _take(record, tp.partition, latest, report)
                if records:
                    last_progress = loop.time()
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
            if pending and loop.time() - last_progress > idle_timeout:
                where = ", ".join(f"{tp.partition}: {end[tp]}" for tp in sorted(pending))
                raise LabelledExportError(
                    f"no progress reading {topic} for {idle_timeout:.0f} s before the end offsets ({where})"
                )
    finally:
        await consumer.stop()
    return [row for _, row in latest.rows.values()]


def _take(record: Any, partition: int, latest: _Latest, report: ExportReport) -> None:
    if record.value is None:
        report.tombstones += 1
        if record.key is not None:
            latest.delete(record.key.decode("utf-8", errors="replace"))
        return
    try:
        row = decode_row(record.value)
    except ValueError as exc:
        problem = Problem(record.topic, partition, record.offset, str(exc)[:300])
        report.malformed += 1
        if len(report.problems) < MAX_REPORTED_PROBLEMS:
            report.problems.append(problem)
        logger.warning("skipping malformed labelled row %s", problem.render())
        return
    latest.put(partition, row)


def write_csv(rows: list[LabelledRow], out: Path) -> None:
    """``rows`` as CSV with :data:`LABELLED_COLUMNS`, written atomically (a temporary file renamed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(LABELLED_COLUMNS)
            writer.writerows(row.csv_row() for row in rows)
        Path(tmp).replace(out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def export_labelled(
    client_kwargs: Mapping[str, Any],
    topic: str,
    out: Path,
    *,
    min_impressions: int = 1,
    idle_timeout: float = 30.0,
) -> ExportReport:
    """Read ``topic`` to its end, keep the latest row per id with >= ``min_impressions``, write ``out``.

    Rows without impressions have no CTR to learn from, so the minimum is at least 1.
    """
    if min_impressions < 1:
        raise LabelledExportError(f"expected a minimum of impressions >= 1, got {min_impressions}")
    started = time.monotonic()
    report = ExportReport(topic=topic, out=out)
    rows = await read_labelled(client_kwargs, topic, report, idle_timeout=idle_timeout)
    kept = [row for row in rows if row.impressions >= min_impressions]
    report.below_min_impressions = len(rows) - len(kept)
    kept.sort(key=lambda row: (row.outcome_at, row.id))
    write_csv(kept, out)
    report.rows = len(kept)
    report.with_group = sum(1 for row in kept if row.group)
    report.seconds = time.monotonic() - started
    logger.info("%s", report.render())
    return report
