"""Training stage 3: calibrate the best model's quality probability and store what export needs.

Platt scaling is fitted on the validation rows and the quality threshold chosen
there (F1); the final checkpoint adds both, the validation ids and the stored rows
(the validation rows and a training-row sample, :mod:`training.export_rows`) to
the best checkpoint, so it can be exported without the CSV.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from training.calibration import CalibrationReport, calibrate
from training.checkpoint import Calibration, Checkpoint
from training.export_rows import build_export_rows
from training.metrics import choose_threshold
from training.predict import TrainedModel
from training.stages.fit import EVAL_BATCH
from training.stages.prepare import Prepared
from training.tensors import predict_logits


@dataclass(frozen=True)
class Calibrated:
    """The final checkpoint and its model, in memory."""

    model: TrainedModel  # model.checkpoint is the final checkpoint

    @property
    def checkpoint(self) -> Checkpoint:
        return self.model.checkpoint

    @property
    def report(self) -> CalibrationReport:
        calibration = self.checkpoint.calibration
        assert calibration is not None and calibration.report is not None
        return calibration.report


def calibrate_best(best: Checkpoint, prepared: Prepared, drift_sample_rows: int) -> Calibrated:
    """Calibrate ``best`` on the validation rows; the rows export needs join the checkpoint."""
    trained = TrainedModel.from_state(best)
    _, val_logits = predict_logits(trained.model, prepared.val, EVAL_BATCH)
    raw_probs = 1.0 / (1.0 + np.exp(-val_logits))
    val_labels = prepared.targets.labels[prepared.val_index]
    calibrator, report = calibrate(val_labels, raw_probs)
    threshold = float(choose_threshold(val_labels, calibrator.apply(raw_probs)))
    data, config = prepared.data, prepared.config
    rows = build_export_rows(
        data, prepared.train_index, prepared.val_index, cap=drift_sample_rows, seed=config.seed
    )
    final = dataclasses.replace(
        best,
        calibration=Calibration(calibrator, threshold, report),
        val_ids=tuple(str(i) for i in data.ids[prepared.val_index]),
    ).with_rows(rows)
    model = dataclasses.replace(
        trained, calibration=calibrator, quality_threshold=threshold, checkpoint=final
    )
    return Calibrated(model)


__all__ = ["Calibrated", "calibrate_best"]
