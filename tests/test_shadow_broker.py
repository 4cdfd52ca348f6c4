"""Shadow scoring end to end: a real worker process on the real broker with a registry whose SHADOW
names the second version. Its scores reach SHADOW_OUTPUT_TOPIC and never OUTPUT_TOPIC, the shadow
metrics are on /metrics, and ``models promote --metrics-url`` reads them from the worker, promotes
the shadow and the worker stops shadow scoring."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from artifact.registry import Registry
from tests.cli_support import explain, invoke
from tests.stream_harness import Topics, WorkerProcess, consume_until, event, produce, template_registry

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TITLES = [
    "Ten things nobody tells you about saving for retirement",
    "City council approves new bike lanes downtown",
    "Why this tiny startup is taking on the cloud giants",
    "Scientists discover a new species of deep-sea fish",
]


def _events(n: int, prefix: str) -> list[tuple[bytes, bytes]]:
    return [(f"{prefix}-{i}".encode(), event(f"{prefix}-{i}", TITLES[i % len(TITLES)])) for i in range(n)]


def _wait_for(
    worker: WorkerProcess, check: Callable[[dict[str, float]], bool], what: str, timeout: float = 30.0
) -> dict[str, float]:
    """The worker's /metrics once ``check`` holds on them (polled)."""
    deadline = time.monotonic() + timeout
    while True:
        metrics = worker.metrics()
        if check(metrics):
            return metrics
        assert time.monotonic() < deadline, f"{what} never happened:\n{worker.log()[-3000:]}"
        time.sleep(0.2)


def test_a_shadow_version_publishes_to_its_own_topic_only(kafka_bootstrap: str, tmp_path: Path) -> None:
    template, current, shadow = template_registry()
    root = Path(shutil.copytree(template, tmp_path / "registry"))
    registry = Registry(root)
    registry.set_shadow(shadow)
    topics = Topics.unique()
    tag = uuid.uuid4().hex[:8]
    shadow_topic = f"scores-shadow-{tag}"
    worker = WorkerProcess(
        kafka_bootstrap,
        root,
        topics,
        f"t-{tag}",
        tmp_path / "worker.log",
        extra_env={
            "SHADOW_OUTPUT_TOPIC": shadow_topic,
            "OUTCOMES_TOPIC": f"outcomes-{tag}",
            "LABELLED_TOPIC": f"labelled-{tag}",
        },
    ).start()
    try:
        worker.wait_ready()
        info = f"headline_scorer_shadow_model_info{{version={shadow}}}"
        _wait_for(worker, lambda m: m.get(info) == 1, "shadow loaded")
        n = 300
        asyncio.run(produce(kafka_bootstrap, topics.input, _events(n, "a")))
        out = asyncio.run(consume_until(kafka_bootstrap, [topics.output, shadow_topic], 2 * n))
        main = [json.loads(v) for t, _, v, _ in out if t == topics.output and v is not None]
        shadowed = [json.loads(v) for t, _, v, _ in out if t == shadow_topic and v is not None]
        assert len(main) == n and len(shadowed) == n  # read to the end: nothing more on either topic
        assert (
            sorted(s["id"] for s in main)
            == sorted(s["id"] for s in shadowed)
            == sorted(f"a-{i}" for i in range(n))
        )
        assert {s["model_version"] for s in main} == {current}
        assert {s["model_version"] for s in shadowed} == {shadow}
        keys = {k for t, k, _, _ in out if t == shadow_topic}
        assert keys == {f"a-{i}".encode() for i in range(n)}

        agreement = f"headline_scorer_shadow_agreement{{measure=quality_label,model_version={shadow}}}"
        metrics = _wait_for(  # published by the next housekeeping tick
            worker, lambda m: not math.isnan(m.get(agreement, math.nan)), "agreement published"
        )
        assert metrics["headline_scorer_shadow_events_scored_total{}"] == n
        assert metrics["headline_scorer_shadow_errors_total{}"] == 0
        assert metrics["headline_scorer_events_scored_total{}"] == n  # the main count is the main's only
        # both versions come from the same checkpoint: they agree exactly
        assert metrics[agreement] == 1.0
        mae = f"headline_scorer_shadow_agreement{{measure=ctr_normalized_mae,model_version={shadow}}}"
        assert metrics[mae] == pytest.approx(0.0, abs=1e-9)

        # the join gives the shadow its own live-quality series (no outcomes yet: no labels)
        assert metrics[f"headline_scorer_live_labelled_events{{model_version={shadow},role=shadow}}"] == 0
        assert metrics[f"headline_scorer_live_labelled_events{{model_version={current},role=current}}"] == 0

        # promoted with the worker's own page as evidence: SHADOW cleared, the shadow becomes current
        promoted = invoke("models", "promote", shadow, "--registry", root, "--metrics-url", worker.url)
        assert promoted.exit_code == 0, explain(promoted)
        assert "live evidence from 1 of 1 worker(s)" in promoted.stdout
        assert "quality_label 1.0000, ctr_normalized_mae 0.0000" in promoted.stdout
        assert registry.current_version() == shadow and registry.shadow_version() is None
        _wait_for(
            worker,
            lambda m: info not in m and m.get(f"headline_scorer_model_info{{version={shadow}}}") == 1,
            "the shadow promoted and unloaded",
        )
        asyncio.run(produce(kafka_bootstrap, topics.input, _events(100, "b")))
        out = asyncio.run(consume_until(kafka_bootstrap, [topics.output, shadow_topic], 2 * n + 100))
        main = [json.loads(v) for t, _, v, _ in out if t == topics.output and v is not None]
        later = [s for s in main if str(s["id"]).startswith("b-")]
        assert len(main) == n + 100 and len(later) == 100
        assert {s["model_version"] for s in later} == {shadow}
        assert len([1 for t, *_ in out if t == shadow_topic]) == n  # no shadow any more
        metrics = _wait_for(  # the next housekeeping tick removes the shadow's series
            worker,
            lambda m: not [k for k in m if k.startswith("headline_scorer_shadow_agreement{")],
            "the agreement series removed",
        )
        assert metrics["headline_scorer_shadow_events_scored_total{}"] == n
        assert not [
            k for k in metrics if k.startswith("headline_scorer_live_labelled_events{") and "shadow" in k
        ]
        assert "Traceback" not in worker.log()
        assert metrics["headline_scorer_model_reload_failures_total{reason=shadow_load_failed}"] == 0
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
