"""Outcome events (stream/outcomes.py): decoding, dead-letter reasons, the committed schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stream.events import EventRejected, HeadlineEvent, decode_event, write_schemas
from stream.outcomes import (
    OUTCOME_SCHEMA_PATH,
    OutcomeEvent,
    decode_outcome,
    outcome_schema_text,
    outcome_time_seconds,
)


def test_a_valid_outcome_with_unknown_fields() -> None:
    value = (
        b'{"id": "h1", "impressions": 120, "clicks": 7, "group": "t-9", '
        b'"at": "2026-03-01T10:00:00+02:00", "x": 1}'
    )
    outcome = decode_outcome(value, 1000)
    assert (outcome.id, outcome.impressions, outcome.clicks, outcome.group) == ("h1", 120, 7, "t-9")
    assert outcome.at == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    assert outcome_time_seconds(outcome, 5_000, now=1.0) == outcome.at.timestamp()


def test_outcome_time_falls_back_to_the_kafka_timestamp_then_now() -> None:
    outcome = decode_outcome(b'{"id": "h", "impressions": 0, "clicks": 0}', 1000)
    assert outcome_time_seconds(outcome, 1_700_000_000_500, now=1.0) == 1_700_000_000.5
    assert outcome_time_seconds(outcome, None, now=42.0) == 42.0
    assert outcome_time_seconds(outcome, -5, now=42.0) == 42.0


@pytest.mark.parametrize(
    ("value", "reason", "where"),
    [
        (None, "null_value", "no value"),
        (b"x" * 2000, "too_large", "2000 bytes"),
        (b"\xff{}", "not_utf8", "UTF-8"),
        (b"{oops", "not_json", ""),
        (b'{"id": "h", "impressions": 5, "clicks": 6}', "schema", "clicks <= impressions"),
        (b'{"id": "h", "impressions": -1, "clicks": 0}', "schema", "impressions"),
        (b'{"id": "h", "impressions": 1.5, "clicks": 0}', "schema", "impressions"),
        (b'{"id": "h", "clicks": 0}', "schema", "impressions"),
        (b'{"id": "", "impressions": 1, "clicks": 0}', "schema", "id"),
        (b'{"id": "h", "impressions": 1, "clicks": 0, "at": "2026-03-01"}', "schema", "RFC 3339"),
        (b'{"id": "h", "impressions": 1, "clicks": 0, "at": 1700000000}', "schema", "RFC 3339"),
        (b'{"id": "h", "impressions": 1, "clicks": 0, "group": ""}', "schema", "group"),
        (b"[1, 2]", "schema", ""),
    ],
)
def test_bad_outcomes_are_rejected_with_their_reason(value: bytes | None, reason: str, where: str) -> None:
    with pytest.raises(EventRejected) as info:
        decode_outcome(value, 1000)
    assert info.value.reason == reason
    assert where in info.value.message


def test_headline_events_take_an_optional_group() -> None:
    assert decode_event(b'{"id": "a", "title": "T"}', 1000).group is None
    assert decode_event(b'{"id": "a", "title": "T", "group": "ab-1"}', 1000).group == "ab-1"
    with pytest.raises(EventRejected, match="group"):
        decode_event(json.dumps({"id": "a", "title": "T", "group": "g" * 129}).encode(), 1000)
    assert "group" in HeadlineEvent.model_json_schema()["properties"]


def test_committed_outcome_schema_is_current(tmp_path: Path) -> None:
    """If this fails: run ``python -m stream.events`` and commit stream/schemas/."""
    assert OUTCOME_SCHEMA_PATH.read_text(encoding="utf-8") == outcome_schema_text()
    written = {p.name for p in write_schemas(tmp_path)}
    assert OUTCOME_SCHEMA_PATH.name in written
    schema = json.loads((tmp_path / OUTCOME_SCHEMA_PATH.name).read_text(encoding="utf-8"))
    assert schema["required"] == ["id", "impressions", "clicks"]
    assert schema["properties"]["impressions"]["minimum"] == 0
    assert OutcomeEvent.model_config["extra"] == "ignore"
