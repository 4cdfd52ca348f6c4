"""The train command as a library function: validate, train, evaluate, write every artifact."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from artifact.errors import CsvValidationError, HeadlineScorerError
from training.baselines import BaselineInputs, BaselineMetrics, baseline_metrics, fit_baselines
from training.calibration import cross_fitted_probabilities
from training.data import HeadlineData
from training.evaluate import (
    Evaluation,
    cluster_codes,
    evaluate_predictions,
    inference_notice,
    write_predictions,
)
from training.predict import Predictions, TrainedModel
from training.report import (
    CURVES_PNG,
    RELIABILITY_PNG,
    REPORT_MD,
    SCATTER_PNG,
    plot_curves,
    plot_reliability,
    plot_scatter,
    write_report,
)
from training.train import EpochRecord, TrainConfig, TrainResult, train

logger = logging.getLogger(__name__)

METRICS_JSON = "metrics.json"
PREDICTIONS_CSV = "predictions.csv"


class OutputPathError(HeadlineScorerError):
    """The output directory cannot be used (for example, it is an existing file)."""


def ensure_output_dir(out_dir: Path) -> None:
    """Refuse an output path that exists and is not a directory, before any work is done."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathError(f"{out_dir}: exists and is not a directory; --out needs a directory")
    for parent in out_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{out_dir}: {parent} is a file, not a directory")
            break


def ensure_output_file(path: Path) -> None:
    """Refuse an output file path that is a directory or sits under a file."""
    if path.is_dir():
        raise OutputPathError(f"{path}: is a directory; expected a file path to write")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{path}: {parent} is a file, not a directory")
            break


@dataclass(frozen=True)
class RunOutcome:
    out_dir: Path
    evaluation: Evaluation
    result: TrainResult | None  # None in inference-only mode
    baselines: list[BaselineMetrics] = field(default_factory=list)


def _label_description(model: TrainedModel) -> str:
    rule = model.label_rule
    if rule.rule == "group_mean":
        return "CTR above the mean CTR of its group"
    return f"normalized CTR above the training median ({rule.threshold:.4f})"


def ensure_trainable(data: HeadlineData, resume: Path | None) -> None:
    """Refuse data that can be neither trained on nor scored (no target and no model)."""
    if not data.has_target and resume is None:
        hints = "".join(f"; {h}" for h in data.summary.target_hints)
        raise CsvValidationError(
            f"{data.summary.file}: no target column, so nothing to train on{hints}; "
            "pass --resume CHECKPOINT to score it in inference-only mode, or use `predict`"
        )


