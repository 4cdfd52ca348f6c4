"""Live model quality (stream/quality.py): every gauge against hand-computed values, the window,
coverage and delay, current and shadow versions apart, and the live pairwise accuracy equal to
``evaluate``'s on the same rows and predictions (real Upworthy rows when present, the sample always)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass, replace
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from artifact.manifest import Manifest, Scaling
from artifact.pairwise import pairwise_accuracy
from artifact.scaling import TargetScaling
from stream.quality import Labelled, LiveQuality, Role
from stream.quality_measures import parse_label_rule

V1 = "20260101T000000Z-0000000a"
V2 = "20260102T000000Z-0000000b"
V3 = "20260103T000000Z-0000000c"
LOG_MAX = math.log1p(0.1)  # the scaling of the hand-computed cases: normalized = log1p(ctr) / log1p(0.1)
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def manifest(
    version: str = V1,
    *,
    label_rule: str = "group_mean",
    log_min: float = 0.0,
    log_max: float = LOG_MAX,
    metrics: dict[str, float | int | str | None] | None = None,
) -> Manifest:
    """The manifest fields live quality reads (the rest of a manifest is not needed here)."""
    return Manifest.model_construct(
        model_version=version,
        target_scaling=Scaling(log_min=log_min, log_max=log_max),
        label_rule=label_rule,
        quality_threshold=0.5,
        validation_metrics=metrics or {},
    )


def row(
    id: str,
    impressions: int,
    clicks: int,
    *,
    ctr: float = 0.02,
    norm: float = 0.2,
    prob: float = 0.5,
    group: str | None = "g1",
    title: str | None = None,
    version: str = V1,
    role: Role = "current",
    scored_at: float = T0 - 100.0,
    outcome_at: float = T0 - 40.0,
) -> Labelled:
    return Labelled(
        id=id,
        title=title if title is not None else f"headline {id}",
        group=group,
        model_version=version,
        role=role,
        ctr=ctr,
        ctr_normalized=norm,
        quality_prob=prob,
        impressions=impressions,
        clicks=clicks,
        scored_at=scored_at,
        outcome_at=outcome_at,
    )


def live(
    clock: Clock | None = None,
    *,
    max_events: int = 100,
    max_seconds: float = 600.0,
    min_impressions: int = 100,
) -> tuple[LiveQuality, CollectorRegistry]:
    registry = CollectorRegistry()
    quality = LiveQuality(
        registry,
        max_events=max_events,
        max_seconds=max_seconds,
        min_impressions=min_impressions,
        clock=clock or Clock(),
    )
    return quality, registry


def value(
    registry: CollectorRegistry, name: str, version: str = V1, role: str = "current", **labels: str
) -> float:
    found = registry.get_sample_value(
        f"headline_scorer_{name}", {"model_version": version, "role": role, **labels}
    )
    assert found is not None, f"{name} {version} {role} {labels}: no such series"
    return found


def is_nan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)


def norm(ctr: float) -> float:
    return math.log1p(ctr) / LOG_MAX


# ----------------------------------------------------------------------------- hand-computed gauges

HAND_ROWS = [
    # id, impressions, clicks, predicted ctr, ctr_normalized, quality_prob, group
    row("a", 1000, 50, ctr=0.04, norm=0.40, prob=0.80, group="g1"),  # observed 0.05
    row("b", 1000, 20, ctr=0.03, norm=0.30, prob=0.30, group="g1"),  # observed 0.02
    row("c", 500, 10, ctr=0.01, norm=0.10, prob=0.60, group="g2"),  # observed 0.02
    row("d", 500, 20, ctr=0.02, norm=0.05, prob=0.55, group="g2"),  # observed 0.04
    row("e", 200, 2, ctr=0.01, norm=0.15, prob=0.20, group=None),  # observed 0.01
    row("f", 99, 50, ctr=0.50, norm=0.90, prob=0.90, group="g2"),  # below the minimum impressions
]


def test_every_gauge_against_hand_computed_values() -> None:
    quality, registry = live()
    quality.set_model(V1, "current", manifest())
    quality.scored(V1, "current", T0 - 100.0, 10)
    quality.labelled(HAND_ROWS)
    quality.publish()

    assert value(registry, "live_labelled_events") == 5  # "f" has fewer than 100 impressions
    # |0.05-0.04| + |0.02-0.03| + |0.02-0.01| + |0.04-0.02| + |0.01-0.01| = 0.05 over 5 rows
    assert value(registry, "live_ctr_mae", scale="raw") == pytest.approx(0.01)
    expected_norm = (
        abs(norm(0.05) - 0.40) + abs(norm(0.02) - 0.30) + abs(norm(0.02) - 0.10) + abs(norm(0.04) - 0.05)
    ) + abs(norm(0.01) - 0.15)
    assert value(registry, "live_ctr_mae", scale="normalized") == pytest.approx(expected_norm / 5)
    # group_mean labels: g1 mean 0.035 -> a 1, b 0; g2 mean 0.03 -> c 0, d 1; e has no group: no label.
    # One row per bin: ECE = (|1-0.8| + |0-0.3| + |0-0.6| + |1-0.55|) / 4
    assert value(registry, "live_calibration_error") == pytest.approx(1.55 / 4)
    assert value(registry, "live_quality_positive_share") == pytest.approx(0.5)
    assert value(registry, "live_quality_mean_prob") == pytest.approx((0.8 + 0.3 + 0.6 + 0.55) / 4)
    # g1: a > b observed and predicted (right); g2: c < d observed, c > d predicted (wrong)
    assert value(registry, "live_pairs") == 2
    assert value(registry, "live_pairwise_accuracy") == pytest.approx(0.5)
    assert value(registry, "label_coverage") == pytest.approx(5 / 10)


def test_median_rule_labels_the_normalized_ctr_above_its_threshold() -> None:
    quality, registry = live()
    quality.set_model(V1, "current", manifest(label_rule="median (threshold 0.5)"))
    quality.labelled(
        [
            row("a", 1000, 50, prob=0.9),  # normalized 0.51: positive
            row("b", 1000, 20, prob=0.1),  # 0.21: negative
            row("c", 1000, 40, prob=0.7, group=None),  # 0.41: negative; no group needed
        ]
    )
    quality.publish()
    assert norm(0.05) > 0.5 > norm(0.04)
    assert value(registry, "live_quality_positive_share") == pytest.approx(1 / 3)
    assert value(registry, "live_calibration_error") == pytest.approx((0.1 + 0.1 + 0.7) / 3)
    assert value(registry, "live_quality_mean_prob") == pytest.approx((0.9 + 0.1 + 0.7) / 3)


def test_label_rules_of_the_manifest_parse() -> None:
    assert parse_label_rule("group_mean") is not None
    median = parse_label_rule("median (threshold 0.437)")
    assert median is not None and median.rule == "median" and median.threshold == 0.437
    assert parse_label_rule("median") is None
    assert parse_label_rule("quantile (threshold 0.3)") is None


def test_unknown_label_rule_leaves_calibration_nan_and_the_rest_measured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    quality, registry = live()
    with caplog.at_level(logging.WARNING, logger="stream.quality"):
        quality.set_model(V1, "current", manifest(label_rule="something new"))
    assert "unknown label rule" in caplog.text
    quality.labelled(HAND_ROWS)
    quality.publish()
    assert is_nan(value(registry, "live_calibration_error"))
    assert is_nan(value(registry, "live_quality_positive_share"))
    assert value(registry, "live_ctr_mae", scale="raw") == pytest.approx(0.01)
    assert value(registry, "live_pairwise_accuracy") == pytest.approx(0.5)


def test_headlines_of_a_group_are_pooled_by_title() -> None:
    quality, registry = live()
    quality.set_model(V1, "current", manifest())
    quality.labelled(
        [
            row("a", 1000, 50, norm=0.4, title="Same  Headline"),
            row("b", 1000, 30, norm=0.2, title="same headline"),  # pooled with a: 80 / 2000 = 0.04
            row("c", 1000, 30, norm=0.35, title="Another one"),  # 0.03 < 0.04; predicted 0.35 > 0.3
        ]
    )
    quality.publish()
    assert value(registry, "live_pairs") == 1
    assert value(registry, "live_pairwise_accuracy") == 0.0


def test_nothing_to_compute_is_nan() -> None:
    quality, registry = live()
    quality.set_model(V1, "current", manifest())
    # the series exist before the first publish
    assert value(registry, "live_labelled_events") == 0 and is_nan(value(registry, "live_pairwise_accuracy"))
    quality.publish()
    for name in (
        "live_calibration_error",
        "live_quality_positive_share",
        "live_quality_mean_prob",
        "live_pairwise_accuracy",
        "label_coverage",
    ):
        assert is_nan(value(registry, name)), name
    assert is_nan(value(registry, "live_ctr_mae", scale="raw"))
    assert value(registry, "live_pairs") == 0 and value(registry, "live_labelled_events") == 0

    # one row: MAE is known, pairs are not; rows without a group give no pairs and no group_mean label
    quality.labelled([row("a", 1000, 50, group=None)])
    quality.publish()
    assert value(registry, "live_ctr_mae", scale="raw") == pytest.approx(0.03)
    assert is_nan(value(registry, "live_pairwise_accuracy")) and value(registry, "live_pairs") == 0
    assert is_nan(value(registry, "live_calibration_error"))


def test_reference_metrics_come_from_the_manifest() -> None:
    quality, registry = live()
    metrics: dict[str, float | int | str | None] = {
        "ctr_mae_normalized": 0.12,
        "ctr_mae_raw": 0.004,
        "quality_ece": 0.03,
        "label_positive_rate": 0.5,
        "pairwise_accuracy": None,  # unknown: no series
        "quality_roc_auc": 0.7,  # no live counterpart: not exported
    }
    quality.set_model(V1, "current", manifest(metrics=metrics))

    def reference(metric: str) -> float | None:
        return registry.get_sample_value(
            "headline_scorer_model_reference", {"model_version": V1, "metric": metric}
        )

    assert reference("ctr_mae_normalized") == 0.12
    assert reference("ctr_mae_raw") == 0.004
    assert reference("calibration_error") == 0.03
    assert reference("quality_positive_share") == 0.5
    assert reference("pairwise_accuracy") is None
    assert reference("quality_roc_auc") is None


def test_bad_rows_are_ignored_with_a_warning_and_the_others_kept(caplog: pytest.LogCaptureFixture) -> None:
    quality, registry = live()
    quality.set_model(V1, "current", manifest())
    with caplog.at_level(logging.WARNING, logger="stream.quality"):
        quality.labelled(
            [
                row("a", 1000, 1001),
                row("b", 1000, 10, prob=1.5),
                row("c", 1000, 10, ctr=math.nan),
                row("d", 1000, 10),
            ]
        )
    quality.publish()
    assert value(registry, "live_labelled_events") == 1
    assert "'a'" in caplog.text and "clicks <= impressions" in caplog.text
    assert "'b'" in caplog.text and "outside [0, 1]" in caplog.text
    assert "'c'" in caplog.text and "not finite" in caplog.text


def test_constructor_rejects_bad_windows() -> None:
    for kwargs, match in (
        ({"max_events": 0}, "max_events"),
        ({"max_seconds": 0.0}, "max_seconds"),
        ({"min_impressions": 0}, "min_impressions"),
    ):
        with pytest.raises(ValueError, match=match):
            live(**kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- replacement and window


def test_a_newer_outcome_replaces_the_row_and_an_older_one_is_ignored() -> None:
    quality, registry = live()
    quality.set_model(V1, "current", manifest())
    quality.labelled([row("a", 1000, 50, ctr=0.04)])
    quality.labelled([row("a", 2000, 60, ctr=0.04)])  # observed 0.03
    quality.publish()
    assert value(registry, "live_labelled_events") == 1
    assert value(registry, "live_ctr_mae", scale="raw") == pytest.approx(0.01)
    quality.labelled([row("a", 1500, 100, ctr=0.04)])  # fewer impressions than held: older
    quality.publish()
    assert value(registry, "live_ctr_mae", scale="raw") == pytest.approx(0.01)


def test_window_keeps_the_latest_max_events_rows() -> None:
    quality, registry = live(max_events=3)
    quality.set_model(V1, "current", manifest())
    quality.labelled([row("a", 1000, 10, ctr=0.51)])  # error 0.5: the oldest, pushed out
    quality.labelled([row(i, 1000, 10, ctr=0.01) for i in "bcd"])
    quality.publish()
    assert value(registry, "live_labelled_events") == 3
    assert value(registry, "live_ctr_mae", scale="raw") == pytest.approx(0.0)
    # a replaced row is the newest again: "b" refreshed, so "c" goes when "e" comes
    quality.labelled([row("b", 2000, 20, ctr=0.01), row("e", 1000, 10, ctr=0.21)])
    quality.publish()
    assert value(registry, "live_labelled_events") == 3
    assert value(registry, "live_ctr_mae", scale="raw") == pytest.approx(0.2 / 3)


def test_rows_expire_max_seconds_after_their_outcome_arrived() -> None:
    clock = Clock()
    quality, registry = live(clock, max_seconds=600.0)
    quality.set_model(V1, "current", manifest())
    quality.labelled([row("a", 1000, 10, ctr=0.11), row("b", 1000, 10, ctr=0.11)])
    clock.now += 300.0
    quality.labelled([row("c", 1000, 10, ctr=0.01)])
    clock.now += 299.0
    quality.labelled([row("a", 1000, 20, ctr=0.02)])  # newer outcome of "a" refreshes it
    quality.publish()
    assert value(registry, "live_labelled_events") == 3
    clock.now += 2.0  # "b" arrived 601 s ago
    quality.publish()
    assert value(registry, "live_labelled_events") == 2
    assert value(registry, "live_ctr_mae", scale="raw") == pytest.approx(0.0)
    clock.now += 600.0
    quality.publish()
    assert value(registry, "live_labelled_events") == 0
    assert is_nan(value(registry, "live_ctr_mae", scale="raw"))


# ----------------------------------------------------------------------------- coverage and delay


def test_coverage_is_the_labelled_share_of_the_events_scored_within_the_window() -> None:
    clock = Clock()
    quality, registry = live(clock, max_seconds=600.0)
    quality.set_model(V1, "current", manifest())
    quality.scored(V1, "current", T0 - 500.0, 4)
    quality.scored(V1, "current", T0 - 100.0, 6)
    quality.labelled(
        [
            row("a", 1000, 10, scored_at=T0 - 500.0),
            row("b", 1000, 10, scored_at=T0 - 100.0),
            row("c", 50, 1, scored_at=T0 - 100.0),  # below the minimum: no label yet
        ]
    )
    quality.publish()
    assert value(registry, "label_coverage") == pytest.approx(2 / 10)
    clock.now += 200.0  # the first 4 events were scored 700 s ago; "a" too
    quality.publish()
    assert value(registry, "label_coverage") == pytest.approx(1 / 6)
    clock.now += 600.0
    quality.publish()
    assert is_nan(value(registry, "label_coverage"))


def test_scored_counts_stay_bounded_and_exact_to_a_bucket() -> None:
    clock = Clock()
    quality, registry = live(clock, max_seconds=600.0)
    quality.set_model(V1, "current", manifest())
    times = T0 - 600.0 + np.arange(1, 12_001) * 0.05  # 12,000 batches of one event over the window
    for t in times:
        quality.scored(V1, "current", float(t), 1)
    quality.labelled([row(f"r{i}", 1000, 10, scored_at=T0 - 1.0) for i in range(30)])
    quality.publish()
    assert value(registry, "label_coverage") == pytest.approx(30 / 12_000)
    assert len(quality._series[V1].scored) <= 3601  # buckets of 1/3600 of the window, not one per call
    clock.now += 300.0  # half the events (and none of the rows) left the window
    quality.publish()
    assert value(registry, "label_coverage") == pytest.approx(30 / 6_000, rel=1e-3)


def test_label_delay_is_observed_once_per_id_when_it_reaches_the_minimum_impressions() -> None:
    quality, registry = live()
    quality.set_model(V1, "current", manifest())
    quality.set_model(V2, "shadow", manifest(V2))
    quality.labelled([row("a", 50, 1, scored_at=T0 - 1000.0, outcome_at=T0 - 990.0)])  # not yet
    quality.labelled(
        [
            row("a", 150, 3, scored_at=T0 - 1000.0, outcome_at=T0 - 700.0),  # 300 s
            row("a", 150, 3, version=V2, role="shadow", scored_at=T0 - 999.0, outcome_at=T0 - 700.0),
            row("b", 1000, 3, scored_at=T0 - 100.0, outcome_at=T0 - 90.0),  # 10 s
        ]
    )
    quality.labelled([row("a", 400, 8, scored_at=T0 - 1000.0, outcome_at=T0 - 100.0)])  # same id again

    def sample(suffix: str, **labels: str) -> float | None:
        return registry.get_sample_value(f"headline_scorer_label_delay_seconds_{suffix}", labels)

    assert sample("count") == 2
    assert sample("sum") == pytest.approx(310.0)
    assert sample("bucket", le="15.0") == 1
    assert sample("bucket", le="300.0") == 2


# ----------------------------------------------------------------------------- versions and roles


def test_current_and_shadow_versions_are_kept_apart() -> None:
    quality, registry = live()
    quality.set_model(V1, "current", manifest())
    quality.set_model(V2, "shadow", manifest(V2, label_rule="median (threshold 0.5)"))
    quality.scored(V1, "current", T0 - 100.0, 4)
    quality.scored(V2, "shadow", T0 - 100.0, 2)
    current = [row("a", 1000, 50, ctr=0.04, norm=0.4), row("b", 1000, 20, ctr=0.03, norm=0.3)]
    shadow = [replace(r, model_version=V2, role="shadow", ctr=0.05, ctr_normalized=0.1) for r in current]
    quality.labelled([*current, replace(shadow[0], ctr_normalized=0.05)])
    quality.labelled(shadow[1:])
    quality.publish()

    assert value(registry, "live_pairwise_accuracy") == 1.0
    assert value(registry, "live_pairwise_accuracy", V2, "shadow") == 0.0  # 0.05 < 0.1 but observed a > b
    assert value(registry, "live_ctr_mae", scale="raw") == pytest.approx(0.01)
    assert value(registry, "live_ctr_mae", V2, "shadow", scale="raw") == pytest.approx((0.0 + 0.03) / 2)
    assert value(registry, "label_coverage") == pytest.approx(2 / 4)
    assert value(registry, "label_coverage", V2, "shadow") == pytest.approx(1.0)
    # each version's own label rule: the shadow's median rule labels "a" (0.51) positive, "b" not
    assert value(registry, "live_quality_positive_share", V2, "shadow") == pytest.approx(0.5)
    assert (
        registry.get_sample_value(
            "headline_scorer_live_labelled_events", {"model_version": V1, "role": "shadow"}
        )
        is None
    )


def test_versions_not_set_are_ignored_and_a_new_version_retires_the_old_one_of_its_role() -> None:
    quality, registry = live()
    quality.set_model(V1, "current", manifest(metrics={"ctr_mae_raw": 0.01}))
    quality.labelled([row("a", 1000, 10), row("b", 1000, 10, version=V3, role="current")])
    quality.scored(V3, "current", T0, 5)
    quality.publish()
    assert value(registry, "live_labelled_events") == 1
    assert (
        registry.get_sample_value(
            "headline_scorer_live_labelled_events", {"model_version": V3, "role": "current"}
        )
        is None
    )

    quality.set_model(V2, "shadow", manifest(V2))
    quality.labelled([row("a", 1000, 10, version=V2, role="shadow")])
    quality.set_model(V2, "current", manifest(V2))  # promoted: V1 retired, V2 now current
    quality.labelled([row("c", 1000, 10, version=V2, role="current")])
    quality.labelled([row("d", 1000, 10)])  # V1 is gone: ignored
    quality.publish()
    assert value(registry, "live_labelled_events", V2, "current") == 2
    for version, role in ((V1, "current"), (V2, "shadow")):
        assert (
            registry.get_sample_value(
                "headline_scorer_live_labelled_events", {"model_version": version, "role": role}
            )
            is None
        )
    assert (
        registry.get_sample_value(
            "headline_scorer_model_reference", {"model_version": V1, "metric": "ctr_mae_raw"}
        )
        is None
    )

    quality.set_model(V3, "shadow", manifest(V3))
    quality.clear("shadow")
    quality.publish()
    assert (
        registry.get_sample_value("headline_scorer_live_pairs", {"model_version": V3, "role": "shadow"})
        is None
    )
    assert value(registry, "live_labelled_events", V2, "current") == 2


# ----------------------------------------------------------------------------- properties

TITLES = ("Cats", "cats", "CATS ", "Dogs", "Birds", "Fish", "fish")


@st.composite
def windows(draw: st.DrawFn) -> list[Labelled]:
    n = draw(st.integers(min_value=0, max_value=25))
    out = []
    for i in range(n):
        impressions = draw(st.integers(min_value=100, max_value=2000))
        out.append(
            row(
                f"id{i}",
                impressions,
                draw(st.integers(min_value=0, max_value=impressions)),
                ctr=draw(st.floats(min_value=0.0, max_value=0.3)),
                norm=draw(st.sampled_from([0.1, 0.2, 0.3])),  # ties included
                prob=draw(st.floats(min_value=0.0, max_value=1.0)),
                group=draw(st.sampled_from(["g1", "g2", "g3", None])),
                title=draw(st.sampled_from(TITLES)),
            )
        )
    return out


@settings(max_examples=60, deadline=None)
@given(windows())
def test_live_figures_equal_the_reference_functions(rows: list[Labelled]) -> None:
    quality, registry = live()
    quality.set_model(V1, "current", manifest())
    quality.labelled(rows)
    quality.publish()

    assert value(registry, "live_labelled_events") == len(rows)
    if not rows:
        return
    observed = np.array([r.clicks / r.impressions for r in rows])
    mae = float(np.mean(np.abs(observed - np.array([r.ctr for r in rows]))))
    assert value(registry, "live_ctr_mae", scale="raw") == pytest.approx(mae, rel=1e-12, abs=1e-15)
    grouped = [r for r in rows if r.group is not None]
    live_pairs = value(registry, "live_pairs")
    if len(grouped) < 2:
        assert live_pairs == 0
        return
    expected = pairwise_accuracy(
        [r.group for r in grouped],
        [r.clicks / r.impressions for r in grouped],
        [r.ctr_normalized for r in grouped],
        [r.clicks for r in grouped],
        [r.impressions for r in grouped],
        titles=[r.title for r in grouped],
    )
    assert live_pairs == expected.pairs
    accuracy = value(registry, "live_pairwise_accuracy")
    # exactly, ties included, for rows in the same order (a pooled mean of three or more different
    # predictions can round differently in another order: then equal within rounding)
    assert accuracy == expected.accuracy or (is_nan(accuracy) and expected.pairs == 0)


def test_pairwise_headline_keys_pool_like_titles() -> None:
    from artifact.pairwise import headline_key

    groups = ["t1", "t1", "t1", "t2", "t2"]
    titles = ["Cats ", "cats", "Dogs", "Cats", "Birds"]
    clicks, imps = [10, 30, 25, 5, 9], [1000, 1000, 1000, 500, 500]
    observed = [c / m for c, m in zip(clicks, imps, strict=True)]
    predicted = [0.3, 0.1, 0.25, 0.2, 0.1]
    by_title = pairwise_accuracy(groups, observed, predicted, clicks, imps, titles=titles)
    keys = [headline_key(t) for t in titles]
    codes = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    assert by_title.pooled_rows == 1 and by_title.pairs == 2
    for given_keys in (keys, np.array([codes[k] for k in keys]) * 7 + 3):
        by_key = pairwise_accuracy(groups, observed, predicted, clicks, imps, headline_keys=given_keys)
        assert astuple(by_key) == pytest.approx(astuple(by_title), nan_ok=True)
    with pytest.raises(ValueError, match="titles or headline_keys, got both"):
        pairwise_accuracy(groups, observed, predicted, titles=titles, headline_keys=keys)
    with pytest.raises(ValueError, match="headline_keys: expected strings or integers"):
        pairwise_accuracy(groups, observed, predicted, headline_keys=[0.5] * 5)
    with pytest.raises(ValueError, match="expected arrays of equal length"):
        pairwise_accuracy(groups, observed, predicted, headline_keys=keys[:4])


# ----------------------------------------------------------------------------- live equals evaluate


@dataclass
class _EvaluatedModel:
    """What ``evaluate_predictions`` reads of a trained model (scaling, label rule, threshold)."""

    scaling: TargetScaling
    label_rule: object
    quality_threshold: float


def _live_equals_evaluate(path: Path, limit: int) -> None:
    from training.data import load_dataset
    from training.evaluate import evaluate_predictions
    from training.mapping import UPWORTHY
    from training.predict import Predictions, TrainedModel
    from training.target import LabelRule

    min_impressions = 100
    data = load_dataset(path, UPWORTHY)
    assert data.impressions is not None and data.clicks is not None and data.groups is not None
    data = data.subset(np.flatnonzero(data.impressions >= min_impressions)[:limit])
    assert data.raw_ctr is not None and data.groups is not None
    assert data.impressions is not None and data.clicks is not None
    scaling = TargetScaling.fit(data.raw_ctr)
    rng = np.random.default_rng(7)
    # predictions that know something: the observed normalized CTR plus noise
    predicted = scaling.normalize(data.raw_ctr) + rng.normal(0.0, 0.15, len(data))
    prob = 1.0 / (1.0 + np.exp(-rng.normal(0.0, 1.5, len(data))))
    predictions = Predictions(
        ctr_normalized=predicted,
        ctr=scaling.to_raw(predicted),
        quality_prob_raw=prob,
        quality_prob=prob,
        quality_label=prob >= 0.5,
    )
    stand_in = _EvaluatedModel(scaling, LabelRule(rule="group_mean"), 0.5)
    evaluation = evaluate_predictions(cast(TrainedModel, stand_in), data, predictions)

    quality, registry = live(max_events=len(data), min_impressions=min_impressions)
    quality.set_model(V1, "current", manifest(log_min=scaling.log_min, log_max=scaling.log_max))
    assert predictions.ctr is not None
    rows: Sequence[Labelled] = [
        Labelled(
            id=str(data.ids[i]),
            title=data.titles[i],
            group=str(data.groups[i]),
            model_version=V1,
            role="current",
            ctr=float(predictions.ctr[i]),
            ctr_normalized=float(predicted[i]),
            quality_prob=float(prob[i]),
            impressions=int(data.impressions[i]),
            clicks=int(data.clicks[i]),
            scored_at=T0 - 100.0,
            outcome_at=T0 - 50.0,
        )
        for i in range(len(data))
    ]
    quality.labelled(rows)
    quality.publish()

    assert evaluation.pairs is not None and evaluation.pairs > 50 and (evaluation.pooled_rows or 0) > 0
    assert value(registry, "live_labelled_events") == len(data)
    assert value(registry, "live_pairs") == evaluation.pairs
    assert value(registry, "live_pairwise_accuracy") == evaluation.pairwise_accuracy
    assert value(registry, "live_ctr_mae", scale="normalized") == pytest.approx(
        evaluation.ctr_mae_normalized, rel=1e-9
    )
    assert value(registry, "live_ctr_mae", scale="raw") == pytest.approx(evaluation.ctr_mae_raw, rel=1e-9)
    assert value(registry, "live_calibration_error") == pytest.approx(evaluation.quality_ece, rel=1e-9)
    assert value(registry, "live_quality_positive_share") == pytest.approx(
        evaluation.label_positive_rate, rel=1e-9
    )


def test_live_equals_evaluate_on_the_generated_sample(sample_dir: Path) -> None:
    _live_equals_evaluate(sample_dir / "ab_tests.csv", limit=10_000)


@pytest.mark.shared_data
def test_live_equals_evaluate_on_real_upworthy_rows(shared_data: Path) -> None:
    path = shared_data / "upworthy" / "packages.csv"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    _live_equals_evaluate(path, limit=4000)
