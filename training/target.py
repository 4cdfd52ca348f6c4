"""Training targets: the normalized CTR, its inverse scaling, and the quality label."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from artifact.errors import CsvValidationError
from artifact.scaling import TargetScaling
from training.data import HeadlineData

logger = logging.getLogger(__name__)


class LabelRule(BaseModel):
    """How the quality label is defined.

    ``median``: normalized CTR above ``threshold`` (the training median: balanced).
    ``group_mean``: CTR above the mean CTR of the row's group (A/B test).
    """

    model_config = ConfigDict(frozen=True)

    rule: Literal["median", "group_mean"]
    threshold: float | None = None


@dataclass(frozen=True)
class Targets:
    normalized: NDArray[np.float64]
    raw: NDArray[np.float64] | None
    labels: NDArray[np.float64]


def fit_scaling(data: HeadlineData, train_index: NDArray[np.int64]) -> TargetScaling | None:
    """The CTR scaling: over the whole file when the file gives the normalized column (to reproduce it),
    else over the training rows only. ``None`` when the file has no raw CTR."""
    if data.raw_ctr is None:
        return None
    if data.ctr_normalized_given is not None:
        scaling = TargetScaling.fit(data.raw_ctr)
        derived = scaling.normalize(data.raw_ctr)
        gap = float(np.max(np.abs(derived - data.ctr_normalized_given)))
        if gap > 1e-6:
            logger.warning(
                "the normalized CTR column differs from min-max(log1p(CTR)) by up to %.3g; "
                "the given column is used as the target",
                gap,
            )
        return scaling
    return TargetScaling.fit(data.raw_ctr[train_index])


def fit_label_rule(
    data: HeadlineData, normalized: NDArray[np.float64], train_index: NDArray[np.int64]
) -> LabelRule:
    if data.groups is not None:
        return LabelRule(rule="group_mean")
    return LabelRule(rule="median", threshold=float(np.median(normalized[train_index])))


def build_targets(data: HeadlineData, scaling: TargetScaling | None, rule: LabelRule) -> Targets:
    """Targets for every row of ``data`` with a fitted scaling and label rule."""
    if data.ctr_normalized_given is not None:
        normalized = data.ctr_normalized_given
    elif data.raw_ctr is not None and scaling is not None:
        normalized = scaling.normalize(data.raw_ctr)
    else:
        raise CsvValidationError(f"{data.summary.file}: no target column: cannot build training targets")
    if rule.rule == "group_mean":
        if data.groups is None:
            raise CsvValidationError(
                f"{data.summary.file}: the model's quality label is defined within groups, "
                "but the mapping names no group column"
            )
        ctr = data.raw_ctr if data.raw_ctr is not None else normalized
        _, codes = np.unique(data.groups, return_inverse=True)
        means = np.bincount(codes, weights=ctr) / np.bincount(codes)
        labels = (ctr > means[codes]).astype(np.float64)
    else:
        assert rule.threshold is not None
        labels = (normalized > rule.threshold).astype(np.float64)
    return Targets(normalized=normalized, raw=data.raw_ctr, labels=labels)
