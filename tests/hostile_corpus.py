"""Hostile record values for the scorer: hypothesis strategies and fixed cases.

The strategies mix raw bytes, arbitrary JSON documents and headline-shaped
objects whose fields have random types, lengths and encodings, so that every
branch of :func:`stream.events.decode_event` (and the model behind it) is hit.
:func:`generated_values` draws a fixed, derandomized sample of them for tests
that send one batch through a real worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from stream.dlq import DEAD_LETTER_REASONS

SCORED: Final = "scored"
OUTCOMES: Final = (SCORED, *DEAD_LETTER_REASONS)

MAX_EVENT_BYTES: Final = 65536  # the worker's default MAX_EVENT_BYTES

_offsets = st.builds(
    timezone,
    st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)),
)
_zones: st.SearchStrategy[Any] = _offsets | st.none()  # naive or a fixed offset of up to +-23:59
_datetimes = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_zones)
_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_documents = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_texts = st.text(max_size=60) | st.text(
    st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Zl", "Zp", "So", "Mn", "Lo"]), max_size=60
)
_titles = _texts | st.text(min_size=990, max_size=1010) | json_documents
_ids = st.text(min_size=0, max_size=140) | st.integers() | st.none() | json_documents
_published = (
    _datetimes.map(lambda d: d.isoformat())
    | _datetimes.map(lambda d: d.isoformat().replace("+00:00", "Z"))
    | st.integers()
    | st.text(max_size=30)
    | st.none()
)
headline_objects = st.fixed_dictionaries(
    {"id": _ids, "title": _titles},
    optional={
        "category": _texts | st.none() | json_documents,
        "published_at": _published,
        "source": _texts | st.integers(),
        "lang": _texts,
        "extra": json_documents,
    },
)

# mostly valid events: the model and the output encoding see odd but acceptable values
valid_looking_objects = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=30).map(lambda t: "v" + t),
        "title": _texts.map(lambda t: "Headline " + t),
    },
    optional={"category": _texts | st.none(), "published_at": _published},
)


def _dump(document: Any, ensure_ascii: bool) -> bytes:
    # surrogatepass: a lone surrogate becomes bytes that are not valid UTF-8 (as some producers do)
    return json.dumps(document, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


record_values: st.SearchStrategy[bytes | None] = st.one_of(
    st.none(),
    st.binary(max_size=200),
    st.builds(_dump, json_documents, st.booleans()),
    st.builds(_dump, headline_objects, st.booleans()),
    st.builds(_dump, headline_objects, st.booleans()).map(lambda b: b[: max(0, len(b) - 3)]),  # truncated
    st.builds(_dump, valid_looking_objects, st.booleans()),
    st.integers(MAX_EVENT_BYTES - 40, MAX_EVENT_BYTES + 40).map(
        lambda n: b'{"id": "big", "title": "' + b"a" * n + b'"}'
    ),
)
record_keys: st.SearchStrategy[bytes | None] = st.none() | st.binary(max_size=64)
# Kafka timestamps a producer may set (CreateTime): any int64, or the broker's own clock.
record_timestamps_ms: st.SearchStrategy[int | None] = st.none() | st.integers(-(2**63), 2**63 - 1)


def generated_values(n: int) -> list[bytes | None]:
    """``n`` values drawn from :data:`record_values`, the same ones on every run (derandomized)."""
    drawn: list[bytes | None] = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(record_values)
    def collect(value: bytes | None) -> None:
        if len(drawn) < n:
            drawn.append(value)

    collect()
    return drawn


@dataclass(frozen=True)
class Case:
    """A fixed hostile record and the outcomes allowed for it (``scored`` or dead-letter reasons)."""

    name: str
    value: bytes | None
    allowed: frozenset[str]
    key: bytes | None = None
    timestamp_ms: int | None = None

    @property
    def record_key(self) -> bytes:
        return self.key if self.key is not None else f"fixed-{self.name}".encode()


def _ev(**fields: Any) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode()


def _case(name: str, value: bytes | None, *allowed: str, **kw: Any) -> Case:
    assert set(allowed) <= set(OUTCOMES), allowed
    return Case(name, value, frozenset(allowed), **kw)


ONE_MB: Final = 1 << 20
HEBREW: Final = (
    "\u05d7\u05d3\u05e9\u05d5\u05ea \u05d4\u05d9\u05d5\u05dd: \u05e1\u05d8\u05d0\u05e8\u05d8\u05d0\u05e4"
)
ARABIC: Final = "\u0623\u062e\u0628\u0627\u0631 \u0627\u0644\u064a\u0648\u0645"

FIXED_CASES: Final[tuple[Case, ...]] = (
    # encodings
    _case("latin1-byte", b'{"id": "u1", "title": "caf\xe9"}', "not_utf8"),
    _case("overlong-utf8", b'{"id": "u2", "title": "\xc0\xaf"}', "not_utf8"),
    _case("cesu-surrogate", b'{"id": "u3", "title": "\xed\xa0\x80"}', "not_utf8"),
    _case("utf16-bom", '{"id": "u4", "title": "x"}'.encode("utf-16"), "not_utf8"),
    _case("bare-0xff", b"\xff", "not_utf8"),
    _case("escaped-lone-surrogate", b'{"id": "u5", "title": "\\ud800"}', "not_json", "schema"),
    # JSON syntax
    _case("truncated", b'{"id": "t1", "title": "half a head', "not_json"),
    _case("open-brace", b"{", "not_json"),
    _case("trailing-garbage", b'{"id": "t2", "title": "x"} trailing', "not_json"),
    _case("raw-control-char", b'{"id": "t3", "title": "a\x01b"}', "not_json"),
    _case("deep-nesting", b"[" * 5000 + b"]" * 5000, "not_json", "schema"),
    _case("empty-value", b"", "not_json"),
    _case("utf8-bom", b'\xef\xbb\xbf{"id": "t4", "title": "x"}', "not_json", SCORED),
    _case("nan-literal", b"NaN", "not_json", "schema"),
    # JSON, but not an object
    _case("array", b'[{"id": "a1", "title": "inside an array"}]', "schema"),
    _case("number", b"42", "schema"),
    _case("float", b"-1.5e300", "schema"),
    _case("json-null", b"null", "schema"),
    _case("string", b'"just a string"', "schema"),
    _case("true", b"true", "schema"),
    # objects with missing, extra and wrongly typed fields
    _case("empty-object", b"{}", "schema"),
    _case("missing-id", _ev(title="no id here"), "schema"),
    _case("missing-title", _ev(id="m2"), "schema"),
    _case("extra-fields", _ev(id="x1", title="Extra fields are ignored", bonus={"a": [1, 2]}, n=3), SCORED),
    _case("id-number", _ev(id=5, title="id is a number"), "schema"),
    _case("title-list", _ev(id="w2", title=["a", "b"]), "schema"),
    _case("title-bool", _ev(id="w3", title=True), "schema"),
    _case("category-number", _ev(id="w4", title="category is a number", category=7), "schema"),
    _case("published-at-number", _ev(id="w5", title="unix time", published_at=1700000000), "schema"),
    _case("published-at-naive", _ev(id="w6", title="naive", published_at="2026-01-01T00:00:00"), "schema"),
    _case("empty-id", _ev(id="", title="empty id"), "schema"),
    _case("id-129-chars", _ev(id="i" * 129, title="long id"), "schema"),
    _case("blank-title", _ev(id="w7", title=" \t\n "), "schema"),
    _case("title-1001-chars", _ev(id="w8", title="t" * 1001), "schema"),
    # times at the edge of what a datetime can hold (UTC equivalent outside years 1-9999)
    _case(
        "published-year-10000-utc",
        _ev(id="y1", title="t", published_at="9999-12-31T23:59:59-14:00"),
        "schema",
    ),
    _case(
        "published-year-0-utc", _ev(id="y2", title="t", published_at="0001-01-01T00:00:00+14:00"), "schema"
    ),
    _case(
        "published-year-9999-utc", _ev(id="y4", title="t", published_at="9999-12-31T23:59:59+14:00"), SCORED
    ),
    _case(
        "kafka-timestamp-far-future",
        _ev(id="y3", title="Far future Kafka timestamp"),
        SCORED,
        timestamp_ms=2**62,
    ),
    # sizes
    _case("title-1mb", _ev(id="big1", title="a" * ONE_MB), "too_large"),
    _case("just-over-limit", _ev(id="big2", title="b" * MAX_EVENT_BYTES), "too_large"),
    _case("near-limit-scored", _ev(id="big3", title="c" * 1000, pad="p" * (MAX_EVENT_BYTES - 1200)), SCORED),
    # text that is valid but unusual
    _case("control-escapes", _ev(id="c1", title="Breaking\u0000news\u0007 \u001b[31mred\u001b[0m"), SCORED),
    _case(
        "hebrew-rtl",
        _ev(id="r1", title=HEBREW, category="\u05d8\u05db\u05e0\u05d5\u05dc\u05d5\u05d2\u05d9\u05d4"),
        SCORED,
    ),
    _case("arabic-rlo", _ev(id="r2", title=f"\u202e{ARABIC}\u202c and English"), SCORED),
    _case(
        "emoji",
        _ev(
            id="e1",
            title="Rocket \U0001f680 fire \U0001f525 family \U0001f468\u200d\U0001f469\u200d\U0001f467",
        ),
        SCORED,
    ),
    _case("combining-marks", _ev(id="e2", title="Z\u0351\u0352a\u0353l\u0354g\u0355o" * 20), SCORED),
    _case("only-emoji", _ev(id="e3", title="\U0001f600" * 500), SCORED),
    _case("nul-category", _ev(id="e4", title="NUL category", category="\u0000"), SCORED),
    # ids and keys
    _case("duplicate-id-1", _ev(id="dup", title="The first headline with this id"), SCORED),
    _case("duplicate-id-2", _ev(id="dup", title="The second headline with this id"), SCORED),
    _case("duplicate-json-key", b'{"id": "k1", "title": "first", "title": "second"}', SCORED, "schema"),
    _case(
        "long-key-valid",
        _ev(id="lk1", title="A valid event under a 100 KB key"),
        SCORED,
        key=b"K" * 100_000 + b"-valid",
    ),
    _case("long-key-invalid", b"not json", "not_json", key=b"K" * 100_000 + b"-invalid"),
    # tombstones
    _case("tombstone", None, "null_value"),
)
