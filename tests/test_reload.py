"""Hot reload failures are settled once: one load attempt, one failure counted, one log line.

The registry is a real :class:`~export.registry.Registry` on a temporary directory
whose version directories hold stand-in files; the loader is injected and counts
its calls (the real loader is exercised in ``test_stream_units.py``).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from artifact.errors import CanaryError, ModelLoadError
from artifact.registry import CURRENT_FILE, SHADOW_FILE, Registry, atomic_write_text
from artifact.runtime import ScoringModel, load_model
from stream.metrics import ScorerMetrics
from stream.reload import RELOAD_FAILURE_REASONS, ModelHolder, ReloadFailure
from stream.shadow import ShadowMetrics
from tests.stream_harness import template_registry

V1 = "20260101T000000Z-aaaaaaaa"
V2 = "20260102T000000Z-bbbbbbbb"
V3 = "20260103T000000Z-cccccccc"
FAILURES = "headline_scorer_model_reload_failures_total"


class StubModel:
    def __init__(self, version: str) -> None:
        self.version = version


class CountingLoader:
    """Loads a version directory by reading the version its ``manifest.json`` names
    (or raises the error written there); counts its calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, path: Path) -> ScoringModel:
        self.calls.append(path.name)
        text = (path / "manifest.json").read_text().strip()
        if text == "canary":
            raise CanaryError(f"{path}: canary rows score differently")
        if text == "broken":
            raise ModelLoadError(f"{path}: not an ONNX model")
        return cast("ScoringModel", StubModel(text))


def _version(root: Path, name: str, manifest_says: str | None = None) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").write_text(manifest_says or name)
    return path


def _point(root: Path, text: str) -> None:
    atomic_write_text(root / CURRENT_FILE, text + "\n")


@pytest.fixture
def prom() -> CollectorRegistry:
    return CollectorRegistry()


def _failures(prom: CollectorRegistry) -> dict[str, float]:
    return {r: prom.get_sample_value(FAILURES, {"reason": r}) or 0.0 for r in RELOAD_FAILURE_REASONS}


def _only(reason: ReloadFailure, count: float = 1.0) -> dict[str, float]:
    return {r: (count if r == reason else 0.0) for r in RELOAD_FAILURE_REASONS}


def _holder(root: Path, prom: CollectorRegistry, loader: CountingLoader) -> ModelHolder:
    return ModelHolder(Registry(root), ScorerMetrics(prom), loader=loader)


def test_every_reason_is_exported_at_zero(prom: CollectorRegistry) -> None:
    ScorerMetrics(prom)
    assert _failures(prom) == dict.fromkeys(RELOAD_FAILURE_REASONS, 0.0)


