"""The train command as a library function: validate, train, evaluate, write every artifact."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artifact.errors import CsvValidationError
from training.data import HeadlineData
from training.evaluate import Evaluation, evaluate_predictions, inference_notice, write_predictions
from training.predict import TrainedModel
from training.report import CURVES_PNG, REPORT_MD, SCATTER_PNG, plot_curves, plot_scatter, write_report
from training.train import TrainConfig, TrainResult, train

logger = logging.getLogger(__name__)

METRICS_JSON = "metrics.json"
PREDICTIONS_CSV = "predictions.csv"


@dataclass(frozen=True)
class RunOutcome:
    out_dir: Path
    evaluation: Evaluation
    result: TrainResult | None  # None in inference-only mode


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
) -> RunOutcome:
    """Train (or, for data without a target and a ``resume`` model, only predict) and write artifacts."""
    ensure_trainable(data, resume)
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

    result = train(data, out_dir, config, resume=resume, progress=progress)
    model = TrainedModel.from_checkpoint(result.best_checkpoint)
    val = data.subset(result.val_index)
    predictions = model.predict(val.titles, val.categories)
    baseline = float(np.mean(result.targets.normalized[result.train_index]))
    evaluation = evaluate_predictions(model, val, predictions, baseline_mean=baseline)
    write_predictions(out_dir / PREDICTIONS_CSV, val, predictions)
    plot_curves(result.history, out_dir / CURVES_PNG, resumed_at=result.start_epoch)
    plot_scatter(
        result.targets.normalized[result.val_index], predictions.ctr_normalized, out_dir / SCATTER_PNG
    )
    notes = [
        *result.notes,
        *data.summary.notes,
        "Model inputs are the title and the category only; impressions, clicks and columns derived "
        "from them are never inputs.",
        "Text and category state were fitted on the training rows only and are stored in the checkpoint.",
        f"Quality probability calibrated with Platt scaling on the validation rows "
        f"(ECE {result.calibration.ece_before:.4f} -> {result.calibration.ece_after:.4f}, measured on "
        "the same rows); the threshold maximises F1 there.",
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
    )
    metrics = {
        "validation": evaluation.model_dump(),
        "best_epoch": result.best_epoch,
        "epochs": [r.as_dict() for r in result.history],
        "calibration": {
            "ece_before": result.calibration.ece_before,
            "ece_after": result.calibration.ece_after,
        },
        "data": data.summary.model_dump(),
    }
    (out_dir / METRICS_JSON).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return RunOutcome(out_dir=out_dir, evaluation=evaluation, result=result)
