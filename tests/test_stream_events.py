"""stream/events.py: decoding input records into events or dead-letter reasons; encoding scores."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson
import pytest

from stream.dlq import MAX_ERROR_CHARS
from stream.events import (
    EVENT_SCHEMA_PATH,
    SCORE_SCHEMA_PATH,
    EventRejected,
    HeadlineEvent,
    ScoreRecord,
    decode_event,
    encode_scores,
    event_schema_text,
    event_time_seconds,
    score_schema_text,
    write_schemas,
)

LIMIT = 65536


def dumps(obj: object) -> bytes:
    return orjson.dumps(obj)


def rejected(value: bytes | None, max_bytes: int = LIMIT) -> EventRejected:
    with pytest.raises(EventRejected) as info:
        decode_event(value, max_bytes)
    return info.value


def test_a_full_event() -> None:
    event = decode_event(
        dumps(
            {
                "id": "h-1",
                "title": "  Ten things  ",
                "category": "News",
                "published_at": "2026-01-02T03:04:05.5+02:00",
                "source": "wire",
                "lang": "en",
                "clicks": 12,  # unknown fields are ignored
            }
        ),
        LIMIT,
    )
    assert event.id == "h-1"
    assert event.title == "Ten things"
    assert event.category == "News"
    assert event.published_at == datetime(2026, 1, 2, 1, 4, 5, 500000, tzinfo=UTC)
    assert (event.source, event.lang) == ("wire", "en")
    assert not hasattr(event, "clicks")


def test_minimal_event_and_nulls() -> None:
    event = decode_event(b'{"id":"x","title":"t","category":null,"published_at":null}', LIMIT)
    assert (event.category, event.published_at, event.source, event.lang) == (None, None, None, None)


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-01-02T03:04:05Z",
        "2026-01-02t03:04:05z",
        "2026-01-02 03:04:05-05:30",
        "2026-01-02T03:04:05.123456Z",
    ],
)
def test_rfc3339_accepted(stamp: str) -> None:
    event = decode_event(dumps({"id": "x", "title": "t", "published_at": stamp}), LIMIT)
    assert event.published_at is not None and event.published_at.tzinfo is not None


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-01-02T03:04:05",  # no offset
        "2026-01-02",  # a date
        "1767323045",  # a unix timestamp as a string
        1767323045,  # a number
        "2026-01-02T03:04Z",  # no seconds
        "2026-13-02T03:04:05Z",  # no month 13
        "yesterday",
        "",
    ],
)
def test_published_at_must_be_rfc3339_with_offset(stamp: object) -> None:
    error = rejected(dumps({"id": "x", "title": "t", "published_at": stamp}))
    assert error.reason == "schema"
    assert error.message.startswith("published_at:")


def test_null_and_too_large() -> None:
    assert rejected(None).reason == "null_value"
    value = dumps({"id": "x", "title": "t" * 500})
    assert decode_event(value, len(value)).title == "t" * 500
    error = rejected(value, len(value) - 1)
    assert error.reason == "too_large"
    assert str(len(value)) in error.message


@pytest.mark.parametrize(
    "value",
    [
        b'{"id": "big", "title": "' + b"x" * 70_000 + b'"}',  # valid JSON, far too long a title
        b"\xff" * 70_000,  # not UTF-8
        b"{" * 70_000,  # not JSON (deep nesting)
    ],
    ids=["json", "binary", "nesting"],
)
def test_the_size_is_checked_before_anything_is_decoded(
    value: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_parsing(*args: object, **kwargs: object) -> HeadlineEvent:
        raise AssertionError("an oversized value was parsed")

    monkeypatch.setattr(HeadlineEvent, "model_validate_json", no_parsing)
    error = rejected(value, LIMIT)
    assert error.reason == "too_large"
    assert error.message == f"value is {len(value)} bytes; the limit is {LIMIT}"  # bounded, no content


@pytest.mark.parametrize(
    "value",
    [b"\xff\xfe{}", b'{"id":"\xe9","title":"t"}', '{"id":"x","title":"é"}'.encode("latin-1"), b"\xc3("],
)
def test_not_utf8(value: bytes) -> None:
    assert rejected(value).reason == "not_utf8"


@pytest.mark.parametrize(
    "value", [b"", b"{", b'{"id":"x",}', b"{'id':'x'}", b"nope", b'{"id":"x","title":"t"} {}', b'"\\ud800"']
)
def test_not_json(value: bytes) -> None:
    assert rejected(value).reason == "not_json"


@pytest.mark.parametrize(
    ("obj", "where"),
    [
        ([{"id": "x", "title": "t"}], "value"),
        (3, "value"),
        ("a string", "value"),
        (None, "value"),
        ({"title": "t"}, "id"),
        ({"id": "", "title": "t"}, "id"),
        ({"id": "x" * 129, "title": "t"}, "id"),
        ({"id": 7, "title": "t"}, "id"),
        ({"id": "x"}, "title"),
        ({"id": "x", "title": "   "}, "title"),
        ({"id": "x", "title": "t" * 1001}, "title"),
        ({"id": "x", "title": ["t"]}, "title"),
        ({"id": "x", "title": "t", "category": 3}, "category"),
    ],
)
def test_schema_violations(obj: object, where: str) -> None:
    error = rejected(dumps(obj))
    assert error.reason == "schema"
    assert error.message.startswith(f"{where}:"), error.message


def test_title_limits_count_after_trimming() -> None:
    padded = " " * 50 + "t" * 1000 + "\n" * 50
    assert len(decode_event(dumps({"id": "x" * 128, "title": padded}), LIMIT).title) == 1000


def test_messages_never_quote_the_value() -> None:
    secret_title = "S3CRET-" * 200
    for obj in ({"id": "x", "title": secret_title}, {"id": secret_title, "title": "t"}, [secret_title]):
        error = rejected(dumps(obj))
        assert "S3CRET" not in error.message
        assert len(error.message) <= MAX_ERROR_CHARS
    error = rejected(b'{"id": "S3CRET", ')
    assert "S3CRET" not in error.message


def test_event_time_fallbacks() -> None:
    with_time = HeadlineEvent(
        id="a", title="t", published_at=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    )
    assert event_time_seconds(with_time, 5_000, now=9.0) == datetime(2025, 12, 31, 23, tzinfo=UTC).timestamp()
    bare = HeadlineEvent(id="a", title="t")
    assert event_time_seconds(bare, 5_000, now=9.0) == 5.0
    assert event_time_seconds(bare, None, now=9.0) == 9.0
    assert event_time_seconds(bare, -1, now=9.0) == 9.0


def test_encode_scores_round_trips_through_score_record() -> None:
    event_times = [datetime(2026, 3, 4, 5, 6, 7, 250000, tzinfo=UTC).timestamp(), 0.0]
    values = encode_scores(
        ["a", "ü-2"],
        np.array([0.012, 0.5]),
        np.array([0.25, 0.75]),
        np.array([0.9, 0.1]),
        np.array([True, False]),
        model_version="20260101-000000-abc",
        event_times=event_times,
        scored_at=event_times[0] + 0.5,
        partitions=np.array([3, 0]),
        offsets=[17, 2**40],
    )
    assert len(values) == 2
    first = json.loads(values[0])
    assert first == {
        "id": "a",
        "ctr": 0.012,
        "ctr_normalized": 0.25,
        "quality_prob": 0.9,
        "quality_label": True,
        "model_version": "20260101-000000-abc",
        "event_time": "2026-03-04T05:06:07.250000Z",
        "scored_at": "2026-03-04T05:06:07.750000Z",
        "source_partition": 3,
        "source_offset": 17,
    }
    second = ScoreRecord.model_validate_json(values[1])
    assert second.id == "ü-2" and second.quality_label is False and second.source_offset == 2**40
    assert second.event_time == datetime(1970, 1, 1, tzinfo=UTC)
    assert (
        encode_scores(
            [],
            np.array([]),
            np.array([]),
            np.array([]),
            np.array([], dtype=bool),
            model_version="v",
            event_times=[],
            scored_at=0.0,
            partitions=[],
            offsets=[],
        )
        == []
    )


def test_encode_scores_checks_lengths() -> None:
    with pytest.raises(ValueError, match="expected 2 values in every column"):
        encode_scores(
            ["a", "b"],
            np.array([0.1]),
            np.array([0.1, 0.2]),
            np.array([0.1, 0.2]),
            np.array([True, True]),
            model_version="v",
            event_times=[0.0, 0.0],
            scored_at=0.0,
            partitions=[0, 0],
            offsets=[0, 1],
        )


def test_committed_schemas_are_current() -> None:
    """If this fails: run ``python -m stream.events`` and commit stream/schemas/."""
    assert EVENT_SCHEMA_PATH.read_text(encoding="utf-8") == event_schema_text()
    assert SCORE_SCHEMA_PATH.read_text(encoding="utf-8") == score_schema_text()


def test_write_schemas(tmp_path: Path) -> None:
    written = write_schemas(tmp_path)
    assert [p.name for p in written][:2] == [EVENT_SCHEMA_PATH.name, SCORE_SCHEMA_PATH.name]
    schema = json.loads(written[0].read_text(encoding="utf-8"))
    assert schema["required"] == ["id", "title"]
    assert schema["properties"]["title"]["maxLength"] == 1000
    assert schema["properties"]["id"]["maxLength"] == 128
