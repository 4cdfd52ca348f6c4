"""``headline-scorer outcomes``: production outcomes, replayed and exported as training data.

``outcomes replay`` sends a CSV's clicks and impressions as outcome events (the counterpart of
``replay``'s headlines). ``outcomes export`` reads ``LABELLED_TOPIC`` (Kafka settings from the
environment, as the worker) and writes the CSV that ``train``/``retrain --mapping outcomes`` read.
With ``--min-rows`` it also says whether that CSV is big enough to retrain on: exit code 3 (the CSV
is still written) when the mapping keeps fewer rows, so a scheduled job can fall back to its seed data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

import typer

from headline_scorer.cli_common import LogOption, fail_cleanly
from headline_scorer.logconfig import configure_logging

TOO_FEW_ROWS_EXIT: Final = 3

outcomes_app = typer.Typer(
    help="Production outcomes joined to their scores: export them as training data.",
    no_args_is_help=True,
)


@outcomes_app.command("export")
@fail_cleanly
def export(
    out: Annotated[Path, typer.Option("--out", help="CSV file to write (replaced atomically).")],
    min_impressions: Annotated[
        int | None,
        typer.Option(
            "--min-impressions",
            min=1,
            help="Keep ids whose latest outcome has at least this many impressions "
            "(default: QUALITY_MIN_IMPRESSIONS).",
        ),
    ] = None,
    topic: Annotated[
        str | None, typer.Option("--topic", help="Topic to read (default: LABELLED_TOPIC).")
    ] = None,
    min_rows: Annotated[
        int | None,
        typer.Option(
            "--min-rows",
            min=1,
            help=f"Exit {TOO_FEW_ROWS_EXIT} when --mapping keeps fewer rows of the CSV than this "
            "(too few to retrain on).",
        ),
    ] = None,
    mapping: Annotated[
        str,
        typer.Option(
            "--mapping",
            help="Mapping that counts the trainable rows for --min-rows: outcomes or outcomes-ungrouped.",
        ),
    ] = "outcomes",
    log_level: LogOption = None,
) -> None:
    """Read LABELLED_TOPIC from the beginning to its end, keep the latest row per id, write a CSV."""
    from stream.settings import StreamSettings

    settings = StreamSettings.from_env()
    configure_logging(log_level or settings.log_level)
    from stream.asyncio_util import run_sync
    from stream.labelled import export_labelled

    source = topic or settings.labelled_topic
    report = run_sync(
        export_labelled(
            settings.kafka_client_kwargs(),
            source,
            out,
            min_impressions=min_impressions or settings.quality_min_impressions,
        )
    )
    for problem in report.problems:
        typer.echo(f"skipped malformed row {problem.render()}", err=True)
    if report.malformed > len(report.problems):
        typer.echo(f"... and {report.malformed - len(report.problems)} more malformed rows", err=True)
    typer.echo(report.render())
    if min_rows is None:
        return
    usable = _trainable_rows(out, mapping) if report.rows else 0
    if usable < min_rows:
        typer.echo(
            f"too few rows to retrain on: mapping {mapping} keeps {usable} of {report.rows}, "
            f"fewer than --min-rows {min_rows}",
            err=True,
        )
        raise typer.Exit(code=TOO_FEW_ROWS_EXIT)
    typer.echo(f"mapping {mapping} keeps {usable} rows (--min-rows {min_rows})")


@outcomes_app.command("replay")
@fail_cleanly
def replay(
    data: Annotated[Path, typer.Option("--data", help="CSV with clicks and impressions.")],
    mapping: Annotated[
        str, typer.Option("--mapping", help="Column mapping: 'seed', 'upworthy' or a JSON/TOML mapping file.")
    ] = "seed",
    steps: Annotated[
        int, typer.Option("--steps", min=1, help="Cumulative updates per id, ending at its final counts.")
    ] = 1,
    rate: Annotated[
        float, typer.Option("--rate", min=0, help="Outcome events per second (0: as fast as possible).")
    ] = 1000.0,
    topic: Annotated[
        str | None, typer.Option("--topic", help="Target topic (default: OUTCOMES_TOPIC).")
    ] = None,
    log_level: LogOption = None,
) -> None:
    """Replay a CSV's clicks and impressions as outcome events (keyed by id, like `replay`'s headlines)."""
    configure_logging(log_level)
    from headline_scorer.replay import load_outcomes, replay_outcomes
    from stream.asyncio_util import run_sync
    from stream.settings import StreamSettings

    settings = StreamSettings.from_env()
    rows = load_outcomes(data, mapping)
    target = topic or settings.outcomes_topic
    typer.echo(f"replaying the outcomes of {len(rows)} ids from {data} in {steps} step(s) to {target}")
    report = run_sync(
        replay_outcomes(
            rows, client_kwargs=settings.kafka_client_kwargs(), topic=target, rate=rate, steps=steps
        )
    )
    typer.echo(report.render())
    if report.failed:
        raise typer.Exit(code=1)


def _trainable_rows(path: Path, mapping: str) -> int:
    """Rows of ``path`` that ``train``/``retrain`` would keep with ``mapping`` (0 when it keeps none)."""
    from artifact.errors import CsvValidationError
    from training.data import load_dataset
    from training.mapping import resolve_mapping

    try:
        return len(load_dataset(path, resolve_mapping(mapping)))
    except CsvValidationError:  # e.g. no rows left once rows without a group are dropped
        return 0


def register(app: typer.Typer) -> None:
    """Add the ``outcomes`` command group to ``app``."""
    app.add_typer(outcomes_app, name="outcomes")
