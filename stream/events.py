"""The records on the wire: headline events in, score records out.

Input (``INPUT_TOPIC``): one JSON object per record, validated by
:class:`HeadlineEvent`; :func:`decode_event` turns raw bytes into an event or
raises :class:`EventRejected` naming the dead-letter reason. The published JSON
Schema (``stream/schemas/headline-event.schema.json``) is generated from the
model: regenerate it with ``python -m stream.events`` after changing the model.

Output (``OUTPUT_TOPIC``): :class:`ScoreRecord`, built in bulk by
:func:`encode_scores` (orjson; times are RFC 3339 in UTC).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final, TypeVar

import numpy as np
import orjson
from numpy.typing import NDArray
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from artifact.errors import HeadlineScorerError
from stream.dlq import DecodeReason, truncate_error

SCHEMA_DIR: Final = Path(__file__).resolve().parent / "schemas"
EVENT_SCHEMA_PATH: Final = SCHEMA_DIR / "headline-event.schema.json"
SCORE_SCHEMA_PATH: Final = SCHEMA_DIR / "score-record.schema.json"

MAX_ID_CHARS: Final = 128
MAX_TITLE_CHARS: Final = 1000
MAX_GROUP_CHARS: Final = 128

M = TypeVar("M", bound=BaseModel)

# Latest Kafka timestamp that is still a datetime (producers may set any int64 as CreateTime).
MAX_TIMESTAMP_MS: Final = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() * 1000)
# RFC 3339 date-time (section 5.6); pydantic alone would also take unix timestamps and "_" separators.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")


class EventRejected(HeadlineScorerError):  # noqa: N818 - the agreed name; a verdict, not a bug
    """An input record that cannot become a :class:`HeadlineEvent`; it belongs in the dead-letter topic."""

    def __init__(self, reason: DecodeReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: DecodeReason = reason
        self.message = message


class HeadlineEvent(BaseModel):
    """A headline to score. Unknown fields are ignored."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        title="HeadlineEvent",
        json_schema_extra={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://headline-scorer.example/schemas/headline-event.schema.json",
        },
    )

    id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)] = Field(
        description="Headline id (also the record key of the score)."
    )
    title: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE_CHARS)
    ] = Field(description="Headline text; 1-1000 characters after trimming surrounding whitespace.")
    category: str | None = Field(default=None, description="Category name; null or absent when unknown.")
    published_at: AwareDatetime | None = Field(
        default=None,
        description="RFC 3339 date-time with an offset; the event time (else the Kafka timestamp).",
    )
    source: str | None = Field(default=None, description="Publisher or feed (informational).")
    lang: str | None = Field(default=None, description="Language tag (informational).")
    group: Annotated[str, StringConstraints(min_length=1, max_length=MAX_GROUP_CHARS)] | None = Field(
        default=None,
        description="A/B test the headline belongs to (its outcomes are compared within the group).",
    )

    @field_validator("published_at", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> object:
        return check_rfc3339(value)

    @field_validator("published_at", mode="after")
    @classmethod
    def _utc_representable(cls, value: datetime | None) -> datetime | None:
        return check_utc_representable(value)


def check_rfc3339(value: object) -> object:
    """A ``mode="before"`` validator: an RFC 3339 string with an offset (or a datetime, or None)."""
    if value is None or isinstance(value, datetime):  # built in Python: the type checks awareness
        return value
    if not isinstance(value, str) or _RFC3339.fullmatch(value) is None:
        shown = value if isinstance(value, str | int | float) else type(value).__name__
        raise ValueError(f"expected an RFC 3339 date-time with an offset, got {str(shown)[:40]!r}")
    return value


def check_utc_representable(value: datetime | None) -> datetime | None:
    """A ``mode="after"`` validator: a date-time that is still within the years 1-9999 in UTC."""
    # 9999-12-31T23:59:59-14:00 is valid RFC 3339 but year 10000 in UTC: it could not be written
    # back as UTC, and one such event would fail its whole batch.
    if value is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("expected a date-time within the years 1-9999 in UTC") from None
    return value


def decode_model(model: type[M], value: bytes | None, max_bytes: int) -> M:
    """Parse one record value as ``model``; raise :class:`EventRejected` with the dead-letter reason."""
    if value is None:
        raise EventRejected("null_value", "the record has no value")
    if len(value) > max_bytes:
        raise EventRejected("too_large", f"value is {len(value)} bytes; the limit is {max_bytes}")
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        raise _rejection(value, exc) from None


def decode_event(value: bytes | None, max_bytes: int) -> HeadlineEvent:
    """Parse one record value; raise :class:`EventRejected` with the dead-letter reason.

    Messages never quote the value (only field names and short, bounded excerpts).
    """
    return decode_model(HeadlineEvent, value, max_bytes)


def _rejection(value: bytes, exc: ValidationError) -> EventRejected:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if errors and errors[0]["type"] == "json_invalid":
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as bad:
            return EventRejected("not_utf8", f"invalid UTF-8 at byte {bad.start}: {bad.reason}")
        return EventRejected("not_json", str(errors[0]["msg"]))
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error["loc"]) or "value"
        parts.append(f"{where}: {str(error['msg']).removeprefix('Value error, ')}")
    return EventRejected("schema", truncate_error("; ".join(parts)))


