"""A registry of model versions in a local directory (or a mounted volume).

Layout::

    ROOT/
      CURRENT                     the serving version's name (one line)
      SHADOW                      optional: the version scored beside it (one line; stream/shadow.py)
      20261124T101500Z-3f2a9c1d/  one directory per version (manifest.json, model.onnx, ...)
      .staging-*/                 exports in progress (ignored; never current; removed once stale)
      .lock                       flock for publish/promote/rollback/prune

Publishing a staged directory: it is fully verified with the runtime loader
(hashes, ONNX metadata, canaries) while still under a temporary name, every
file and the directory are fsynced, it is renamed to its version name, and
only then ``CURRENT`` is replaced atomically (temporary file, fsync,
``os.replace``, fsync of the directory). A crash at any point leaves
``CURRENT`` naming a complete, verified version. Versions beyond ``keep`` are
pruned oldest first; the current (and the shadow) version is never pruned.

``rollback`` makes the newest version older than the current one current.

``SHADOW`` (written like ``CURRENT``, under the same lock) names a version the
stream workers score every event with too, publishing those scores to their own
topic only. :meth:`Registry.set_shadow` verifies the version loads and is not
the current one; promoting the shadow version (or rolling back to it) clears
``SHADOW``. Pruning never removes the current or the shadow version. A
``SHADOW`` naming a version that is missing or invalid is reported by
:meth:`Registry.shadow_problem` and by the workers' reload failures; it never
affects ``CURRENT`` or loading it.

A ``.staging-*`` directory left by an export that was killed midway is
removed by the next publish (or :meth:`Registry.clean_staging`) once nothing
in it has changed for ``staging_grace`` (default one hour), so an export still
running in another process keeps its directory. Loading never cleans.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

from artifact.errors import ArtifactError, RegistryError
from artifact.manifest import MANIFEST_FILE, VERSION_PATTERN, read_manifest
from artifact.runtime import ScoringModel, load_model

logger = logging.getLogger(__name__)

CURRENT_FILE = "CURRENT"
SHADOW_FILE = "SHADOW"
STAGING_PREFIX = ".staging-"
_LOCK_FILE = ".lock"
#: A staging directory untouched for this long belongs to an export that died.
STAGING_GRACE = timedelta(hours=1)


def validate_version(version: str) -> str:
    """The version name, or :class:`RegistryError` (blocks path traversal and junk)."""
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise RegistryError(f"expected a version name like 20261124T101500Z-3f2a9c1d, got {version!r}")
    return version


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file under ``path``, then the directories (deepest first)."""
    dirs = []
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            fd = os.open(Path(dirpath) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        dirs.append(Path(dirpath))
    for directory in reversed(dirs):
        fsync_dir(directory)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` (mode 0644), fsync it, rename it over
    ``path``, then fsync the directory: readers see the old file or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _last_modified(path: Path) -> float:
    """The newest mtime of ``path`` and everything under it (symlinks not followed)."""
    newest = path.lstat().st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (*dirnames, *filenames):
            with contextlib.suppress(FileNotFoundError):
                newest = max(newest, (Path(dirpath) / name).lstat().st_mtime)
    return newest


class Registry:
    def __init__(
        self,
        root: Path,
        *,
        keep: int = 5,
        staging_grace: timedelta = STAGING_GRACE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if keep < 1:
            raise RegistryError(f"expected keep >= 1, got {keep}")
        if staging_grace.total_seconds() < 0:
            raise RegistryError(f"expected a staging grace period >= 0, got {staging_grace}")
        self.root = Path(root)
        self.keep = keep
        self.staging_grace = staging_grace
        self._clock = clock

    # --- reading -------------------------------------------------------------------------
    def version_dir(self, version: str) -> Path:
        return self.root / validate_version(version)

    def versions(self) -> list[str]:
        """Complete versions (a directory with a manifest), oldest -> newest."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if VERSION_PATTERN.match(p.name) and p.is_dir() and (p / MANIFEST_FILE).is_file()
        )

    def _read_pointer(self, name: str) -> str | None:
        """The version a pointer file (``CURRENT``, ``SHADOW``) names; None when it does not exist."""
        path = self.root / name
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RegistryError(f"{path}: cannot read ({exc})") from exc
        try:
            return validate_version(text)
        except RegistryError as exc:
            raise RegistryError(f"{path}: {exc}") from exc

    def current_version(self) -> str | None:
        return self._read_pointer(CURRENT_FILE)

    def shadow_version(self) -> str | None:
        """The version ``SHADOW`` names (None: no shadow). It may be missing: see :meth:`shadow_problem`."""
        return self._read_pointer(SHADOW_FILE)

    def shadow_problem(self) -> str | None:
        """Why ``SHADOW`` cannot be used (unreadable, not a version name, no such version), or None."""
        try:
            shadow = self.shadow_version()
        except RegistryError as exc:
            return str(exc)
        if shadow is not None and shadow not in self.versions():
            return f"{self.root / SHADOW_FILE} names {shadow}, which is not a complete version in {self.root}"
        return None

    def _shadow_or_none(self) -> str | None:
        """:meth:`shadow_version`, or None (logged) when ``SHADOW`` is unusable: writers never fail on it."""
        try:
            return self.shadow_version()
        except RegistryError as exc:
            logger.warning("registry %s: ignoring an unusable SHADOW (%s)", self.root, exc)
            return None

    def load_current(self, *, intra_op_threads: int = 1) -> ScoringModel:
        version = self.current_version()
        if version is None:
            raise RegistryError(f"{self.root}: no current version (nothing published yet)")
        return load_model(self.version_dir(version), intra_op_threads=intra_op_threads)

    # --- writing -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / _LOCK_FILE).open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def new_staging_dir(self) -> Path:
        """An empty directory inside the registry (same file system, so publishing is a rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.root))
        path.chmod(0o755)  # readable by a stream worker running as another user
        return path

    def _set_current(self, version: str) -> None:
        atomic_write_text(self.root / CURRENT_FILE, version + "\n")
        logger.info("registry %s: CURRENT -> %s", self.root, version)

    def publish(self, staged_dir: Path, *, make_current: bool = True) -> str:
        """Verify a staged version directory, move it into the registry, optionally make it current."""
        staged_dir = Path(staged_dir)
        manifest = read_manifest(staged_dir)
        version = validate_version(manifest.model_version)
        with self._locked():
            target = self.root / version
            if target.exists():
                raise RegistryError(f"{target}: version {version} already exists")
            if staged_dir.resolve().parent == self.root.resolve() and staged_dir.name.startswith(
                STAGING_PREFIX
            ):
                staging = staged_dir
            else:
                staging = self.new_staging_dir()
                shutil.copytree(staged_dir, staging, dirs_exist_ok=True)
            try:
                load_model(staging)  # hashes, metadata, canaries: a broken version never gets a name
                fsync_tree(staging)
                staging.rename(target)
                fsync_dir(self.root)
            except BaseException:
                if staging != staged_dir:
                    shutil.rmtree(staging, ignore_errors=True)
                raise
            logger.info("registry %s: published %s", self.root, version)
            if make_current:
                self._set_current(version)
            self._prune()
            self._clean_staging(self.staging_grace)
        return version

    def promote(self, version: str) -> None:
        """Make an existing version current after verifying it loads."""
        with self._locked():
            path = self.version_dir(version)
            if version not in self.versions():
                raise RegistryError(f"{path}: no such version (have {self.versions()})")
            try:
                load_model(path)
            except ArtifactError as exc:
                raise RegistryError(f"refusing to promote {version}: {exc}") from exc
            self._set_current(version)
            if self._shadow_or_none() == version:  # the shadow became current: nothing left to shadow
                self._remove_shadow()

    # --- the shadow version ----------------------------------------------------------------
    def set_shadow(self, version: str) -> None:
        """Mark an existing, loadable version (not the current one) as the shadow version."""
        with self._locked():
            path = self.version_dir(version)
            if version not in self.versions():
                raise RegistryError(f"{path}: no such version (have {self.versions()})")
            if version == self.current_version():
                raise RegistryError(f"{version} is the current version; a shadow must be another version")
            try:
                load_model(path)
            except ArtifactError as exc:
                raise RegistryError(f"refusing to shadow {version}: {exc}") from exc
            atomic_write_text(self.root / SHADOW_FILE, version + "\n")
            logger.info("registry %s: SHADOW -> %s", self.root, version)

    def clear_shadow(self) -> str | None:
        """Remove ``SHADOW``; return the version it named (None when there was none or it was unusable)."""
        with self._locked():
            previous = self._shadow_or_none()
            self._remove_shadow()
            return previous

    def _remove_shadow(self) -> None:
        path = self.root / SHADOW_FILE
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(self.root)
        logger.info("registry %s: SHADOW cleared", self.root)

    def rollback(self) -> str:
        """Make the newest version older than the current one current; return it."""
        current = self.current_version()
        if current is None:
            raise RegistryError(f"{self.root}: no current version to roll back from")
        older = [v for v in self.versions() if v < current]
        if not older:
            raise RegistryError(f"{self.root}: no version older than {current} to roll back to")
        self.promote(older[-1])
        return older[-1]

    def _prune(self) -> None:
        kept = {self.current_version(), self._shadow_or_none()}
        versions = self.versions()
        excess = len(versions) - self.keep
        for version in versions:
            if excess <= 0:
                break
            if version in kept:
                continue
            doomed = self.root / f"{STAGING_PREFIX}pruned-{version}"
            (self.root / version).rename(doomed)  # out of versions() atomically, then delete
            shutil.rmtree(doomed, ignore_errors=True)
            excess -= 1
            logger.info("registry %s: pruned %s", self.root, version)

    def clean_staging(self, older_than: timedelta | None = None) -> list[Path]:
        """Remove staging directories untouched for ``older_than`` (default ``staging_grace``).

        A registry directory that does not exist has nothing to clean and is not created.
        """
        if not self.root.is_dir():
            return []
        with self._locked():
            return self._clean_staging(self.staging_grace if older_than is None else older_than)

    def _clean_staging(self, older_than: timedelta) -> list[Path]:
        now = self._clock()
        removed: list[Path] = []
        for path in sorted(self.root.glob(f"{STAGING_PREFIX}*")):
            try:
                if not path.is_dir() or path.is_symlink():
                    continue
                idle = now - _last_modified(path)
                if idle < older_than.total_seconds():
                    continue
                shutil.rmtree(path)
            except FileNotFoundError:
                continue  # removed meanwhile
            except OSError as exc:
                logger.warning("registry %s: cannot remove stale staging %s (%s)", self.root, path.name, exc)
                continue
            removed.append(path)
            logger.info(
                "registry %s: removed stale staging %s (untouched for %.0f s)", self.root, path.name, idle
            )
        return removed

    def describe(self, version: str) -> dict[str, object]:
        """A short summary of a version (for ``models list/show``)."""
        manifest = read_manifest(self.version_dir(version))
        return {
            "version": version,
            "current": version == self.current_version(),
            "shadow": version == self._shadow_or_none(),
            "created_at": manifest.created_at.isoformat(),
            "training_rows": manifest.training_data.rows,
            "quality_roc_auc": manifest.validation_metrics.get("quality_roc_auc"),
            "ctr_mae_normalized": manifest.validation_metrics.get("ctr_mae_normalized"),
            "parity_max_diff": max(
                manifest.parity.max_abs_diff_ctr_normalized, manifest.parity.max_abs_diff_quality_prob
            ),
        }
