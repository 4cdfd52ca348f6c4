"""stream/shadow.py without Kafka: the shadow scores a batch after the current model, a shadow
failure never costs a main score, agreement over a sliding window, the shadow metrics.

Models are fakes whose scores follow from the title, so every expected value is computed here.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from artifact.runtime import ScoreBatch, ScoringModel
from stream.metrics import ScorerMetrics
from stream.scoring import BatchResult, BatchScorer, InRecord
from stream.shadow import AgreementWindow, ShadowMetrics, ShadowScorer
from tests.stream_harness import event

CURRENT = "20260101T000000Z-aaaaaaaa"
SHADOW = "20260102T000000Z-bbbbbbbb"
AGREEMENT = "headline_scorer_shadow_agreement"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeModel:
    """ctr_normalized = len(title) / 100 + shift; quality label when the title has an even length
    (flipped for titles containing ``flip``); fails on titles containing ``fail_on``; NaN on ``nan_on``."""

    def __init__(
        self,
        version: str,
        *,
        shift: float = 0.0,
        flip: str | None = None,
        fail_on: str | None = None,
        nan_on: str | None = None,
        extra_row: bool = False,
    ) -> None:
        self.version = version
        self.shift = shift
        self.flip = flip
        self.fail_on = fail_on
        self.nan_on = nan_on
        self.extra_row = extra_row
        self.calls: list[list[str]] = []
        # what ModelHolder's warm-up reads
        self.manifest = SimpleNamespace(canaries=[SimpleNamespace(title="A canary headline")])

    def score(self, titles: Sequence[str], categories: Sequence[str | None]) -> ScoreBatch:
        self.calls.append(list(titles))
        if self.fail_on is not None and any(self.fail_on in t for t in titles):
            raise RuntimeError(f"injected failure on {self.fail_on}")
        rows = [*titles, "x"] if self.extra_row else list(titles)
        norm = np.array([len(t) / 100 + self.shift for t in rows], dtype=np.float64)
        label = np.array([(len(t) % 2 == 0) != (self.flip is not None and self.flip in t) for t in rows])
        prob = np.where(label, 0.75, 0.25).astype(np.float64)
        if self.nan_on is not None:
            prob[[self.nan_on in t for t in rows]] = math.nan
        return ScoreBatch(
            ctr=norm / 10,
            ctr_normalized=norm,
            quality_prob=prob,
            quality_label=label,
            signals={},
            categories=[None] * len(rows),
            category_known=np.zeros(len(rows), dtype=bool),
        )


def _model(fake: FakeModel) -> ScoringModel:
    return cast("ScoringModel", fake)


def _records(values: Sequence[bytes | None]) -> list[InRecord]:
    return [
        InRecord(f"k{i}".encode(), v, "in", i % 3, 100 + i, 1_700_000_000_000) for i, v in enumerate(values)
    ]


def _scorers(
    shadow_model: FakeModel | None, *, window_events: int = 1000, window_seconds: float = 60.0
) -> tuple[BatchScorer, ShadowScorer, CollectorRegistry, FakeClock]:
    prom = CollectorRegistry()
    clock = FakeClock()
    shadow = ShadowScorer(
        ShadowMetrics(prom),
        lambda: None if shadow_model is None else _model(shadow_model),
        window_events=window_events,
        window_seconds=window_seconds,
        clock=clock,
    )
    return (
        BatchScorer(ScorerMetrics(prom), max_event_bytes=10_000, clock=clock, shadow=shadow),
        shadow,
        prom,
        clock,
    )


TITLES = ["Cats", "Dogs bark", "A new bridge opens", "Rain again today", "Markets rally", "Odd one"]


def _values() -> list[bytes | None]:
    return [event(f"e{i}", t) for i, t in enumerate(TITLES)]


def _decoded(result: BatchResult, attr: str) -> list[dict[str, Any]]:
    return [json.loads(r.value or b"") for r in getattr(result, attr)]


def test_the_shadow_scores_every_valid_event_after_the_current_one() -> None:
    shadow_model = FakeModel(SHADOW, shift=0.02)
    scorer, _, prom, _ = _scorers(shadow_model)
    values = [*_values(), b"not json", None]
    out = scorer.process(_model(FakeModel(CURRENT)), _records(values))
    plain = BatchScorer(
        ScorerMetrics(CollectorRegistry()), max_event_bytes=10_000, clock=FakeClock()
    ).process(_model(FakeModel(CURRENT)), _records(values))
    assert [(r.key, r.value) for r in out.scores] == [(r.key, r.value) for r in plain.scores]  # unchanged
    assert [(r.key, r.value) for r in out.dead_letters] == [(r.key, r.value) for r in plain.dead_letters]
    main, shadow = _decoded(out, "scores"), _decoded(out, "shadow_scores")
    assert [s["id"] for s in shadow] == [m["id"] for m in main] == [f"e{i}" for i in range(len(TITLES))]
    assert [r.key for r in out.shadow_scores] == [r.key for r in out.scores]
    assert {s["model_version"] for s in shadow} == {SHADOW} and {m["model_version"] for m in main} == {
        CURRENT
    }
    for m, s, title in zip(main, shadow, TITLES, strict=True):
        assert s["ctr_normalized"] == pytest.approx(len(title) / 100 + 0.02)
        assert (s["source_partition"], s["source_offset"], s["event_time"]) == (
            m["source_partition"],
            m["source_offset"],
            m["event_time"],
        )
    assert [b.model_version for b in out.shadow] == [SHADOW]
    assert out.shadow[0].events == out.scored[0].events
    assert shadow_model.calls == [TITLES]  # one call for the batch
    assert prom.get_sample_value("headline_scorer_shadow_events_scored_total") == len(TITLES)
    assert prom.get_sample_value("headline_scorer_shadow_errors_total") == 0
    assert prom.get_sample_value("headline_scorer_events_scored_total") == len(TITLES)  # main count only


def test_without_a_shadow_loaded_or_enabled_nothing_else_happens() -> None:
    scorer, _, prom, _ = _scorers(None)
    out = scorer.process(_model(FakeModel(CURRENT)), _records(_values()))
    assert len(out.scores) == len(TITLES) and out.shadow == [] and out.shadow_scores == []
    assert prom.get_sample_value("headline_scorer_shadow_events_scored_total") == 0
    disabled = BatchScorer(ScorerMetrics(CollectorRegistry()), max_event_bytes=10_000)
    assert disabled.shadow is None
    out = disabled.process(_model(FakeModel(CURRENT)), _records(_values()))
    assert len(out.scores) == len(TITLES) and out.shadow_scores == []
    disabled.publish_drift()  # nothing to publish, nothing fails


@pytest.mark.parametrize(
    "broken",
    [FakeModel(SHADOW, fail_on="bridge"), FakeModel(SHADOW, nan_on="bridge")],
    ids=["exception", "nan"],
)
def test_a_shadow_failure_on_one_event_costs_only_its_shadow_score(
    broken: FakeModel, caplog: pytest.LogCaptureFixture
) -> None:
    scorer, _, prom, _ = _scorers(broken)
    with caplog.at_level(logging.WARNING, logger="stream.shadow"):
        out = scorer.process(_model(FakeModel(CURRENT)), _records(_values()))
    assert len(out.scores) == len(TITLES) and out.dead_letters == []
    assert [s["id"] for s in _decoded(out, "shadow_scores")] == ["e0", "e1", "e3", "e4", "e5"]
    assert prom.get_sample_value("headline_scorer_shadow_errors_total") == 1
    assert prom.get_sample_value("headline_scorer_shadow_events_scored_total") == len(TITLES) - 1
    assert (
        prom.get_sample_value("headline_scorer_events_dead_lettered_total", {"reason": "scoring_error"}) == 0
    )
    warnings = [r.getMessage() for r in caplog.records if r.name == "stream.shadow"]
    assert len(warnings) == 1 and SHADOW in warnings[0] and "main scores unaffected" in warnings[0]
    # the next failing batch within a minute is not logged at warning level again
    with caplog.at_level(logging.WARNING, logger="stream.shadow"):
        caplog.clear()
        scorer.process(_model(FakeModel(CURRENT)), _records(_values()))
    assert [r for r in caplog.records if r.name == "stream.shadow"] == []
    assert prom.get_sample_value("headline_scorer_shadow_errors_total") == 2


def test_a_shadow_returning_the_wrong_number_of_scores_scores_nothing() -> None:
    scorer, shadow, prom, _ = _scorers(FakeModel(SHADOW, extra_row=True))
    out = scorer.process(_model(FakeModel(CURRENT)), _records(_values()))
    assert len(out.scores) == len(TITLES) and out.dead_letters == []
    assert out.shadow_scores == [] and out.shadow == []
    assert prom.get_sample_value("headline_scorer_shadow_errors_total") == len(TITLES)
    shadow.publish()
    assert math.isnan(
        prom.get_sample_value(AGREEMENT, {"model_version": SHADOW, "measure": "quality_label"}) or 0
    )


def test_an_unexpected_error_in_the_shadow_path_is_contained(monkeypatch: pytest.MonkeyPatch) -> None:
    scorer, shadow, prom, _ = _scorers(FakeModel(SHADOW))

    def bug(*_: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(shadow, "_compare", bug)
    out = scorer.process(_model(FakeModel(CURRENT)), _records(_values()))
    assert len(out.scores) == len(TITLES) and out.shadow_scores == [] and out.shadow == []
    assert prom.get_sample_value("headline_scorer_shadow_errors_total") == len(TITLES)


def test_agreement_measures_equal_labels_and_the_normalized_ctr_difference() -> None:
    scorer, _, prom, _ = _scorers(FakeModel(SHADOW, shift=0.05, flip="a"))
    scorer.process(_model(FakeModel(CURRENT)), _records(_values()))
    scorer.publish_drift()  # housekeeping publishes the agreement with the drift
    flipped = sum("a" in t for t in TITLES)
    share = prom.get_sample_value(AGREEMENT, {"model_version": SHADOW, "measure": "quality_label"})
    mae = prom.get_sample_value(AGREEMENT, {"model_version": SHADOW, "measure": "ctr_normalized_mae"})
    assert share == pytest.approx(1 - flipped / len(TITLES)) and 0 < flipped < len(TITLES)
    assert mae == pytest.approx(0.05)


def test_agreement_window_keeps_the_latest_events_within_its_seconds() -> None:
    clock = FakeClock(100.0)
    window = AgreementWindow(max_events=5, max_seconds=10.0, clock=clock)
    assert all(math.isnan(v) for v in window.compute())
    window.add(np.array([False] * 4), np.array([1.0] * 4))
    clock.now = 105.0
    window.add(np.array([True] * 3), np.array([0.0] * 3))  # 7 events: the 2 oldest leave
    assert len(window) == 5
    assert window.compute() == pytest.approx((3 / 5, 2 / 5))
    clock.now = 112.0  # the first batch is older than 10 s
    assert window.compute() == pytest.approx((1.0, 0.0)) and len(window) == 3
    clock.now = 116.0
    assert all(math.isnan(v) for v in window.compute()) and len(window) == 0
    with pytest.raises(ValueError, match="expected max_events >= 1"):
        AgreementWindow(max_events=0, max_seconds=1.0)


def test_agreement_follows_the_shadow_version_and_goes_with_it() -> None:
    prom = CollectorRegistry()
    clock = FakeClock()
    loaded: list[FakeModel | None] = [FakeModel(SHADOW, flip="a")]
    shadow = ShadowScorer(
        ShadowMetrics(prom),
        lambda: None if loaded[0] is None else _model(loaded[0]),
        window_events=100,
        window_seconds=60.0,
        clock=clock,
    )
    scorer = BatchScorer(ScorerMetrics(prom), max_event_bytes=10_000, clock=clock, shadow=shadow)
    scorer.process(_model(FakeModel(CURRENT)), _records(_values()))
    scorer.publish_drift()
    assert prom.get_sample_value(AGREEMENT, {"model_version": SHADOW, "measure": "quality_label"}) < 1
    other = "20260103T000000Z-cccccccc"
    loaded[0] = FakeModel(other)  # a new shadow version: its window starts empty
    scorer.publish_drift()
    assert prom.get_sample_value(AGREEMENT, {"model_version": SHADOW, "measure": "quality_label"}) is None
    value = prom.get_sample_value(AGREEMENT, {"model_version": other, "measure": "quality_label"})
    assert value is not None and math.isnan(value)
    scorer.process(_model(FakeModel(CURRENT)), _records(_values()))
    scorer.publish_drift()
    assert prom.get_sample_value(AGREEMENT, {"model_version": other, "measure": "quality_label"}) == 1.0
    assert prom.get_sample_value(AGREEMENT, {"model_version": other, "measure": "ctr_normalized_mae"}) == 0.0
    loaded[0] = None  # SHADOW cleared: no agreement series at all
    scorer.publish_drift()
    assert [s for m in prom.collect() if m.name == AGREEMENT for s in m.samples] == []


def test_shadow_model_info_names_exactly_the_loaded_version() -> None:
    prom = CollectorRegistry()
    metrics = ShadowMetrics(prom)

    def info() -> dict[str, float]:
        return {
            s.labels["version"]: s.value
            for m in prom.collect()
            if m.name == "headline_scorer_shadow_model_info"
            for s in m.samples
        }

    assert info() == {}
    metrics.set_shadow_model(SHADOW)
    metrics.set_shadow_model(CURRENT)
    assert info() == {CURRENT: 1.0}
    metrics.set_shadow_model(None)
    assert info() == {}


@pytest.mark.parametrize("enabled", [True, False])
def test_build_app_wires_the_shadow_only_when_enabled(tmp_path: Path, enabled: bool) -> None:
    from prometheus_client import generate_latest

    from artifact.registry import CURRENT_FILE, SHADOW_FILE, atomic_write_text
    from stream.app import build_app
    from stream.settings import StreamSettings

    for version in (CURRENT, SHADOW):
        (tmp_path / version).mkdir()
    atomic_write_text(tmp_path / CURRENT_FILE, CURRENT + "\n")
    atomic_write_text(tmp_path / SHADOW_FILE, SHADOW + "\n")
    loaded: list[str] = []

    def loader(path: Path) -> ScoringModel:
        loaded.append(path.name)
        return _model(FakeModel(path.name))

    worker = build_app(
        StreamSettings.from_env(model_registry=tmp_path, shadow_enabled=enabled, batch_max_events=1),
        loader=loader,
    )
    assert worker.holder.poll() is True
    out = worker.batch_scorer.process(worker.holder.model, _records(_values()))  # type: ignore[arg-type]
    page = generate_latest(worker.registry).decode()
    if enabled:
        assert loaded == [CURRENT, SHADOW] and worker.holder.shadow_version == SHADOW
        assert {json.loads(r.value or b"")["model_version"] for r in out.shadow_scores} == {SHADOW}
        assert f'headline_scorer_shadow_model_info{{version="{SHADOW}"}} 1.0' in page
    else:
        assert loaded == [CURRENT] and worker.holder.shadow_model is None
        assert worker.batch_scorer.shadow is None and out.shadow_scores == []
        assert "headline_scorer_shadow_" not in page
    assert len(out.scores) == len(TITLES)


class RecordingSink:
    """What the worker hands to the sink: the topics it checks and the records per topic."""

    def __init__(self) -> None:
        self.ensured: list[tuple[str, ...]] = []
        self.sent: dict[str, list[bytes | None]] = {}

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        self.ensured.append(tuple(topics))

    async def send(self, topic: str, records: Sequence[Any]) -> int:
        self.sent.setdefault(topic, []).extend(r.value for r in records)
        return len(records)


def test_the_worker_sends_shadow_scores_to_the_shadow_topic_only(tmp_path: Path) -> None:
    import asyncio

    from artifact.registry import CURRENT_FILE, SHADOW_FILE, atomic_write_text
    from stream.app import build_app
    from stream.settings import StreamSettings

    for version in (CURRENT, SHADOW):
        (tmp_path / version).mkdir()
    atomic_write_text(tmp_path / CURRENT_FILE, CURRENT + "\n")
    atomic_write_text(tmp_path / SHADOW_FILE, SHADOW + "\n")
    settings = StreamSettings.from_env(model_registry=tmp_path, join_enabled=False)  # the join: its own tests
    worker = build_app(settings, loader=lambda path: _model(FakeModel(path.name)))
    sink = RecordingSink()
    worker.sink = sink  # type: ignore[assignment]
    messages = [
        SimpleNamespace(
            key=r.key, value=r.value, topic=r.topic, partition=r.partition, offset=r.offset, timestamp=1.0
        )
        for r in _records(_values())
    ]
    try:
        worker.holder.poll()
        asyncio.run(worker.handle_batch(messages))
        assert sink.ensured == [(settings.output_topic, settings.dlq_topic), (settings.shadow_output_topic,)]
        main = [json.loads(v or b"") for v in sink.sent[settings.output_topic]]
        shadow = [json.loads(v or b"") for v in sink.sent[settings.shadow_output_topic]]
        assert {s["model_version"] for s in main} == {CURRENT} and len(main) == len(TITLES)
        assert {s["model_version"] for s in shadow} == {SHADOW} and len(shadow) == len(TITLES)
        (tmp_path / SHADOW_FILE).unlink()  # cleared: the shadow topic is neither checked nor written
        worker.holder.poll()
        asyncio.run(worker.handle_batch(messages))
        assert sink.ensured[2:] == [(settings.output_topic, settings.dlq_topic)]
        assert len(sink.sent[settings.shadow_output_topic]) == len(TITLES)
        assert len(sink.sent[settings.output_topic]) == 2 * len(TITLES)
    finally:
        worker.shutdown_pools()


def test_the_first_batches_wait_until_the_shadow_has_loaded_too(tmp_path: Path) -> None:
    """A worker started with a backlog scores its first batch with the shadow as well: the batch
    waits for the whole first poll, not only for the current model (set before the shadow loads)."""
    import asyncio
    import threading
    import time

    from artifact.registry import CURRENT_FILE, SHADOW_FILE, atomic_write_text
    from stream.app import build_app
    from stream.settings import StreamSettings

    for version in (CURRENT, SHADOW):
        (tmp_path / version).mkdir()
    atomic_write_text(tmp_path / CURRENT_FILE, CURRENT + "\n")
    atomic_write_text(tmp_path / SHADOW_FILE, SHADOW + "\n")
    shadow_may_load = threading.Event()

    def loader(path: Path) -> ScoringModel:
        if path.name == SHADOW:
            assert shadow_may_load.wait(10)
        return _model(FakeModel(path.name))

    settings = StreamSettings.from_env(model_registry=tmp_path, join_enabled=False)
    worker = build_app(settings, loader=loader)
    sink = RecordingSink()
    worker.sink = sink  # type: ignore[assignment]
    messages = [
        SimpleNamespace(
            key=r.key, value=r.value, topic=r.topic, partition=r.partition, offset=r.offset, timestamp=1.0
        )
        for r in _records(_values())
    ]

    async def scenario() -> None:
        first_poll = asyncio.ensure_future(worker.poll_model())  # the app's start-up task
        deadline = time.monotonic() + 10
        while worker.holder.model is None:  # the current version is in, the shadow still loading
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        batch = asyncio.ensure_future(worker.handle_batch(messages))
        await asyncio.sleep(0.3)
        assert not batch.done()  # it waits for the shadow
        shadow_may_load.set()
        await asyncio.wait_for(batch, 10)
        await first_poll

    try:
        asyncio.run(scenario())
        assert len(sink.sent[settings.output_topic]) == len(TITLES)
        shadow = [json.loads(v or b"") for v in sink.sent[settings.shadow_output_topic]]
        assert {s["model_version"] for s in shadow} == {SHADOW} and len(shadow) == len(TITLES)
    finally:
        shadow_may_load.set()
        worker.shutdown_pools()
