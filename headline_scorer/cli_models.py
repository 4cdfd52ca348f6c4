"""CLI commands for the model artifact: ``export``, ``models list|show|promote|rollback|shadow``, ``retrain``.

Thin wrappers over :mod:`export.build`, :mod:`artifact.registry`,
:mod:`headline_scorer.live_evidence` and :mod:`export.retrain`; torch is imported
only by ``export`` and ``retrain``.
Deliberate errors exit 2 with a one-line message; a candidate rejected by the
retrain gate exits 1 after printing the gate report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from headline_scorer.cli_common import LogOption, MappingOption, SetOption, TrainConfigOption, fail_cleanly
from headline_scorer.logconfig import configure_logging

RegistryOption = Annotated[
    Path,
    typer.Option(
        "--registry", envvar="MODEL_REGISTRY", help="Model registry directory (env MODEL_REGISTRY)."
    ),
]
KeepOption = Annotated[int, typer.Option("--keep", min=1, help="Versions to keep (older ones are pruned).")]

models_app = typer.Typer(help="Inspect and switch the versions of a model registry.", no_args_is_help=True)


@fail_cleanly
def export(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Checkpoint file or training output dir.")],
    registry: RegistryOption,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Optional: the training CSV of the checkpoint (drift reference on every training row). "
            "Default: the rows stored in the checkpoint.",
        ),
    ] = None,
    mapping: MappingOption = "seed",
    promote: Annotated[
        bool, typer.Option("--promote/--no-promote", help="Make the new version current.")
    ] = True,
    keep: KeepOption = 5,
    log_level: LogOption = None,
) -> None:
    """Export a checkpoint to ONNX with its manifest and publish it as a new registry version."""
    configure_logging(log_level)
    from artifact.registry import Registry
    from export.build import export_to_registry
    from training.data import load_dataset
    from training.mapping import resolve_mapping

    dataset = None if data is None else load_dataset(data, resolve_mapping(mapping))
    result = export_to_registry(checkpoint, dataset, Registry(registry, keep=keep), make_current=promote)
    parity = result.manifest.parity
    typer.echo(
        f"exported {result.version} to {result.version_dir} in {result.seconds:.1f} s "
        f"(parity max diff {max(parity.max_abs_diff_ctr_normalized, parity.max_abs_diff_quality_prob):.2g} "
        f"on {parity.rows + parity.hard_rows} rows){'; now current' if promote else ''}"
    )


@models_app.command("list")
@fail_cleanly
def list_versions(
    registry: RegistryOption, as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False
) -> None:
    """List the versions, oldest first; the current one is marked with '*', the shadow with 's'."""
    from artifact.registry import Registry

    reg = Registry(registry)
    rows = [reg.describe(v) for v in reg.versions()]
    problem = reg.shadow_problem()
    if problem is not None:  # never hides the list: the pointer is reported beside it
        typer.echo(f"warning: SHADOW is unusable: {problem}", err=True)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"no versions in {registry}")
    for row in rows:
        mark = "*" if row["current"] else "s" if row["shadow"] else " "
        typer.echo(
            f"{mark} {row['version']}  created {row['created_at']}  "
            f"AUC {row['quality_roc_auc']}  MAE {row['ctr_mae_normalized']}  rows {row['training_rows']}"
        )


@models_app.command("show")
@fail_cleanly
def show(version: Annotated[str, typer.Argument(help="Version name.")], registry: RegistryOption) -> None:
    """Print a version's manifest."""
    from artifact.manifest import read_manifest
    from artifact.registry import Registry

    typer.echo(read_manifest(Registry(registry).version_dir(version)).model_dump_json(indent=2))


