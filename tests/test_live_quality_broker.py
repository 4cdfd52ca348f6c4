"""Live quality end to end: the worker's /metrics equal ``evaluate`` on the same rows.

A real worker process on the real broker scores A/B-test packages replayed as headline events
(keyed by id, with their ``group``), then receives their final impressions and clicks as outcome
events. Once the live window holds every row with at least QUALITY_MIN_IMPRESSIONS impressions,
the live pairwise accuracy, pairs, CTR MAE (raw and normalized) and calibration error of the
current model are compared with ``headline-scorer evaluate --json`` run with the same checkpoint
on a CSV of exactly those rows.

The tolerance. The worker scores with the exported ONNX artifact, ``evaluate`` with the PyTorch
checkpoint; export guarantees they agree within ``PARITY_TOLERANCE`` per row, and the test measures
the actual per-row differences (delta) from the worker's own scores on the labelled topic. Every
figure is then allowed to differ by exactly what that noise can move it, no more:

- pairs: equal (they depend on the groups, titles and counts only);
- pairwise accuracy: by ``k / pairs``, where ``k`` counts the compared headline pairs whose PyTorch
  predictions are within ``2 * delta`` of each other (only those can change order; usually 0);
- CTR MAE: by the largest per-row difference of the predicted CTR (raw or normalized);
- calibration error (10 equal-width bins): by the largest probability difference, plus ``2 / n``
  per row whose PyTorch probability lies within delta of a bin edge (it may change bins), plus
  ``1 / n`` per row whose realized label differs because the manifest writes a ``median`` rule's
  threshold to 6 significant digits (the checkpoint keeps it exact).

The same figures computed by ``evaluate``'s own function on the worker's ONNX scores equal the
live ones to float rounding: the join and the window lose, add and reorder nothing that matters.

Two variants: real Upworthy packages (``../shared/data``, a small model trained on other A/B
tests than the replayed ones; label rule ``group_mean``), and the bundled generated A/B sample
(``ab_tests.csv``, always run) scored by the model trained on the bundled seed sample (label rule
``median`` with a threshold).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from artifact.manifest import Manifest
from artifact.pairwise import headline_key
from artifact.registry import Registry
from export.parity import PARITY_TOLERANCE
from stream.quality_measures import parse_label_rule
from tests.cli_support import explain, invoke
from tests.stream_harness import Topics, WorkerProcess, consume_until, produce
from training.data import HeadlineData, load_dataset
from training.mapping import UPWORTHY

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
logger = logging.getLogger(__name__)

EDGES = np.arange(1, 10) / 10  # the inner bin edges of the 10-bin calibration error


@dataclass(frozen=True)
class Case:
    """What one variant replays: ``rows`` (from ``source`` through ``mapping``) and its model."""

    source: Path
    mapping: str
    rows: HeadlineData
    registry: Path
    checkpoint: Path
    min_impressions: int


# ------------------------------------------------------------------------------------ the replay


class QualityTopics:
    """Unique topics and app id for one worker with the join on."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.base = Topics.unique()
        self.outcomes = f"outcomes-{tag}"
        self.labelled = f"labelled-{tag}"
        self.app_id = f"quality-{tag}"

    def worker(self, bootstrap: str, registry: Path, workdir: Path, min_impressions: int) -> WorkerProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        env = {
            "OUTCOMES_TOPIC": self.outcomes,
            "LABELLED_TOPIC": self.labelled,
            "SHADOW_OUTPUT_TOPIC": f"{self.base.output}-shadow",
            "JOIN_ENABLED": "true",
            "QUALITY_MIN_IMPRESSIONS": str(min_impressions),
        }
        return WorkerProcess(
            bootstrap, registry, self.base, self.app_id, workdir / "worker.log", extra_env=env
        )


def headline_events(rows: HeadlineData) -> list[tuple[bytes, bytes]]:
    """One headline event per row, keyed by its id, with its A/B group."""
    assert rows.groups is not None
    categories = rows.categories or [None] * len(rows)
    return [
        (str(i).encode(), json.dumps({"id": str(i), "title": t, "category": c, "group": str(g)}).encode())
        for i, t, c, g in zip(rows.ids.tolist(), rows.titles, categories, rows.groups.tolist(), strict=True)
    ]


