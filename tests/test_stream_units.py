"""Stream parts without a broker: batch scoring, hot reload, health."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from artifact.registry import CURRENT_FILE, Registry, atomic_write_text
from artifact.runtime import ROWS_PER_CALL, ScoreBatch, ScoringModel, load_model
from stream.metrics import ScorerMetrics
from stream.reload import ModelHolder
from stream.scoring import BatchScorer, InRecord
from stream.sink import partition_for
from tests.stream_harness import event, template_registry

pytestmark = pytest.mark.slow


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry_copy(tmp_path: Path) -> tuple[Path, str, str]:
    root, first, second = template_registry()
    shutil.copytree(root, tmp_path / "registry")
    return tmp_path / "registry", first, second


def _records(values: Sequence[bytes | None]) -> list[InRecord]:
    return [
        InRecord(f"k{i}".encode(), v, "in", i % 3, 100 + i, 1_700_000_000_000) for i, v in enumerate(values)
    ]


class ExplodingModel:
    """A real model whose score() fails for batches containing a marked title (fault injection)."""

    def __init__(self, inner: ScoringModel) -> None:
        self.inner = inner
        self.version = inner.version
        self.manifest = inner.manifest

    def score(self, titles: Sequence[str], categories: Sequence[str | None]) -> ScoreBatch:
        if any("EXPLODE" in t for t in titles):
            raise RuntimeError("injected scoring failure")
        return self.inner.score(titles, categories)


def test_batch_scorer_scores_valid_events_and_dead_letters_the_rest(
    registry_copy: tuple[Path, str, str],
) -> None:
    root, current, _ = registry_copy
    model = load_model(Registry(root).version_dir(current))
    registry = CollectorRegistry()
    metrics = ScorerMetrics(registry)
    clock = FakeClock(1_700_000_100.0)
    scorer = BatchScorer(metrics, max_event_bytes=1000, clock=clock)
    values: list[bytes | None] = [
        event("a", "A perfectly fine headline"),
        b"\xff\xfe",
        None,
        b'{"id": "b"}',
        event("c", "x" * 2000),  # over 1000 bytes
        event("d", "Another fine headline", None),
    ]
    out = scorer.process(model, _records(values))
    assert [json.loads(r.value or b"")["id"] for r in out.scores] == ["a", "d"]
    assert [r.key for r in out.scores] == [b"a", b"d"]
    first = json.loads(out.scores[0].value or b"")
    assert first["model_version"] == current
    assert first["source_offset"] == 100 and first["source_partition"] == 0
    assert first["event_time"] == "2023-11-14T22:13:20Z"  # the Kafka timestamp (no published_at)
    reasons = [dict(r.headers)["dlq.reason"] for r in out.dead_letters]
    assert reasons == [b"not_utf8", b"null_value", b"schema", b"too_large"]
    assert [r.value for r in out.dead_letters] == [values[1], values[2], values[3], values[4]]
    assert registry.get_sample_value("headline_scorer_events_consumed_total") == 6
    assert registry.get_sample_value("headline_scorer_events_scored_total") == 2
    assert registry.get_sample_value("headline_scorer_events_dead_lettered_total", {"reason": "schema"}) == 1


def test_a_scoring_failure_dead_letters_only_the_event_that_fails(
    registry_copy: tuple[Path, str, str],
) -> None:
    root, current, _ = registry_copy
    model = ExplodingModel(load_model(Registry(root).version_dir(current)))
    registry = CollectorRegistry()
    scorer = BatchScorer(ScorerMetrics(registry), max_event_bytes=10_000)
    values: list[bytes | None] = [event(f"e{i}", f"Headline number {i}") for i in range(5)]
    values[2] = event("boom", "This one will EXPLODE")
    out = scorer.process(model, _records(values))  # type: ignore[arg-type]
    assert sorted(json.loads(r.value or b"")["id"] for r in out.scores) == ["e0", "e1", "e3", "e4"]
    assert len(out.dead_letters) == 1
    headers = dict(out.dead_letters[0].headers)
    assert headers["dlq.reason"] == b"scoring_error"
    assert b"injected scoring failure" in headers["dlq.error"]
    assert out.dead_letters[0].value == values[2]
    assert (
        registry.get_sample_value("headline_scorer_events_dead_lettered_total", {"reason": "scoring_error"})
        == 1
    )


def test_drift_window_follows_the_serving_model(registry_copy: tuple[Path, str, str]) -> None:
    from stream.drift import SlidingWindowDrift

    root, current, second = registry_copy
    reg = Registry(root)
    registry = CollectorRegistry()
    metrics = ScorerMetrics(registry)
    scorer = BatchScorer(
        metrics,
        max_event_bytes=10_000,
        drift_factory=lambda m: SlidingWindowDrift.from_mapping(m.manifest.drift, min_events=10),
    )
    model = load_model(reg.version_dir(current))
    scorer.process(model, _records([event(f"e{i}", f"Title {i} about cats") for i in range(50)]))
    scorer.publish_drift()
    psi = registry.get_sample_value("headline_scorer_drift_psi", {"signal": "title_words"})
    assert psi is not None and np.isfinite(psi) and psi >= 0
    window = scorer.drift
    scorer.process(load_model(reg.version_dir(second)), _records([event("z", "One more")]))
    assert scorer.drift is not window and scorer.drift is not None and len(scorer.drift) == 1


def test_model_holder_swaps_on_promote_and_keeps_serving_when_a_version_is_broken(
    registry_copy: tuple[Path, str, str],
) -> None:
    root, first, second = registry_copy
    reg = Registry(root)
    registry = CollectorRegistry()
    holder = ModelHolder(reg, ScorerMetrics(registry))
    assert holder.poll() is True and holder.version == first
    assert holder.poll() is False  # nothing changed
    reg.promote(second)
    assert holder.poll() is True and holder.version == second
    assert registry.get_sample_value("headline_scorer_model_reloads_total") == 1
    (reg.version_dir(first) / "manifest.json").write_text("{}")  # damaged behind the registry's back
    atomic_write_text(root / CURRENT_FILE, first + "\n")
    assert holder.poll() is False
    assert holder.version == second
    assert first in holder.rejected
    assert registry.get_sample_value("headline_scorer_model_reload_failures_total") == 1
    assert holder.poll() is False  # not retried until CURRENT changes
    assert registry.get_sample_value("headline_scorer_model_reload_failures_total") == 1
    assert registry.get_sample_value("headline_scorer_model_info", {"version": second}) == 1


def test_model_holder_loads_with_the_configured_threads_and_rows_per_call(
    registry_copy: tuple[Path, str, str],
) -> None:
    root, first, _ = registry_copy
    holder = ModelHolder(Registry(root), ScorerMetrics(CollectorRegistry()), rows_per_call=3)
    assert holder.poll() is True and holder.model is not None and holder.version == first
    assert holder.model.scorer.rows_per_call == 3
    default = ModelHolder(Registry(root), ScorerMetrics(CollectorRegistry()))
    assert default.poll() is True and default.model is not None
    assert default.model.scorer.rows_per_call == ROWS_PER_CALL


def test_model_holder_without_any_version_waits(tmp_path: Path) -> None:
    holder = ModelHolder(Registry(tmp_path / "empty"), ScorerMetrics(CollectorRegistry()))
    assert holder.poll() is False and holder.model is None


def test_partitioning_is_stable_and_spreads_keys() -> None:
    parts = [partition_for(f"id-{i}".encode(), 4, 0) for i in range(1000)]
    assert parts == [partition_for(f"id-{i}".encode(), 4, 0) for i in range(1000)]
    counts = np.bincount(parts, minlength=4)
    assert counts.min() > 150  # murmur2 spreads keys over all partitions
    assert partition_for(None, 4, 7) == 3
