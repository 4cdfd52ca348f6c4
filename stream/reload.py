"""The serving model and its hot reload from the registry's ``CURRENT`` pointer.

``ModelHolder.poll()`` runs off the event loop (it loads ONNX sessions and
checks canary rows): when ``CURRENT`` names a version other than the one
serving, it loads it with the injected loader and, only when that succeeded,
swaps the reference. Batches read :attr:`ModelHolder.model` once when they
start, so a swap takes effect between batches. A version that fails to load is
logged, counted and remembered, and the previous model keeps serving; it is
tried again only when ``CURRENT`` changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from artifact.errors import HeadlineScorerError
from artifact.registry import Registry
from artifact.runtime import ROWS_PER_CALL, ScoringModel, load_model

logger = logging.getLogger(__name__)


class ReloadMetrics(Protocol):
    def set_model(self, version: str) -> None: ...
    def reload_failed(self) -> None: ...


Loader = Callable[[Path], ScoringModel]


class ModelHolder:
    def __init__(
        self,
        registry: Registry,
        metrics: ReloadMetrics,
        *,
        intra_op_threads: int = 1,
        rows_per_call: int = ROWS_PER_CALL,
        loader: Loader | None = None,
        warm_batch: int = 0,
    ) -> None:
        self._registry = registry
        self._metrics = metrics
        self._loader: Loader = loader or (
            lambda path: load_model(path, intra_op_threads=intra_op_threads, rows_per_call=rows_per_call)
        )
        self._warm_batch = warm_batch
        self._lock = threading.Lock()
        self.model: ScoringModel | None = None
        self.rejected: dict[str, str] = {}
        self.loaded = threading.Event()

    @property
    def version(self) -> str | None:
        model = self.model
        return None if model is None else model.version

    def poll(self) -> bool:
        """Load ``CURRENT`` if it changed; True when a new model now serves."""
        with self._lock:
            try:
                current = self._registry.current_version()
            except HeadlineScorerError as exc:
                logger.error("cannot read the model registry: %s", exc)
                return False
            if current is None or current == self.version or current in self.rejected:
                return False
            try:
                model = self._loader(self._registry.version_dir(current))
                self._warm_up(model)
            except HeadlineScorerError as exc:
                self.rejected[current] = str(exc)
                self._metrics.reload_failed()
                if self.model is None:
                    logger.error("model %s rejected, no model is serving: %s", current, exc)
                else:
                    logger.error("model %s rejected, %s keeps serving: %s", current, self.version, exc)
                return False
            previous = self.version  # the swap: batches read self.model once when they start
            self.model = model
            self._metrics.set_model(model.version)
            self.loaded.set()
            if previous is None:
                logger.info("model %s loaded", model.version)
            else:
                logger.info("model %s loaded, replacing %s between batches", model.version, previous)
            return True

    def _warm_up(self, model: ScoringModel) -> None:
        """Score one batch of the largest shape before serving, so onnxruntime's memory arena
        reaches its steady size now instead of growing while the model serves."""
        if self._warm_batch <= 0:
            return
        # the canary titles joined: real words, so the batch reaches the per-title feature cap
        text = " ".join(row.title for row in model.manifest.canaries)
        longest = (text + " ") * (1 + 1000 // max(1, len(text)))
        model.score([longest[:1000]] * self._warm_batch, [None] * self._warm_batch)
