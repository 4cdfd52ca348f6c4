"""``models shadow``, ``models list`` marking it, and ``models promote --metrics-url``: live evidence read
from real HTTP /metrics pages (prometheus_client's server on free ports), aggregated over workers."""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from artifact.registry import Registry
from headline_scorer.live_evidence import EvidenceError, metrics_url, read_evidence
from stream.asyncio_util import free_port
from tests.cli_support import explain, invoke
from tests.stream_harness import template_registry

CURRENT = "20260101T000000Z-aaaaaaaa"
CANDIDATE = "20260102T000000Z-bbbbbbbb"


def _worker_page(
    current: str,
    candidate: str,
    *,
    labelled: tuple[float, float],
    mae_raw: tuple[float, float],
    mae_norm: tuple[float, float],
    pairs: tuple[float, float],
    accuracy: tuple[float, float],
    calibration: tuple[float, float],
    agreement: tuple[float, float],
) -> CollectorRegistry:
    """One worker's registry with the live quality series of the current and the shadow version."""
    reg = CollectorRegistry()
    roles = ["model_version", "role"]
    mae = Gauge("headline_scorer_live_ctr_mae", "", [*roles, "scale"], registry=reg)
    cal = Gauge("headline_scorer_live_calibration_error", "", roles, registry=reg)
    acc = Gauge("headline_scorer_live_pairwise_accuracy", "", roles, registry=reg)
    npairs = Gauge("headline_scorer_live_pairs", "", roles, registry=reg)
    nlab = Gauge("headline_scorer_live_labelled_events", "", roles, registry=reg)
    for i, (version, role) in enumerate(((current, "current"), (candidate, "shadow"))):
        mae.labels(version, role, "raw").set(mae_raw[i])
        mae.labels(version, role, "normalized").set(mae_norm[i])
        cal.labels(version, role).set(calibration[i])
        acc.labels(version, role).set(accuracy[i])
        npairs.labels(version, role).set(pairs[i])
        nlab.labels(version, role).set(labelled[i])
    agree = Gauge("headline_scorer_shadow_agreement", "", ["model_version", "measure"], registry=reg)
    agree.labels(candidate, "quality_label").set(agreement[0])
    agree.labels(candidate, "ctr_normalized_mae").set(agreement[1])
    Gauge("headline_scorer_shadow_model_info", "", ["version"], registry=reg).labels(candidate).set(1)
    return reg


@contextlib.contextmanager
def _serve(reg: CollectorRegistry) -> Iterator[str]:
    """``reg`` served over HTTP on a free port (what a worker's /metrics page looks like)."""
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=reg)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _two_workers(current: str, candidate: str) -> tuple[CollectorRegistry, CollectorRegistry]:
    a = _worker_page(
        current,
        candidate,
        labelled=(100, 100),
        mae_raw=(0.01, 0.008),
        mae_norm=(0.10, 0.09),
        pairs=(10, 10),
        accuracy=(0.6, 0.7),
        calibration=(0.05, 0.04),
        agreement=(0.9, 0.02),
    )
    b = _worker_page(
        current,
        candidate,
        labelled=(300, 300),
        mae_raw=(0.02, 0.012),
        mae_norm=(0.20, 0.11),
        pairs=(30, 0),
        accuracy=(0.8, math.nan),  # no pairs on this worker for the candidate: NaN, weight 0
        calibration=(0.01, 0.02),
        agreement=(0.8, 0.04),
    )
    return a, b


@pytest.fixture
def worker_urls() -> Iterator[tuple[str, str]]:
    a, b = _two_workers(CURRENT, CANDIDATE)
    with _serve(a) as url_a, _serve(b) as url_b:
        yield url_a, url_b


