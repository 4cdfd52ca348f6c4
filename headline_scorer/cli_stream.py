"""Streaming-side commands of ``headline-scorer``: ``broker``, ``replay`` and ``worker``.

Registered on the main app by :func:`register` (``headline_scorer/cli.py``).
Kafka settings come from the environment (:class:`stream.settings.StreamSettings`);
heavy imports happen inside the commands.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from headline_scorer.cli_common import LogOption, fail_cleanly
from headline_scorer.logconfig import configure_logging


def broker(
    port: Annotated[int | None, typer.Option("--port", help="TCP port (default: a free one).")] = None,
    apache: Annotated[
        bool, typer.Option("--apache", help="Apache Kafka (KRaft, fetched with Maven) instead of Tansu.")
    ] = False,
    nodes: Annotated[int, typer.Option("--nodes", min=1, help="Apache Kafka nodes (with --apache).")] = 1,
    log_dir: Annotated[
        Path | None, typer.Option("--log-dir", help="Apache Kafka's logs (default: a temporary directory).")
    ] = None,
    log_level: LogOption = None,
) -> None:
    """Run a broker until Ctrl-C or SIGTERM: the embedded one (Tansu, memory storage) or Apache Kafka."""
    configure_logging(log_level or "WARNING")
    if apache:
        _apache_broker(nodes, log_dir, port)
        return
    from headline_scorer.embedded_broker import BrokerError, EmbeddedBroker

    embedded = EmbeddedBroker(port)
    # SIGTERM (kill, a supervisor, docker stop) stops the broker like Ctrl-C; the broker process
    # itself also dies with this one, however it dies (EmbeddedBroker on Linux).
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        embedded.start()
        typer.echo(f"KAFKA_BOOTSTRAP_SERVERS={embedded.bootstrap}")
        typer.echo(
            f"embedded broker pid {embedded.pid} on {embedded.bootstrap} (memory storage); "
            "Ctrl-C or SIGTERM stops it",
            err=True,
        )
        while embedded.running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        typer.echo("stopping the broker", err=True)
        return
    finally:
        embedded.stop()
        signal.signal(signal.SIGTERM, previous)
    raise BrokerError(
        f"the embedded broker on {embedded.bootstrap} exited unexpectedly (log {embedded.log_path})"
    )


def _apache_broker(nodes: int, log_dir: Path | None, port: int | None) -> None:
    from headline_scorer.apache_kafka import apache_kafka

    if port is not None:
        raise typer.BadParameter("--port is for the embedded broker; Apache Kafka takes free ports")

    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it like Ctrl-C
    try:
        with apache_kafka(nodes, log_dir=log_dir) as kafka:
            typer.echo(f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap}")
            typer.echo(
                f"Apache Kafka, {nodes} node(s), logs in {kafka.log_dir}; Ctrl-C or SIGTERM stops it",
                err=True,
            )
            while True:
                time.sleep(0.5)
    except KeyboardInterrupt:
        typer.echo("stopping Apache Kafka", err=True)
    finally:
        signal.signal(signal.SIGTERM, previous)


def replay(
    data: Annotated[Path, typer.Option("--data", help="Input CSV file.")],
    mapping: Annotated[
        str, typer.Option("--mapping", help="Column mapping: 'seed', 'upworthy' or a JSON/TOML mapping file.")
    ] = "seed",
    rate: Annotated[
        float, typer.Option("--rate", min=0, help="Events per second (0: as fast as possible).")
    ] = 1000.0,
    topic: Annotated[str | None, typer.Option("--topic", help="Target topic (default: INPUT_TOPIC).")] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="Events to send (default: one pass; cycles when larger)."),
    ] = None,
    invalid_share: Annotated[
        float, typer.Option("--invalid-share", min=0.0, max=1.0, help="Share of invalid records to inject.")
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the invalid-record draw.")] = 0,
    log_level: LogOption = None,
) -> None:
    """Replay a CSV as headline events at a steady rate (the load generator)."""
    configure_logging(log_level)
    from headline_scorer.replay import load_rows, replay_events
    from stream.asyncio_util import run_sync
    from stream.settings import StreamSettings

    settings = StreamSettings.from_env()
    rows = load_rows(data, mapping)
    target = topic or settings.input_topic
    typer.echo(
        f"replaying {limit or len(rows)} events from {data} to {target} on {settings.kafka_bootstrap_servers}"
    )
    report = run_sync(
        replay_events(
            rows,
            client_kwargs=settings.kafka_client_kwargs(),
            topic=target,
            rate=rate,
            limit=limit,
            invalid_share=invalid_share,
            max_event_bytes=settings.max_event_bytes,
            seed=seed,
        )
    )
    typer.echo(report.render())
    if report.failed:
        raise typer.Exit(code=1)


def worker(log_level: LogOption = None) -> None:
    """Run a scorer worker (the production entry point); all settings come from the environment."""
    from stream.settings import StreamSettings

    settings = StreamSettings.from_env()
    configure_logging(log_level or settings.log_level)
    from stream.worker import run_worker

    run_worker(settings)  # creates the topics first (CREATE_TOPICS)


def register(app: typer.Typer) -> None:
    """Add the streaming commands to ``app`` (deliberate errors become clean exits)."""
    app.command("broker")(fail_cleanly(broker))
    app.command("replay")(fail_cleanly(replay))
    app.command("worker")(fail_cleanly(worker))
