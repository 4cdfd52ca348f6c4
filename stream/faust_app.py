"""Entry point for faust's own CLI: ``faust -A stream.faust_app worker -l info``.

Reads the settings from the environment when imported, as faust requires a
module-level app; ``headline-scorer worker`` is the usual entry point (it also
creates the topics, ``stream/worker.py``).
"""

from __future__ import annotations

from stream.app import build_app
from stream.settings import StreamSettings

worker = build_app(StreamSettings.from_env())
app = worker.faust_app
