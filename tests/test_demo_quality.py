"""The demo's live-quality read-out: the worker's /metrics parsed per model version (demo.py)."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from rich.console import Console

from headline_scorer.demo import parse_live_quality, quality_table


def metrics_page() -> str:
    registry = CollectorRegistry()
    by_version = ["model_version", "role"]
    labelled = Gauge("headline_scorer_live_labelled_events", "x", by_version, registry=registry)
    coverage = Gauge("headline_scorer_label_coverage", "x", by_version, registry=registry)
    pairwise = Gauge("headline_scorer_live_pairwise_accuracy", "x", by_version, registry=registry)
    pairs = Gauge("headline_scorer_live_pairs", "x", by_version, registry=registry)
    mae = Gauge("headline_scorer_live_ctr_mae", "x", [*by_version, "scale"], registry=registry)
    reference = Gauge("headline_scorer_model_reference", "x", ["model_version", "metric"], registry=registry)
    Gauge("headline_scorer_drift_psi", "x", ["signal"], registry=registry).labels(signal="ctr").set(0.1)
    labelled.labels("v1", "current").set(812)
    coverage.labels("v1", "current").set(0.75)
    pairwise.labels("v1", "current").set(0.625)
    pairs.labels("v1", "current").set(400)
    mae.labels("v1", "current", "raw").set(0.0123)
    mae.labels("v1", "current", "normalized").set(0.11)
    reference.labels("v1", "pairwise_accuracy").set(0.6)
    labelled.labels("v2", "shadow").set(10)
    pairwise.labels("v2", "shadow").set(float("nan"))
    return generate_latest(registry).decode()


def test_parse_live_quality_per_version_and_role() -> None:
    (current, shadow) = parse_live_quality(metrics_page())
    assert (current.model_version, current.role) == ("v1", "current")
    assert (current.labelled, current.coverage, current.pairs) == (812, 0.75, 400)
    assert (current.pairwise_accuracy, current.ctr_mae_raw, current.ctr_mae_normalized) == (
        0.625,
        0.0123,
        0.11,
    )
    assert math.isnan(current.calibration_error)  # not exported: nothing to compute
    assert current.reference == {"pairwise_accuracy": 0.6}
    assert (shadow.model_version, shadow.role, shadow.labelled) == ("v2", "shadow", 10)
    assert math.isnan(shadow.pairwise_accuracy) and shadow.reference == {}
    assert parse_live_quality("") == []


def test_quality_table_shows_the_figures_and_n_a_for_nan() -> None:
    console = Console(record=True, width=200)
    console.print(quality_table(parse_live_quality(metrics_page())))
    text = console.export_text()
    lines = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
        for line in text.splitlines()
        if line.count("│") > 2
    }
    assert lines["pairwise accuracy"] == ["0.625 (400 pairs)", "0.600", "n/a (n/a pairs)", "n/a"]
    assert lines["CTR error (MAE, raw)"] == ["0.0123", "", "n/a", ""]
    assert lines["CTR error (MAE, normalized)"] == ["0.110", "n/a", "n/a", "n/a"]
    assert lines["labelled headlines"] == ["812", "", "10", ""]
    assert "v1 (current)" in text and "v2 (shadow)" in text
