"""The figures of live model quality, as pure functions of a window's rows (no state, no Prometheus).

:class:`ModelTerms` is what a model's manifest says about its targets (scaling, label rule) and its
validation metrics; :func:`measure` computes every live figure of one window with the functions
``evaluate`` uses (:func:`artifact.measures.expected_calibration_error`,
:func:`artifact.pairwise.pairwise_accuracy`). :mod:`stream.quality` keeps the windows and exports
the figures.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from artifact.manifest import Manifest
from artifact.measures import FloatArray, expected_calibration_error
from artifact.pairwise import pairwise_accuracy
from artifact.scaling import TargetScaling

logger = logging.getLogger(__name__)

IntArray = NDArray[np.int64]
#: ``metric`` label of ``headline_scorer_model_reference`` -> the manifest's validation metric.
REFERENCE_METRICS: Final = {
    "ctr_mae_raw": "ctr_mae_raw",
    "ctr_mae_normalized": "ctr_mae_normalized",
    "calibration_error": "quality_ece",
    "quality_positive_share": "label_positive_rate",
    "pairwise_accuracy": "pairwise_accuracy",
}
_LABEL_RULE = re.compile(r"^(median|group_mean)(?: \(threshold (\S+)\))?$")


@dataclass(frozen=True, slots=True)
class LabelRule:
    """The realized quality label of a model: ``group_mean`` or ``median`` with its threshold."""

    rule: Literal["median", "group_mean"]
    threshold: float | None = None


def parse_label_rule(text: str) -> LabelRule | None:
    """The manifest's ``label_rule`` (``group_mean`` or ``median (threshold T)``); None if unknown."""
    match = _LABEL_RULE.match(text.strip())
    if match is None:
        return None
    if match.group(1) == "group_mean":
        return LabelRule("group_mean")
    try:
        threshold = float(match.group(2)) if match.group(2) is not None else math.nan
    except ValueError:
        return None
    return LabelRule("median", threshold) if math.isfinite(threshold) else None


@dataclass(frozen=True, slots=True)
class ModelTerms:
    """What live quality needs from a model's manifest."""

    scaling: TargetScaling
    label_rule: LabelRule | None
    reference: dict[str, float]

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ModelTerms:
        rule = parse_label_rule(manifest.label_rule)
        if rule is None:
            logger.warning(
                "model %s: unknown label rule %r: live calibration stays NaN",
                manifest.model_version,
                manifest.label_rule,
            )
        reference: dict[str, float] = {}
        for metric, key in REFERENCE_METRICS.items():
            value = manifest.validation_metrics.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                reference[metric] = float(value)
        scaling = manifest.target_scaling
        return cls(TargetScaling(scaling.log_min, scaling.log_max), rule, reference)


@dataclass(frozen=True, slots=True)
class WindowRows:
    """A window's rows column by column.

    ``groups``: a code per A/B group (equal code, same group), -1 for a row without a group;
    ``headline_keys``: a code per :func:`~artifact.pairwise.headline_key` of the title.
    """

    ctr: FloatArray
    ctr_normalized: FloatArray
    quality_prob: FloatArray
    impressions: FloatArray
    clicks: FloatArray
    scored_at: FloatArray
    groups: IntArray
    headline_keys: IntArray

    def __len__(self) -> int:
        return int(self.ctr.shape[0])


@dataclass(frozen=True, slots=True)
class QualitySnapshot:
    events: int
    ctr_mae_raw: float
    ctr_mae_normalized: float
    calibration_error: float
    positive_share: float
    mean_prob: float
    pairwise_accuracy: float
    pairs: int

    @classmethod
    def empty(cls) -> QualitySnapshot:
        """No rows: NaN everywhere, no events, no pairs."""
        nan = math.nan
        return cls(0, nan, nan, nan, nan, nan, nan, 0)


def realized_labels(
    rule: LabelRule, observed: FloatArray, normalized: FloatArray, groups: IntArray
) -> tuple[NDArray[np.bool_], FloatArray]:
    """``(has_label, label)`` per row: the model's label rule on the observed CTR of the window.

    ``group_mean`` as training's target builds it: CTR above the mean CTR of the group's rows.
    """
    if rule.rule == "median":
        assert rule.threshold is not None
        return np.ones(observed.size, dtype=np.bool_), (normalized > rule.threshold).astype(np.float64)
    has = groups >= 0
    labels = np.zeros(observed.size, dtype=np.float64)
    if np.any(has):
        ctr = observed[has]
        _, codes = np.unique(groups[has], return_inverse=True)
        codes = codes.reshape(-1)
        means = np.bincount(codes, weights=ctr) / np.bincount(codes)
        labels[has] = (ctr > means[codes]).astype(np.float64)
    return has, labels


def measure(rows: WindowRows, terms: ModelTerms | None) -> QualitySnapshot:
    """Every live quality figure of one window (NaN where there is nothing to compute)."""
    n = len(rows)
    nan = math.nan
    if n == 0:
        return QualitySnapshot.empty()
    observed = rows.clicks / rows.impressions
    mae_raw = float(np.mean(np.abs(observed - rows.ctr)))
    mae_normalized = calibration = positive = mean_prob = nan
    if terms is not None:
        normalized = terms.scaling.normalize(observed)
        mae_normalized = float(np.mean(np.abs(normalized - rows.ctr_normalized)))
        if terms.label_rule is not None:
            has, labels = realized_labels(terms.label_rule, observed, normalized, rows.groups)
            if np.any(has):
                probs = rows.quality_prob[has]
                calibration = expected_calibration_error(labels[has], probs)
                positive = float(np.mean(labels[has]))
                mean_prob = float(np.mean(probs))
    accuracy, pairs = nan, 0
    grouped = rows.groups >= 0
    if np.count_nonzero(grouped) >= 2:
        result = pairwise_accuracy(
            rows.groups[grouped],
            observed[grouped],
            rows.ctr_normalized[grouped],
            rows.clicks[grouped],
            rows.impressions[grouped],
            headline_keys=rows.headline_keys[grouped],
        )
        accuracy, pairs = result.accuracy, result.pairs
    return QualitySnapshot(n, mae_raw, mae_normalized, calibration, positive, mean_prob, accuracy, pairs)
