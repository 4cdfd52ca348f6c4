"""Running the ``headline-scorer`` app in-process from tests."""

from __future__ import annotations

import logging
from pathlib import Path

from typer.testing import CliRunner, Result

from headline_scorer.cli import app


def invoke(*args: str | Path) -> Result:
    """Run the app in-process; stdout and stderr are kept apart (click >= 8.2).

    Commands reconfigure the root logger onto the runner's (then closed) stderr, so the
    logging set-up is restored afterwards for the tests that follow.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return CliRunner().invoke(app, [str(a) for a in args])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def explain(result: Result) -> str:
    return (
        f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{result.exception!r}"
    )
