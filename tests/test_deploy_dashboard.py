"""The Grafana dashboard: generated from code, structurally sound, and its queries valid PromQL.

``test_every_panel_query_returns_data`` is the end-to-end check: a real Prometheus (with the alert and
recording rules) scrapes a live worker that scores headline events of A/B tests, joins their outcomes and
runs a shadow version (fixture ``scorer_prometheus_url`` below), and every panel query must return data.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from deploy_contract import DEPLOY, JOB, METRICS, PROMETHEUS_SERIES, contract_registry, metric_families_in
from prometheus_server import PrometheusError, PrometheusServer, running_prometheus, serving_metrics

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "headline-scorer.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "headline-scorer.yml"
RULES = DEPLOY / "prometheus" / "rules" / "headline-scorer.rules.yml"
LIVE_PROMETHEUS_ENV = "HEADLINE_SCORER_LIVE_PROMETHEUS_URL"


def load_generator() -> ModuleType:
    """deploy/grafana/generate.py as a module (deploy/ is not a package)."""
    pytest.importorskip("grafana_foundation_sdk")
    spec = importlib.util.spec_from_file_location("headline_scorer_dashboard", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels() -> list[dict[str, Any]]:
    """Every non-row panel (rows are flat; collapsed rows would nest theirs)."""
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels") or [])
        else:
            found.append(panel)
    return found


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL expr) for every target of every panel."""
    return [(panel["title"], target["expr"]) for panel in panels() for target in panel["targets"]]


