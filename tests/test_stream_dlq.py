"""stream/dlq.py: dead-letter headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from stream.dlq import DEAD_LETTER_REASONS, MAX_ERROR_CHARS, dead_letter_headers, rfc3339_utc, truncate_error

NOW = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def test_reasons_are_the_contract() -> None:
    assert set(DEAD_LETTER_REASONS) == {
        "not_utf8",
        "not_json",
        "schema",
        "too_large",
        "null_value",
        "scoring_error",
    }


def test_headers() -> None:
    headers = dead_letter_headers("schema", "title: Field required", "headlines", 3, 12345, NOW)
    assert headers == [
        ("dlq.reason", b"schema"),
        ("dlq.error", b"title: Field required"),
        ("dlq.source_topic", b"headlines"),
        ("dlq.source_partition", b"3"),
        ("dlq.source_offset", b"12345"),
        ("dlq.time", b"2026-05-06T07:08:09.123Z"),
    ]
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in headers)


def test_time_from_unix_seconds_and_other_offsets() -> None:
    headers = dict(dead_letter_headers("not_json", "x", "t", 0, 0, NOW.timestamp()))
    assert headers["dlq.time"] == b"2026-05-06T07:08:09.123Z"
    plus_two = NOW.astimezone(timezone(timedelta(hours=2)))
    assert rfc3339_utc(plus_two) == "2026-05-06T07:08:09.123Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        rfc3339_utc(datetime(2026, 1, 1))


def test_error_is_one_bounded_line() -> None:
    long = "scoring failed:\n" + "x" * 5000
    error = dict(dead_letter_headers("scoring_error", long, "t", 1, 2, NOW))["dlq.error"].decode()
    assert len(error) == MAX_ERROR_CHARS
    assert "\n" not in error and error.endswith("…")
    assert truncate_error("short") == "short"
    # A message with a lone surrogate (from a bad str somewhere) still becomes bytes.
    assert dict(dead_letter_headers("scoring_error", "bad \ud800", "t", 1, 2, NOW))["dlq.error"] == b"bad ?"


def test_unknown_reason_rejected() -> None:
    with pytest.raises(ValueError, match="expected a dead-letter reason"):
        dead_letter_headers("oops", "x", "t", 0, 0, NOW)  # type: ignore[arg-type]
