"""Dead-letter records: why an event could not be scored, as Kafka headers.

A dead-letter record carries the original key and value bytes unchanged; only
headers are added. The reasons are a closed set (they are a Prometheus label):

=================  =====================================================
``null_value``     the record has no value (a tombstone)
``too_large``      the value is longer than ``MAX_EVENT_BYTES``
``not_utf8``       the value is not valid UTF-8
``not_json``       UTF-8, but not one JSON document
``schema``         JSON, but not a headline event (wrong type, field, range)
``scoring_error``  a valid event the model failed to score
=================  =====================================================

Outcome events (``OUTCOMES_TOPIC``, ``stream/outcomes.py``) are dead-lettered
with the same headers and the decoding reasons above (all but
``scoring_error``), plus ``counts_decreased``: cumulative impressions or clicks
lower than the ones already joined for that id (``stream/join.py``).

Payload policy (:func:`dead_letter_record`): bad input loses nothing, so the
original bytes travel in full whenever the dead letter fits in
``max_record_bytes`` (``DLQ_MAX_RECORD_BYTES``, default 4 MiB: the dead-letter
topic's ``max.message.bytes`` and the producer's request limit). Any input that
a broker with the default 1 MB message limit accepted fits. Only a record that
could never be produced (a larger value, or key, that another broker let in)
is cut to fit, and says so: ``dlq.truncated`` (``value``, ``key`` or
``key,value``) with ``dlq.original_value_bytes`` / ``dlq.original_value_sha256``
(and the same for the key), so the original can be identified and recovered
from the input topic while it is retained. Without the cut such a record would
fail delivery, block every commit and stop the worker on each restart.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Final, Literal, get_args

DecodeReason = Literal["not_utf8", "not_json", "schema", "too_large", "null_value"]
"""Why a record's value could not be decoded (headline events and outcomes alike)."""
DeadLetterReason = Literal[DecodeReason, "scoring_error"]
"""Why a headline event was dead-lettered (the ``reason`` label of the events' counter)."""
DEAD_LETTER_REASONS: Final[tuple[DeadLetterReason, ...]] = get_args(DeadLetterReason)
OutcomeDeadLetterReason = Literal[DecodeReason, "counts_decreased"]
"""Why an outcome event was dead-lettered (the ``reason`` label of the outcomes' counter)."""
OUTCOME_DEAD_LETTER_REASONS: Final[tuple[OutcomeDeadLetterReason, ...]] = get_args(OutcomeDeadLetterReason)
#: Every reason a dead letter's ``dlq.reason`` header may carry.
ALL_DEAD_LETTER_REASONS: Final[tuple[str, ...]] = tuple(
    dict.fromkeys((*DEAD_LETTER_REASONS, *OUTCOME_DEAD_LETTER_REASONS))
)

MAX_ERROR_CHARS: Final = 512
"""Longest ``dlq.error`` header kept (characters); longer messages end with an ellipsis."""

HEADER_REASON: Final = "dlq.reason"
HEADER_ERROR: Final = "dlq.error"
HEADER_SOURCE_TOPIC: Final = "dlq.source_topic"
HEADER_SOURCE_PARTITION: Final = "dlq.source_partition"
HEADER_SOURCE_OFFSET: Final = "dlq.source_offset"
HEADER_TIME: Final = "dlq.time"
HEADER_TRUNCATED: Final = "dlq.truncated"
HEADER_ORIGINAL_VALUE_BYTES: Final = "dlq.original_value_bytes"
HEADER_ORIGINAL_VALUE_SHA256: Final = "dlq.original_value_sha256"
HEADER_ORIGINAL_KEY_BYTES: Final = "dlq.original_key_bytes"
HEADER_ORIGINAL_KEY_SHA256: Final = "dlq.original_key_sha256"

DEFAULT_MAX_RECORD_BYTES: Final = 4 * 1024 * 1024
"""Default largest dead letter (key + value + headers), the dead-letter topic's ``max.message.bytes``."""
#: Room kept in a record for Kafka's per-record framing (varints, attributes, header framing).
RECORD_OVERHEAD_BYTES: Final = 64
#: The smallest usable ``max_record_bytes``: room for the headers and a useful part of the value.
MIN_MAX_RECORD_BYTES: Final = 4096

