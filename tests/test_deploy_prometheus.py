"""Prometheus configuration and alert rules, checked with Debian's promtool (installed when missing)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_contract import DEPLOY, JOB, METRICS, PROMETHEUS_SERIES, metric_families_in
from prometheus_server import require_prometheus_tool

pytestmark = pytest.mark.prometheus

PROMETHEUS_DIR = DEPLOY / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "rules" / "headline-scorer.rules.yml"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
README = DEPLOY / "README.md"


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_prometheus_tool("promtool")


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def test_config_is_valid(promtool: str) -> None:
    result = _run([promtool, "check", "config", str(CONFIG)], PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    # the rule files are found through the config's glob, not silently matched by nothing
    assert "1 rule files found" in result.stdout


def test_config_scrapes_the_workers_as_job_headline_scorer() -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert JOB in jobs
    (dns,) = jobs[JOB]["dns_sd_configs"]
    assert dns["names"] == ["scorer"] and dns["port"] == 6066
    assert config["rule_files"] == ["rules/*.rules.yml"]


def test_rules_are_valid(promtool: str) -> None:
    result = _run([promtool, "check", "rules", str(RULES)], PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass(promtool: str) -> None:
    assert RULE_TESTS, "no promtool unit tests found"
    result = _run([promtool, "test", "rules", *map(str, RULE_TESTS)], PROMETHEUS_DIR / "tests")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


@pytest.mark.parametrize(
    ("original", "mutated", "alert"),
    [
        (
            '(headline_scorer_drift_psi{job="headline-scorer"}) > 0.2',
            '(headline_scorer_drift_psi{job="headline-scorer"}) > 0.5',
            "HeadlineScorerDriftWarning",
        ),
        ("> 0.01", "> 0.05", "HeadlineScorerDeadLetterRatioHigh"),
        ('up{job="headline-scorer"} == 0', 'up{job="headline-scorer"} == 2', "HeadlineScorerWorkerDown"),
        (
            'since_last_commit{job="headline-scorer"}) > 300',
            'since_last_commit{job="headline-scorer"}) > 900',
            "HeadlineScorerCommitsStalled",
        ),
        ("for: 10m", "for: 30m", "HeadlineScorerConsumerLagGrowing"),
        (
            '(headline_scorer_ready{job="headline-scorer"}) == 0',
            '(headline_scorer_ready{job="headline-scorer"}) == 1',
            "HeadlineScorerNotReady",
        ),
        ("for: 3m", "for: 10m", "HeadlineScorerNotReady"),
        (
            'weighted{role="current"} < 0.55',
            'weighted{role="current"} < 0.45',
            "HeadlineScorerLivePairwiseAccuracyLow",
        ),
        (
            'metric="pairwise_accuracy"}) - 0.05)',
            'metric="pairwise_accuracy"}) - 0.1)',
            "HeadlineScorerLivePairwiseAccuracyBelowReference",
        ),
        (
            ">= 500\n        for: 30m\n        labels:\n          severity: warning",
            ">= 900\n        for: 30m\n        labels:\n          severity: warning",
            "HeadlineScorerLivePairwiseAccuracyBelowReference",
        ),
        (
            'metric="ctr_mae_normalized"}) + 0.05)',
            'metric="ctr_mae_normalized"}) + 0.1)',
            "HeadlineScorerLiveCtrErrorHigh",
        ),
        ('role="current"} >= 0) < 0.1', 'role="current"} >= 0) < 0.05', "HeadlineScorerLabelCoverageLow"),
        ("for: 2h", "for: 3h", "HeadlineScorerLabelCoverageLow"),
        ("          > 0.1\n", "          > 0.3\n", "HeadlineScorerOutcomesUnmatched"),
        ("[1h])) >= 100", "[1h])) >= 1000", "HeadlineScorerOutcomesUnmatched"),
        (
            'shadow_errors_total{job="headline-scorer"}[15m])) > 0',
            'shadow_errors_total{job="headline-scorer"}[15m])) > 1',
            "HeadlineScorerShadowErrors",
        ),
    ],
)
def test_rule_unit_tests_catch_a_wrong_rule(
    promtool: str, tmp_path: Path, original: str, mutated: str, alert: str
) -> None:
    """The unit tests are not vacuous: a rule with a wrong threshold makes them fail for that alert."""
    shutil.copytree(PROMETHEUS_DIR / "rules", tmp_path / "rules")
    shutil.copytree(PROMETHEUS_DIR / "tests", tmp_path / "tests")
    rules = tmp_path / "rules" / RULES.name
    text = rules.read_text(encoding="utf-8")
    assert text.count(original) == 1, original
    rules.write_text(text.replace(original, mutated), encoding="utf-8")
    tests = sorted(str(path) for path in (tmp_path / "tests").glob("*.yml"))
    result = _run([promtool, "test", "rules", *tests], tmp_path / "tests")
    assert result.returncode != 0
    assert f"alertname: {alert}," in result.stdout + result.stderr


def test_every_alert_has_severity_annotations_and_a_runbook_section() -> None:
    readme = README.read_text(encoding="utf-8")
    anchors = {
        _github_anchor(line.lstrip("#").strip()) for line in readme.splitlines() if line.startswith("#")
    }
    names = [alert["alert"] for alert in _alerts()]
    assert len(names) == len(set(names))
    for alert in _alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        annotations = alert["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == "deploy/README.md", name
        assert anchor == name.lower(), name
        assert anchor in anchors, f"deploy/README.md has no section for {name}"


def test_the_required_alerts_exist() -> None:
    by_name = {alert["alert"]: alert for alert in _alerts()}
    drift_warning, drift_critical = (
        by_name["HeadlineScorerDriftWarning"],
        by_name["HeadlineScorerDriftCritical"],
    )
    assert drift_warning["expr"].endswith("> 0.2") and drift_warning["for"] == "15m"
    assert drift_critical["expr"].endswith("> 0.3") and drift_critical["labels"]["severity"] == "critical"
    assert "by (job, signal)" in drift_warning["expr"]
    assert "[10m]" in by_name["HeadlineScorerDeadLetterRatioHigh"]["expr"]
    assert by_name["HeadlineScorerConsumerLagGrowing"]["for"] == "10m"
    assert "[5m]" in by_name["HeadlineScorerStalled"]["expr"]
    assert "headline_scorer_model_reload_failures_total" in by_name["HeadlineScorerModelReloadFailed"]["expr"]
    assert by_name["HeadlineScorerWorkerDown"]["expr"] == 'up{job="headline-scorer"} == 0'
    assert "headline_scorer_seconds_since_last_commit" in by_name["HeadlineScorerCommitsStalled"]["expr"]
    not_ready = by_name["HeadlineScorerNotReady"]
    assert "headline_scorer_ready" in not_ready["expr"] and not_ready["expr"].endswith("== 0")
    assert not_ready["for"] == "3m"
    # live quality: only the serving version, pooled over workers, with enough evidence
    low = by_name["HeadlineScorerLivePairwiseAccuracyLow"]
    assert (
        'role="current"' in low["expr"]
        and ">= 500" in low["expr"]
        and low["labels"]["severity"] == "critical"
    )
    for name in ("HeadlineScorerLivePairwiseAccuracyBelowReference", "HeadlineScorerLiveCtrErrorHigh"):
        assert "headline_scorer_model_reference" in by_name[name]["expr"], name
    assert "headline_scorer_label_coverage" in by_name["HeadlineScorerLabelCoverageLow"]["expr"]
    assert 'side="outcome"' in by_name["HeadlineScorerOutcomesUnmatched"]["expr"]
    assert "headline_scorer_shadow_errors_total" in by_name["HeadlineScorerShadowErrors"]["expr"]


def test_rules_read_only_contract_metrics() -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    for rule in _rules():
        used = metric_families_in(rule["expr"])
        assert used or any(name in rule["expr"] for name in recorded), rule
        assert used <= METRICS | PROMETHEUS_SERIES, (rule.get("alert") or rule.get("record"), used - METRICS)


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert spec["rule_files"] == ["../rules/headline-scorer.rules.yml"], path
        for case in spec["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {alert["alert"] for alert in _alerts()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested not firing"


def _github_anchor(heading: str) -> str:
    """The anchor GitHub generates for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_kubernetes_config_is_valid_apart_from_its_discovery(promtool: str, tmp_path: Path) -> None:
    """Debian's Prometheus is built without Kubernetes discovery: check everything else of that config."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus-kubernetes.yml").read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB
    (discovery,) = job.pop("kubernetes_sd_configs")
    assert discovery["role"] == "pod" and discovery["namespaces"]["names"] == ["headline-scorer"]
    job["static_configs"] = [{"targets": []}]
    shutil.copytree(PROMETHEUS_DIR / "rules", tmp_path / "rules")
    checked = tmp_path / "prometheus-kubernetes.yml"
    checked.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = _run([promtool, "check", "config", str(checked)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout
