"""The project's trainer as a ``FitPredict``: ``training.train.train`` + ``TrainedModel.predict``."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import FitPredict, FloatArray
from training.data import HeadlineData
from training.predict import TrainedModel
from training.train import TrainConfig, TrainResult, train

logging.getLogger("training").setLevel(logging.WARNING)


def project_fit(
    config: TrainConfig | None = None,
    log: list[dict[str, object]] | None = None,
) -> FitPredict:
    """Train with ``config`` on the training rows (the trainer splits off its own validation rows),
    score the test rows with the best checkpoint; append the run's epochs to ``log``.

    The quality score is the quality head's raw probability; the product's calibrated
    ``quality_prob`` is a Platt map of it with a slope >= 0, the same order unless the slope is 0."""

    def fit(train_rows: HeadlineData, test_rows: HeadlineData) -> tuple[FloatArray, FloatArray]:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            result: TrainResult = train(train_rows, Path(tmp), config or TrainConfig(), progress=False)
            model = TrainedModel.from_checkpoint(result.best_checkpoint)
            pred = model.predict(test_rows.titles, test_rows.categories)
            if log is not None:
                log.append(
                    {
                        "best_epoch": result.best_epoch,
                        "epochs_run": len(result.history),
                        "train_loss": [round(h.train_loss, 5) for h in result.history],
                        "val_loss": [round(h.val_loss, 5) for h in result.history],
                    }
                )
        return np.asarray(pred.ctr_normalized, dtype=np.float64), np.asarray(
            pred.quality_prob_raw, dtype=np.float64
        )

    return fit