def event_time_seconds(event: HeadlineEvent, kafka_timestamp_ms: int | None, now: float) -> float:
    """The event time in unix seconds: ``published_at``, else the Kafka timestamp, else ``now``."""
    if event.published_at is not None:
        return event.published_at.timestamp()
    if kafka_timestamp_ms is not None and 0 <= kafka_timestamp_ms <= MAX_TIMESTAMP_MS:
        return kafka_timestamp_ms / 1000.0
    return now


class ScoreRecord(BaseModel):
    """One score on ``OUTPUT_TOPIC`` (key = ``id``). Use it to read the output back."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="ScoreRecord")

    id: str
    ctr: float = Field(description="Predicted click-through rate, raw units (calibrated).")
    ctr_normalized: float = Field(description="Predicted CTR on the training target scale [0, 1].")
    quality_prob: float = Field(description="Calibrated probability of a high-quality headline.")
    quality_label: bool = Field(description="quality_prob >= the model's stored threshold.")
    model_version: str
    event_time: AwareDatetime = Field(description="published_at, else the Kafka timestamp (UTC).")
    scored_at: AwareDatetime = Field(description="When the score was produced (UTC).")
    source_partition: int = Field(ge=0)
    source_offset: int = Field(ge=0)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def encode_scores(
    ids: Sequence[str],
    ctr: NDArray[np.float64],
    ctr_normalized: NDArray[np.float64],
    quality_prob: NDArray[np.float64],
    quality_label: NDArray[np.bool_],
    *,
    model_version: str,
    event_times: Sequence[float] | NDArray[np.float64],
    scored_at: float,
    partitions: Sequence[int] | NDArray[np.int64],
    offsets: Sequence[int] | NDArray[np.int64],
) -> list[bytes]:
    """The JSON values of a batch of :class:`ScoreRecord` (one per id, in order).

    Times are unix seconds; they are written as RFC 3339 UTC with a ``Z``.
    """
    n = len(ids)
    columns = (ctr, ctr_normalized, quality_prob, quality_label, event_times, partitions, offsets)
    if any(len(c) != n for c in columns):
        raise ValueError(f"expected {n} values in every column, got lengths {[len(c) for c in columns]}")
    scored = _utc(scored_at)
    option = orjson.OPT_UTC_Z
    return [
        orjson.dumps(
            {
                "id": i,
                "ctr": c,
                "ctr_normalized": cn,
                "quality_prob": qp,
                "quality_label": ql,
                "model_version": model_version,
                "event_time": _utc(et),
                "scored_at": scored,
                "source_partition": p,
                "source_offset": o,
            },
            option=option,
        )
        for i, c, cn, qp, ql, et, p, o in zip(
            ids,
            np.asarray(ctr, dtype=np.float64).tolist(),
            np.asarray(ctr_normalized, dtype=np.float64).tolist(),
            np.asarray(quality_prob, dtype=np.float64).tolist(),
            np.asarray(quality_label, dtype=np.bool_).tolist(),
            np.asarray(event_times, dtype=np.float64).tolist(),
            np.asarray(partitions, dtype=np.int64).tolist(),
            np.asarray(offsets, dtype=np.int64).tolist(),
            strict=True,
        )
    ]


def _schema_text(model: type[BaseModel]) -> str:
    return json.dumps(model.model_json_schema(mode="validation"), indent=2, ensure_ascii=False) + "\n"


def event_schema_text() -> str:
    """The JSON Schema of :class:`HeadlineEvent`, as committed in ``stream/schemas``."""
    return _schema_text(HeadlineEvent)


def score_schema_text() -> str:
    """The JSON Schema of :class:`ScoreRecord`, as committed in ``stream/schemas``."""
    return _schema_text(ScoreRecord)


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """(Re)write the committed JSON Schemas into ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    from stream.outcomes import OUTCOME_SCHEMA_PATH, outcome_schema_text

    for name, text in (
        (EVENT_SCHEMA_PATH.name, event_schema_text()),
        (SCORE_SCHEMA_PATH.name, score_schema_text()),
        (OUTCOME_SCHEMA_PATH.name, outcome_schema_text()),
    ):
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _main(argv: list[str]) -> int:  # pragma: no cover - exercised through write_schemas
    for path in write_schemas(Path(argv[0]) if argv else SCHEMA_DIR):
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main(sys.argv[1:]))
