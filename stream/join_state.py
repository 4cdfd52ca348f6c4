"""The join's stored state: one :class:`Entry` per headline id, its JSON, and the store it lives in.

An entry holds the scores per model version (role current or shadow), the headline event's
title, category, group and event time, and the latest outcome. It is the value of faust's table
``headline-join`` (raw bytes: the id in UTF-8 and the entry as JSON), in the worker's local store
and in the changelog. :func:`labelled_row` is the ``LABELLED_TOPIC`` value of a joined entry.
The logic that updates entries is :class:`stream.join.Join`.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from stream.quality import Role

# --- the store ------------------------------------------------------------------------------------


class JoinStore(Protocol):
    """The table's local store (id bytes -> entry JSON) and the lock that guards it.

    faust applies changelog records to the same store on the event loop while it restores the
    table; the lock keeps that apart from the scoring thread's reads and writes.
    """

    @property
    def lock(self) -> AbstractContextManager[Any]: ...

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def snapshot(self) -> list[tuple[bytes, bytes]]: ...


@dataclass
class DictStore:
    """A :class:`JoinStore` over a plain dict (tests; the worker uses the faust table's store)."""

    data: dict[bytes, bytes] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)

    def snapshot(self) -> list[tuple[bytes, bytes]]:
        return list(self.data.items())


# --- entries ------------------------------------------------------------------------------------


@dataclass
class Score:
    role: Role
    ctr: float
    ctr_normalized: float
    quality_prob: float
    scored_at: float


@dataclass
class Outcome:
    impressions: int
    clicks: int
    at: float
    group: str | None
    partition: int  # where the outcome record was (a re-delivery is at or before ``offset``)
    offset: int


@dataclass
class Entry:
    """The table value of one id (JSON in the store and the changelog)."""

    id: str
    partition: int
    touched: float
    title: str | None = None
    category: str | None = None
    group: str | None = None
    event_time: float | None = None
    scores: dict[str, Score] = field(default_factory=dict)
    outcome: Outcome | None = None

    def encode(self) -> bytes:
        """The entry's JSON; copied to its exact size (orjson returns a buffer of at least 4 KB,
        which the store would keep for every id)."""
        return bytes(memoryview(self._json()))

    def _json(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "partition": self.partition,
                "touched": self.touched,
                "title": self.title,
                "category": self.category,
                "group": self.group,
                "event_time": self.event_time,
                "scores": {
                    v: [s.role, s.ctr, s.ctr_normalized, s.quality_prob, s.scored_at]
                    for v, s in self.scores.items()
                },
                "outcome": None
                if self.outcome is None
                else [
                    self.outcome.impressions,
                    self.outcome.clicks,
                    self.outcome.at,
                    self.outcome.group,
                    self.outcome.partition,
                    self.outcome.offset,
                ],
            }
        )

    @classmethod
    def decode(cls, value: bytes) -> Entry:
        raw = orjson.loads(value)
        outcome = raw.get("outcome")
        return cls(
            id=raw["id"],
            partition=int(raw["partition"]),
            touched=float(raw["touched"]),
            title=raw.get("title"),
            category=raw.get("category"),
            group=raw.get("group"),
            event_time=raw.get("event_time"),
            scores={v: Score(s[0], s[1], s[2], s[3], s[4]) for v, s in (raw.get("scores") or {}).items()},
            outcome=None if outcome is None else Outcome(*outcome),
        )

    def current_score(self) -> tuple[str, Score] | None:
        """The latest score of a version that was current when it scored."""
        best: tuple[str, Score] | None = None
        for version, score in self.scores.items():
            if score.role == "current" and (best is None or score.scored_at >= best[1].scored_at):
                best = (version, score)
        return best


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def labelled_row(entry: Entry) -> bytes | None:
    """The LABELLED_TOPIC value of a joined entry (None until it has an outcome and a current score)."""
    best = entry.current_score()
    outcome = entry.outcome
    if best is None or outcome is None or entry.title is None:
        return None
    version, score = best
    return orjson.dumps(
        {
            "id": entry.id,
            "title": entry.title,
            "category": entry.category,
            "group": outcome.group if outcome.group is not None else entry.group,
            "impressions": outcome.impressions,
            "clicks": outcome.clicks,
            "model_version": version,
            "score_ctr": score.ctr,
            "score_ctr_normalized": score.ctr_normalized,
            "score_quality_prob": score.quality_prob,
            "scored_at": _utc(score.scored_at),
            "outcome_at": _utc(outcome.at),
        },
        option=orjson.OPT_UTC_Z,
    )
