"""training/report.py: the epoch table and curves, including histories resumed from older checkpoints."""

from __future__ import annotations

from pathlib import Path

from training.report import epoch_table, plot_curves
from training.train import EpochRecord


def _record(epoch: int, *, with_train_metrics: bool) -> EpochRecord:
    extra = (
        {"train_accuracy": 0.6 + epoch / 100, "train_mae": 0.1 - epoch / 1000} if with_train_metrics else {}
    )
    return EpochRecord(
        epoch=epoch,
        train_loss=0.5 - epoch / 100,
        val_loss=0.55 - epoch / 100,
        val_accuracy=0.7,
        val_mae=0.09,
        learning_rate=1e-3,
        **extra,
    )


def test_epoch_table_shows_train_and_validation_metrics_and_gaps_for_old_epochs() -> None:
    # Epochs 1-2 come from a checkpoint written before train accuracy and MAE were recorded.
    history = [_record(1, with_train_metrics=False), _record(2, with_train_metrics=False)]
    history += [_record(3, with_train_metrics=True)]
    lines = epoch_table(history, best_epoch=3).splitlines()
    assert lines[0].split("|")[1:-1] == [
        " epoch ",
        " train loss ",
        " val loss ",
        " train accuracy ",
        " val accuracy ",
        " train MAE ",
        " val MAE ",
        " learning rate ",
    ]
    assert lines[2] == "| 1 | 0.49000 | 0.54000 | n/a | 0.700 | n/a | 0.0900 | 0.001 |"
    assert lines[4] == "| 3 **best** | 0.47000 | 0.52000 | 0.630 | 0.700 | 0.0970 | 0.0900 | 0.001 |"


def test_curves_render_a_history_with_gaps(tmp_path: Path) -> None:
    history = [_record(1, with_train_metrics=False), _record(2, with_train_metrics=True)]
    plot_curves(history, tmp_path / "curves.png", resumed_at=1)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_as_dict_round_trips_through_the_checkpoint_history() -> None:
    for record in (_record(1, with_train_metrics=False), _record(2, with_train_metrics=True)):
        assert EpochRecord(**record.as_dict()) == record  # type: ignore[arg-type]
