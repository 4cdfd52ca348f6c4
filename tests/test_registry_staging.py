"""Registry: staging directories left by killed exports are removed once stale, never while fresh."""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from artifact.errors import RegistryError
from artifact.manifest import MODEL_FILE
from artifact.registry import STAGING_PREFIX, Registry
from export.build import export_to_registry
from tests.export_support import clock_from, sample_checkpoint

HOUR = 3600.0


def _staging(registry: Registry, age_seconds: float = 0.0, files: tuple[str, ...] = (MODEL_FILE,)) -> Path:
    """A staging directory as a killed export leaves it, last touched ``age_seconds`` ago."""
    path = registry.new_staging_dir()
    for name in files:
        (path / name).write_bytes(b"half")
    stamp = time.time() - age_seconds
    for item in [*path.iterdir(), path]:
        os.utime(item, (stamp, stamp), follow_symlinks=False)
    return path


def test_clean_staging_removes_only_stale_dirs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry(tmp_path / "reg")
    stale = _staging(registry, 2 * HOUR)
    stale_empty = _staging(registry, 3 * HOUR, files=())
    fresh = _staging(registry)
    # Old directory, but a file written a minute ago: an export still at work.
    busy = _staging(registry, 2 * HOUR)
    (busy / "manifest.json").write_text("{}", encoding="utf-8")
    pruned_leftover = tmp_path / "reg" / f"{STAGING_PREFIX}pruned-20260101T000000Z-deadbeef"
    pruned_leftover.mkdir()
    os.utime(pruned_leftover, (time.time() - 5 * HOUR,) * 2)
    other = tmp_path / "reg" / "notes"
    other.mkdir()
    os.utime(other, (time.time() - 5 * HOUR,) * 2)

    with caplog.at_level(logging.INFO, logger="artifact.registry"):
        removed = registry.clean_staging()
    assert sorted(removed) == sorted([stale, stale_empty, pruned_leftover])
    assert not stale.exists() and not stale_empty.exists() and not pruned_leftover.exists()
    assert fresh.is_dir() and busy.is_dir() and other.is_dir()
    assert f"removed stale staging {stale.name}" in caplog.text
    assert registry.clean_staging() == []
    # An explicit age: the one-minute-old directory goes too.
    assert registry.clean_staging(older_than=timedelta(seconds=0)) == sorted([busy, fresh])


def test_clean_staging_uses_the_injected_clock_and_grace(tmp_path: Path) -> None:
    later = Registry(tmp_path / "reg", clock=lambda: time.time() + 2 * HOUR)
    fresh = _staging(later)
    assert Registry(tmp_path / "reg").clean_staging() == []
    assert later.clean_staging() == [fresh]
    strict = _staging(later)
    assert Registry(tmp_path / "reg", staging_grace=timedelta(hours=3)).clean_staging() == []
    assert Registry(tmp_path / "reg", staging_grace=timedelta(0)).clean_staging() == [strict]
    with pytest.raises(RegistryError, match="grace period >= 0"):
        Registry(tmp_path, staging_grace=timedelta(seconds=-1))


@pytest.mark.slow
def test_publish_cleans_stale_staging_but_loading_does_not(tmp_path: Path) -> None:
    ticks = clock_from()
    registry = Registry(tmp_path / "reg")
    first = export_to_registry(sample_checkpoint(), None, registry, clock=lambda: next(ticks)).version
    stale = _staging(registry, 2 * HOUR)
    fresh = _staging(registry)
    assert registry.versions() == [first] and registry.load_current().version == first
    assert stale.is_dir()  # reading the registry (as the stream does) never removes anything
    second = export_to_registry(sample_checkpoint(), None, registry, clock=lambda: next(ticks)).version
    assert not stale.exists() and fresh.is_dir()
    assert registry.versions() == [first, second] and registry.current_version() == second
    assert sorted(p.name for p in registry.root.iterdir() if p.name.startswith(".")) == [".lock", fresh.name]


def test_clean_staging_on_a_missing_registry_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet" / "registry"
    assert Registry(missing).clean_staging() == []
    assert not missing.exists() and not missing.parent.exists()