def test_live_evidence_is_aggregated_over_the_workers(worker_urls: tuple[str, str]) -> None:
    evidence = read_evidence(list(worker_urls), CURRENT, CANDIDATE)
    assert evidence.failures == {}
    assert evidence.urls == [u + "/metrics" for u in worker_urls]
    current, candidate = evidence.current, evidence.candidate
    assert current is not None and (current.version, current.role) == (CURRENT, "current")
    assert (candidate.version, candidate.role) == (CANDIDATE, "shadow")
    assert current.labelled_events == 400 and candidate.labelled_events == 400
    assert current.pairs == 40 and candidate.pairs == 10
    # means weighted by each worker's labelled events (MAE, calibration) or pairs (accuracy)
    assert current.ctr_mae_raw == pytest.approx((100 * 0.01 + 300 * 0.02) / 400)
    assert current.ctr_mae_normalized == pytest.approx((100 * 0.10 + 300 * 0.20) / 400)
    assert candidate.ctr_mae_raw == pytest.approx((100 * 0.008 + 300 * 0.012) / 400)
    assert current.calibration_error == pytest.approx((100 * 0.05 + 300 * 0.01) / 400)
    assert current.pairwise_accuracy == pytest.approx((10 * 0.6 + 30 * 0.8) / 40)
    assert candidate.pairwise_accuracy == pytest.approx(0.7)
    assert evidence.agreement == pytest.approx({"quality_label": 0.85, "ctr_normalized_mae": 0.03})
    nobody = read_evidence(list(worker_urls), CANDIDATE, "20260103T000000Z-cccccccc")
    assert nobody.candidate.labelled_events != nobody.candidate.labelled_events  # NaN: no series at all