def test_a_version_whose_manifest_names_another_is_tried_once(
    tmp_path: Path, prom: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "registry"
    _version(root, V1)
    _version(root, V2, manifest_says=V3)  # copied or renamed by hand
    _point(root, V1)
    loader = CountingLoader()
    holder = _holder(root, prom, loader)
    assert holder.poll() is True and holder.version == V1
    _point(root, V2)
    with caplog.at_level(logging.DEBUG, logger="stream.reload"):
        results = [holder.poll() for _ in range(25)]
    assert results == [False] * 25
    assert loader.calls == [V1, V2]  # one load attempt for 25 polls
    assert holder.version == V1  # the previous model keeps serving
    assert _failures(prom) == _only("version_mismatch")
    assert V3 in holder.rejected[V2] and "re-publish" in holder.rejected[V2]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and V2 in errors[0].getMessage()
    assert prom.get_sample_value("headline_scorer_model_info", {"version": V1}) == 1


def test_a_rejected_version_is_retried_when_its_files_change(tmp_path: Path, prom: CollectorRegistry) -> None:
    root = tmp_path / "registry"
    bad = _version(root, V2, manifest_says="broken")
    _point(root, V2)
    loader = CountingLoader()
    holder = _holder(root, prom, loader)
    for _ in range(5):
        assert holder.poll() is False
    assert loader.calls == [V2] and holder.model is None
    assert _failures(prom) == _only("load_failed")
    (bad / "manifest.json").write_text(V2)  # repaired in place (size and mtime change)
    assert holder.poll() is True and holder.version == V2
    assert loader.calls == [V2, V2]
    assert _failures(prom) == _only("load_failed")  # a success does not count


def test_a_touched_file_counts_as_a_change(tmp_path: Path, prom: CollectorRegistry) -> None:
    root = tmp_path / "registry"
    bad = _version(root, V2, manifest_says="canary")
    _point(root, V2)
    loader = CountingLoader()
    holder = _holder(root, prom, loader)
    assert [holder.poll() for _ in range(3)] == [False] * 3
    stat = (bad / "manifest.json").stat()
    os.utime(bad / "manifest.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert [holder.poll() for _ in range(3)] == [False] * 3
    assert loader.calls == [V2, V2]
    assert _failures(prom) == _only("canary_failed", 2)  # two distinct failures: the content changed


def test_a_rejected_version_is_retried_after_current_points_elsewhere(
    tmp_path: Path, prom: CollectorRegistry
) -> None:
    root = tmp_path / "registry"
    _version(root, V1)
    _version(root, V2, manifest_says="broken")
    _point(root, V1)
    loader = CountingLoader()
    holder = _holder(root, prom, loader)
    assert holder.poll() is True
    _point(root, V2)
    assert holder.poll() is False and holder.poll() is False
    _point(root, V1)  # rolled back: nothing to load, the rejection is over
    assert holder.poll() is False and holder.version == V1
    _point(root, V2)  # pointed at it again: tried again, once
    assert holder.poll() is False and holder.poll() is False
    assert loader.calls == [V1, V2, V2]
    assert _failures(prom) == _only("load_failed", 2)


def test_garbage_current_is_counted_once_per_distinct_failure(
    tmp_path: Path, prom: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "registry"
    _version(root, V1)
    _point(root, "../../etc/passwd")
    loader = CountingLoader()
    holder = _holder(root, prom, loader)
    with caplog.at_level(logging.DEBUG, logger="stream.reload"):
        assert [holder.poll() for _ in range(10)] == [False] * 10
    assert _failures(prom) == _only("bad_current")
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    _point(root, "not a version either")  # another failure: counted
    assert [holder.poll() for _ in range(10)] == [False] * 10
    assert _failures(prom) == _only("bad_current", 2)
    _point(root, V1)
    assert holder.poll() is True and holder.version == V1
    _point(root, "not a version either")  # the same failure after a recovery counts again
    assert holder.poll() is False and holder.poll() is False
    assert _failures(prom) == _only("bad_current", 3)
    assert holder.version == V1 and loader.calls == [V1]


def test_a_missing_registry_is_counted_once_and_loads_once_it_appears(
    tmp_path: Path, prom: CollectorRegistry
) -> None:
    root = tmp_path / "not-mounted"
    loader = CountingLoader()
    holder = _holder(root, prom, loader)
    assert [holder.poll() for _ in range(10)] == [False] * 10
    assert _failures(prom) == _only("registry_unreadable")
    _version(root, V1)
    _point(root, V1)
    assert holder.poll() is True and holder.version == V1
    assert _failures(prom) == _only("registry_unreadable")


def test_an_unreadable_current_is_counted_once(tmp_path: Path, prom: CollectorRegistry) -> None:
    root = tmp_path / "registry"
    _version(root, V1)
    (root / CURRENT_FILE).mkdir()  # reading it fails with an OSError (as a permission error would)
    loader = CountingLoader()
    holder = _holder(root, prom, loader)
    assert [holder.poll() for _ in range(10)] == [False] * 10
    assert _failures(prom) == _only("registry_unreadable")
    assert loader.calls == []


def test_a_registry_path_that_is_a_file_is_unreadable(tmp_path: Path, prom: CollectorRegistry) -> None:
    root = tmp_path / "registry"
    root.write_text("oops")
    holder = _holder(root, prom, CountingLoader())
    assert [holder.poll() for _ in range(3)] == [False] * 3
    assert _failures(prom) == _only("registry_unreadable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_a_registry_without_read_permission_is_counted_once(tmp_path: Path, prom: CollectorRegistry) -> None:
    root = tmp_path / "registry"
    _version(root, V1)
    _point(root, V1)
    (root / CURRENT_FILE).chmod(0)
    try:
        holder = _holder(root, prom, CountingLoader())
        assert [holder.poll() for _ in range(3)] == [False] * 3
        assert _failures(prom) == _only("registry_unreadable")
    finally:
        (root / CURRENT_FILE).chmod(0o644)


def test_nothing_published_is_not_a_failure(tmp_path: Path, prom: CollectorRegistry) -> None:
    root = tmp_path / "registry"
    root.mkdir()
    holder = _holder(root, prom, CountingLoader())
    assert holder.poll() is False and holder.model is None
    assert _failures(prom) == dict.fromkeys(RELOAD_FAILURE_REASONS, 0.0)


@pytest.mark.slow
def test_a_real_version_under_another_name_is_rejected_once(tmp_path: Path, prom: CollectorRegistry) -> None:
    """The real loader and a real exported version copied under a name its manifest does not carry."""
    template, first, second = template_registry()
    root = Path(shutil.copytree(template, tmp_path / "registry"))
    renamed = "29990101T000000Z-0badc0de"
    shutil.copytree(root / second, root / renamed)
    calls: list[Path] = []

    def loader(path: Path) -> ScoringModel:
        calls.append(path)
        return load_model(path)

    holder = ModelHolder(Registry(root), ScorerMetrics(prom), loader=loader, warm_batch=4)
    assert holder.poll() is True and holder.version == first
    _point(root, renamed)
    assert [holder.poll() for _ in range(5)] == [False] * 5
    assert [p.name for p in calls] == [first, renamed]
    assert holder.version == first
    assert _failures(prom) == _only("version_mismatch")


# --- the shadow version ------------------------------------------------------------------------
SHADOW_INFO = "headline_scorer_shadow_model_info"


class MissingAwareLoader(CountingLoader):
    """A :class:`CountingLoader` that fails like the real loader on a missing directory."""

    def __call__(self, path: Path) -> ScoringModel:
        if not path.is_dir():
            self.calls.append(path.name)
            raise ModelLoadError(f"{path}: manifest not found")
        return super().__call__(path)


def _shadow(root: Path, text: str | None) -> None:
    if text is None:
        (root / SHADOW_FILE).unlink()
    else:
        atomic_write_text(root / SHADOW_FILE, text + "\n")


def _shadow_holder(
    root: Path, prom: CollectorRegistry, loader: CountingLoader, *, shadow: bool = True
) -> ModelHolder:
    return ModelHolder(
        Registry(root), ScorerMetrics(prom), loader=loader, shadow=shadow, shadow_metrics=ShadowMetrics(prom)
    )


def _shadow_info(prom: CollectorRegistry) -> dict[str, float]:
    return {s.labels["version"]: s.value for m in prom.collect() if m.name == SHADOW_INFO for s in m.samples}


def test_the_shadow_loads_beside_the_current_and_clearing_unloads_it(
    tmp_path: Path, prom: CollectorRegistry
) -> None:
    root = tmp_path / "registry"
    for name in (V1, V2, V3):
        _version(root, name)
    _point(root, V1)
    _shadow(root, V2)
    loader = CountingLoader()
    holder = _shadow_holder(root, prom, loader)
    assert holder.poll() is True
    assert holder.version == V1 and holder.shadow_version == V2
    assert _shadow_info(prom) == {V2: 1.0}
    assert [holder.poll() for _ in range(5)] == [False] * 5
    assert loader.calls == [V1, V2]  # loaded once each
    _shadow(root, V3)  # another shadow: swapped, the current untouched
    assert holder.poll() is False
    assert holder.version == V1 and holder.shadow_version == V3 and _shadow_info(prom) == {V3: 1.0}
    _shadow(root, None)  # cleared
    assert holder.poll() is False
    assert holder.shadow_model is None and holder.version == V1
    assert _shadow_info(prom) == {}
    # the shadow promoted: CURRENT names it and SHADOW is gone (what Registry.promote does)
    _shadow(root, V2)
    holder.poll()
    _point(root, V2)
    _shadow(root, None)
    assert holder.poll() is True
    assert holder.version == V2 and holder.shadow_model is None and _shadow_info(prom) == {}
    assert _failures(prom) == dict.fromkeys(RELOAD_FAILURE_REASONS, 0.0)


@pytest.mark.parametrize(
    ("manifest_says", "reason"),
    [("broken", "shadow_load_failed"), ("canary", "shadow_canary_failed"), (V1, "shadow_version_mismatch")],
)
def test_a_failing_shadow_is_settled_once_and_never_touches_the_current(
    tmp_path: Path,
    prom: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    manifest_says: str,
    reason: ReloadFailure,
) -> None:
    root = tmp_path / "registry"
    _version(root, V1)
    bad = _version(root, V2, manifest_says=manifest_says)
    _version(root, V3)
    _point(root, V1)
    _shadow(root, V2)
    loader = CountingLoader()
    holder = _shadow_holder(root, prom, loader)
    with caplog.at_level(logging.DEBUG, logger="stream.reload"):
        assert holder.poll() is True
        assert [holder.poll() for _ in range(20)] == [False] * 20
    assert holder.version == V1 and holder.shadow_model is None
    assert loader.calls == [V1, V2]  # one attempt for 21 polls
    assert _failures(prom) == _only(reason)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "shadow model" in errors[0] and "is not affected" in errors[0]
    _point(root, V3)  # the current still reloads while the shadow is rejected
    assert holder.poll() is True and holder.version == V3 and holder.shadow_model is None
    assert loader.calls == [V1, V2, V3]
    (bad / "manifest.json").write_text(V2 + "    ")  # repaired in place
    assert holder.poll() is False
    assert holder.shadow_version == V2 and holder.version == V3
    assert _failures(prom) == _only(reason)


def test_a_shadow_naming_a_missing_version_is_counted_once(tmp_path: Path, prom: CollectorRegistry) -> None:
    root = tmp_path / "registry"
    _version(root, V1)
    _point(root, V1)
    _shadow(root, V2)  # never published (or pruned by hand)
    loader = MissingAwareLoader()
    holder = _shadow_holder(root, prom, loader)
    assert [holder.poll() for _ in range(5)] == [True, False, False, False, False]
    assert holder.version == V1 and holder.shadow_model is None
    assert loader.calls == [V1, V2]
    assert _failures(prom) == _only("shadow_load_failed")
    _version(root, V2)  # published after all: its directory appears
    holder.poll()
    assert holder.shadow_version == V2


def test_a_garbage_shadow_is_counted_once_and_the_current_keeps_reloading(
    tmp_path: Path, prom: CollectorRegistry
) -> None:
    root = tmp_path / "registry"
    for name in (V1, V2, V3):
        _version(root, name)
    _point(root, V1)
    _shadow(root, V3)
    loader = CountingLoader()
    holder = _shadow_holder(root, prom, loader)
    holder.poll()
    assert holder.shadow_version == V3
    _shadow(root, "../../etc/passwd")
    assert [holder.poll() for _ in range(10)] == [False] * 10
    assert holder.shadow_version == V3  # an unreadable SHADOW changes nothing
    assert _failures(prom) == _only("shadow_bad_pointer")
    _point(root, V2)
    assert holder.poll() is True and holder.version == V2
    assert _failures(prom) == _only("shadow_bad_pointer")  # still the same failure: not counted again
    _shadow(root, V1)
    holder.poll()
    assert holder.shadow_version == V1 and holder.version == V2
    assert loader.calls == [V1, V3, V2, V1]


def test_a_shadow_naming_the_current_version_is_no_shadow(tmp_path: Path, prom: CollectorRegistry) -> None:
    root = tmp_path / "registry"
    _version(root, V1)
    _point(root, V1)
    _shadow(root, V1)
    loader = CountingLoader()
    holder = _shadow_holder(root, prom, loader)
    assert holder.poll() is True and holder.poll() is False
    assert holder.shadow_model is None and loader.calls == [V1]
    assert _failures(prom) == dict.fromkeys(RELOAD_FAILURE_REASONS, 0.0)


def test_without_shadow_enabled_the_shadow_is_never_read(tmp_path: Path, prom: CollectorRegistry) -> None:
    root = tmp_path / "registry"
    _version(root, V1)
    _version(root, V2)
    _point(root, V1)
    _shadow(root, V2)
    loader = CountingLoader()
    holder = _shadow_holder(root, prom, loader, shadow=False)
    assert holder.poll() is True and holder.poll() is False
    assert holder.shadow_model is None and loader.calls == [V1] and _shadow_info(prom) == {}


def test_an_unexpected_error_loading_the_shadow_stays_with_the_shadow(
    tmp_path: Path, prom: CollectorRegistry
) -> None:
    root = tmp_path / "registry"
    _version(root, V1)
    _version(root, V2, manifest_says="crash")
    _point(root, V1)
    _shadow(root, V2)

    class CrashingLoader(CountingLoader):
        def __call__(self, path: Path) -> ScoringModel:
            if (path / "manifest.json").read_text() == "crash":
                self.calls.append(path.name)
                raise RuntimeError("onnxruntime fell over")
            return super().__call__(path)

    loader = CrashingLoader()
    holder = _shadow_holder(root, prom, loader)
    assert [holder.poll() for _ in range(3)] == [True, False, False]  # poll() itself never raises
    assert holder.version == V1 and holder.shadow_model is None and loader.calls == [V1, V2]
    assert _failures(prom) == _only("shadow_load_failed")
    assert "onnxruntime fell over" in holder.rejected[V2]
