"""A trained model restored from a checkpoint, and batch prediction with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from artifact.errors import CheckpointError
from artifact.features import FeatureBatch
from artifact.featurizer import Featurizer
from artifact.scaling import TargetScaling
from training.calibration import PlattCalibrator
from training.checkpoint import BEST_CHECKPOINT, LAST_CHECKPOINT, Checkpoint, resolve_checkpoint
from training.model import DualHeadModel
from training.target import LabelRule


@dataclass(frozen=True)
class Predictions:
    ctr_normalized: NDArray[np.float64]
    ctr: NDArray[np.float64] | None  # raw CTR units; None when the training data had no raw CTR
    quality_prob_raw: NDArray[np.float64]  # before calibration
    quality_prob: NDArray[np.float64]  # calibrated
    quality_label: NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.ctr_normalized.shape[0])


def batch_tensors(batch: FeatureBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(batch.token_ids),
        torch.from_numpy(batch.token_weights),
        torch.from_numpy(batch.category_ids),
        torch.from_numpy(batch.numeric),
    )


@dataclass
class TrainedModel:
    """The model and everything fitted with it (features, scaling, label rule, calibration)."""

    model: DualHeadModel
    featurizer: Featurizer
    scaling: TargetScaling | None
    label_rule: LabelRule
    calibration: PlattCalibrator
    quality_threshold: float
    checkpoint: Checkpoint

    @classmethod
    def from_checkpoint(cls, path: Path) -> TrainedModel:
        """The model of the checkpoint at ``path`` (a file, or a training output directory's best one)."""
        path = resolve_checkpoint(path)
        return cls.from_state(Checkpoint.load(path), path)

    @classmethod
    def from_state(cls, checkpoint: Checkpoint, source: Path | str = "checkpoint") -> TrainedModel:
        """The model of a checkpoint already in memory (no reload from disk)."""
        setup, calibration = checkpoint.setup, checkpoint.calibration
        model = DualHeadModel(setup.model_config)
        try:
            model.load_state_dict(checkpoint.progress.model_state)
        except RuntimeError as exc:
            raise CheckpointError(f"{source}: incomplete or inconsistent checkpoint ({exc})") from exc
        return cls(
            model=model.eval(),
            featurizer=Featurizer(setup.feature_state),
            scaling=setup.scaling,
            label_rule=setup.label_rule,
            calibration=PlattCalibrator.identity() if calibration is None else calibration.calibrator,
            quality_threshold=0.5 if calibration is None else calibration.quality_threshold,
            checkpoint=checkpoint,
        )

    @torch.no_grad()
    def predict(
        self, titles: list[str], categories: list[str | None] | None = None, batch_size: int = 1024
    ) -> Predictions:
        self.model.eval()
        ctr_parts: list[NDArray[np.float64]] = []
        logit_parts: list[NDArray[np.float64]] = []
        for start in range(0, len(titles), batch_size):
            cats = None if categories is None else categories[start : start + batch_size]
            batch = self.featurizer.transform(titles[start : start + batch_size], cats)
            ctr, logit = self.model(*batch_tensors(batch))
            ctr_parts.append(ctr.double().numpy())
            logit_parts.append(logit.double().numpy())
        ctr_norm = np.concatenate(ctr_parts) if ctr_parts else np.zeros(0)
        logits = np.concatenate(logit_parts) if logit_parts else np.zeros(0)
        raw_prob = 1.0 / (1.0 + np.exp(-logits))
        prob = self.calibration.apply(raw_prob) if len(raw_prob) else raw_prob
        return Predictions(
            ctr_normalized=ctr_norm,
            ctr=None if self.scaling is None else self.scaling.to_raw(ctr_norm),
            quality_prob_raw=raw_prob,
            quality_prob=prob,
            quality_label=prob >= self.quality_threshold,
        )


# The file names live with the checkpoint; importable from here as before.
__all__ = [
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "Predictions",
    "TrainedModel",
    "batch_tensors",
    "resolve_checkpoint",
]
