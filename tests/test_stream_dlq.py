"""stream/dlq.py: dead-letter headers and the payload policy."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from stream.dlq import (
    DEAD_LETTER_REASONS,
    HEADER_ORIGINAL_KEY_BYTES,
    HEADER_ORIGINAL_KEY_SHA256,
    HEADER_ORIGINAL_VALUE_BYTES,
    HEADER_ORIGINAL_VALUE_SHA256,
    HEADER_TRUNCATED,
    MAX_ERROR_CHARS,
    RECORD_OVERHEAD_BYTES,
    dead_letter_headers,
    dead_letter_record,
    rfc3339_utc,
    truncate_error,
)

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


# --- the payload policy: originals in full when they fit, else cut with size and sha256 ------------


def _reason_headers() -> list[tuple[str, bytes]]:
    return dead_letter_headers(
        "too_large", "value is 70000 bytes; the limit is 65536", "headlines", 1, 9, NOW
    )


def _record_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    return len(key or b"") + len(value or b"") + sum(len(k) + len(v) + 8 for k, v in headers)


def test_a_large_reject_keeps_its_bytes_when_they_fit() -> None:
    value = b'{"id": "big", "title": "' + b"x" * 70_000 + b'"}'
    headers = _reason_headers()
    key, out, out_headers = dead_letter_record(b"big", value, headers)
    assert (key, out) == (b"big", value)
    assert out_headers == headers  # nothing added: nothing was cut
    assert HEADER_TRUNCATED not in dict(out_headers)


def test_a_value_over_the_cap_is_cut_and_described() -> None:
    value = bytes(range(256)) * 40_000  # 10 MB
    headers = _reason_headers()
    key, out, out_headers = dead_letter_record(b"k1", value, headers, max_record_bytes=1 << 20)
    h = dict(out_headers)
    assert key == b"k1"
    assert out is not None and value.startswith(out) and len(out) < len(value)
    assert h[HEADER_TRUNCATED] == b"value"
    assert h[HEADER_ORIGINAL_VALUE_BYTES] == str(len(value)).encode()
    assert h[HEADER_ORIGINAL_VALUE_SHA256] == hashlib.sha256(value).hexdigest().encode()
    assert HEADER_ORIGINAL_KEY_BYTES not in h
    assert out_headers[: len(headers)] == headers  # the reason headers first, unchanged
    assert _record_size(key, out, out_headers) + RECORD_OVERHEAD_BYTES <= 1 << 20
    assert _record_size(key, out, out_headers) > (1 << 20) - 1024  # it uses the room it has


def test_a_huge_key_is_cut_too() -> None:
    key_in, value_in = b"K" * 3_000_000, b"V" * 3_000_000
    key, value, out_headers = dead_letter_record(
        key_in, value_in, _reason_headers(), max_record_bytes=1 << 20
    )
    h = dict(out_headers)
    assert h[HEADER_TRUNCATED] == b"key,value"
    assert h[HEADER_ORIGINAL_KEY_BYTES] == b"3000000"
    assert h[HEADER_ORIGINAL_KEY_SHA256] == hashlib.sha256(key_in).hexdigest().encode()
    assert key is not None and value is not None and key_in.startswith(key) and value_in.startswith(value)
    assert _record_size(key, value, out_headers) + RECORD_OVERHEAD_BYTES <= 1 << 20


def test_a_tombstone_and_a_keyless_record_pass_through() -> None:
    headers = dead_letter_headers("null_value", "the record has no value", "t", 0, 1, NOW)
    assert dead_letter_record(None, None, headers) == (None, None, headers)
    assert dead_letter_record(b"k", None, headers) == (b"k", None, headers)


def test_the_cap_must_leave_room() -> None:
    with pytest.raises(ValueError, match="max_record_bytes"):
        dead_letter_record(b"k", b"v", _reason_headers(), max_record_bytes=100)
