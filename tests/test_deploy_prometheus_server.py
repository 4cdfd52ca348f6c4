"""The test helper that runs a real Prometheus server, scraping a tiny prometheus_client exporter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_contract import JOB
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_server import PrometheusError, running_prometheus, serving_metrics

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


@pytest.fixture
def exporter() -> Iterator[tuple[str, CollectorRegistry]]:
    """A prometheus_client HTTP server on loopback exposing a few contract metrics."""
    registry = CollectorRegistry()
    consumed = Counter("headline_scorer_events_consumed", "events consumed", registry=registry)
    dead = Counter(
        "headline_scorer_events_dead_lettered", "events dead-lettered", ["reason"], registry=registry
    )
    psi = Gauge("headline_scorer_drift_psi", "PSI per signal", ["signal"], registry=registry)
    latency = Histogram("headline_scorer_end_to_end_latency_seconds", "latency", registry=registry)
    consumed.inc(42)
    dead.labels(reason="schema").inc(2)
    dead.labels(reason="not_json")
    psi.labels(signal="ctr").set(0.07)
    for value in (0.004, 0.02, 0.3):
        latency.observe(value)
    with serving_metrics(registry) as target:
        yield target, registry


def test_prometheus_scrapes_a_target_and_answers_queries(
    exporter: tuple[str, CollectorRegistry], tmp_path: Path
) -> None:
    target, _registry = exporter
    with running_prometheus([target], tmp_path / "prometheus") as prometheus:
        consumed = prometheus.wait_for(f'headline_scorer_events_consumed_total{{job="{JOB}"}}')
        assert [series["metric"]["instance"] for series in consumed] == [target]
        assert float(consumed[0]["value"][1]) == 42.0

        dead = prometheus.query("sum by (reason) (headline_scorer_events_dead_lettered_total)")
        assert {s["metric"]["reason"]: float(s["value"][1]) for s in dead} == {"schema": 2.0, "not_json": 0.0}

        psi = prometheus.query('headline_scorer_drift_psi{signal="ctr"}')
        assert float(psi[0]["value"][1]) == pytest.approx(0.07)

        count = prometheus.query("headline_scorer_end_to_end_latency_seconds_count")
        assert float(count[0]["value"][1]) == 3.0
        (active,) = prometheus.targets()
        assert active["health"] == "up" and active["labels"]["job"] == JOB

        with pytest.raises(PrometheusError, match="bad_data"):
            prometheus.query("sum(")
        assert prometheus.query("absent_metric_name_xyz") == []
    assert prometheus.process is not None
    assert prometheus.process.poll() is not None, "prometheus still running after the context exited"


def test_a_config_prometheus_rejects_is_reported(tmp_path: Path) -> None:
    with (
        pytest.raises(PrometheusError, match="exited"),
        running_prometheus(["127.0.0.1:1"], tmp_path / "prometheus", scrape_interval="soon"),
    ):
        pass
