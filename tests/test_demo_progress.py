"""The demo is not silent while it trains: one line per epoch (headline_scorer/demo.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from headline_scorer.demo import EpochProgress
from training.data import load_dataset
from training.mapping import SEED
from training.run import run_training
from training.train import EpochRecord, TrainConfig


@pytest.mark.slow
def test_epoch_progress_prints_each_epoch_of_a_real_run(tmp_path: Path, sample_dir: Path) -> None:
    console = Console(record=True, width=200)
    progress = EpochProgress(console, total=2)
    seen: list[EpochRecord] = []

    def on_epoch(record: EpochRecord) -> None:
        seen.append(record)
        progress(record)

    data = load_dataset(sample_dir / "train.csv", SEED)
    run_training(data, tmp_path / "run", TrainConfig(epochs=2), progress=False, on_epoch=on_epoch)
    lines = console.export_text().splitlines()
    assert [r.epoch for r in seen] == [1, 2]
    assert len(lines) == 2
    for line, record in zip(lines, seen, strict=True):
        assert line.startswith(f"  epoch {record.epoch}/2: validation loss {record.val_loss:.4f}, ")
        assert f"MAE {record.val_mae:.4f}" in line
