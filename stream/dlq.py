"""Dead-letter records: why an event could not be scored, as Kafka headers.

A dead-letter record carries the original value bytes and key unchanged; only
headers are added. The reasons are a closed set (they are a Prometheus label):

=================  =====================================================
``null_value``     the record has no value (a tombstone)
``too_large``      the value is longer than ``MAX_EVENT_BYTES``
``not_utf8``       the value is not valid UTF-8
``not_json``       UTF-8, but not one JSON document
``schema``         JSON, but not a headline event (wrong type, field, range)
``scoring_error``  a valid event the model failed to score
=================  =====================================================
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal, get_args

DeadLetterReason = Literal["not_utf8", "not_json", "schema", "too_large", "null_value", "scoring_error"]
DEAD_LETTER_REASONS: Final[tuple[DeadLetterReason, ...]] = get_args(DeadLetterReason)

MAX_ERROR_CHARS: Final = 512
"""Longest ``dlq.error`` header kept (characters); longer messages end with an ellipsis."""

HEADER_REASON: Final = "dlq.reason"
HEADER_ERROR: Final = "dlq.error"
HEADER_SOURCE_TOPIC: Final = "dlq.source_topic"
HEADER_SOURCE_PARTITION: Final = "dlq.source_partition"
HEADER_SOURCE_OFFSET: Final = "dlq.source_offset"
HEADER_TIME: Final = "dlq.time"


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
    reason: DeadLetterReason,
    error: str,
    topic: str,
    partition: int,
    offset: int,
    now: datetime | float,
) -> list[tuple[str, bytes]]:
    """The headers of the dead-letter record for the event at ``topic[partition]@offset``.

    ``error`` is flattened to one line and truncated to :data:`MAX_ERROR_CHARS`; callers pass
    a description of the problem, never the value itself (the value travels unchanged as the
    record's value). ``now`` is the dead-lettering time (aware datetime or unix seconds).
    """
    if reason not in DEAD_LETTER_REASONS:
        raise ValueError(f"expected a dead-letter reason in {DEAD_LETTER_REASONS}, got {reason!r}")
    return [
        (HEADER_REASON, reason.encode()),
        (HEADER_ERROR, truncate_error(error).encode("utf-8", "replace")),
        (HEADER_SOURCE_TOPIC, topic.encode()),
        (HEADER_SOURCE_PARTITION, str(int(partition)).encode()),
        (HEADER_SOURCE_OFFSET, str(int(offset)).encode()),
        (HEADER_TIME, rfc3339_utc(now).encode()),
    ]
