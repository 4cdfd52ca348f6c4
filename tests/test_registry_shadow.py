"""Registry: the SHADOW pointer (set, clear, cleared by promoting it, never pruned, bad pointers)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from artifact.errors import RegistryError
from artifact.registry import CURRENT_FILE, SHADOW_FILE, Registry, atomic_write_text
from export.build import export_to_registry
from tests.export_support import clock_from, sample_checkpoint
from tests.stream_harness import template_registry

V9 = "20991231T000000Z-99999999"


@pytest.fixture
def two_versions(tmp_path: Path) -> tuple[Registry, str, str]:
    """A copy of the template registry: two loadable versions, the first current."""
    root, first, second = template_registry()
    shutil.copytree(root, tmp_path / "reg")
    return Registry(tmp_path / "reg"), first, second


@pytest.mark.slow
def test_set_and_clear_the_shadow(two_versions: tuple[Registry, str, str]) -> None:
    registry, first, second = two_versions
    assert registry.shadow_version() is None and registry.shadow_problem() is None
    registry.set_shadow(second)
    assert registry.shadow_version() == second
    assert (registry.root / SHADOW_FILE).read_text(encoding="utf-8") == second + "\n"
    assert not [p for p in registry.root.iterdir() if p.name.startswith(".SHADOW")]  # no temp file left
    assert registry.describe(second)["shadow"] is True and registry.describe(first)["shadow"] is False
    assert registry.current_version() == first  # CURRENT untouched
    with pytest.raises(RegistryError, match="is the current version"):
        registry.set_shadow(first)
    with pytest.raises(RegistryError, match="no such version"):
        registry.set_shadow(V9)
    with pytest.raises(RegistryError, match="expected a version name"):
        registry.set_shadow("../etc")
    assert registry.shadow_version() == second  # failed attempts change nothing
    assert registry.clear_shadow() == second
    assert registry.shadow_version() is None and not (registry.root / SHADOW_FILE).exists()
    assert registry.clear_shadow() is None  # nothing to clear is not an error


@pytest.mark.slow
def test_a_damaged_version_cannot_become_the_shadow(two_versions: tuple[Registry, str, str]) -> None:
    registry, _, second = two_versions
    (registry.version_dir(second) / "feature_state.json").write_text("{}", encoding="utf-8")
    with pytest.raises(RegistryError, match=f"refusing to shadow {second}"):
        registry.set_shadow(second)
    assert registry.shadow_version() is None


@pytest.mark.slow
def test_promoting_the_shadow_clears_it_and_promoting_another_keeps_it(
    two_versions: tuple[Registry, str, str],
) -> None:
    registry, first, second = two_versions
    registry.set_shadow(second)
    registry.promote(first)  # the current again: the shadow stays
    assert registry.shadow_version() == second
    registry.promote(second)
    assert registry.current_version() == second and registry.shadow_version() is None
    registry.set_shadow(first)
    assert registry.rollback() == first  # rolling back to the shadow version clears it too
    assert registry.current_version() == first and registry.shadow_version() is None


@pytest.mark.slow
def test_pruning_never_removes_the_shadow(two_versions: tuple[Registry, str, str]) -> None:
    registry, first, second = two_versions
    registry.promote(second)
    registry.set_shadow(first)  # the oldest: first in line for pruning
    ticks = clock_from(datetime.now(UTC) + timedelta(days=1))
    pruning = Registry(registry.root, keep=2)
    third = export_to_registry(sample_checkpoint(), None, pruning, clock=lambda: next(ticks)).version
    assert pruning.current_version() == third
    assert pruning.versions() == [first, third]  # second went; the shadow (first) stayed
    assert pruning.shadow_version() == first


def test_a_shadow_naming_a_missing_version_is_reported(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    atomic_write_text(tmp_path / SHADOW_FILE, V9 + "\n")
    assert registry.shadow_version() == V9
    problem = registry.shadow_problem()
    assert problem is not None and V9 in problem and "not a complete version" in problem


def test_a_garbage_shadow_is_reported_and_never_affects_current(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    (tmp_path / V9).mkdir()
    (tmp_path / V9 / "manifest.json").write_text("{}", encoding="utf-8")
    atomic_write_text(tmp_path / CURRENT_FILE, V9 + "\n")
    (tmp_path / SHADOW_FILE).write_text("../../etc/passwd\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="expected a version name"):
        registry.shadow_version()
    problem = registry.shadow_problem()
    assert problem is not None and SHADOW_FILE in problem and "expected a version name" in problem
    assert registry.current_version() == V9  # CURRENT reads as before
    assert registry.versions() == [V9]
    assert registry.clear_shadow() is None  # an unusable SHADOW can always be cleared
    assert not (tmp_path / SHADOW_FILE).exists() and registry.shadow_problem() is None
