"""The ``headline-scorer`` command: thin typer commands over library functions.

Heavy modules (torch, onnxruntime, faust) are imported inside the commands
that need them, so ``--help`` is fast and serving commands never load torch.
Every deliberate error (:class:`artifact.errors.HeadlineScorerError`) becomes a
one-line message on stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from headline_scorer.cli_common import (
    LogOption,
    MappingOption,
    SetOption,
    TrainConfigOption,
    fail_cleanly,
    format_value,
)
from headline_scorer.cli_models import register as register_model_commands
from headline_scorer.cli_outcomes import register as register_outcome_commands
from headline_scorer.cli_stream import register as register_stream_commands
from headline_scorer.logconfig import configure_logging

app = typer.Typer(
    help="Real-time CTR and quality scoring of news headlines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

DataOption = Annotated[Path, typer.Option("--data", help="Input CSV file.")]


def package_version() -> str:
    """The installed distribution's version ("unknown" when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("headline-scorer")
    except PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"headline-scorer {package_version()}")
        raise typer.Exit()


@app.callback()
def main_options(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Real-time CTR and quality scoring of news headlines."""


@app.command()
@fail_cleanly
def train(
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", help="Output directory for checkpoints, report, plots.")],
    mapping: MappingOption = "seed",
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue training from this checkpoint (or run dir).")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs to run.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed.")] = None,
    config: TrainConfigOption = None,
    settings: SetOption = None,
    log_level: LogOption = None,
) -> None:
    """Validate a CSV, train the dual-task model, evaluate it and write the report."""
    configure_logging(log_level)
    from training.config_file import build_train_config
    from training.data import load_dataset
    from training.mapping import resolve_mapping
    from training.run import ensure_output_dir, ensure_trainable, run_training

    ensure_output_dir(out)
    train_config = build_train_config(
        config, settings or (), {"epochs": epochs, "seed": seed}, resuming=resume is not None
    )
    dataset = load_dataset(data, resolve_mapping(mapping))
    ensure_trainable(dataset, resume)
    typer.echo(dataset.summary.render(), err=True)
    outcome = run_training(dataset, out, train_config, resume=resume)
    if outcome.result is None:
        typer.echo(f"inference-only: wrote predictions to {out / 'predictions.csv'}")
        return
    ev = outcome.evaluation
    auc = format_value(ev.quality_roc_auc, 3)
    if ev.quality_roc_auc_ci is not None:
        auc += f" (95 % CI {format_value(ev.quality_roc_auc_ci, 3)})"
    mae = format_value(ev.ctr_mae_normalized, 3)
    if ev.ctr_mae_normalized_ci is not None:
        mae += f" (95 % CI {format_value(ev.ctr_mae_normalized_ci, 3)})"
    best = outcome.result.best_epoch
    typer.echo(f"trained: best epoch {best}, validation AUC {auc}, MAE {mae}; artifacts in {out}")


@app.command()
@fail_cleanly
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="Training output directory or checkpoint.")],
    data: DataOption,
    mapping: MappingOption = "seed",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    log_level: LogOption = None,
) -> None:
    """Evaluate a trained model on a labelled CSV (inference-only data: predictions count only)."""
    configure_logging(log_level or ("WARNING" if as_json else None))
    from training.data import load_dataset
    from training.evaluate import evaluate as run_evaluate
    from training.mapping import resolve_mapping
    from training.predict import TrainedModel

    dataset = load_dataset(data, resolve_mapping(mapping))
    trained = TrainedModel.from_checkpoint(model)
    result, _ = run_evaluate(trained, dataset)
    if as_json:
        summary = dataset.summary
        if summary.dropped:
            typer.echo(summary.dropped_line(), err=True)
        read = {"rows_read": summary.rows_read, "rows_dropped": summary.rows_read - summary.rows_kept}
        typer.echo(json.dumps(result.model_dump() | read))
        return
    typer.echo(dataset.summary.render())
    for key, value in result.model_dump().items():
        if key == "warnings":
            continue
        if value is not None:
            typer.echo(f"{key:32s} {format_value(value)}")


@app.command()
@fail_cleanly
def predict(
    model: Annotated[Path, typer.Option("--model", help="Training output directory or checkpoint.")],
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", help="Predictions CSV to write.")],
    mapping: MappingOption = "seed",
    log_level: LogOption = None,
) -> None:
    """Score every row of a CSV and write the predictions."""
    configure_logging(log_level)
    from training.data import load_dataset
    from training.evaluate import write_predictions
    from training.mapping import resolve_mapping
    from training.predict import TrainedModel
    from training.run import ensure_output_file

    ensure_output_file(out)
    dataset = load_dataset(data, resolve_mapping(mapping))
    trained = TrainedModel.from_checkpoint(model)
    write_predictions(out, dataset, trained.predict(dataset.titles, dataset.categories))
    if dataset.summary.dropped:
        typer.echo(dataset.summary.dropped_line(), err=True)
    typer.echo(f"wrote {len(dataset)} predictions to {out}")


@app.command()
@fail_cleanly
def sample(
    out: Annotated[Path, typer.Option("--out", help="Directory for train.csv, inference.csv, ab_tests.csv.")],
) -> None:
    """Write the generated sample data set (deterministic)."""
    from training.sample import write_samples

    for name, path in write_samples(out).items():
        typer.echo(f"{name}: {path}")


@app.command()
@fail_cleanly
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Where the demo keeps its model, registry and logs.")
    ] = Path("runs/demo"),
    rate: Annotated[float, typer.Option("--rate", min=1, help="Events per second to replay.")] = 300.0,
    invalid_share: Annotated[
        float, typer.Option("--invalid-share", min=0.0, max=1.0, help="Share of invalid events to inject.")
    ] = 0.03,
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Epochs if a model must be trained.")
    ] = None,
    serve: Annotated[bool, typer.Option("--serve", help="Keep the worker running until Ctrl-C.")] = False,
    log_level: LogOption = None,
) -> None:
    """The main job: embedded broker, model (trained and published if missing), worker, replayed headlines."""
    configure_logging(log_level or "WARNING")
    from headline_scorer.demo import DemoConfig, run_demo

    out.mkdir(parents=True, exist_ok=True)
    outcome = run_demo(
        DemoConfig(out=out, rate=rate, invalid_share=invalid_share, epochs=epochs, serve=serve)
    )
    if not outcome.complete:
        raise typer.Exit(code=1)


register_model_commands(app)
register_stream_commands(app)
register_outcome_commands(app)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