def run_training(
    data: HeadlineData,
    out_dir: Path,
    config: TrainConfig | None = None,
    resume: Path | None = None,
    progress: bool | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> RunOutcome:
    """Train (or, for data without a target and a ``resume`` model, only predict) and write artifacts.

    ``on_epoch`` is called after every epoch (progress display).
    """
    ensure_trainable(data, resume)
    ensure_output_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not data.has_target:
        assert resume is not None
        notice = inference_notice(data)
        logger.warning("%s", notice)
        model = TrainedModel.from_checkpoint(resume)
        predictions = model.predict(data.titles, data.categories)
        write_predictions(out_dir / PREDICTIONS_CSV, data, predictions)
        evaluation = Evaluation(mode="inference", rows=len(data), notice=notice)
        (out_dir / METRICS_JSON).write_text(evaluation.model_dump_json(indent=2), encoding="utf-8")
        return RunOutcome(out_dir=out_dir, evaluation=evaluation, result=None)

    result = train(data, out_dir, config, resume=resume, progress=progress, on_epoch=on_epoch)
    model = TrainedModel.from_checkpoint(result.best_checkpoint)
    val = data.subset(result.val_index)
    predictions = model.predict(val.titles, val.categories)
    baseline = float(np.mean(result.targets.normalized[result.train_index]))
    evaluation = evaluate_predictions(model, val, predictions, baseline_mean=baseline)
    baselines = _baselines(data, result)
    write_predictions(out_dir / PREDICTIONS_CSV, val, predictions)
    plot_curves(
        result.history, out_dir / CURVES_PNG, resumed_at=result.start_epoch, best_epoch=result.best_epoch
    )
    plot_scatter(
        result.targets.normalized[result.val_index], predictions.ctr_normalized, out_dir / SCATTER_PNG
    )
    _plot_reliability(result, evaluation, predictions, out_dir / RELIABILITY_PNG)
    cal = result.calibration
    held_out = (
        f"{cal.ece_after_heldout:.4f} when each half of the validation rows is calibrated by a fit on the "
        "other half (cross-fitted)"
        if cal.ece_after_heldout is not None
        else "no held-out figure: too few rows of one class to cross-fit"
    )
    notes = [
        *result.notes,
        *data.summary.notes,
        "Model inputs are the title and the category only; impressions, clicks and columns derived "
        "from them are never inputs.",
        "Text and category state were fitted on the training rows only and are stored in the checkpoint.",
        f"Quality probability calibrated with Platt scaling on the validation rows: ECE "
        f"{cal.ece_before:.4f} -> {cal.ece_after:.4f} on the rows it was fitted on (optimistic), "
        f"{held_out}.",
        "The quality threshold maximises Youden's J (true positive rate - false positive rate) on the "
        "validation rows, with the predicted positive share kept away from 0 and 1, so the label stays "
        "informative; F1 rewards labelling every row positive when the classes separate poorly.",
    ]
    write_report(
        out_dir / REPORT_MD,
        summary=data.summary,
        history=result.history,
        best_epoch=result.best_epoch,
        start_epoch=result.start_epoch,
        stopped_early=result.stopped_early,
        evaluation=evaluation,
        train_rows=len(result.train_index),
        val_rows=len(result.val_index),
        label_rule=_label_description(model),
        notes=notes,
        baselines=baselines,
        calibration=cal,
    )
    metrics = {
        "validation": evaluation.model_dump(),
        "baselines": [b.model_dump() for b in baselines],
        "best_epoch": result.best_epoch,
        "epochs": [r.as_dict() for r in result.history],
        "calibration": cal.to_dict(),
        "data": data.summary.model_dump(),
    }
    (out_dir / METRICS_JSON).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return RunOutcome(out_dir=out_dir, evaluation=evaluation, result=result, baselines=baselines)


def _baselines(data: HeadlineData, result: TrainResult) -> list[BaselineMetrics]:
    """The simple baselines, fitted on the run's training rows and scored on its validation rows."""
    targets = result.targets
    tr, va = result.train_index, result.val_index
    val = data.subset(va)
    inputs = BaselineInputs(
        train_titles=[data.titles[i] for i in tr],
        train_ctr=targets.normalized[tr],
        train_labels=targets.labels[tr],
        val_titles=val.titles,
        val_ctr=targets.normalized[va],
        val_labels=targets.labels[va],
        val_groups=val.groups,
    )
    return baseline_metrics(
        inputs,
        fit_baselines(inputs),
        clusters=cluster_codes(val),
        clicks=val.clicks,
        impressions=val.impressions,
        observed_ctr=None if targets.raw is None else targets.raw[va],
    )


def _plot_reliability(
    result: TrainResult, evaluation: Evaluation, predictions: Predictions, path: Path
) -> None:
    labels = result.targets.labels[result.val_index]
    curves = [
        ("uncalibrated", predictions.quality_prob_raw, evaluation.quality_ece_uncalibrated),
        ("calibrated, fitted on these rows", predictions.quality_prob, evaluation.quality_ece),
    ]
    held_out = cross_fitted_probabilities(labels, predictions.quality_prob_raw)
    if held_out is not None:
        curves.append(("calibrated, cross-fitted", held_out, result.calibration.ece_after_heldout))
    plot_reliability(labels, curves, path)
