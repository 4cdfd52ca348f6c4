"""Outcome events on ``OUTCOMES_TOPIC``: what a headline realized (cumulative impressions and clicks).

One JSON object per record, keyed by the headline id like the headline events
(so an id's event and its outcomes land in the same partition number),
validated by :class:`OutcomeEvent`; :func:`decode_outcome` turns raw bytes into
an outcome or raises :class:`~stream.events.EventRejected` naming the
dead-letter reason (``stream/dlq.py``). The published JSON Schema
(``stream/schemas/headline-outcome.schema.json``) is generated from the model:
regenerate it with ``python -m stream.events`` after changing the model.

Counts are cumulative: a later outcome of an id carries the totals so far. An
outcome whose counts are lower than the ones already joined for its id is
dead-lettered by the join (``counts_decreased``, ``stream/join.py``).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Final, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from stream.events import (
    MAX_GROUP_CHARS,
    MAX_ID_CHARS,
    MAX_TIMESTAMP_MS,
    SCHEMA_DIR,
    check_rfc3339,
    check_utc_representable,
    decode_model,
)

OUTCOME_SCHEMA_PATH: Final = SCHEMA_DIR / "headline-outcome.schema.json"


class OutcomeEvent(BaseModel):
    """Realized impressions and clicks of one headline so far. Unknown fields are ignored."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        title="OutcomeEvent",
        json_schema_extra={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://headline-scorer.example/schemas/headline-outcome.schema.json",
        },
    )

    id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)] = Field(
        description="Headline id, as in the headline event (also the record key)."
    )
    impressions: NonNegativeInt = Field(description="Impressions so far (cumulative).")
    clicks: NonNegativeInt = Field(description="Clicks so far (cumulative); at most impressions.")
    group: Annotated[str, StringConstraints(min_length=1, max_length=MAX_GROUP_CHARS)] | None = Field(
        default=None, description="A/B test the headline belongs to (else the headline event's group)."
    )
    at: AwareDatetime | None = Field(
        default=None,
        description="RFC 3339 date-time with an offset: when the counts were taken "
        "(else the Kafka timestamp).",
    )

    @field_validator("at", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> object:
        return check_rfc3339(value)

    @field_validator("at", mode="after")
    @classmethod
    def _utc_representable(cls, value: datetime | None) -> datetime | None:
        return check_utc_representable(value)

    @model_validator(mode="after")
    def _clicks_within_impressions(self) -> Self:
        if self.clicks > self.impressions:
            raise ValueError(f"expected clicks <= impressions, got {self.clicks} > {self.impressions}")
        return self


def decode_outcome(value: bytes | None, max_bytes: int) -> OutcomeEvent:
    """Parse one outcome record value; raise :class:`~stream.events.EventRejected` with the reason.

    Messages never quote the value (only field names and short, bounded excerpts).
    """
    return decode_model(OutcomeEvent, value, max_bytes)


def outcome_time_seconds(outcome: OutcomeEvent, kafka_timestamp_ms: int | None, now: float) -> float:
    """When the counts were taken, in unix seconds: ``at``, else the Kafka timestamp, else ``now``."""
    if outcome.at is not None:
        return outcome.at.timestamp()
    if kafka_timestamp_ms is not None and 0 <= kafka_timestamp_ms <= MAX_TIMESTAMP_MS:
        return kafka_timestamp_ms / 1000.0
    return now


def outcome_schema_text() -> str:
    """The JSON Schema of :class:`OutcomeEvent`, as committed in ``stream/schemas``."""
    schema = OutcomeEvent.model_json_schema(mode="validation")
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_outcome_schema(directory: Path = SCHEMA_DIR) -> Path:
    """(Re)write the outcome schema into ``directory`` (``stream.events.write_schemas`` writes it too)."""
    path = directory / OUTCOME_SCHEMA_PATH.name
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(outcome_schema_text(), encoding="utf-8")
    return path