Header = tuple[str, bytes]


def rfc3339_utc(moment: datetime | float) -> str:
    """``moment`` (an aware datetime or unix seconds) as RFC 3339 in UTC, millisecond precision, ``Z``."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError(f"expected a timezone-aware datetime, got naive {moment.isoformat()}")
        dt = moment.astimezone(UTC)
    else:
        dt = datetime.fromtimestamp(moment, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def truncate_error(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``message`` on one line and at most ``limit`` characters."""
    flat = " ".join(message.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def dead_letter_headers(
    reason: DeadLetterReason | OutcomeDeadLetterReason,
    error: str,
    topic: str,
    partition: int,
    offset: int,
    now: datetime | float,
) -> list[Header]:
    """The headers of the dead-letter record for the event at ``topic[partition]@offset``.

    ``error`` is flattened to one line and truncated to :data:`MAX_ERROR_CHARS`; callers pass
    a description of the problem, never the value itself (the value travels unchanged as the
    record's value). ``now`` is the dead-lettering time (aware datetime or unix seconds).
    """
    if reason not in ALL_DEAD_LETTER_REASONS:
        raise ValueError(f"expected a dead-letter reason in {ALL_DEAD_LETTER_REASONS}, got {reason!r}")
    return [
        (HEADER_REASON, reason.encode()),
        (HEADER_ERROR, truncate_error(error).encode("utf-8", "replace")),
        (HEADER_SOURCE_TOPIC, topic.encode()),
        (HEADER_SOURCE_PARTITION, str(int(partition)).encode()),
        (HEADER_SOURCE_OFFSET, str(int(offset)).encode()),
        (HEADER_TIME, rfc3339_utc(now).encode()),
    ]


def _headers_size(headers: list[Header]) -> int:
    return sum(len(k) + len(v) + 8 for k, v in headers)


def dead_letter_record(
    key: bytes | None,
    value: bytes | None,
    headers: list[Header],
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> tuple[bytes | None, bytes | None, list[Header]]:
    """The dead letter's (key, value, headers): the originals when they fit in ``max_record_bytes``.

    Otherwise the value (then, if that is not enough, the key) is cut to fit, and headers name what
    was cut with its original size and sha256 (module docstring). ``headers`` are the reason
    headers (:func:`dead_letter_headers`); they are never cut.
    """
    if max_record_bytes < MIN_MAX_RECORD_BYTES:
        raise ValueError(f"expected max_record_bytes >= {MIN_MAX_RECORD_BYTES}, got {max_record_bytes}")
    key_len = 0 if key is None else len(key)
    value_len = 0 if value is None else len(value)
    fixed = RECORD_OVERHEAD_BYTES + _headers_size(headers)
    if key_len + value_len + fixed <= max_record_bytes:  # the usual case: nothing to do
        return key, value, headers
    out = list(headers)
    truncated = []
    # the headers describing a cut, at their largest (sizes up to 20 digits, 64 hex digits)
    fixed += _headers_size([(HEADER_TRUNCATED, b"key,value")])
    fixed += 2 * _headers_size(
        [(HEADER_ORIGINAL_KEY_BYTES, b"9" * 20), (HEADER_ORIGINAL_KEY_SHA256, b"0" * 64)]
    )
    room = max_record_bytes - fixed
    key_room = max(room // 2, room - value_len)  # a key keeps at least half the room
    if key is not None and key_len > key_room:
        truncated.append("key")
        out.append((HEADER_ORIGINAL_KEY_BYTES, str(key_len).encode()))
        out.append((HEADER_ORIGINAL_KEY_SHA256, hashlib.sha256(key).hexdigest().encode()))
        key = key[:key_room]
    value_room = room - (0 if key is None else len(key))
    if value is not None and value_len > value_room:
        truncated.append("value")
        out.append((HEADER_ORIGINAL_VALUE_BYTES, str(value_len).encode()))
        out.append((HEADER_ORIGINAL_VALUE_SHA256, hashlib.sha256(value).hexdigest().encode()))
        value = value[:value_room]
    out.append((HEADER_TRUNCATED, ",".join(truncated).encode()))
    return key, value, out
