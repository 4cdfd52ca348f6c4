"""Generates the headline-scorer Grafana dashboard as code (grafana-foundation-sdk).

    python deploy/grafana/generate.py          # writes deploy/grafana/dashboards/headline-scorer.json
    python deploy/grafana/generate.py --check  # exits 1 when the committed JSON is not what this produces

Edit this file, not the JSON; tests/test_deploy_dashboard.py fails when the two disagree. Queries use only
the worker's contract metrics and the template variables ``$job`` and ``$instance``; the datasource is the
one provisioned in provisioning/datasources/prometheus.yml (fixed uid).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DASHBOARD_UID = "headline-scorer"
DATASOURCE_UID = "headline-scorer-prometheus"
OUTPUT = Path(__file__).resolve().parent / "dashboards" / "headline-scorer.json"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
SELECTOR = '{job="$job", instance=~"$instance"}'
RATE = "[$__rate_interval]"
DRIFT_WARNING = 0.2
DRIFT_CRITICAL = 0.3
DEAD_LETTER_SHARE_ALERT = 0.01
PAIRWISE_ACCURACY_FLOOR = 0.55  # HeadlineScorerLivePairwiseAccuracyLow
LABEL_COVERAGE_ALERT = 0.1  # HeadlineScorerLabelCoverageLow
# one (model version, role) series per worker: joined on these labels
VERSION_MATCH = "on (job, instance, model_version, role)"


def _selector(**labels: str) -> str:
    """The dashboard selector plus exact-match labels."""
    extra = "".join(f', {name}="{value}"' for name, value in labels.items())
    return SELECTOR[:-1] + extra + "}"


def _weighted(metric: str, weight: str, **labels: str) -> str:
    """``metric`` pooled over the selected workers, each weighted by ``weight`` (NaN and empty left out)."""
    value = f"({metric}{_selector(**labels)} >= 0)"
    positive = f"({weight}{SELECTOR} > 0)"
    return (
        f"sum by (model_version, role) ({value} * {VERSION_MATCH} {positive})"
        f" / sum by (model_version, role) ({positive} and {VERSION_MATCH} {value})"
    )


def _reference(metric: str) -> tuple[str, str]:
    expr = f"max by (model_version) (headline_scorer_model_reference{_selector(metric=metric)})"
    return expr, "{{model_version}} validation"


def _query(expr: str, legend: str, ref_id: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id).datasource(DATASOURCE)


def _timeseries(title: str, description: str, unit: str, queries: list[tuple[str, str]]) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(12)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            common_builders.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
        )
        .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
    )
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + index)))
    return panel


def _quantiles(metric: str) -> list[tuple[str, str]]:
    buckets = f"sum by (le) (rate({metric}_bucket{SELECTOR}{RATE}))"
    return [(f"histogram_quantile({q}, {buckets})", f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99)]


def _mean(metric: str) -> str:
    return f"sum(rate({metric}_sum{SELECTOR}{RATE})) / sum(rate({metric}_count{SELECTOR}{RATE}))"


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def _stat(title: str, description: str, unit: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(4)
        .span(6)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
    )


def _heatmap(title: str, description: str, metric: str) -> heatmap.Panel:
    expr = f"sum by (le) (increase({metric}_bucket{SELECTOR}{RATE}))"
    query = (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format("{{le}}")
        .format(PromQueryFormat.HEATMAP)
        .ref_id("A")
        .datasource(DATASOURCE)
    )
    return (
        heatmap.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("percentunit"))
        .show_tooltip()
        .with_target(query)
    )


def _throughput_row() -> tuple[str, list[Any]]:
    consumed = f"sum(rate(headline_scorer_events_consumed_total{SELECTOR}{RATE}))"
    scored = f"sum(rate(headline_scorer_events_scored_total{SELECTOR}{RATE}))"
    dead = f"sum(rate(headline_scorer_events_dead_lettered_total{SELECTOR}{RATE}))"
    dead_by_reason = f"sum by (reason) (rate(headline_scorer_events_dead_lettered_total{SELECTOR}{RATE}))"
    share = (
        f"sum(increase(headline_scorer_events_dead_lettered_total{SELECTOR}[10m]))"
        f" / sum(increase(headline_scorer_events_consumed_total{SELECTOR}[10m]))"
    )
    return "Throughput", [
        _timeseries(
            "Throughput",
            "Events consumed, scored and dead-lettered per second (all selected workers).",
            "ops",
            [(consumed, "consumed"), (scored, "scored"), (dead, "dead-lettered")],
        ),
        _timeseries(
            "Dead-lettered by reason",
            "Events sent to the dead-letter topic per second, by reason.",
            "ops",
            [(dead_by_reason, "{{reason}}")],
        ).stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL)),
        _stat(
            "Dead-lettered share (10 min)",
            "Share of consumed events dead-lettered over 10 minutes; the alert fires above 1%.",
            "percentunit",
        )
        .thresholds(_thresholds((None, "green"), (DEAD_LETTER_SHARE_ALERT, "red")))
        .with_target(_query(share, "share", "A")),
        _stat(
            "Workers up / ready",
            "Scraped workers that are up, and workers reporting ready (model loaded, partitions).",
            "short",
        )
        .with_target(_query(f"sum(up{SELECTOR})", "up", "A"))
        .with_target(_query(f"sum(headline_scorer_ready{SELECTOR})", "ready", "B")),
    ]


def _latency_row() -> tuple[str, list[Any]]:
    batch = "headline_scorer_batch_size_events"
    return "Latency", [
        _timeseries(
            "End-to-end latency",
            "From the event's time to its score being produced: p50, p95, p99.",
            "s",
            _quantiles("headline_scorer_end_to_end_latency_seconds"),
        ),
        _timeseries(
            "Inference time per batch",
            "Featurization plus the model call for one micro-batch: p50, p95, p99 and mean.",
            "s",
            [
                *_quantiles("headline_scorer_inference_seconds"),
                (_mean("headline_scorer_inference_seconds"), "mean"),
            ],
        ),
        _timeseries(
            "Batch size",
            "Events per micro-batch: mean and p95.",
            "short",
            [
                (_mean(batch), "mean"),
                (f"histogram_quantile(0.95, sum by (le) (rate({batch}_bucket{SELECTOR}{RATE})))", "p95"),
            ],
        ),
        _timeseries(
            "Consumer lag per partition",
            "Messages not yet consumed, per topic partition (max over workers during a rebalance).",
            "short",
            [
                (
                    f"max by (topic, partition) (headline_scorer_consumer_lag_messages{SELECTOR})",
                    "{{topic}}[{{partition}}]",
                )
            ],
        ),
    ]


def _model_row() -> tuple[str, list[Any]]:
    return "Model", [
        _timeseries(
            "Model version over time",
            "Number of workers serving each model version.",
            "short",
            [(f"count by (version) (headline_scorer_model_info{SELECTOR} == 1)", "{{version}}")],
        ),
        _timeseries(
            "Model reloads",
            "Model versions loaded and rejected (per 5 minutes).",
            "short",
            [
                (f"sum(increase(headline_scorer_model_reloads_total{SELECTOR}[5m]))", "reloaded"),
                (f"sum(increase(headline_scorer_model_reload_failures_total{SELECTOR}[5m]))", "failed"),
            ],
        ),
        _heatmap(
            "Predicted CTR distribution",
            "Histogram of the predicted CTR (raw units) over time.",
            "headline_scorer_prediction_ctr",
        ),
        _heatmap(
            "Predicted quality probability distribution",
            "Histogram of the calibrated quality probability over time.",
            "headline_scorer_prediction_quality_prob",
        ),
    ]


def _drift_row() -> tuple[str, list[Any]]:
    return "Drift", [
        _timeseries(
            "Drift PSI per signal",
            "Population stability index against the training reference; "
            f"alerts: warning above {DRIFT_WARNING}, critical above {DRIFT_CRITICAL} (15 minutes).",
            "none",
            [(f"max by (signal) (headline_scorer_drift_psi{SELECTOR})", "{{signal}}")],
        )
        .thresholds(_thresholds((None, "green"), (DRIFT_WARNING, "orange"), (DRIFT_CRITICAL, "red")))
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE_AND_AREA)
        )
        .min(0),
        _timeseries(
            "Unseen category share",
            "Share of events in the drift window whose category was not seen in training.",
            "percentunit",
            [(f"max(headline_scorer_unseen_category_share{SELECTOR})", "unseen")],
        ),
    ]


def _quality_row() -> tuple[str, list[Any]]:
    def per_version(metric: str) -> str:
        return f"avg by (model_version, role) ({metric}{SELECTOR} >= 0)"

    return "Live quality", [
        _timeseries(
            "Live CTR error per version",
            "Mean absolute error of the predicted CTR against the realized CTR (clicks / impressions) of the "
            "labelled headlines in the quality window, normalized (the model's target scale) and raw, pooled "
            "over the workers by labelled headlines, and the version's validation error (normalized).",
            "none",
            [
                (
                    _weighted(
                        "headline_scorer_live_ctr_mae", "headline_scorer_live_labelled_events", scale=scale
                    ),
                    f"{{{{model_version}}}} {{{{role}}}} {scale}",
                )
                for scale in ("normalized", "raw")
            ]
            + [_reference("ctr_mae_normalized")],
        ).min(0),
        _timeseries(
            "Live pairwise accuracy per version",
            "Share of A/B-test headline pairs (both with enough impressions) the version ranks in the order "
            "of their realized CTR, pooled over the workers by pairs; the validation figure beside it. "
            f"Alert below {PAIRWISE_ACCURACY_FLOOR} (critical) or 0.05 under validation.",
            "percentunit",
            [
                (
                    _weighted("headline_scorer_live_pairwise_accuracy", "headline_scorer_live_pairs"),
                    "{{model_version}} {{role}}",
                ),
                _reference("pairwise_accuracy"),
            ],
        )
        .thresholds(_thresholds((None, "red"), (PAIRWISE_ACCURACY_FLOOR, "green")))
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE)
        )
        .min(0)
        .max(1),
        _timeseries(
            "Live calibration per version",
            "Expected calibration error of the quality probability against the realized quality label "
            "(10 bins), with the realized positive share, the mean predicted probability and the validation "
            "ECE.",
            "none",
            [
                (per_version("headline_scorer_live_calibration_error"), "{{model_version}} {{role}} ECE"),
                (
                    per_version("headline_scorer_live_quality_positive_share"),
                    "{{model_version}} {{role}} positive share",
                ),
                (
                    per_version("headline_scorer_live_quality_mean_prob"),
                    "{{model_version}} {{role}} mean probability",
                ),
                _reference("calibration_error"),
            ],
        ).min(0),
        _timeseries(
            "Labelled headlines and pairs in the window",
            "Headlines with an outcome of enough impressions in the quality window, and the A/B pairs "
            "among them.",
            "short",
            [
                (
                    f"sum by (model_version, role) (headline_scorer_live_labelled_events{SELECTOR})",
                    "{{model_version}} {{role}} labelled",
                ),
                (
                    f"sum by (model_version, role) (headline_scorer_live_pairs{SELECTOR})",
                    "{{model_version}} {{role}} pairs",
                ),
            ],
        ),
        _timeseries(
            "Label coverage",
            "Share of the headlines each version scored within the quality window that have a label; "
            f"alert below {LABEL_COVERAGE_ALERT:.0%} for 2 hours.",
            "percentunit",
            [(per_version("headline_scorer_label_coverage"), "{{model_version}} {{role}}")],
        )
        .thresholds(_thresholds((None, "red"), (LABEL_COVERAGE_ALERT, "green")))
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE)
        )
        .min(0)
        .max(1),
        _timeseries(
            "Label delay",
            "From a headline's score to its outcome reaching the minimum impressions: p50, p95, p99.",
            "s",
            _quantiles("headline_scorer_label_delay_seconds"),
        ),
    ]


def _join_row() -> tuple[str, list[Any]]:
    return "Outcomes and join", [
        _timeseries(
            "Outcomes consumed and joined",
            "Outcome events consumed per second, by what the join did with them (matched a score, pending "
            "until it arrives, stale counts, late), and scores that found a waiting outcome.",
            "ops",
            [
                (f"sum(rate(headline_scorer_outcomes_consumed_total{SELECTOR}{RATE}))", "consumed"),
                (
                    f"sum by (result) (rate(headline_scorer_join_outcomes_total{SELECTOR}{RATE}))",
                    "outcome {{result}}",
                ),
                (f"sum(rate(headline_scorer_join_scores_matched_total{SELECTOR}{RATE}))", "score matched"),
            ],
        ),
        _timeseries(
            "Join expiries (unmatched)",
            "Join entries expired per 5 minutes without their other half: scores that never got an outcome, "
            "outcomes that never met a score.",
            "short",
            [(f"sum by (side) (increase(headline_scorer_join_expired_total{SELECTOR}[5m]))", "{{side}}")],
        ),
        _timeseries(
            "Outcomes dead-lettered by reason",
            "Outcome events sent to the dead-letter topic per second, by reason (counts_decreased: "
            "cumulative counts lower than the stored ones).",
            "ops",
            [
                (
                    f"sum by (reason) (rate(headline_scorer_outcomes_dead_lettered_total{SELECTOR}{RATE}))",
                    "{{reason}}",
                )
            ],
        ),
        _stat(
            "Join entries", "Headline ids held in the join table (scores and waiting outcomes).", "short"
        ).with_target(_query(f"sum(headline_scorer_join_entries{SELECTOR})", "entries", "A")),
    ]


def _shadow_row() -> tuple[str, list[Any]]:
    return "Shadow", [
        _timeseries(
            "Shadow agreement",
            "The shadow version against the serving one over the drift window: share of equal quality "
            "labels, and mean absolute difference of the normalized CTR.",
            "none",
            [
                (
                    f"avg by (model_version, measure) (headline_scorer_shadow_agreement{SELECTOR} >= 0)",
                    "{{model_version}} {{measure}}",
                )
            ],
        ).min(0),
        _timeseries(
            "Shadow scoring",
            "Events scored by the shadow version and its failures per second (failures never cost a main "
            "score); the shadow version on the workers.",
            "ops",
            [
                (f"sum(rate(headline_scorer_shadow_events_scored_total{SELECTOR}{RATE}))", "scored"),
                (f"sum(rate(headline_scorer_shadow_errors_total{SELECTOR}{RATE}))", "errors"),
                (
                    f"count by (version) (headline_scorer_shadow_model_info{SELECTOR} == 1)",
                    "workers on {{version}}",
                ),
            ],
        ),
    ]


def _variables() -> list[dash.QueryVariable]:
    job = (
        dash.QueryVariable("job")
        .label("Job")
        .datasource(DATASOURCE)
        .query("label_values(headline_scorer_events_consumed_total, job)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .current(model.VariableOption(selected=True, text="headline-scorer", value="headline-scorer"))
    )
    instance = (
        dash.QueryVariable("instance")
        .label("Worker")
        .datasource(DATASOURCE)
        .query('label_values(headline_scorer_events_consumed_total{job="$job"}, instance)')
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )
    return [job, instance]


def build_dashboard() -> dict[str, Any]:
    """The dashboard as a JSON-ready dict."""
    builder = (
        dash.Dashboard("headline-scorer")
        .uid(DASHBOARD_UID)
        .description(
            "Real-time headline scoring: throughput, dead letters, latency, lag, model, drift, "
            "live quality from outcomes, the join and shadow scoring."
        )
        .tags(["headline-scorer", "kafka"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .variables(_variables())  # type: ignore[arg-type]
    )
    panel_id = 0
    rows = (
        _throughput_row(),
        _latency_row(),
        _model_row(),
        _drift_row(),
        _quality_row(),
        _join_row(),
        _shadow_row(),
    )
    for title, panels in rows:
        panel_id += 1
        builder = builder.with_row(dash.Row(title).id(panel_id))
        for panel in panels:
            panel_id += 1
            builder = builder.with_panel(panel.id(panel_id))
    encoded: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return encoded


def render() -> str:
    """The dashboard JSON exactly as committed."""
    return json.dumps(build_dashboard(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed JSON, write nothing")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            sys.stderr.write(f"{args.out} is out of date: run python deploy/grafana/generate.py\n")
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