def substitute(expr: str, variables: Mapping[str, str], *, rate_interval: str = "1m") -> str:
    """Expands Grafana's template variables the way Grafana does for a single value or 'All' (regex)."""
    text = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)

    def expand(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise KeyError(f"no value for template variable ${name} in {expr!r}")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", expand, text)


def evaluate_panel_queries(
    server: PrometheusServer, variables: Mapping[str, str], *, rate_interval: str = "1m"
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Runs every panel query through ``/api/v1/query``; raises PrometheusError on invalid PromQL."""
    return {
        (title, expr): server.query(substitute(expr, variables, rate_interval=rate_interval))
        for title, expr in panel_queries()
    }


DEFAULT_VARIABLES = {"job": JOB, "instance": ".*"}


def test_committed_dashboard_is_what_the_generator_produces() -> None:
    generator = load_generator()
    assert DASHBOARD.read_text(encoding="utf-8") == generator.render(), (
        "deploy/grafana/dashboards/headline-scorer.json is stale: run python deploy/grafana/generate.py"
    )
    assert generator.main(["--check"]) == 0


def test_generator_check_mode_detects_a_stale_file(tmp_path: Path) -> None:
    generator = load_generator()
    stale = tmp_path / "dashboard.json"
    stale.write_text("{}\n", encoding="utf-8")
    assert generator.main(["--check", "--out", str(stale)]) == 1
    assert generator.main(["--out", str(stale)]) == 0
    assert generator.main(["--check", "--out", str(stale)]) == 0


def test_dashboard_uses_the_provisioned_datasource_everywhere() -> None:
    (datasource,) = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    expected = {"type": "prometheus", "uid": datasource["uid"]}
    for panel in panels():
        assert panel["datasource"] == expected, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]
    for variable in dashboard()["templating"]["list"]:
        assert variable["datasource"] == expected, variable["name"]
    (provider,) = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboard_has_the_required_panels() -> None:
    by_title = {panel["title"]: panel for panel in panels()}
    required = {
        "Throughput": "headline_scorer_events_scored_total",
        "Dead-lettered by reason": "by (reason)",
        "End-to-end latency": "headline_scorer_end_to_end_latency_seconds_bucket",
        "Inference time per batch": "headline_scorer_inference_seconds_bucket",
        "Batch size": "headline_scorer_batch_size_events",
        "Consumer lag per partition": "by (topic, partition)",
        "Model version over time": "by (version) (headline_scorer_model_info",
        "Predicted CTR distribution": "headline_scorer_prediction_ctr_bucket",
        "Predicted quality probability distribution": "headline_scorer_prediction_quality_prob_bucket",
        "Drift PSI per signal": "by (signal) (headline_scorer_drift_psi",
        "Live CTR error per version": 'instance=~"$instance", scale="normalized"}',
        "Live pairwise accuracy per version": "headline_scorer_live_pairwise_accuracy",
        "Live calibration per version": "headline_scorer_live_calibration_error",
        "Labelled headlines and pairs in the window": "headline_scorer_live_labelled_events",
        "Label coverage": "headline_scorer_label_coverage",
        "Label delay": "headline_scorer_label_delay_seconds_bucket",
        "Outcomes consumed and joined": "by (result) (rate(headline_scorer_join_outcomes_total",
        "Join expiries (unmatched)": "by (side) (increase(headline_scorer_join_expired_total",
        "Outcomes dead-lettered by reason": "headline_scorer_outcomes_dead_lettered_total",
        "Join entries": "headline_scorer_join_entries",
        "Shadow agreement": "by (model_version, measure) (headline_scorer_shadow_agreement",
        "Shadow scoring": "headline_scorer_shadow_errors_total",
    }
    for title, fragment in required.items():
        assert title in by_title, title
        assert any(fragment in target["expr"] for target in by_title[title]["targets"]), title
    latency = [target["expr"] for target in by_title["End-to-end latency"]["targets"]]
    assert [expr.split(",")[0] for expr in latency] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
    ]
    for title in ("Predicted CTR distribution", "Predicted quality probability distribution"):
        assert by_title[title]["type"] == "heatmap"
        assert by_title[title]["targets"][0]["format"] == "heatmap"
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_drift_panel_draws_the_alert_thresholds() -> None:
    alerts = {
        rule["alert"]: rule
        for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    warning = float(alerts["HeadlineScorerDriftWarning"]["expr"].rsplit(">", 1)[1])
    critical = float(alerts["HeadlineScorerDriftCritical"]["expr"].rsplit(">", 1)[1])
    (psi,) = [panel for panel in panels() if panel["title"] == "Drift PSI per signal"]
    defaults = psi["fieldConfig"]["defaults"]
    steps = [step["value"] for step in defaults["thresholds"]["steps"]]
    assert steps == [None, warning, critical] == [None, 0.2, 0.3]
    assert defaults["custom"]["thresholdsStyle"]["mode"] in {"line", "line+area", "dashed", "dashed+area"}
    dead_letter_rule = alerts["HeadlineScorerDeadLetterRatioHigh"]["expr"]
    (share,) = [panel for panel in panels() if panel["title"].startswith("Dead-lettered share")]
    assert share["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == float(
        dead_letter_rule.rsplit(">", 1)[1]
    )


def test_quality_panels_are_per_version_and_draw_the_alert_thresholds() -> None:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    alerts = {rule["alert"]: rule for group in rules for rule in group["rules"] if "alert" in rule}
    by_title = {panel["title"]: panel for panel in panels()}
    floor = float(alerts["HeadlineScorerLivePairwiseAccuracyLow"]["expr"].split("< ", 1)[1].split()[0])
    pairwise = by_title["Live pairwise accuracy per version"]
    assert [step["value"] for step in pairwise["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [
        None,
        floor,
    ]
    coverage_rule = alerts["HeadlineScorerLabelCoverageLow"]["expr"]
    coverage = float(coverage_rule.split(">= 0) < ", 1)[1].split()[0])
    steps = by_title["Label coverage"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [step["value"] for step in steps] == [None, coverage]
    for title in (
        "Live CTR error per version",
        "Live pairwise accuracy per version",
        "Live calibration per version",
        "Label coverage",
    ):
        exprs = [target["expr"] for target in by_title[title]["targets"]]
        assert any("by (model_version, role)" in expr for expr in exprs), title
        assert any("headline_scorer_model_reference{" in expr for expr in exprs) or title == "Label coverage"
    # pooled like the alerts: weighted by pairs / labelled headlines, NaN left out
    (accuracy, _reference) = [target["expr"] for target in pairwise["targets"]]
    assert "* on (job, instance, model_version, role) (headline_scorer_live_pairs" in accuracy
    assert "headline_scorer_live_pairwise_accuracy" in accuracy and ">= 0)" in accuracy


def test_dashboard_variables_and_queries_use_them() -> None:
    variables = {variable["name"]: variable for variable in dashboard()["templating"]["list"]}
    assert set(variables) == {"job", "instance"}
    assert variables["job"]["current"]["value"] == JOB
    assert variables["instance"]["includeAll"] and variables["instance"]["allValue"] == ".*"
    for title, expr in panel_queries():
        assert 'job="$job"' in expr and 'instance=~"$instance"' in expr, title
        used = metric_families_in(expr)
        assert used and used <= METRICS | PROMETHEUS_SERIES, (title, used - METRICS)


def test_substitute_expands_grafana_variables() -> None:
    expr = 'rate(x{job="$job", instance=~"${instance}"}[$__rate_interval])'
    assert substitute(expr, DEFAULT_VARIABLES, rate_interval="30s") == (
        'rate(x{job="headline-scorer", instance=~".*"}[30s])'
    )
    with pytest.raises(KeyError, match="topic"):
        substitute("x{topic='$topic'}", DEFAULT_VARIABLES)


@pytest.mark.prometheus
@pytest.mark.slow
def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    """Each query, variables substituted, is accepted by a real Prometheus (no data needed)."""
    with running_prometheus([], tmp_path / "prometheus") as server:
        results = evaluate_panel_queries(server, DEFAULT_VARIABLES)
        assert len(results) == len(panel_queries()) >= 20
        with pytest.raises(PrometheusError):
            server.query(substitute("sum(rate(x[$__rate_interval])", DEFAULT_VARIABLES))


@pytest.mark.prometheus
@pytest.mark.slow
def test_every_panel_query_returns_data_from_contract_shaped_metrics(tmp_path: Path) -> None:
    """Against an exporter of every contract metric (not the worker): no panel query comes back empty."""
    with (
        serving_metrics(contract_registry()) as target,
        running_prometheus([target], tmp_path / "prometheus") as server,
    ):
        # rates need two scrapes inside the window
        server.wait_for("count(rate(headline_scorer_events_consumed_total[1m]))")
        results = evaluate_panel_queries(server, DEFAULT_VARIABLES, rate_interval="1m")
        empty = [f"{title}: {expr}" for (title, expr), series in results.items() if not series]
        assert not empty, "panel queries without data:\n" + "\n".join(empty)
        (versions,) = results[
            ("Model version over time", panel_queries_by_title()["Model version over time"])
        ]
        assert versions["metric"] == {"version": "v0001"}


def panel_queries_by_title() -> dict[str, str]:
    """The first query of each panel, by title."""
    first: dict[str, str] = {}
    for title, expr in panel_queries():
        first.setdefault(title, expr)
    return first


@pytest.fixture
def live_prometheus_url(request: pytest.FixtureRequest) -> str:
    """Base URL of a Prometheus that scrapes a live worker which has scored events and dead-lettered some.

    Wiring: define a fixture ``scorer_prometheus_url`` (in tests/conftest.py or a plugin) that runs the
    end-to-end set-up (broker, a worker, events replayed, ``running_prometheus([worker WEB_PORT target])``)
    and returns the server's ``base_url``; or give a running one in HEADLINE_SCORER_LIVE_PROMETHEUS_URL.
    """
    try:
        url = str(request.getfixturevalue("scorer_prometheus_url"))
    except pytest.FixtureLookupError:
        url = os.environ.get(LIVE_PROMETHEUS_ENV, "")
    if not url:
        pytest.skip(
            "no live worker yet: needs an end-to-end run with Prometheus scraping a worker "
            f"(fixture scorer_prometheus_url, or {LIVE_PROMETHEUS_ENV}=http://host:port)"
        )
    return url.rstrip("/")


RECORDED_QUALITY = (
    "headline_scorer:live_pairs:sum",
    "headline_scorer:live_pairwise_accuracy:weighted",
    "headline_scorer:live_labelled_events:sum",
    "headline_scorer:live_ctr_mae_normalized:weighted",
)


def empty_panel_queries(server: PrometheusServer) -> list[str]:
    results = evaluate_panel_queries(server, DEFAULT_VARIABLES, rate_interval="1m")
    return [f"{title}: {expr}" for (title, expr), series in results.items() if not series]


@pytest.fixture
def scorer_prometheus_url(kafka_bootstrap: str, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus scraping a live worker that scores, dead-letters, joins outcomes and shadows.

    The registry holds two versions of a model trained on the sample A/B tests (so its manifest has a
    pairwise accuracy), the second marked shadow. Rounds of headline events (with their A/B group; one
    keyed by something else than its id, one invalid) are followed by their outcomes in two cumulative
    steps, plus outcomes that cannot match (an unknown id, a late one, counts that decrease, a malformed
    one), until every panel query returns data or 150 s pass. HEADLINE_SCORER_LIVE_PROMETHEUS_URL names
    a running Prometheus to check instead.
    """
    external = os.environ.get(LIVE_PROMETHEUS_ENV, "")
    if external:
        yield external
        return
    import asyncio
    import json as jsonlib
    import time
    import uuid

    from artifact.registry import Registry
    from export.build import export_to_registry
    from headline_scorer import SAMPLE_DATA
    from headline_scorer.replay import load_outcomes, load_rows
    from stream.dlq import rfc3339_utc
    from tests.stream_harness import Topics, WorkerProcess, produce
    from training.data import load_dataset
    from training.mapping import UPWORTHY
    from training.train import TrainConfig, train

    data = load_dataset(SAMPLE_DATA / "ab_tests.csv", UPWORTHY)
    trained = train(data, tmp_path / "model", TrainConfig(epochs=1), progress=False)
    registry = Registry(tmp_path / "registry")
    current = export_to_registry(trained.best_checkpoint, data, registry).version
    time.sleep(1.1)  # version names carry the time in seconds
    shadow = export_to_registry(trained.best_checkpoint, data, registry, make_current=False).version
    assert shadow != current
    registry.set_shadow(shadow)
    rows = load_rows(SAMPLE_DATA / "ab_tests.csv", "upworthy")
    outcomes = {row.id: row for row in load_outcomes(SAMPLE_DATA / "ab_tests.csv", "upworthy")}
    topics = Topics.unique()
    tag = uuid.uuid4().hex[:8]
    extra = {
        "OUTCOMES_TOPIC": f"outcomes-{tag}",
        "LABELLED_TOPIC": f"labelled-{tag}",
        "SHADOW_OUTPUT_TOPIC": f"shadow-{tag}",
        "QUALITY_MIN_IMPRESSIONS": "10",
        "JOIN_RETENTION_SECONDS": "6",
        "DRIFT_WINDOW_SECONDS": "60",
    }
    worker = WorkerProcess(
        kafka_bootstrap, registry.root, topics, f"dash-{tag}", tmp_path / "worker.log", extra_env=extra
    ).start()

    def value(payload: dict[str, object]) -> bytes:
        return jsonlib.dumps(payload).encode()

    try:
        worker.wait_ready()
        with running_prometheus(
            [f"127.0.0.1:{worker.port}"], tmp_path / "prometheus", rule_files=[RULES]
        ) as server:
            deadline = time.monotonic() + 150
            round_ = 0
            while True:
                batch = rows[(round_ * 60) % len(rows) :][:60]
                ids = [f"{row.id}~{round_}" for row in batch]
                events = [
                    (id_.encode(), value({"id": id_, "title": row.title, "group": row.group}))
                    for id_, row in zip(ids, batch, strict=True)
                ]
                events.append((b"bad", b"{not json"))
                events.append(
                    (b"not-the-id", value({"id": f"k{round_}", "title": "Keyed by something else"}))
                )
                asyncio.run(produce(kafka_bootstrap, topics.input, events))
                now = time.time()
                steps = []
                for fraction in (0.5, 1.0):
                    for id_, row in zip(ids, batch, strict=True):
                        counts = outcomes[row.id]
                        impressions = int(counts.impressions * fraction)
                        steps.append(
                            (
                                id_.encode(),
                                value(
                                    {
                                        "id": id_,
                                        "impressions": impressions,
                                        "clicks": min(int(counts.clicks * fraction), impressions),
                                        "group": row.group,
                                    }
                                ),
                            )
                        )
                first = ids[0].encode()
                steps += [
                    (b"unknown", value({"id": f"unknown-{round_}", "impressions": 50, "clicks": 1})),
                    (first, value({"id": ids[0], "impressions": 1, "clicks": 0})),  # counts decreased
                    (
                        b"late",
                        value(
                            {
                                "id": f"late-{round_}",
                                "impressions": 5,
                                "clicks": 1,
                                "at": rfc3339_utc(now - 7200),
                            }
                        ),
                    ),
                    (b"broken", b'{"id": "broken", "impressions": -1}'),
                ]
                asyncio.run(produce(kafka_bootstrap, extra["OUTCOMES_TOPIC"], steps))
                round_ += 1
                time.sleep(1.0)
                if time.monotonic() > deadline or (
                    round_ >= 3
                    and not empty_panel_queries(server)
                    and all(server.query(name) for name in RECORDED_QUALITY)
                ):
                    break
            yield server.base_url
    finally:
        worker.stop()


@pytest.mark.prometheus
@pytest.mark.kafka
@pytest.mark.slow
def test_every_panel_query_returns_data(live_prometheus_url: str) -> None:
    server = PrometheusServer(base_url=live_prometheus_url)
    empty = empty_panel_queries(server)
    assert not empty, "panel queries without data:\n" + "\n".join(empty)
    # the alerts' recording rules pool the live worker's quality gauges as they pool the unit tests'
    for name in RECORDED_QUALITY:
        series = server.query(name)
        assert series, name
        assert {s["metric"]["role"] for s in series} == {"current", "shadow"}, name
    (accuracy,) = [
        s
        for s in server.query("headline_scorer:live_pairwise_accuracy:weighted")
        if s["metric"]["role"] == "current"
    ]
    assert 0.0 <= float(accuracy["value"][1]) <= 1.0