def outcome_events(rows: HeadlineData) -> list[tuple[bytes, bytes]]:
    """Each row's final counts; every other outcome names the group too (the join keeps the event's)."""
    assert rows.groups is not None and rows.impressions is not None and rows.clicks is not None
    out = []
    for n, (i, imps, clicks, group) in enumerate(
        zip(rows.ids.tolist(), rows.impressions, rows.clicks, rows.groups.tolist(), strict=True)
    ):
        value: dict[str, object] = {"id": str(i), "impressions": int(imps), "clicks": int(clicks)}
        if n % 2 == 0:
            value["group"] = str(group)
        out.append((str(i).encode(), json.dumps(value).encode()))
    return out


def wait_for_metrics(
    worker: WorkerProcess, check: Callable[[dict[str, float]], bool], what: str, timeout: float = 90.0
) -> None:
    deadline = time.monotonic() + timeout
    while not check(worker.metrics()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{worker.log()[-4000:]}"
        time.sleep(0.3)


@dataclass(frozen=True)
class LiveRun:
    metrics: dict[str, float]  # scraped after the window held every qualifying row
    scores: dict[str, dict[str, Any]]  # the labelled topic's latest row per id (the worker's scores)
    version: str


def replay(case: Case, bootstrap: str, workdir: Path, qualifying: int) -> LiveRun:
    """Run a worker, replay the rows' headline events then their outcomes, read the live gauges."""
    n = len(case.rows)
    topics = QualityTopics()
    worker = topics.worker(bootstrap, case.registry, workdir, case.min_impressions).start()
    version = Registry(case.registry).current_version()
    assert version is not None
    key = f"{{model_version={version},role=current}}"
    try:
        worker.wait_ready()
        asyncio.run(produce(bootstrap, topics.base.input, headline_events(case.rows)))
        scored = asyncio.run(consume_until(bootstrap, [topics.base.output], n))
        assert len(scored) == n, worker.log()[-3000:]
        asyncio.run(produce(bootstrap, topics.outcomes, outcome_events(case.rows)))
        labelled = asyncio.run(consume_until(bootstrap, [topics.labelled], n, distinct=True))
        scores: dict[str, dict[str, Any]] = {}
        for _, _, value, _ in labelled:
            assert value is not None
            row = json.loads(value)
            scores[row["id"]] = row
        assert len(scores) == n, f"{len(scores)} of {n} ids labelled:\n{worker.log()[-3000:]}"
        # the gauges are written labelled_events last: once a scrape shows every row, the next
        # scrape shows the figures computed over all of them
        wait_for_metrics(
            worker,
            lambda m: m.get(f"headline_scorer_live_labelled_events{key}") == qualifying,
            f"{qualifying} rows in the live window",
        )
        metrics = worker.metrics()
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert metrics["headline_scorer_join_outcomes_total{result=matched}"] == n
    assert metrics["headline_scorer_join_outcomes_total{result=pending}"] == 0
    return LiveRun(metrics, scores, version)


# ------------------------------------------------------------------------------------ evaluate


def write_rows(source: Path, id_column: str, ids: set[str], dest: Path) -> Path:
    """The rows of ``source`` whose id is in ``ids``, as a CSV of the same columns and values."""
    frame = pd.read_csv(source, dtype=str, keep_default_na=False, na_filter=False)
    frame[frame[id_column].isin(ids)].to_csv(dest, index=False)
    return dest


def near_tie_pairs(
    groups: NDArray[Any],
    titles: list[str],
    clicks: NDArray[Any],
    impressions: NDArray[Any],
    predicted: NDArray[Any],
    gap: float,
) -> int:
    """Compared headline pairs (as ``evaluate`` pools them) whose predictions are within ``gap``."""
    frame = pd.DataFrame(
        {
            "group": groups.astype(str),
            "key": [headline_key(t) for t in titles],
            "clicks": clicks.astype(np.float64),
            "impressions": impressions.astype(np.float64),
            "predicted": predicted,
        }
    )
    pooled = frame.groupby(["group", "key"], sort=False).agg(
        clicks=("clicks", "sum"), impressions=("impressions", "sum"), predicted=("predicted", "mean")
    )
    pooled["observed"] = pooled["clicks"] / pooled["impressions"]
    count = 0
    for _, headlines in pooled.groupby(level="group"):
        observed = headlines["observed"].to_numpy()
        pred = headlines["predicted"].to_numpy()
        upper = np.triu(np.ones((observed.size, observed.size), dtype=bool), 1)
        compared = upper & (observed[:, None] != observed[None, :])
        count += int(np.count_nonzero(compared & (np.abs(pred[:, None] - pred[None, :]) <= gap)))
    return count


def check_live_equals_evaluate(case: Case, bootstrap: str, tmp_path: Path) -> dict[str, float]:
    from training.evaluate import evaluate_predictions
    from training.mapping import resolve_mapping
    from training.predict import Predictions, TrainedModel

    rows = case.rows
    assert rows.impressions is not None and rows.clicks is not None and rows.groups is not None
    qualifies = rows.impressions >= case.min_impressions
    assert np.count_nonzero(~qualifies) > 0, "some replayed rows stay below the minimum impressions"
    live = replay(case, bootstrap, tmp_path / "worker", int(np.count_nonzero(qualifies)))

    # evaluate (the command) with the same checkpoint on a CSV of exactly the qualifying rows
    id_column = resolve_mapping(case.mapping).id
    assert id_column is not None
    csv = write_rows(
        case.source, id_column, {str(i) for i in rows.ids[qualifies].tolist()}, tmp_path / "evaluated.csv"
    )
    result = invoke(
        "evaluate", "--model", case.checkpoint, "--data", csv, "--mapping", case.mapping, "--json"
    )
    assert result.exit_code == 0, explain(result)
    evaluation = json.loads(result.stdout)
    data = load_dataset(csv, resolve_mapping(case.mapping))
    assert evaluation["rows"] == len(data) == np.count_nonzero(qualifies) and evaluation["rows_dropped"] == 0
    assert data.groups is not None and data.clicks is not None and data.impressions is not None

    # the noise between the worker's ONNX scores and PyTorch's, per row
    trained = TrainedModel.from_checkpoint(case.checkpoint)
    torch_pred = trained.predict(data.titles, data.categories)
    assert torch_pred.ctr is not None
    served = [live.scores[str(i)] for i in data.ids.tolist()]
    assert {s["model_version"] for s in served} == {live.version}
    onnx_norm = np.array([s["score_ctr_normalized"] for s in served])
    onnx_ctr = np.array([s["score_ctr"] for s in served])
    onnx_prob = np.array([s["score_quality_prob"] for s in served])
    delta_norm = float(np.max(np.abs(onnx_norm - torch_pred.ctr_normalized)))
    delta_ctr = float(np.max(np.abs(onnx_ctr - torch_pred.ctr)))
    delta_prob = float(np.max(np.abs(onnx_prob - torch_pred.quality_prob)))
    assert delta_norm <= PARITY_TOLERANCE and delta_prob <= PARITY_TOLERANCE, (delta_norm, delta_prob)

    def live_value(name: str, **extra: str) -> float:
        labels = {"model_version": live.version, "role": "current", **extra}
        return live.metrics[f"{name}{{{','.join(f'{k}={v}' for k, v in sorted(labels.items()))}}}"]

    n = len(data)
    pairs = evaluation["pairs"]
    assert pairs is not None and pairs >= 50, "too few same-group pairs to compare"
    ties = near_tie_pairs(
        data.groups, data.titles, data.clicks, data.impressions, torch_pred.ctr_normalized, 2 * delta_norm
    )
    manifest = Manifest.model_validate_json(
        (Registry(case.registry).version_dir(live.version) / "manifest.json").read_text()
    )
    label_flips = 0
    rule = parse_label_rule(manifest.label_rule)
    assert rule is not None and rule.rule == trained.label_rule.rule
    if rule.rule == "median":
        assert trained.scaling is not None and data.raw_ctr is not None
        assert rule.threshold is not None and trained.label_rule.threshold is not None
        normalized = trained.scaling.normalize(data.raw_ctr)
        label_flips = int(
            np.count_nonzero((normalized > rule.threshold) != (normalized > trained.label_rule.threshold))
        )
    near_edge = int(
        np.count_nonzero(np.min(np.abs(torch_pred.quality_prob[:, None] - EDGES), axis=1) <= delta_prob)
    )

    live_accuracy = live_value("headline_scorer_live_pairwise_accuracy")
    figures = {
        "rows": float(n),
        "pairs": float(pairs),
        "pooled_rows": float(evaluation["pooled_rows"]),
        "live_pairwise_accuracy": live_accuracy,
        "evaluate_pairwise_accuracy": evaluation["pairwise_accuracy"],
        "live_ctr_mae_raw": live_value("headline_scorer_live_ctr_mae", scale="raw"),
        "evaluate_ctr_mae_raw": evaluation["ctr_mae_raw"],
        "live_ctr_mae_normalized": live_value("headline_scorer_live_ctr_mae", scale="normalized"),
        "evaluate_ctr_mae_normalized": evaluation["ctr_mae_normalized"],
        "live_calibration_error": live_value("headline_scorer_live_calibration_error"),
        "evaluate_quality_ece": evaluation["quality_ece"],
        "delta_ctr_normalized": delta_norm,
        "delta_quality_prob": delta_prob,
        "near_tie_pairs": float(ties),
    }
    summary = json.dumps(figures, indent=1)
    logger.info("live quality vs evaluate: %s", summary)
    assert live_value("headline_scorer_live_pairs") == pairs, summary
    assert math.isclose(live_accuracy, evaluation["pairwise_accuracy"], abs_tol=ties / pairs + 1e-12), summary
    assert math.isclose(figures["live_ctr_mae_raw"], evaluation["ctr_mae_raw"], abs_tol=delta_ctr + 1e-12), (
        summary
    )
    assert math.isclose(
        figures["live_ctr_mae_normalized"], evaluation["ctr_mae_normalized"], abs_tol=delta_norm + 1e-12
    ), summary
    ece_tolerance = delta_prob + (2 * near_edge + label_flips) / n + 1e-12
    assert math.isclose(
        figures["live_calibration_error"], evaluation["quality_ece"], abs_tol=ece_tolerance
    ), summary
    assert math.isclose(
        live_value("headline_scorer_live_quality_positive_share"),
        evaluation["label_positive_rate"],
        abs_tol=label_flips / n + 1e-12,
    ), summary

    # evaluate's own function on the worker's scores: the same figures to float rounding
    on_worker_scores = evaluate_predictions(
        trained,
        data,
        Predictions(
            ctr_normalized=onnx_norm,
            ctr=onnx_ctr,
            quality_prob_raw=onnx_prob,
            quality_prob=onnx_prob,
            quality_label=onnx_prob >= trained.quality_threshold,
        ),
    )
    assert on_worker_scores.pairs == pairs
    assert live_accuracy == pytest.approx(on_worker_scores.pairwise_accuracy, abs=1e-12)
    assert figures["live_ctr_mae_raw"] == pytest.approx(on_worker_scores.ctr_mae_raw, rel=1e-9)
    assert figures["live_ctr_mae_normalized"] == pytest.approx(on_worker_scores.ctr_mae_normalized, rel=1e-9)
    assert figures["live_calibration_error"] == pytest.approx(
        on_worker_scores.quality_ece, rel=1e-9, abs=label_flips / n + 1e-12
    )
    return figures


# ------------------------------------------------------------------------------------ the variants


def below_some(impressions: NDArray[Any]) -> int:
    """A minimum that about a fifth of the rows stay below (the rest is what live quality measures)."""
    return int(np.quantile(impressions, 0.2)) + 1


@pytest.mark.shared_data
def test_live_quality_of_replayed_upworthy_packages_equals_evaluate(
    kafka_bootstrap: str, shared_data: Path, tmp_path: Path
) -> None:
    from export.build import export_to_registry
    from training.train import TrainConfig, train

    source = shared_data / "upworthy" / "packages.csv"
    if not source.is_file():
        pytest.skip(f"{source} not available")
    data = load_dataset(source, UPWORTHY)
    assert data.groups is not None and data.impressions is not None
    groups = np.random.default_rng(15).permutation(np.unique(data.groups))
    trained_on, held_out = set(groups[:500].tolist()), set(groups[500:590].tolist())
    train_rows = data.subset(np.flatnonzero([g in trained_on for g in data.groups.tolist()]))
    replayed = data.subset(np.flatnonzero([g in held_out for g in data.groups.tolist()]))
    model_dir = tmp_path / "model"
    checkpoint = train(train_rows, model_dir, TrainConfig(epochs=2), progress=False).best_checkpoint
    registry = tmp_path / "registry"
    export_to_registry(checkpoint, train_rows, Registry(registry))
    assert replayed.impressions is not None
    case = Case(source, "upworthy", replayed, registry, checkpoint, below_some(replayed.impressions))
    figures = check_live_equals_evaluate(case, kafka_bootstrap, tmp_path)
    assert figures["pooled_rows"] > 0  # image-only variants of a headline were pooled on both sides


def test_live_quality_of_the_replayed_generated_ab_sample_equals_evaluate(
    kafka_bootstrap: str, sample_dir: Path, tmp_path: Path
) -> None:
    from tests.export_support import sample_checkpoint
    from tests.stream_harness import template_registry

    source = sample_dir / "ab_tests.csv"
    rows = load_dataset(source, UPWORTHY)
    assert rows.groups is not None and rows.impressions is not None
    template, _, _ = template_registry()  # its current version is exported from sample_checkpoint()
    registry = Path(shutil.copytree(template, tmp_path / "registry"))
    case = Case(source, "upworthy", rows, registry, sample_checkpoint(), below_some(rows.impressions))
    check_live_equals_evaluate(case, kafka_bootstrap, tmp_path)
