"""Logging set-up: configured once, by the entry point."""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Wire traces that print whole protocol requests at DEBUG: the SASL PLAIN login (the Kafka
# password in clear text) and every record value (headline text). Never below INFO.
WIRE_TRACE_LOGGERS = ("aiokafka.conn",)


def configure_logging(level: str | None = None) -> None:
    """Configure the root logger from ``level`` or ``LOG_LEVEL`` (default INFO)."""
    chosen = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(level=chosen, format=FORMAT, datefmt="%H:%M:%S", force=True)
    floor = max(logging.getLogger().getEffectiveLevel(), logging.INFO)
    for name in WIRE_TRACE_LOGGERS:
        logging.getLogger(name).setLevel(floor)