@models_app.command("promote")
@fail_cleanly
def promote(
    version: Annotated[str, typer.Argument(help="Version name.")],
    registry: RegistryOption,
    metrics_url: Annotated[
        list[str] | None,
        typer.Option(
            "--metrics-url",
            help="A worker's metrics page (http://host:port, /metrics added when no path is given); repeat "
            "for every worker. Its live quality of the current version and of the candidate (as shadow) "
            "and their agreement are printed before promoting.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Promote even when a --metrics-url cannot be read (without --force nothing is promoted).",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each /metrics page.")
    ] = 5.0,
) -> None:
    """Verify a version and make it current (promoting the shadow version clears SHADOW).

    With --metrics-url, the live evidence read from the workers is printed first:
    live CTR MAE (raw, normalized), pairwise accuracy and pairs, calibration error and labelled
    events of the current version and of the candidate, and the candidate's shadow agreement.

    A page that cannot be read is a one-line error and nothing is promoted, unless --force.

    Without --metrics-url no live evidence is read (the command says so) and the version is promoted.
    """
    from artifact.registry import Registry
    from headline_scorer.live_evidence import EvidenceError, format_evidence, read_evidence

    reg = Registry(registry)
    reg.version_dir(version)  # a bad name fails before any page is read
    if not metrics_url:
        typer.echo("no live evidence read (no --metrics-url given)")
    else:
        evidence = read_evidence(metrics_url, reg.current_version(), version, timeout=timeout)
        if evidence.failures and not force:
            raise EvidenceError(
                f"{'; '.join(evidence.failures.values())}: not promoted (--force promotes without that page)"
            )
        for why in evidence.failures.values():
            typer.echo(f"warning: {why} (promoting anyway: --force)", err=True)
        typer.echo(format_evidence(evidence))
    reg.promote(version)
    typer.echo(f"current: {version}")


@models_app.command("shadow")
@fail_cleanly
def shadow(
    registry: RegistryOption,
    version: Annotated[str | None, typer.Argument(help="Version to score beside the current one.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Stop shadow scoring (remove SHADOW).")] = False,
) -> None:
    """Mark a version as shadow: the workers score every event with it too and publish those scores to
    SHADOW_OUTPUT_TOPIC only. Without arguments, print the shadow version."""
    from artifact.errors import RegistryError
    from artifact.registry import Registry

    reg = Registry(registry)
    if clear and version is not None:
        raise RegistryError("expected a VERSION or --clear, not both")
    if clear:
        previous = reg.clear_shadow()
        typer.echo(f"shadow cleared (was {previous})" if previous else "no shadow version")
        return
    if version is None:
        problem = reg.shadow_problem()
        if problem is not None:
            raise RegistryError(problem)
        typer.echo(f"shadow: {reg.shadow_version() or 'none'}")
        return
    reg.set_shadow(version)
    typer.echo(f"shadow: {version}")


@models_app.command("rollback")
@fail_cleanly
def rollback(registry: RegistryOption) -> None:
    """Make the version before the current one current."""
    from artifact.registry import Registry

    typer.echo(f"current: {Registry(registry).rollback()}")


@fail_cleanly
def retrain(
    data: Annotated[Path, typer.Option("--data", help="Training CSV.")],
    registry: RegistryOption,
    mapping: MappingOption = "seed",
    every: Annotated[
        str | None, typer.Option("--every", help="Repeat every DURATION (90s, 15m, 6h, 1d); default once.")
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option("--tolerance", help="Allowed degradation of AUC and CTR MAE (negative: demand gain)."),
    ] = 0.005,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs to train this round.")] = None,
    config_file: TrainConfigOption = None,
    settings: SetOption = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Train from scratch even if a current version exists.")
    ] = False,
    keep: KeepOption = 5,
    log_level: LogOption = None,
) -> None:
    """Retrain (continuing from the current version), gate against it, export and publish if not worse.

    --config/--set apply when a model is trained from scratch (--fresh, or no current version);
    a continued model keeps the settings it was trained with, except the epochs.
    """
    configure_logging(log_level)
    from artifact.registry import Registry
    from export.retrain import (
        CandidateRejectedError,
        parse_duration,
        report_json,
        retrain_loop,
        retrain_once,
    )
    from training.config_file import build_train_config
    from training.data import load_dataset
    from training.mapping import resolve_mapping

    try:
        period = None if every is None else parse_duration(every)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--every") from None
    reg = Registry(registry, keep=keep)
    config = build_train_config(config_file, settings or (), {"epochs": epochs})

    def one_round() -> None:
        dataset = load_dataset(data, resolve_mapping(mapping))
        try:
            report = retrain_once(dataset, reg, config=config, tolerance=tolerance, fresh=fresh)
        except CandidateRejectedError as exc:
            typer.echo(report_json(exc.report))
            raise
        typer.echo(report_json(report))

    if period is None:
        try:
            one_round()
        except CandidateRejectedError as exc:
            typer.echo(f"rejected: {exc}", err=True)
            raise typer.Exit(code=1) from None
        return

    retrain_loop(one_round, period)


def register(app: typer.Typer) -> None:
    """Add the artifact commands to the main ``headline-scorer`` app."""
    app.command("export")(export)
    app.command("retrain")(retrain)
    app.add_typer(models_app, name="models")
