"""A trained model restored from a checkpoint, and batch prediction with it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from artifact.errors import CheckpointError
from artifact.features import FeatureBatch, FeatureState
from artifact.featurizer import Featurizer
from artifact.scaling import TargetScaling
from training.calibration import PlattCalibrator
from training.checkpoint import load_checkpoint
from training.model import DualHeadModel, ModelConfig
from training.target import LabelRule

BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"


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


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file, or the best checkpoint inside a training output directory."""
    return path / BEST_CHECKPOINT if path.is_dir() else path


@dataclass
class TrainedModel:
    """The model and everything fitted with it (features, scaling, label rule, calibration)."""

    model: DualHeadModel
    featurizer: Featurizer
    scaling: TargetScaling | None
    label_rule: LabelRule
    calibration: PlattCalibrator
    quality_threshold: float
    checkpoint: dict[str, Any]

    @classmethod
    def from_checkpoint(cls, path: Path) -> TrainedModel:
        path = resolve_checkpoint(path)
        payload = load_checkpoint(path)
        try:
            model = DualHeadModel(ModelConfig.model_validate_json(payload["model_config"]))
            model.load_state_dict(payload["model_state"])
            state = FeatureState.model_validate_json(payload["feature_state"])
            scaling_raw = json.loads(payload["target_scaling"])
            calibration_raw = json.loads(payload.get("calibration") or "null")
            return cls(
                model=model.eval(),
                featurizer=Featurizer(state),
                scaling=None if scaling_raw is None else TargetScaling.from_dict(scaling_raw),
                label_rule=LabelRule.model_validate_json(payload["label_rule"]),
                calibration=(
                    PlattCalibrator.identity()
                    if calibration_raw is None
                    else PlattCalibrator.from_dict(calibration_raw)
                ),
                quality_threshold=float(payload.get("quality_threshold", 0.5)),
                checkpoint=payload,
            )
        except (KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: incomplete or inconsistent checkpoint ({exc})") from exc

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
