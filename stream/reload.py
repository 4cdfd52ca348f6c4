"""The serving model and its hot reload from the registry's ``CURRENT`` pointer.

``ModelHolder.poll()`` runs off the event loop (it loads ONNX sessions and
checks canary rows): when ``CURRENT`` names a version other than the one
serving, it loads it with the injected loader and, only when that succeeded
and the loaded manifest names the same version as its directory, swaps the
reference. Batches read :attr:`ModelHolder.model` once when they start, so a
swap takes effect between batches.

Every failure is settled once: it is logged once, counted once in
``headline_scorer_model_reload_failures_total{reason}`` (reasons:
:data:`RELOAD_FAILURE_REASONS`) and the previous model keeps serving.

* A rejected version is not loaded again until ``CURRENT`` points elsewhere
  (and back) or the content of its directory changes (a file added, removed,
  rewritten or touched): polls in between cost one ``stat`` walk of the
  directory, not a load, canaries and warm-up.
* A registry that cannot be read (missing or unreadable directory, unreadable
  ``CURRENT``) or a ``CURRENT`` that does not name a version is counted once
  per distinct failure; the same failure on later polls is logged at debug
  level only, and a registry that reads again clears it (the next failure
  counts again).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal, Protocol, get_args

from artifact.errors import CanaryError, HeadlineScorerError, RegistryError
from artifact.registry import Registry
from artifact.runtime import ROWS_PER_CALL, ScoringModel, load_model

logger = logging.getLogger(__name__)

ReloadFailure = Literal[
    "registry_unreadable", "bad_current", "load_failed", "canary_failed", "version_mismatch"
]
"""Why a reload failed (the ``reason`` label of the reload-failure counter; a closed set)."""
RELOAD_FAILURE_REASONS: Final[tuple[ReloadFailure, ...]] = get_args(ReloadFailure)

#: What a version directory held when it was tried: (relative path, size, mtime ns, inode) per entry.
Fingerprint = tuple[tuple[str, int, int, int], ...]


class ReloadMetrics(Protocol):
    def set_model(self, version: str) -> None: ...
    def reload_failed(self, reason: ReloadFailure) -> None: ...


Loader = Callable[[Path], ScoringModel]


def directory_fingerprint(path: Path) -> Fingerprint:
    """Name, size, mtime and inode of ``path`` and everything under it (symlinks not followed),
    sorted: changes when any file is added, removed, replaced, rewritten or touched. An entry that
    cannot be read appears with -1 values, so a directory that becomes readable changes too."""
    entries: list[tuple[str, int, int, int]] = []

    def add(relative: str, full: Path) -> None:
        try:
            st = full.lstat()
        except OSError:
            entries.append((relative, -1, -1, -1))
            return
        entries.append((relative, st.st_size, st.st_mtime_ns, st.st_ino))

    def unreadable(exc: OSError) -> None:
        entries.append((f"!{exc.filename}", -1, -1, -1))

    add(".", path)
    for dirpath, dirnames, filenames in os.walk(path, onerror=unreadable):
        directory = Path(dirpath)
        for name in (*dirnames, *filenames):
            add(str((directory / name).relative_to(path)), directory / name)
    return tuple(sorted(entries))


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
        fingerprint: Callable[[Path], Fingerprint] = directory_fingerprint,
    ) -> None:
        self._registry = registry
        self._metrics = metrics
        self._loader: Loader = loader or (
            lambda path: load_model(path, intra_op_threads=intra_op_threads, rows_per_call=rows_per_call)
        )
        self._fingerprint = fingerprint
        self._warm_batch = warm_batch
        self._lock = threading.Lock()
        self.model: ScoringModel | None = None
        #: version name -> why it was rejected (the latest rejection of each version)
        self.rejected: dict[str, str] = {}
        self.loaded = threading.Event()
        self._serving_dir: str | None = None  # the directory name the serving model came from
        self._settled: tuple[str, Fingerprint] | None = None  # the rejected CURRENT, as it was tried
        self._registry_failure: tuple[ReloadFailure, str] | None = None

    @property
    def version(self) -> str | None:
        model = self.model
        return None if model is None else model.version

    def poll(self) -> bool:
        """Load ``CURRENT`` if it changed; True when a new model now serves."""
        with self._lock:
            current = self._read_current()
            if current is None:
                return False
            if current == self._serving_dir:
                self._settled = None  # CURRENT is back on the serving version: a rejection is over
                return False
            path = self._registry.version_dir(current)
            fingerprint = self._fingerprint(path)  # before loading: a change during the load is seen later
            if self._settled == (current, fingerprint):
                return False
            try:
                model = self._loader(path)
                if model.version != current:  # served as is, it would be loaded again on every poll
                    self._reject(
                        current,
                        fingerprint,
                        "version_mismatch",
                        f"{path}: the directory is named {current} but its manifest is version "
                        f"{model.version}; re-publish it or point CURRENT at a version whose name matches",
                    )
                    return False
                self._warm_up(model)
            except HeadlineScorerError as exc:
                self._reject(
                    current,
                    fingerprint,
                    "canary_failed" if isinstance(exc, CanaryError) else "load_failed",
                    str(exc),
                )
                return False
            previous = self.version  # the swap: batches read self.model once when they start
            self.model = model
            self._serving_dir = current
            self._settled = None
            self._metrics.set_model(model.version)
            self.loaded.set()
            if previous is None:
                logger.info("model %s loaded", model.version)
            else:
                logger.info("model %s loaded, replacing %s between batches", model.version, previous)
            return True

    def _read_current(self) -> str | None:
        """``CURRENT``'s version, or None (nothing published, or a registry failure, settled once)."""
        root = self._registry.root
        try:
            if not root.is_dir():
                raise FileNotFoundError(
                    f"{root}: the model registry is not a directory (missing or not mounted?)"
                )
            current = self._registry.current_version()
        except (RegistryError, OSError) as exc:
            unreadable = isinstance(exc, OSError) or isinstance(exc.__cause__, OSError)
            reason: ReloadFailure = "registry_unreadable" if unreadable else "bad_current"
            failure = (reason, str(exc))
            if failure == self._registry_failure:
                logger.debug("model registry still failing (%s): %s", reason, exc)
                return None
            self._registry_failure = failure
            self._metrics.reload_failed(reason)
            serving = f"{self.version} keeps serving" if self.model is not None else "no model is serving"
            logger.error("cannot read the model registry (%s), %s: %s", reason, serving, exc)
            return None
        if self._registry_failure is not None:
            logger.info("model registry %s readable again", root)
            self._registry_failure = None
        return current

    def _reject(self, version: str, fingerprint: Fingerprint, reason: ReloadFailure, why: str) -> None:
        self._settled = (version, fingerprint)
        self.rejected[version] = why
        self._metrics.reload_failed(reason)
        serving = f"{self.version} keeps serving" if self.model is not None else "no model is serving"
        logger.error(
            "model %s rejected (%s), %s; not retried until CURRENT or the version's files change: %s",
            version,
            reason,
            serving,
            why,
        )

    def _warm_up(self, model: ScoringModel) -> None:
        """Score one batch of the largest shape before serving, so onnxruntime's memory arena
        reaches its steady size now instead of growing while the model serves."""
        if self._warm_batch <= 0:
            return
        # the canary titles joined: real words, so the batch reaches the per-title feature cap
        text = " ".join(row.title for row in model.manifest.canaries)
        longest = (text + " ") * (1 + 1000 // max(1, len(text)))
        model.score([longest[:1000]] * self._warm_batch, [None] * self._warm_batch)
