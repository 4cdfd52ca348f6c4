"""Logging set-up: configured once, by the entry point."""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str | None = None) -> None:
    """Configure the root logger from ``level`` or ``LOG_LEVEL`` (default INFO)."""
    chosen = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(level=chosen, format=FORMAT, datefmt="%H:%M:%S", force=True)
