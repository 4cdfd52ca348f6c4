"""The worker contract as the deployment tests see it (names from the project's contracts).

The deployment files (deploy/) are written against these names; the tests check that every metric, label
value and environment variable they use is one of them, so a typo in a dashboard or alert fails a test
instead of showing an empty panel in production.
"""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream.dlq import DEAD_LETTER_REASONS
from stream.metrics import DRIFT_SIGNALS
from stream.settings import StreamSettings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
JOB = "headline-scorer"
WEB_PORT = 6066

COUNTERS = frozenset(
    {
        "headline_scorer_events_consumed_total",
        "headline_scorer_events_scored_total",
        "headline_scorer_events_dead_lettered_total",
        "headline_scorer_model_reloads_total",
        "headline_scorer_model_reload_failures_total",
        # outcomes and the join (stream/outcomes.py, stream/join.py)
        "headline_scorer_outcomes_consumed_total",
        "headline_scorer_outcomes_dead_lettered_total",
        "headline_scorer_join_outcomes_total",
        "headline_scorer_join_scores_matched_total",
        "headline_scorer_join_expired_total",
        "headline_scorer_join_skipped_total",
        # shadow scoring (stream/shadow.py)
        "headline_scorer_shadow_events_scored_total",
        "headline_scorer_shadow_errors_total",
    }
)
GAUGES = frozenset(
    {
        "headline_scorer_consumer_lag_messages",
        "headline_scorer_model_info",
        "headline_scorer_last_commit_timestamp_seconds",
        "headline_scorer_seconds_since_last_commit",
        "headline_scorer_drift_psi",
        "headline_scorer_unseen_category_share",
        "headline_scorer_ready",
        "headline_scorer_join_entries",
        # live quality per model version (stream/quality.py)
        "headline_scorer_live_ctr_mae",
        "headline_scorer_live_calibration_error",
        "headline_scorer_live_quality_positive_share",
        "headline_scorer_live_quality_mean_prob",
        "headline_scorer_live_pairwise_accuracy",
        "headline_scorer_live_pairs",
        "headline_scorer_live_labelled_events",
        "headline_scorer_label_coverage",
        "headline_scorer_model_reference",
        "headline_scorer_shadow_model_info",
        "headline_scorer_shadow_agreement",
    }
)
HISTOGRAMS = frozenset(
    {
        "headline_scorer_batch_size_events",
        "headline_scorer_inference_seconds",
        "headline_scorer_end_to_end_latency_seconds",
        "headline_scorer_prediction_ctr",
        "headline_scorer_prediction_quality_prob",
        "headline_scorer_label_delay_seconds",
    }
)
METRICS = COUNTERS | GAUGES | HISTOGRAMS
# Series other than the worker's own that the deployment files may use.
PROMETHEUS_SERIES = frozenset({"up"})


# the settings' environment variables (test_stream_settings.py pins the list itself)
ENV_VARS = frozenset(name.upper() for name in StreamSettings.model_fields)


def faust_leader_topic(app_id: str) -> str:
    """faust's leader-election topic, which every worker subscribes to (tests/test_worker_topics.py shows
    a worker allowed to create topics creates exactly this one besides input, output and DLQ)."""
    return f"{app_id}-__assignor-__leader"


_METRIC_NAME = re.compile(r"\b(headline_scorer_[a-z0-9_]+|up)\b")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_family(series_name: str) -> str:
    """The metric family of a series name (``x_bucket`` -> ``x`` for histograms)."""
    for suffix in _HISTOGRAM_SUFFIXES:
        base = series_name.removesuffix(suffix)
        if base != series_name and base in HISTOGRAMS:
            return base
    return series_name


def metric_families_in(expr: str) -> set[str]:
    """The metric families a PromQL expression reads (recording-rule names, with ':', are left out)."""
    names = set()
    for match in _METRIC_NAME.finditer(expr):
        end = match.end()
        if end < len(expr) and expr[end] == ":":
            continue
        if match.start() > 0 and expr[match.start() - 1] == ":":
            continue
        names.add(metric_family(match.group(1)))
    return names


