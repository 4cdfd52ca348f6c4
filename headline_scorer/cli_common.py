"""What every ``headline-scorer`` command module shares: clean exits on deliberate errors, common options."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from artifact.errors import HeadlineScorerError

P = ParamSpec("P")
R = TypeVar("R")

MappingOption = Annotated[
    str,
    typer.Option(
        "--mapping",
        help="Column mapping: 'seed', 'upworthy', 'outcomes', 'outcomes-ungrouped' or a JSON/TOML file.",
    ),
]
LogOption = Annotated[str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING (env LOG_LEVEL).")]
TrainConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Training settings (TrainConfig fields) as a JSON or TOML file."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="One training setting KEY=VALUE (repeatable; features.* for nested), e.g. quality_weight=0.5.",
    ),
]


def format_value(value: object, digits: int = 4) -> str:
    """A metric for people: floats to ``digits`` significant digits, intervals as "lo to hi"."""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, tuple | list) and value and all(isinstance(v, float) for v in value):
        return " to ".join(format_value(v, digits) for v in value)
    return str(value)


def fail_cleanly(func: Callable[P, R]) -> Callable[P, R]:
    """A deliberate error (:class:`HeadlineScorerError`) becomes one line on stderr and exit code 2."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except HeadlineScorerError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper
