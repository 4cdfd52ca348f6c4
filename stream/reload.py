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

The shadow version (the registry's ``SHADOW``, ``stream/shadow.py``) is loaded
and hot-reloaded the same way beside the current one when the holder is built
with ``shadow=True``: :attr:`ModelHolder.shadow_model`. Its failures are
settled once by the same rules and counted under their own reasons
(``shadow_bad_pointer``, ``shadow_load_failed``, ``shadow_canary_failed``,
``shadow_version_mismatch``); they never touch the current model, and a
shadow version that fails to load is not scored (a previous shadow version is
unloaded: ``SHADOW`` no longer names it). ``SHADOW`` removed (or naming the
current version) unloads it; an unreadable ``SHADOW`` changes nothing.
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
    "registry_unreadable",
    "bad_current",
    "load_failed",
    "canary_failed",
    "version_mismatch",
    "shadow_bad_pointer",
    "shadow_load_failed",
    "shadow_canary_failed",
    "shadow_version_mismatch",
]
"""Why a reload failed (the ``reason`` label of the reload-failure counter; a closed set).
The ``shadow`` reasons are the shadow version's: the current model is not affected by them."""
RELOAD_FAILURE_REASONS: Final[tuple[ReloadFailure, ...]] = get_args(ReloadFailure)
SHADOW_FAILURE_REASONS: Final[frozenset[ReloadFailure]] = frozenset(
    r for r in RELOAD_FAILURE_REASONS if r.startswith("shadow_")
)

#: What a version directory held when it was tried: (relative path, size, mtime ns, inode) per entry.
Fingerprint = tuple[tuple[str, int, int, int], ...]


class ReloadMetrics(Protocol):
    def set_model(self, version: str) -> None: ...
    def reload_failed(self, reason: ReloadFailure) -> None: ...


class ShadowModelMetrics(Protocol):
    """Told which shadow version is loaded (None: none); ``stream.shadow.ShadowMetrics``."""

    def set_shadow_model(self, version: str | None) -> None: ...


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
        shadow: bool = False,
        shadow_metrics: ShadowModelMetrics | None = None,
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
        # the shadow version (SHADOW), when enabled
        self._shadow_enabled = shadow
        self._shadow_metrics = shadow_metrics
        self.shadow_model: ScoringModel | None = None
        self._shadow_dir: str | None = None
        self._shadow_settled: tuple[str, Fingerprint] | None = None
        self._shadow_failure: tuple[ReloadFailure, str] | None = None
        self._shadow_is_current: str | None = None  # SHADOW names the current version (logged once)

    @property
    def version(self) -> str | None:
        model = self.model
        return None if model is None else model.version

    @property
    def shadow_version(self) -> str | None:
        model = self.shadow_model
        return None if model is None else model.version

    def poll(self) -> bool:
        """Load ``CURRENT`` (and ``SHADOW``) if changed; True when a new current model now serves."""
        with self._lock:
            changed = self._poll_current()
            if self._shadow_enabled and self._registry_failure is None:
                self._poll_shadow()
            return changed

    def _poll_current(self) -> bool:
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

    # -- the shadow version ------------------------------------------------------------------
    def _poll_shadow(self) -> None:
        """Load, keep or unload the shadow version as ``SHADOW`` says (settled like ``CURRENT``)."""
        readable, shadow = self._read_shadow()
        if not readable:
            return  # an unreadable SHADOW changes nothing (counted once)
        if shadow is not None and shadow == self._serving_dir:
            if self._shadow_is_current != shadow:  # also for a moment while the shadow is promoted
                logger.info("SHADOW names the current version %s: there is nothing to shadow", shadow)
            self._shadow_is_current = shadow
            shadow = None
        else:
            self._shadow_is_current = None
        if shadow is None:
            self._shadow_settled = None
            self._unload_shadow("SHADOW was cleared" if self._shadow_is_current is None else "it is current")
            return
        if shadow == self._shadow_dir:
            self._shadow_settled = None
            return
        path = self._registry.version_dir(shadow)
        fingerprint = self._fingerprint(path)
        if self._shadow_settled == (shadow, fingerprint):
            return
        try:
            model = self._loader(path)
            if model.version != shadow:
                self._reject_shadow(
                    shadow,
                    fingerprint,
                    "shadow_version_mismatch",
                    f"{path}: the directory is named {shadow} but its manifest is version {model.version}; "
                    "re-publish it or mark a version whose name matches as shadow",
                )
                return
            self._warm_up(model)
        except Exception as exc:  # whatever breaks in a shadow load (warm-up included) stays here
            reason: ReloadFailure = (
                "shadow_canary_failed" if isinstance(exc, CanaryError) else "shadow_load_failed"
            )
            self._reject_shadow(
                shadow, fingerprint, reason, str(exc) if isinstance(exc, HeadlineScorerError) else repr(exc)
            )
            return
        previous = self.shadow_version
        self.shadow_model = model
        self._shadow_dir = shadow
        self._shadow_settled = None
        if self._shadow_metrics is not None:
            self._shadow_metrics.set_shadow_model(model.version)
        if previous is None:
            logger.info("shadow model %s loaded beside %s", model.version, self.version)
        else:
            logger.info("shadow model %s loaded, replacing the shadow %s", model.version, previous)

    def _read_shadow(self) -> tuple[bool, str | None]:
        """(readable, the version ``SHADOW`` names); a failure is counted once (``shadow_bad_pointer``)."""
        try:
            shadow = self._registry.shadow_version()
        except RegistryError as exc:
            failure: tuple[ReloadFailure, str] = ("shadow_bad_pointer", str(exc))
            if failure == self._shadow_failure:
                logger.debug("SHADOW still unusable: %s", exc)
                return False, None
            self._shadow_failure = failure
            self._metrics.reload_failed("shadow_bad_pointer")
            logger.error("cannot use the registry's SHADOW (the current model is not affected): %s", exc)
            return False, None
        if self._shadow_failure is not None:
            logger.info("SHADOW readable again")
            self._shadow_failure = None
        return True, shadow

    def _reject_shadow(self, version: str, fingerprint: Fingerprint, reason: ReloadFailure, why: str) -> None:
        self._shadow_settled = (version, fingerprint)
        self.rejected[version] = why
        self._metrics.reload_failed(reason)
        logger.error(
            "shadow model %s rejected (%s), the current model %s is not affected; not retried until SHADOW "
            "or the version's files change: %s",
            version,
            reason,
            self.version,
            why,
        )
        self._unload_shadow("SHADOW names another version")

    def _unload_shadow(self, why: str) -> None:
        previous = self.shadow_version
        if previous is None:
            return
        self.shadow_model = None
        self._shadow_dir = None
        if self._shadow_metrics is not None:
            self._shadow_metrics.set_shadow_model(None)
        logger.info("shadow model %s unloaded (%s)", previous, why)

    def _warm_up(self, model: ScoringModel) -> None:
        """Score one batch of the largest shape before serving, so onnxruntime's memory arena
        reaches its steady size now instead of growing while the model serves."""
        if self._warm_batch <= 0:
            return
        # the canary titles joined: real words, so the batch reaches the per-title feature cap
        text = " ".join(row.title for row in model.manifest.canaries)
        longest = (text + " ") * (1 + 1000 // max(1, len(text)))
        model.score([longest[:1000]] * self._warm_batch, [None] * self._warm_batch)