def contract_registry() -> CollectorRegistry:
    """A registry exposing every contract metric with plausible values, shaped like a worker's /metrics.

    Not a worker: it lets the deployment tests run the dashboard's and the rules' queries against a real
    Prometheus before (and independently of) the stream. Label values are the contract's.
    """
    registry = CollectorRegistry()
    doc = "contract metric (deployment test exporter)"

    def counter(name: str, value: float) -> None:
        Counter(name.removesuffix("_total"), doc, registry=registry).inc(value)

    counter("headline_scorer_events_consumed_total", 1000)
    counter("headline_scorer_events_scored_total", 990)
    counter("headline_scorer_model_reloads_total", 2)
    counter("headline_scorer_model_reload_failures_total", 0)
    dead = Counter("headline_scorer_events_dead_lettered", doc, ["reason"], registry=registry)
    for reason in DEAD_LETTER_REASONS:
        dead.labels(reason=reason)
    dead.labels(reason="schema").inc(10)
    lag = Gauge("headline_scorer_consumer_lag_messages", doc, ["topic", "partition"], registry=registry)
    for partition in range(4):
        lag.labels(topic="headlines", partition=str(partition)).set(partition * 3)
    Gauge("headline_scorer_model_info", doc, ["version"], registry=registry).labels(version="v0001").set(1)
    Gauge("headline_scorer_last_commit_timestamp_seconds", doc, registry=registry).set_to_current_time()
    Gauge("headline_scorer_seconds_since_last_commit", doc, registry=registry).set(0.4)
    psi = Gauge("headline_scorer_drift_psi", doc, ["signal"], registry=registry)
    for index, signal in enumerate(DRIFT_SIGNALS):
        psi.labels(signal=signal).set(0.01 * (index + 1))
    Gauge("headline_scorer_unseen_category_share", doc, registry=registry).set(0.02)
    Gauge("headline_scorer_ready", doc, registry=registry).set(1)
    _quality_metrics(registry, doc)
    observations: dict[str, tuple[list[float], list[float]]] = {
        "headline_scorer_batch_size_events": ([float(2**i) for i in range(11)], [1.0, 16.0, 256.0]),
        "headline_scorer_inference_seconds": (list(Histogram.DEFAULT_BUCKETS), [0.0002, 0.001, 0.004]),
        "headline_scorer_end_to_end_latency_seconds": (list(Histogram.DEFAULT_BUCKETS), [0.005, 0.02, 0.3]),
        "headline_scorer_prediction_ctr": ([0.005, 0.01, 0.02, 0.05, 0.1, 0.2], [0.004, 0.012, 0.03]),
        "headline_scorer_prediction_quality_prob": ([0.1 * i for i in range(1, 10)], [0.2, 0.5, 0.9]),
        "headline_scorer_label_delay_seconds": ([60.0, 600.0, 3600.0, 21600.0, 86400.0], [300.0, 5000.0]),
    }
    for name, (buckets, values) in observations.items():
        histogram = Histogram(name, doc, buckets=buckets, registry=registry)
        for value in values:
            histogram.observe(value)
    return registry


JOIN_RESULTS = ("matched", "pending", "stale", "late")
JOIN_SIDES = ("score", "outcome")
ROLES = ("current", "shadow")
REFERENCE_METRICS = ("ctr_mae_normalized", "pairwise_accuracy", "calibration_error")
AGREEMENT_MEASURES = ("quality_label", "ctr_normalized_mae")


def _quality_metrics(registry: CollectorRegistry, doc: str) -> None:
    """Outcomes, join, live quality and shadow metrics of a worker serving v0001 with shadow v0002."""

    def counter(name: str, value: float, **labels: str) -> None:
        names = sorted(labels)
        metric = Counter(name.removesuffix("_total"), doc, names, registry=registry)
        (metric.labels(**labels) if labels else metric).inc(value)

    counter("headline_scorer_outcomes_consumed_total", 400)
    dead = Counter("headline_scorer_outcomes_dead_lettered", doc, ["reason"], registry=registry)
    for reason in (*DEAD_LETTER_REASONS, "counts_decreased"):
        dead.labels(reason=reason)
    dead.labels(reason="counts_decreased").inc(3)
    results = Counter("headline_scorer_join_outcomes", doc, ["result"], registry=registry)
    for index, result in enumerate(JOIN_RESULTS):
        results.labels(result=result).inc(100 - 30 * index)
    counter("headline_scorer_join_scores_matched_total", 20)
    expired = Counter("headline_scorer_join_expired", doc, ["side"], registry=registry)
    for side in JOIN_SIDES:
        expired.labels(side=side).inc(5)
    counter("headline_scorer_join_skipped_total", 1, reason="key_not_id")
    counter("headline_scorer_shadow_events_scored_total", 990)
    counter("headline_scorer_shadow_errors_total", 0)
    Gauge("headline_scorer_join_entries", doc, registry=registry).set(1500)
    by_version = ["model_version", "role"]
    mae = Gauge("headline_scorer_live_ctr_mae", doc, [*by_version, "scale"], registry=registry)
    gauges = {
        name: Gauge(name, doc, by_version, registry=registry)
        for name in (
            "headline_scorer_live_calibration_error",
            "headline_scorer_live_quality_positive_share",
            "headline_scorer_live_quality_mean_prob",
            "headline_scorer_live_pairwise_accuracy",
            "headline_scorer_live_pairs",
            "headline_scorer_live_labelled_events",
            "headline_scorer_label_coverage",
        )
    }
    values = {
        "headline_scorer_live_calibration_error": 0.06,
        "headline_scorer_live_quality_positive_share": 0.45,
        "headline_scorer_live_quality_mean_prob": 0.5,
        "headline_scorer_live_pairwise_accuracy": 0.61,
        "headline_scorer_live_pairs": 800,
        "headline_scorer_live_labelled_events": 700,
        "headline_scorer_label_coverage": 0.4,
    }
    reference = Gauge("headline_scorer_model_reference", doc, ["model_version", "metric"], registry=registry)
    for version, role in (("v0001", "current"), ("v0002", "shadow")):
        mae.labels(model_version=version, role=role, scale="raw").set(0.01)
        mae.labels(model_version=version, role=role, scale="normalized").set(0.11)
        for name, value in values.items():
            gauges[name].labels(model_version=version, role=role).set(value)
        for metric, value in zip(REFERENCE_METRICS, (0.1, 0.62, 0.05), strict=True):
            reference.labels(model_version=version, metric=metric).set(value)
    Gauge("headline_scorer_shadow_model_info", doc, ["version"], registry=registry).labels(
        version="v0002"
    ).set(1)
    agreement = Gauge(
        "headline_scorer_shadow_agreement", doc, ["model_version", "measure"], registry=registry
    )
    agreement.labels(model_version="v0002", measure="quality_label").set(0.93)
    agreement.labels(model_version="v0002", measure="ctr_normalized_mae").set(0.02)