def test_unreadable_pages_are_reported_per_url(worker_urls: tuple[str, str]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    evidence = read_evidence([worker_urls[0], dead], CURRENT, CANDIDATE, timeout=2)
    assert list(evidence.failures) == [f"http://{dead}/metrics"]
    assert "cannot read" in evidence.failures[f"http://{dead}/metrics"]
    assert evidence.current is not None and evidence.current.labelled_events == 100  # the readable one
    assert metrics_url("http://w1:6066/custom") == "http://w1:6066/custom"
    with pytest.raises(EvidenceError, match="expected an http"):
        metrics_url("ftp://w1/metrics")


# --- the CLI against a real registry -------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> tuple[Path, str, str]:
    root, first, second = template_registry()
    shutil.copytree(root, tmp_path / "reg")
    return tmp_path / "reg", first, second


@pytest.mark.slow
def test_models_shadow_set_show_list_and_clear(registry: tuple[Path, str, str]) -> None:
    root, first, second = registry
    shown = invoke("models", "shadow", "--registry", root)
    assert shown.exit_code == 0 and shown.stdout.strip() == "shadow: none", explain(shown)
    marked = invoke("models", "shadow", second, "--registry", root)
    assert marked.exit_code == 0 and marked.stdout.strip() == f"shadow: {second}", explain(marked)
    assert Registry(root).shadow_version() == second
    listed = invoke("models", "list", "--registry", root)
    assert f"* {first}" in listed.stdout and f"s {second}" in listed.stdout, explain(listed)
    as_json = invoke("models", "list", "--json", "--registry", root)
    assert '"shadow": true' in as_json.stdout
    refused = invoke("models", "shadow", first, "--registry", root)
    assert refused.exit_code == 2 and "is the current version" in refused.stderr, explain(refused)
    both = invoke("models", "shadow", second, "--clear", "--registry", root)
    assert both.exit_code == 2 and "not both" in both.stderr
    cleared = invoke("models", "shadow", "--clear", "--registry", root)
    assert cleared.exit_code == 0 and f"was {second}" in cleared.stdout, explain(cleared)
    assert Registry(root).shadow_version() is None
    # a SHADOW naming a missing version is reported, and the list still works
    (root / "SHADOW").write_text("20991231T000000Z-99999999\n", encoding="utf-8")
    listed = invoke("models", "list", "--registry", root)
    assert listed.exit_code == 0 and "SHADOW is unusable" in listed.stderr, explain(listed)
    assert f"* {first}" in listed.stdout
    bad = invoke("models", "shadow", "--registry", root)
    assert bad.exit_code == 2 and "not a complete version" in bad.stderr


@pytest.mark.slow
def test_promote_prints_the_live_evidence_then_promotes(registry: tuple[Path, str, str]) -> None:
    root, first, second = registry
    Registry(root).set_shadow(second)
    a, b = _two_workers(first, second)
    with _serve(a) as url_a, _serve(b) as url_b:
        out = invoke(
            "models", "promote", second, "--registry", root, "--metrics-url", url_a, "--metrics-url", url_b
        )
    assert out.exit_code == 0, explain(out)
    text = out.stdout
    assert "live evidence from 2 of 2 worker(s)" in text
    assert f"current {first}" in text and f"candidate {second}" in text
    rows = {line.split("  ")[0]: line.split()[-2:] for line in text.splitlines() if line.startswith("live ")}
    assert rows["live ctr MAE (raw)"] == [f"{(100 * 0.01 + 300 * 0.02) / 400:.4f}", f"{0.011:.4f}"]
    assert rows["live pairwise accuracy"] == ["0.7500", "0.7000"]
    assert rows["live pairs"] == ["40", "10"]
    assert "labelled events" in text and "400" in text
    assert "quality_label 0.8500" in text and "ctr_normalized_mae 0.0300" in text
    assert text.strip().endswith(f"current: {second}")
    registry_now = Registry(root)
    assert registry_now.current_version() == second and registry_now.shadow_version() is None


@pytest.mark.slow
def test_promote_refuses_without_the_evidence_it_was_asked_for(registry: tuple[Path, str, str]) -> None:
    root, first, second = registry
    dead = f"http://127.0.0.1:{free_port()}"
    refused = invoke("models", "promote", second, "--registry", root, "--metrics-url", dead, "--timeout", "2")
    assert refused.exit_code == 2, explain(refused)
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {dead}/metrics: cannot read")
    assert "not promoted" in lines[0]
    assert Registry(root).current_version() == first
    forced = invoke(
        "models", "promote", second, "--registry", root, "--metrics-url", dead, "--timeout", "2", "--force"
    )
    assert forced.exit_code == 0, explain(forced)
    assert "promoting anyway" in forced.stderr and "live evidence from 0 of 1 worker(s)" in forced.stdout
    assert f"no worker reports {second} as shadow" in forced.stdout
    assert Registry(root).current_version() == second
    plain = invoke("models", "promote", first, "--registry", root)
    assert plain.exit_code == 0 and "no live evidence read" in plain.stdout, explain(plain)
    assert Registry(root).current_version() == first


@pytest.mark.slow
def test_live_evidence_reads_what_live_quality_exports() -> None:
    """The names read here are the ones ``stream.quality.LiveQuality`` exports: one worker's evidence
    equals its own gauges."""
    from artifact.manifest import read_manifest
    from stream.quality import Labelled, LiveQuality

    root, first, second = template_registry()
    prom = CollectorRegistry()
    now = 1_700_000_000.0
    quality = LiveQuality(prom, max_events=1000, max_seconds=3600.0, min_impressions=100, clock=lambda: now)
    quality.set_model(first, "current", read_manifest(root / first))
    quality.set_model(second, "shadow", read_manifest(root / second))
    rows = [
        Labelled(
            id=f"h{i}",
            title=f"Headline number {i} about {'cats' if i % 2 else 'dogs'}",
            group=f"g{i // 4}",
            model_version=version,
            role=role,  # type: ignore[arg-type]
            ctr=0.01 + 0.002 * i + shift,
            ctr_normalized=0.1 * i - 1 + shift,
            quality_prob=(i % 10) / 10,
            impressions=1000,
            clicks=5 + (i * 7) % 23,
            scored_at=now - 60,
            outcome_at=now - 10,
        )
        for version, role, shift in ((first, "current", 0.0), (second, "shadow", 0.003))
        for i in range(24)
    ]
    quality.labelled(rows)
    quality.publish()
    with _serve(prom) as url:
        evidence = read_evidence([url], first, second)
    assert evidence.failures == {}

    def gauge(name: str, version: str, role: str, **extra: str) -> float:
        value = prom.get_sample_value(name, {"model_version": version, "role": role, **extra})
        assert value is not None, (name, version, role)
        return value

    for live, role in ((evidence.current, "current"), (evidence.candidate, "shadow")):
        assert live is not None
        v = live.version
        assert live.labelled_events == gauge("headline_scorer_live_labelled_events", v, role) == 24
        assert live.pairs == gauge("headline_scorer_live_pairs", v, role) > 0
        assert live.ctr_mae_raw == pytest.approx(gauge("headline_scorer_live_ctr_mae", v, role, scale="raw"))
        assert live.ctr_mae_normalized == pytest.approx(
            gauge("headline_scorer_live_ctr_mae", v, role, scale="normalized")
        )
        assert live.pairwise_accuracy == pytest.approx(
            gauge("headline_scorer_live_pairwise_accuracy", v, role)
        )
        assert live.calibration_error == pytest.approx(
            gauge("headline_scorer_live_calibration_error", v, role)
        )
        assert all(
            math.isfinite(x) for x in (live.ctr_mae_raw, live.pairwise_accuracy, live.calibration_error)
        )
