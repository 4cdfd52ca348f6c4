"""A training run: seeded, validated, early-stopped, resumable.

``train`` runs the stages of :mod:`training.stages` in order: ``prepare`` (the split,
and the feature state, target scaling and label rule fitted or, with ``resume``,
restored), ``fit`` (the training loop, keeping the best checkpoint by validation
loss), ``calibrate`` (the quality probability calibrated and its threshold chosen on
the validation rows), then writes the final ``best.pt`` and returns the calibrated
model in memory along with the run's figures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from artifact.errors import CsvValidationError
from training.calibration import CalibrationReport
from training.config import DEFAULT_FEATURES, TrainConfig
from training.data import HeadlineData
from training.export_rows import DRIFT_SAMPLE_ROWS
from training.history import EpochRecord
from training.predict import BEST_CHECKPOINT, TrainedModel
from training.stages.calibrate import calibrate_best
from training.stages.fit import fit
from training.stages.prepare import prepare, seed_everything
from training.target import Targets

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced; the report and CLI are built from it."""

    out_dir: Path
    best_checkpoint: Path
    history: list[EpochRecord]
    best_epoch: int
    start_epoch: int
    resumed_from: Path | None
    stopped_early: bool
    train_index: NDArray[np.int64]
    val_index: NDArray[np.int64]
    targets: Targets
    calibration: CalibrationReport
    quality_threshold: float
    model: TrainedModel  # the calibrated best model, as written to ``best_checkpoint``
    notes: list[str] = field(default_factory=list)


def train(
    data: HeadlineData,
    out_dir: Path,
    config: TrainConfig | None = None,
    resume: Path | None = None,
    progress: bool | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    drift_sample_rows: int = DRIFT_SAMPLE_ROWS,
) -> TrainResult:
    """Train on ``data`` and write checkpoints into ``out_dir``.

    With ``resume`` the weights, optimizer, scheduler, epoch counter, feature
    state, target scaling and label rule come from that checkpoint; ``config``
    then only sets how many more epochs to run and the seed.

    The final best checkpoint also stores the rows export needs (the validation
    rows and up to ``drift_sample_rows`` training rows, see :mod:`training.export_rows`),
    so it can be exported without the CSV.
    """
    if not data.has_target:
        hints = "".join(f"; {h}" for h in data.summary.target_hints)
        raise CsvValidationError(
            f"{data.summary.file}: no target column (inference-only data): nothing to train on{hints}; "
            "use `predict` with a trained model"
        )
    if drift_sample_rows < 1:
        raise ValueError(f"expected drift_sample_rows >= 1, got {drift_sample_rows}")
    prepared = prepare(data, config or TrainConfig(), resume)
    fitted = fit(prepared, out_dir, progress=progress, on_epoch=on_epoch)
    calibrated = calibrate_best(fitted.best, prepared, drift_sample_rows)
    best_path = out_dir / BEST_CHECKPOINT
    calibrated.checkpoint.save(best_path)
    threshold = calibrated.model.quality_threshold
    report = calibrated.report
    logger.info(
        "best epoch %d (validation loss %.5f); quality calibrated (ECE %.4f -> %.4f), threshold %.3f",
        fitted.best_epoch, fitted.best_val_loss, report.ece_before, report.ece_after, threshold,
    )  # fmt: skip
    return TrainResult(
        out_dir=out_dir,
        best_checkpoint=best_path,
        history=fitted.history,
        best_epoch=fitted.best_epoch,
        start_epoch=fitted.start_epoch,
        resumed_from=resume,
        stopped_early=fitted.stopped_early,
        train_index=prepared.train_index,
        val_index=prepared.val_index,
        targets=prepared.targets,
        calibration=report,
        quality_threshold=threshold,
        model=calibrated.model,
        notes=[*prepared.notes, *fitted.notes],
    )


# TrainConfig, DEFAULT_FEATURES (training.config), EpochRecord (training.history) and seed_everything
# (training.stages.prepare) are importable from here as before.
__all__ = [
    "DEFAULT_FEATURES",
    "EpochRecord",
    "TrainConfig",
    "TrainResult",
    "seed_everything",
    "train",
]
