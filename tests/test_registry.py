"""Registry: publish, atomic CURRENT, corrupt/partial versions, promote, rollback, pruning, CLI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artifact.errors import ModelLoadError, RegistryError
from artifact.manifest import MODEL_FILE, read_manifest
from artifact.registry import CURRENT_FILE, Registry
from export.build import export_to_registry
from headline_scorer.cli import app
from tests.export_support import clock_from, copy_version, sample_checkpoint, sample_data


@pytest.fixture
def clock() -> Iterator[object]:
    ticks = clock_from()
    return lambda: next(ticks)  # type: ignore[return-value]


def _publish(registry: Registry, clock: object, make_current: bool = True) -> str:
    return export_to_registry(
        sample_checkpoint(),
        sample_data(),
        registry,
        make_current=make_current,
        clock=clock,  # type: ignore[arg-type]
    ).version


def _entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name != ".lock")


@pytest.mark.slow
def test_publish_makes_a_loadable_current_version(tmp_path: Path, clock: object) -> None:
    registry = Registry(tmp_path / "reg")
    assert registry.versions() == [] and registry.current_version() is None
    with pytest.raises(RegistryError, match="no current version"):
        registry.load_current()
    version = _publish(registry, clock)
    assert registry.versions() == [version] and registry.current_version() == version
    assert (tmp_path / "reg" / CURRENT_FILE).read_text(encoding="utf-8") == version + "\n"
    assert registry.load_current().version == version
    assert _entries(tmp_path / "reg") == sorted([CURRENT_FILE, version])  # no temp files or staging left


@pytest.mark.parametrize(
    "name", ["../etc", "CURRENT", "", "20260101T000000Z-ABCDEF12", "x/../../y", ".staging-1"]
)
def test_version_names_are_validated(tmp_path: Path, name: str) -> None:
    with pytest.raises(RegistryError, match="expected a version name"):
        Registry(tmp_path).version_dir(name)


@pytest.mark.slow
def test_corrupt_staged_version_is_never_published(tmp_path: Path, clock: object) -> None:
    registry = Registry(tmp_path / "reg")
    good = _publish(registry, clock)
    staged = copy_version(tmp_path / "staged")
    (staged / MODEL_FILE).write_bytes((staged / MODEL_FILE).read_bytes()[:-10])  # truncated copy
    with pytest.raises(ModelLoadError, match="sha256"):
        registry.publish(staged)
    assert registry.current_version() == good and registry.versions() == [good]
    assert _entries(tmp_path / "reg") == sorted([CURRENT_FILE, good])


@pytest.mark.slow
def test_publish_failing_midway_leaves_current_valid(
    tmp_path: Path, clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(tmp_path / "reg")
    good = _publish(registry, clock)

    def disk_full(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)  # the CURRENT swap fails after the version is in place
    with pytest.raises(OSError, match="No space"):
        _publish(registry, clock)
    monkeypatch.undo()
    assert registry.current_version() == good
    assert registry.load_current().version == good
    assert not [p for p in (tmp_path / "reg").iterdir() if p.name.startswith(".CURRENT")]

    monkeypatch.setattr(Path, "rename", disk_full)  # the staging -> version rename fails
    with pytest.raises(OSError, match="No space"):
        _publish(registry, clock)
    monkeypatch.undo()
    assert registry.current_version() == good and registry.load_current().version == good
    assert not [p for p in (tmp_path / "reg").iterdir() if p.name.startswith(".staging")]


@pytest.mark.slow
def test_leftover_partial_staging_is_ignored(tmp_path: Path, clock: object) -> None:
    registry = Registry(tmp_path / "reg")
    good = _publish(registry, clock)
    partial = registry.new_staging_dir()
    (partial / MODEL_FILE).write_bytes(b"half")  # an export killed midway
    half_named = tmp_path / "reg" / "20300101T000000Z-deadbeef"
    half_named.mkdir()  # a directory with a version name but no manifest
    assert registry.versions() == [good]
    assert registry.load_current().version == good


@pytest.mark.slow
def test_promote_rollback_and_pruning(tmp_path: Path, clock: object) -> None:
    registry = Registry(tmp_path / "reg", keep=2)
    v1 = _publish(registry, clock)
    v2 = _publish(registry, clock, make_current=False)
    assert registry.current_version() == v1 and registry.versions() == [v1, v2]
    registry.promote(v2)
    assert registry.current_version() == v2
    assert registry.rollback() == v1 and registry.current_version() == v1
    with pytest.raises(RegistryError, match="no version older"):
        registry.rollback()
    v3 = _publish(registry, clock, make_current=False)  # keep=2: v2 goes, the current v1 stays
    assert registry.versions() == [v1, v3] and registry.current_version() == v1
    assert not (tmp_path / "reg" / v2).exists()
    with pytest.raises(RegistryError, match="no such version"):
        registry.promote(v2)
    # A version damaged after publishing cannot be promoted; CURRENT stays.
    (tmp_path / "reg" / v3 / "feature_state.json").write_text("{}", encoding="utf-8")
    with pytest.raises(RegistryError, match="refusing to promote"):
        registry.promote(v3)
    assert registry.current_version() == v1


@pytest.mark.slow
def test_publishing_the_same_version_twice_fails(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    version = registry.publish(copy_version(tmp_path / "a"))
    with pytest.raises(RegistryError, match="already exists"):
        registry.publish(copy_version(tmp_path / "b"))
    assert registry.versions() == [version] and registry.current_version() == version
    assert (tmp_path / "b" / "manifest.json").is_file()  # a staged copy outside the registry is left alone


def test_garbage_current_pointer_is_an_error(tmp_path: Path) -> None:
    (tmp_path / CURRENT_FILE).write_text("../../etc/passwd\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="expected a version name"):
        Registry(tmp_path).current_version()


@pytest.mark.slow
def test_models_cli(tmp_path: Path, clock: object, sample_dir: Path) -> None:
    runner = CliRunner()
    reg = tmp_path / "reg"
    out = runner.invoke(
        app,
        ["export", "--checkpoint", str(sample_checkpoint()), "--registry", str(reg), "--data",
         str(sample_dir / "train.csv"), "--log-level", "WARNING"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    first = Registry(reg).current_version()
    assert first is not None and f"exported {first}" in out.output
    second = _publish(Registry(reg), clock, make_current=False)
    listed = runner.invoke(app, ["models", "list", "--registry", str(reg)])
    assert listed.exit_code == 0 and f"* {first}" in listed.output and f"  {second}" in listed.output
    shown = runner.invoke(app, ["models", "show", second, "--registry", str(reg)])
    assert shown.exit_code == 0 and read_manifest(reg / second).model_version in shown.output
    newest = max(first, second)
    assert runner.invoke(app, ["models", "promote", newest, "--registry", str(reg)]).exit_code == 0
    assert Registry(reg).current_version() == newest
    back = runner.invoke(app, ["models", "rollback"], env={"MODEL_REGISTRY": str(reg)})
    assert back.exit_code == 0 and Registry(reg).current_version() == min(first, second)
    bad = runner.invoke(app, ["models", "promote", "../x", "--registry", str(reg)])
    assert bad.exit_code == 2 and "expected a version name" in bad.output
