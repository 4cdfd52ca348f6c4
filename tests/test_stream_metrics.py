"""stream/metrics.py: the names and labels deploy/ relies on, bounded labels, batch histograms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream.dlq import DEAD_LETTER_REASONS
from stream.metrics import DRIFT_SIGNALS, LATENCY_BUCKETS, ArrayHistogram, ScorerMetrics, latencies_seconds

P = "headline_scorer"
CONTRACT_FAMILIES = {
    f"{P}_events_consumed": "counter",
    f"{P}_events_scored": "counter",
    f"{P}_events_dead_lettered": "counter",
    f"{P}_batch_size_events": "histogram",
    f"{P}_inference_seconds": "histogram",
    f"{P}_end_to_end_latency_seconds": "histogram",
    f"{P}_consumer_lag_messages": "gauge",
    f"{P}_model_info": "gauge",
    f"{P}_model_reloads": "counter",
    f"{P}_model_reload_failures": "counter",
    f"{P}_last_commit_timestamp_seconds": "gauge",
    f"{P}_seconds_since_last_commit": "gauge",
    f"{P}_drift_psi": "gauge",
    f"{P}_unseen_category_share": "gauge",
    f"{P}_prediction_ctr": "histogram",
    f"{P}_prediction_quality_prob": "histogram",
    f"{P}_ready": "gauge",
}


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def metrics(registry: CollectorRegistry, clock: FakeClock) -> ScorerMetrics:
    return ScorerMetrics(registry, clock=clock)


def families(registry: CollectorRegistry) -> dict[str, object]:
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_every_contract_metric_exists_with_its_type(
    metrics: ScorerMetrics, registry: CollectorRegistry
) -> None:
    # prometheus_client adds *_created series to counters/histograms unless disabled process-wide.
    found = {
        name: f.type  # type: ignore[attr-defined]
        for name, f in families(registry).items()
        if not name.endswith("_created")
    }
    assert found == CONTRACT_FAMILIES


def test_initial_values(metrics: ScorerMetrics, registry: CollectorRegistry) -> None:
    get = registry.get_sample_value
    assert get(f"{P}_events_consumed_total") == 0
    for reason in DEAD_LETTER_REASONS:
        assert get(f"{P}_events_dead_lettered_total", {"reason": reason}) == 0
    for signal in DRIFT_SIGNALS:
        assert math.isnan(get(f"{P}_drift_psi", {"signal": signal}) or 0.0)
    assert get(f"{P}_ready") == 0
    assert get(f"{P}_seconds_since_last_commit") == 0
    assert get(f"{P}_end_to_end_latency_seconds_count") == 0


def test_counts_and_batches(metrics: ScorerMetrics, registry: CollectorRegistry) -> None:
    get = registry.get_sample_value
    metrics.consumed(10)
    metrics.dead_lettered("not_json")
    metrics.dead_lettered("schema", 2)
    metrics.observe_batch(
        7,
        0.003,
        latencies=np.array([0.004, 0.004, 0.02, 0.02, 0.02, 3.0, np.nan]),
        ctr=np.full(7, 0.015),
        quality=np.array([0.05, 0.15, 0.5, 0.55, 0.95, 1.0, 0.0]),
    )
    metrics.observe_batch(0, 0.0, [], [], [])  # nothing scored: nothing observed
    assert get(f"{P}_events_consumed_total") == 10
    assert get(f"{P}_events_scored_total") == 7
    assert get(f"{P}_events_dead_lettered_total", {"reason": "not_json"}) == 1
    assert get(f"{P}_events_dead_lettered_total", {"reason": "schema"}) == 2
    assert get(f"{P}_batch_size_events_count") == 1
    assert get(f"{P}_batch_size_events_bucket", {"le": "4.0"}) == 0
    assert get(f"{P}_batch_size_events_bucket", {"le": "8.0"}) == 1
    assert get(f"{P}_inference_seconds_sum") == pytest.approx(0.003)
    assert get(f"{P}_end_to_end_latency_seconds_count") == 6  # NaN skipped
    assert get(f"{P}_end_to_end_latency_seconds_bucket", {"le": "0.005"}) == 2
    assert get(f"{P}_end_to_end_latency_seconds_bucket", {"le": "0.025"}) == 5
    assert get(f"{P}_end_to_end_latency_seconds_bucket", {"le": "+Inf"}) == 6
    assert get(f"{P}_end_to_end_latency_seconds_sum") == pytest.approx(3.068)
    assert get(f"{P}_prediction_ctr_bucket", {"le": "0.02"}) == 7
    assert get(f"{P}_prediction_quality_prob_bucket", {"le": "0.1"}) == 2
    assert get(f"{P}_prediction_quality_prob_bucket", {"le": "0.5"}) == 4  # 0.0, 0.05, 0.15 and 0.5 (<= 0.5)
    with pytest.raises(ValueError, match="dead-letter reason"):
        metrics.dead_lettered("lost")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_array_histogram_equals_prometheus_histogram(seed: int) -> None:
    """The batch histogram exposes exactly what one Histogram.observe per value would."""
    values = np.random.default_rng(seed).lognormal(-3, 2, 500)
    values[:5] = LATENCY_BUCKETS[:5]  # values on the bounds
    ours, ref = CollectorRegistry(), CollectorRegistry()
    hist = ArrayHistogram("x_seconds", "x", LATENCY_BUCKETS, ours)
    for chunk in np.array_split(values, 7):
        hist.observe(chunk)
    reference = Histogram("x_seconds", "x", buckets=LATENCY_BUCKETS, registry=ref)
    for v in values:
        reference.observe(float(v))
    for le in [*(repr(b) for b in LATENCY_BUCKETS), "+Inf"]:
        assert ours.get_sample_value("x_seconds_bucket", {"le": le}) == ref.get_sample_value(
            "x_seconds_bucket", {"le": le}
        )
    assert ours.get_sample_value("x_seconds_count") == ref.get_sample_value("x_seconds_count") == 500
    assert ours.get_sample_value("x_seconds_sum") == pytest.approx(ref.get_sample_value("x_seconds_sum"))


def test_model_info_keeps_one_series(metrics: ScorerMetrics, registry: CollectorRegistry) -> None:
    get = registry.get_sample_value
    metrics.set_model("v1")
    metrics.set_model("v1")  # the same version again is not a reload
    assert get(f"{P}_model_reloads_total") == 0
    metrics.set_model("v2")
    metrics.reload_failed()
    info = families(registry)[f"{P}_model_info"]
    assert [(s.labels, s.value) for s in info.samples] == [({"version": "v2"}, 1.0)]  # type: ignore[attr-defined]
    assert get(f"{P}_model_reloads_total") == 1
    assert get(f"{P}_model_reload_failures_total") == 1


def test_commit_age_uses_the_clock(
    metrics: ScorerMetrics, registry: CollectorRegistry, clock: FakeClock
) -> None:
    get = registry.get_sample_value
    clock.now += 4.0
    assert get(f"{P}_seconds_since_last_commit") == 4.0  # since start-up
    metrics.committed()
    assert get(f"{P}_last_commit_timestamp_seconds") == clock.now
    clock.now += 2.5
    assert get(f"{P}_seconds_since_last_commit") == 2.5
    metrics.committed(clock.now - 1.0)
    assert get(f"{P}_seconds_since_last_commit") == 1.0


def test_lag_drift_and_ready(metrics: ScorerMetrics, registry: CollectorRegistry) -> None:
    get = registry.get_sample_value
    metrics.set_lag("headlines", 0, 12)
    metrics.set_lag("headlines", 3, -1)  # never negative
    assert get(f"{P}_consumer_lag_messages", {"topic": "headlines", "partition": "0"}) == 12
    assert get(f"{P}_consumer_lag_messages", {"topic": "headlines", "partition": "3"}) == 0
    metrics.forget_partitions([("headlines", 0), ("headlines", 9)])
    assert get(f"{P}_consumer_lag_messages", {"topic": "headlines", "partition": "0"}) is None
    metrics.forget_partitions()
    assert get(f"{P}_consumer_lag_messages", {"topic": "headlines", "partition": "3"}) is None
    metrics.set_drift({"ctr": 0.3, "category": 0.01}, 0.2)
    assert get(f"{P}_drift_psi", {"signal": "ctr"}) == 0.3
    assert get(f"{P}_unseen_category_share") == 0.2
    with pytest.raises(ValueError, match="drift signals"):
        metrics.set_drift({"headline-42": 1.0}, 0.0)
    metrics.set_ready(True)
    assert get(f"{P}_ready") == 1


def test_labels_stay_bounded(metrics: ScorerMetrics, registry: CollectorRegistry) -> None:
    """After a busy run the exposition has only the contract's label names, with bounded values."""
    rng = np.random.default_rng(0)
    for i in range(50):
        metrics.consumed(100)
        metrics.observe_batch(100, 0.001, rng.random(100), rng.random(100) / 10, rng.random(100))
        metrics.dead_lettered(DEAD_LETTER_REASONS[i % len(DEAD_LETTER_REASONS)])
        metrics.set_lag("headlines", i % 4, i)
        metrics.set_model(f"v{i % 3}")
        metrics.set_drift(dict.fromkeys(DRIFT_SIGNALS, 0.01 * i), 0.1)
    allowed: dict[str, set[str]] = {
        "reason": set(DEAD_LETTER_REASONS),
        "signal": set(DRIFT_SIGNALS),
        "topic": {"headlines"},
        "partition": {"0", "1", "2", "3"},
        "version": {"v0", "v1", "v2"},
    }
    series = 0
    for family in families(registry).values():
        for sample in family.samples:  # type: ignore[attr-defined]
            series += 1
            for name, value in sample.labels.items():
                if name == "le":
                    assert value == "+Inf" or float(value) > 0
                    continue
                assert name in allowed, (family.name, name)  # type: ignore[attr-defined]
                assert value in allowed[name], (family.name, name, value)  # type: ignore[attr-defined]
    assert series < 200
    versions = [s for s in families(registry)[f"{P}_model_info"].samples]  # type: ignore[attr-defined]
    assert len(versions) == 1


def test_latencies_seconds() -> None:
    assert latencies_seconds([10.0, 11.5], now=12.0).tolist() == [2.0, 0.5]
