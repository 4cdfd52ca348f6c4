"""The training stages: what prepare restores, what fit keeps as best, and models kept in memory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from artifact.registry import Registry
from export.retrain import retrain_once
from tests.export_support import sample_checkpoint, sample_data
from training import checkpoint as checkpoint_module
from training.checkpoint import LAST_CHECKPOINT, Checkpoint, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.predict import TrainedModel
from training.run import run_training
from training.stages.prepare import prepare
from training.train import train

pytestmark = pytest.mark.slow

FAST = TrainConfig(epochs=2, patience=50, learning_rate=2e-3)


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every checkpoint file read from now on (all reads go through ``load_checkpoint``)."""
    reads: list[Path] = []
    original: Callable[[Path], dict[str, Any]] = checkpoint_module.load_checkpoint

    def counting(path: Path) -> dict[str, Any]:
        reads.append(path)
        return original(path)

    monkeypatch.setattr(checkpoint_module, "load_checkpoint", counting)
    return reads


def test_prepare_restores_the_checkpoints_setup_and_split() -> None:
    source = sample_checkpoint()
    saved = Checkpoint.load(source)
    prepared = prepare(sample_data(), TrainConfig(epochs=3, learning_rate=0.5), source)
    assert prepared.resumed is not None and prepared.resumed.path == source
    # Its configuration but for the epochs (the seed too: none was given), its fitted state.
    assert prepared.config == saved.setup.train_config.model_copy(update={"epochs": 3})
    setup = prepared.setup
    assert (setup.feature_state, setup.scaling, setup.label_rule, setup.model_config) == (
        saved.setup.feature_state, saved.setup.scaling, saved.setup.label_rule, saved.setup.model_config,
    )  # fmt: skip
    # The same data: the rows it validated on are validated on again.
    assert saved.val_ids is not None
    assert {str(i) for i in sample_data().ids[prepared.val_index]} == set(saved.val_ids)
    assert prepared.pos_weight > 0
    assert prepared.train.ctr.shape[0] + prepared.val.ctr.shape[0] == len(sample_data())


def test_train_hands_back_the_model_it_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _count_reads(monkeypatch)
    result = train(sample_data(), tmp_path, FAST, progress=False)
    assert reads == []  # nothing it wrote was read back
    disk = TrainedModel.from_checkpoint(result.best_checkpoint)
    memory = result.model.checkpoint.to_payload()
    on_disk = disk.checkpoint.to_payload()
    assert list(memory) == list(on_disk)
    for key, value in memory.items():
        if key == "model_state":
            assert all(torch.equal(value[k], on_disk[key][k]) for k in value)
        elif key not in ("optimizer_state", "scheduler_state"):
            assert value == on_disk[key], key
    titles, categories = sample_data().titles[:200], sample_data().categories
    a = result.model.predict(titles, None if categories is None else categories[:200])
    b = disk.predict(titles, None if categories is None else categories[:200])
    np.testing.assert_array_equal(a.ctr_normalized, b.ctr_normalized)
    np.testing.assert_array_equal(a.quality_prob, b.quality_prob)
    assert result.model.quality_threshold == disk.quality_threshold == result.quality_threshold


def test_run_and_retrain_read_only_the_checkpoint_they_continue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = _count_reads(monkeypatch)
    run_training(sample_data(), tmp_path / "run", FAST, progress=False)
    assert reads == []
    source = tmp_path / "run" / LAST_CHECKPOINT
    run_training(sample_data(), tmp_path / "resumed", TrainConfig(epochs=1), resume=source, progress=False)
    assert reads == [source]
    reads.clear()
    report = retrain_once(sample_data(), Registry(tmp_path / "registry"), config=FAST)
    assert report.decision == "publish" and reads == []  # trained, gated and exported from memory


def _never_improved(source: Path) -> None:
    """Rewrite ``source`` so that no later epoch beats its best validation loss."""
    payload = load_checkpoint(source)
    payload.pop("format_version")
    payload["best_val_loss"] = -1.0
    save_checkpoint(source, payload)


def test_a_resumed_run_that_never_improves_keeps_the_restored_weights(tmp_path: Path) -> None:
    first = train(sample_data(), tmp_path / "first", FAST, progress=False)
    source = tmp_path / "first" / LAST_CHECKPOINT
    _never_improved(source)
    restored = Checkpoint.load(source)
    resumed = train(sample_data(), tmp_path / "resumed", TrainConfig(epochs=2), resume=source, progress=False)
    assert resumed.best_epoch == resumed.start_epoch == 2 and len(resumed.history) == 4
    best = Checkpoint.load(resumed.best_checkpoint)
    assert best.progress.epoch == 2 and best.calibration is not None  # the restored one, calibrated
    for key, tensor in restored.progress.model_state.items():
        assert torch.equal(best.progress.model_state[key], tensor), key
    # Continued in its own directory, the run's best.pt (not the last weights) stays the best.
    kept = Checkpoint.load(first.best_checkpoint)
    again = train(sample_data(), tmp_path / "first", TrainConfig(epochs=1), resume=source, progress=False)
    assert again.best_epoch == 2
    best = Checkpoint.load(again.best_checkpoint)
    for key, tensor in kept.progress.model_state.items():
        assert torch.equal(best.progress.model_state[key], tensor), key
    assert best.val_ids == kept.val_ids
