"""Tensors of the training and validation rows, and the no-gradient passes over them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from artifact.featurizer import Featurizer
from training.data import HeadlineData
from training.model import DualHeadModel, HybridLoss
from training.predict import batch_tensors
from training.target import Targets


@dataclass
class TrainTensors:
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
    ctr: torch.Tensor
    label: torch.Tensor

    def take(self, index: torch.Tensor) -> TrainTensors:
        ids, weights, cats, numeric = self.inputs
        # Trim the padded width to what this batch needs.
        width = max(int((weights[index] != 0).sum(dim=1).max()), 1) if index.numel() else 1
        return TrainTensors(
            inputs=(ids[index, :width], weights[index, :width], cats[index], numeric[index]),
            ctr=self.ctr[index],
            label=self.label[index],
        )


def build_tensors(
    featurizer: Featurizer, data: HeadlineData, targets: Targets, index: NDArray[np.int64]
) -> TrainTensors:
    sub = data.subset(index)
    batch = featurizer.transform(sub.titles, sub.categories)
    return TrainTensors(
        inputs=batch_tensors(batch),
        ctr=torch.from_numpy(targets.normalized[index].astype(np.float32)),
        label=torch.from_numpy(targets.labels[index].astype(np.float32)),
    )


@torch.no_grad()
def evaluate_loss(
    model: DualHeadModel, loss_fn: HybridLoss, data: TrainTensors, batch_size: int
) -> tuple[float, float, float, torch.Tensor]:
    """Validation loss, accuracy (probability >= 0.5), MAE on normalized CTR, and the CTR
    predictions of every row (for losses over the whole set, e.g. the ranking loss)."""
    model.eval()
    n = data.ctr.shape[0]
    total = correct = abs_err = 0.0
    ctrs = []
    for start in range(0, n, batch_size):
        part = data.take(torch.arange(start, min(start + batch_size, n)))
        ctr, logit = model(*part.inputs)
        loss, _, _ = loss_fn(ctr, logit, part.ctr, part.label)
        size = part.ctr.shape[0]
        total += float(loss) * size
        correct += float(((logit >= 0).float() == part.label).sum())
        abs_err += float((ctr - part.ctr).abs().sum())
        ctrs.append(ctr)
    return total / n, correct / n, abs_err / n, torch.cat(ctrs) if ctrs else torch.zeros(0)


@torch.no_grad()
def predict_logits(
    model: DualHeadModel, data: TrainTensors, batch_size: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    model.eval()
    ctrs, logits = [], []
    n = data.ctr.shape[0]
    for start in range(0, n, batch_size):
        part = data.take(torch.arange(start, min(start + batch_size, n)))
        ctr, logit = model(*part.inputs)
        ctrs.append(ctr.double().numpy())
        logits.append(logit.double().numpy())
    return np.concatenate(ctrs), np.concatenate(logits)


__all__ = ["TrainTensors", "build_tensors", "evaluate_loss", "predict_logits"]
