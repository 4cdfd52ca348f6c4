"""The project's trainer as a ``FitPredict``: ``training.train.train`` + ``TrainedModel.predict``."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from artifact.features import FeatureConfig
from benchmarks.common import FitPredict, FloatArray
from training.data import HeadlineData
from training.predict import TrainedModel
from training.train import TrainConfig, TrainResult, train

logging.getLogger("training").setLevel(logging.WARNING)


def recommended_config() -> TrainConfig:
    """The TrainConfig this benchmark recommends as the new defaults (see benchmarks/README.md)."""
    return TrainConfig(
        learning_rate=5e-4,
        quality_weight=0.2,
        dropout=0.3,
        features=FeatureConfig(char_ngrams=(2, 4), word_ngrams=(1, 1)),
    )


def project_fit(
    config: TrainConfig | None = None,
    log: list[dict[str, object]] | None = None,
    calibrated: bool = False,
    keep: dict[str, TrainedModel] | None = None,
) -> FitPredict:
    """Train with ``config`` on the training rows (the trainer splits off its own validation rows),
    score the test rows with the best checkpoint; append the run's epochs to ``log``.

    The quality score is the raw head probability, or with ``calibrated`` the product's
    calibrated ``quality_prob`` (Platt with a slope >= 0: the same order unless the slope is 0).
    ``keep["last"]`` receives the last trained model (to time its inference)."""

    def fit(train_rows: HeadlineData, test_rows: HeadlineData) -> tuple[FloatArray, FloatArray]:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            result: TrainResult = train(train_rows, Path(tmp), config or TrainConfig(), progress=False)
            model = TrainedModel.from_checkpoint(result.best_checkpoint)
            pred = model.predict(test_rows.titles, test_rows.categories)
            if keep is not None:
                keep["last"] = model
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
