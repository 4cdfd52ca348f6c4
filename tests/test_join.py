"""The join's pure core (stream/join.py) without Kafka: scores and outcomes in either order."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from artifact.runtime import ScoreBatch
from stream.dlq import HEADER_REASON, OUTCOME_DEAD_LETTER_REASONS
from stream.events import HeadlineEvent
from stream.join import Join, JoinMetrics, changelog_topic_name
from stream.join_state import DictStore, Entry
from stream.quality import Labelled, Role
from stream.scoring import InRecord, ScoredBatch
from stream.sink import OutRecord

T0 = 1_800_000_000.0
RETENTION = 3600.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingQuality:
    """A LiveQuality that records what the join told it."""

    def __init__(self) -> None:
        self.models: list[tuple[str, Role]] = []
        self.scored_calls: list[tuple[str, Role, float, int]] = []
        self.rows: list[Labelled] = []
        self.published = 0

    def set_model(self, version: str, role: Role, manifest: Any) -> None:
        self.models.append((version, role))

    def clear(self, role: Role) -> None:
        self.models.append(("-", role))

    def scored(self, version: str, role: Role, scored_at: float, count: int) -> None:
        self.scored_calls.append((version, role, scored_at, count))

    def labelled(self, rows: Sequence[Labelled]) -> None:
        self.rows.extend(rows)

    def publish(self) -> None:
        self.published += 1


def scored_batch(
    ids: Sequence[str],
    *,
    version: str = "v1",
    scored_at: float = T0,
    partition: int = 0,
    keys: Sequence[bytes | None] | None = None,
    group: str | None = None,
    offset: int = 0,
) -> ScoredBatch:
    n = len(ids)
    events = []
    for i, id_ in enumerate(ids):
        key = id_.encode() if keys is None else keys[i]
        record = InRecord(key, b"{}", "headlines", partition, offset + i, None)
        events.append((record, HeadlineEvent(id=id_, title=f"title {id_}", category="tech", group=group)))
    ctr = np.linspace(0.01, 0.05, n)
    scores = ScoreBatch(
        ctr=ctr,
        ctr_normalized=ctr * 10,
        quality_prob=np.linspace(0.2, 0.8, n),
        quality_label=np.linspace(0.2, 0.8, n) >= 0.5,
        signals={},
        categories=["tech"] * n,
        category_known=np.ones(n, dtype=np.bool_),
    )
    return ScoredBatch([], events, scores, [scored_at - 5.0] * n, version, scored_at)


def outcome(
    id_: str,
    impressions: int,
    clicks: int,
    *,
    offset: int,
    partition: int = 0,
    at: str | None = None,
    group: str | None = None,
    key: bytes | None = None,
    timestamp_ms: int | None = None,
) -> InRecord:
    body: dict[str, Any] = {"id": id_, "impressions": impressions, "clicks": clicks}
    if at is not None:
        body["at"] = at
    if group is not None:
        body["group"] = group
    return InRecord(
        id_.encode() if key is None else key,
        json.dumps(body).encode(),
        "headline-outcomes",
        partition,
        offset,
        timestamp_ms,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def quality() -> RecordingQuality:
    return RecordingQuality()


@pytest.fixture
def join(registry: CollectorRegistry, clock: Clock, quality: RecordingQuality) -> Join:
    return Join(DictStore(), JoinMetrics(registry), retention_seconds=RETENTION, quality=quality, clock=clock)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


def rows(records: Sequence[OutRecord]) -> dict[str, dict[str, Any]]:
    return {(r.key or b"").decode(): orjson.loads(r.value or b"null") for r in records}


def test_score_then_outcome_matches_and_writes_a_labelled_row(
    join: Join, registry: CollectorRegistry, quality: RecordingQuality, clock: Clock
) -> None:
    first = join.apply(scored=[scored_batch(["a", "b"], partition=2, group="g1")])
    assert [(r.key, r.partition) for r in first.changelog] == [(b"a", 2), (b"b", 2)]
    assert first.labelled == [] and first.dead_letters == []
    assert quality.scored_calls == [("v1", "current", T0, 2)]
    clock.now += 10
    out = join.apply(outcomes=[outcome("a", 200, 9, offset=5, partition=2, at="2027-01-15T08:00:00Z")])
    assert sample(registry, "headline_scorer_join_outcomes_total", result="matched") == 1
    assert sample(registry, "headline_scorer_outcomes_consumed_total") == 1
    assert [(r.key, r.partition) for r in out.changelog] == [(b"a", 2)]
    labelled = rows(out.labelled)
    assert list(labelled) == ["a"]
    assert labelled["a"] == {
        "id": "a",
        "title": "title a",
        "category": "tech",
        "group": "g1",
        "impressions": 200,
        "clicks": 9,
        "model_version": "v1",
        "score_ctr": pytest.approx(0.01),
        "score_ctr_normalized": pytest.approx(0.1),
        "score_quality_prob": pytest.approx(0.2),
        "scored_at": "2027-01-15T08:00:00Z",
        "outcome_at": "2027-01-15T08:00:00Z",
    }
    assert [(r.id, r.model_version, r.role, r.impressions, r.clicks, r.group) for r in quality.rows] == [
        ("a", "v1", "current", 200, 9, "g1")
    ]
    # the changelog value is the stored entry
    entry = Entry.decode(out.changelog[0].value or b"")
    assert entry.outcome is not None and entry.outcome.impressions == 200
    assert entry.scores["v1"].role == "current"


def test_outcome_first_waits_for_its_score(join: Join, registry: CollectorRegistry) -> None:
    out = join.apply(outcomes=[outcome("x", 50, 2, offset=0, partition=1)])
    assert sample(registry, "headline_scorer_join_outcomes_total", result="pending") == 1
    assert [(r.key, r.partition) for r in out.changelog] == [(b"x", 1)]
    assert out.labelled == []
    later = join.apply(scored=[scored_batch(["x"], partition=1)])
    assert sample(registry, "headline_scorer_join_scores_matched_total") == 1
    assert rows(later.labelled)["x"]["impressions"] == 50
    assert sample(registry, "headline_scorer_join_outcomes_total", result="matched") == 0


def test_newer_counts_update_equal_or_redelivered_are_stale_lower_are_dead_lettered(
    join: Join, registry: CollectorRegistry
) -> None:
    join.apply(scored=[scored_batch(["a"])])
    join.apply(outcomes=[outcome("a", 100, 5, offset=10)])
    newer = join.apply(outcomes=[outcome("a", 150, 5, offset=11)])
    assert rows(newer.labelled)["a"]["impressions"] == 150
    assert sample(registry, "headline_scorer_join_outcomes_total", result="matched") == 2
    # equal counts, and a re-delivery of an older record (a restart re-reads from the commit)
    same = join.apply(outcomes=[outcome("a", 150, 5, offset=12), outcome("a", 100, 5, offset=10)])
    assert not same
    assert sample(registry, "headline_scorer_join_outcomes_total", result="stale") == 2
    lower = join.apply(outcomes=[outcome("a", 140, 6, offset=13)])
    assert lower.changelog == [] and lower.labelled == []
    [dead] = lower.dead_letters
    headers = dict(dead.headers)
    assert headers[HEADER_REASON] == b"counts_decreased"
    assert b"140" in headers["dlq.error"] and b"150" in headers["dlq.error"]
    assert dead.value == outcome("a", 140, 6, offset=13).value  # the original bytes, unchanged
    assert sample(registry, "headline_scorer_outcomes_dead_lettered_total", reason="counts_decreased") == 1


def test_bad_outcomes_are_dead_lettered_with_their_reason(join: Join, registry: CollectorRegistry) -> None:
    bad = [
        InRecord(b"k", b"{not json", "headline-outcomes", 0, 1, None),
        InRecord(b"k", None, "headline-outcomes", 0, 2, None),
        InRecord(b"k", b'{"id": "k", "impressions": 3, "clicks": 4}', "headline-outcomes", 0, 3, None),
        InRecord(b"k", b"\xff\xfe", "headline-outcomes", 0, 4, None),
    ]
    out = join.apply(outcomes=bad)
    assert [dict(r.headers)[HEADER_REASON] for r in out.dead_letters] == [
        b"not_json",
        b"null_value",
        b"schema",
        b"not_utf8",
    ]
    assert [dict(r.headers)["dlq.source_offset"] for r in out.dead_letters] == [b"1", b"2", b"3", b"4"]
    assert out.changelog == []
    for reason in OUTCOME_DEAD_LETTER_REASONS:
        assert (
            registry.get_sample_value("headline_scorer_outcomes_dead_lettered_total", {"reason": reason})
            is not None
        )
    assert sample(registry, "headline_scorer_outcomes_consumed_total") == 4


def test_late_outcomes_are_dropped(join: Join, registry: CollectorRegistry, clock: Clock) -> None:
    join.apply(scored=[scored_batch(["a"])])
    too_old_ms = int((clock.now - RETENTION - 1) * 1000)
    out = join.apply(outcomes=[outcome("a", 10, 1, offset=0, timestamp_ms=too_old_ms)])
    assert not out
    assert sample(registry, "headline_scorer_join_outcomes_total", result="late") == 1
    # the same age but within the retention is joined
    ok = join.apply(outcomes=[outcome("a", 10, 1, offset=1, timestamp_ms=too_old_ms + 2000)])
    assert rows(ok.labelled)["a"]["clicks"] == 1


def test_records_whose_key_is_not_their_id_are_not_joined(join: Join, registry: CollectorRegistry) -> None:
    out = join.apply(scored=[scored_batch(["a", "b"], keys=[b"other", b"b"])])
    assert [r.key for r in out.changelog] == [b"b"]
    assert sample(registry, "headline_scorer_join_skipped_total", reason="key_not_id") == 1
    out = join.apply(outcomes=[outcome("b", 5, 1, offset=0, key=None) for _ in range(1)])
    assert rows(out.labelled)["b"]["clicks"] == 1
    skipped = join.apply(outcomes=[outcome("b", 6, 1, offset=1, key=b"nope")])
    assert not skipped
    assert sample(registry, "headline_scorer_join_skipped_total", reason="key_not_id") == 2


def test_shadow_scores_join_with_their_role(join: Join, quality: RecordingQuality) -> None:
    join.apply(scored=[scored_batch(["a"], version="v1")], shadow=[scored_batch(["a"], version="v2")])
    assert ("v2", "shadow", T0, 1) in quality.scored_calls
    out = join.apply(outcomes=[outcome("a", 300, 30, offset=0)])
    assert {(r.model_version, r.role) for r in quality.rows} == {("v1", "current"), ("v2", "shadow")}
    assert rows(out.labelled)["a"]["model_version"] == "v1"  # the labelled row carries the current's score


def test_retention_expires_untouched_entries_with_tombstones(
    join: Join, registry: CollectorRegistry, clock: Clock
) -> None:
    join.apply(scored=[scored_batch(["only-score"], partition=3)])
    join.apply(outcomes=[outcome("only-outcome", 5, 0, offset=0, partition=1)])
    join.apply(scored=[scored_batch(["both"], partition=0)])
    join.apply(outcomes=[outcome("both", 5, 1, offset=1, partition=0)])
    assert len(join) == 3
    clock.now += RETENTION - 1
    join.apply(outcomes=[outcome("both", 6, 1, offset=2, partition=0)])  # touched again
    clock.now += 2
    out = join.sweep()
    assert sorted((r.key, r.value, r.partition) for r in out.changelog) == [
        (b"only-outcome", None, 1),
        (b"only-score", None, 3),
    ]
    assert sample(registry, "headline_scorer_join_expired_total", side="score") == 1
    assert sample(registry, "headline_scorer_join_expired_total", side="outcome") == 1
    assert sample(registry, "headline_scorer_join_entries") == 1
    assert join.store.get(b"only-score") is None
    assert not join.sweep()
    clock.now += RETENTION
    last = join.sweep()
    assert [(r.key, r.value) for r in last.changelog] == [(b"both", None)]
    assert sample(registry, "headline_scorer_join_expired_total", side="score") == 1  # it was matched
    assert len(join) == 0


def test_rebuild_restores_the_index_and_drops_foreign_partitions(
    registry: CollectorRegistry, clock: Clock
) -> None:
    store = DictStore()
    first = Join(store, JoinMetrics(registry), retention_seconds=RETENTION, clock=clock)
    first.apply(scored=[scored_batch(["p0"], partition=0), scored_batch(["p1"], partition=1)])
    clock.now += 100
    first.apply(scored=[scored_batch(["p0b"], partition=0)])
    # a new worker whose store faust restored from the changelog
    restored = DictStore(dict(store.data))
    second = Join(restored, JoinMetrics(CollectorRegistry()), retention_seconds=RETENTION, clock=clock)
    assert second.rebuild(partitions={0}) == 2
    assert restored.get(b"p1") is None
    clock.now += RETENTION - 50  # p0 expires, p0b (touched 100 s later) not yet
    assert [r.key for r in second.sweep().changelog] == [b"p0"]
    out = second.apply(outcomes=[outcome("p0b", 7, 2, offset=0)])
    assert rows(out.labelled)["p0b"]["impressions"] == 7


def test_one_changelog_record_per_id_per_step(join: Join) -> None:
    out = join.apply(
        scored=[scored_batch(["a", "a"], offset=0)],
        outcomes=[outcome("a", 5, 1, offset=0), outcome("a", 9, 2, offset=1)],
    )
    assert [r.key for r in out.changelog] == [b"a"]
    assert Entry.decode(out.changelog[0].value or b"").outcome is not None
    assert rows(out.labelled)["a"]["impressions"] == 9


def test_unreadable_entries_are_replaced(join: Join) -> None:
    join.store.put(b"a", b"not json")
    out = join.apply(scored=[scored_batch(["a"])])
    assert Entry.decode(out.changelog[0].value or b"").title == "title a"


def test_changelog_topic_follows_faust_naming() -> None:
    assert changelog_topic_name("headline-scorer") == "headline-scorer-headline-join-changelog"


def test_the_changelog_topic_is_among_the_scorer_topics_when_the_join_is_on(tmp_path: Any) -> None:
    from stream.settings import StreamSettings
    from stream.topics import scorer_topics

    on = StreamSettings.from_env(model_registry=tmp_path, scorer_app_id="w1", topic_partitions=3)
    specs = {spec.name: spec for spec in scorer_topics(on)}
    changelog = specs[changelog_topic_name("w1")]
    assert (changelog.partitions, dict(changelog.config)) == (3, {"cleanup.policy": "compact"})
    off = StreamSettings.from_env(model_registry=tmp_path, scorer_app_id="w1", join_enabled=False)
    assert changelog_topic_name("w1") not in {spec.name for spec in scorer_topics(off)}


def test_live_quality_is_told_when_a_role_changes_version(join: Join, quality: RecordingQuality) -> None:
    manifest: Any = object()
    for version, role in [("v1", "current"), ("v1", "current"), ("v2", "shadow"), ("v2", "shadow")]:
        join.set_model(version, role, manifest)  # type: ignore[arg-type]
    join.set_model(None, "shadow")
    join.set_model(None, "shadow")
    join.set_model("v2", "shadow", manifest)
    assert quality.models == [("v1", "current"), ("v2", "shadow"), ("-", "shadow"), ("v2", "shadow")]


def test_stored_entries_take_their_size_not_a_buffer(join: Join) -> None:
    import tracemalloc

    batches = [scored_batch([f"m-{b}-{i}" for i in range(100)], offset=100 * b) for b in range(10)]
    tracemalloc.start()
    try:
        for batch in batches:
            join.apply(scored=[batch])
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held / len(join) < 1500  # bytes per id: the entry JSON (~250 bytes), its key and index slot
