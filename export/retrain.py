"""Retrain and export behind a quality gate.

One round (:func:`retrain_once`):

1. continue training from the current version's checkpoint (``best.pt`` in the
   version directory, verified by its manifest hash), or train from scratch
   when the registry has no current version (or ``fresh=True``);
2. score the candidate and the current model on the same held-out rows: the
   candidate's validation split of the new data;
3. gate: the candidate may be worse than the current model by at most
   ``tolerance`` on quality ROC AUC (higher is better) and on normalized CTR
   MAE (lower is better); a negative tolerance demands an improvement;
4. on success export and publish the candidate (it becomes current); either way
   write the gate report to ``REGISTRY/reports/retrain-<UTC time>.json``. A rejected
   candidate raises :class:`~artifact.errors.GateRejectedError` carrying the report.

Caveat: when the new data overlaps the data the current model was trained on,
some held-out rows may be rows the current model saw, which favours the current
model (the gate errs towards keeping it).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from artifact.errors import GateRejectedError, HeadlineScorerError
from artifact.manifest import CHECKPOINT_FILE
from artifact.registry import Registry
from artifact.runtime import load_model
from export.build import Clock, export_to_registry, utc_now
from training.data import HeadlineData
from training.evaluate import Evaluation, evaluate_predictions
from training.predict import TrainedModel
from training.train import TrainConfig, train

logger = logging.getLogger(__name__)

REPORTS_DIR = "reports"
#: (metric, direction): +1 higher is better, -1 lower is better.
GATE_METRICS: tuple[tuple[str, int], ...] = (("quality_roc_auc", 1), ("ctr_mae_normalized", -1))


class GateReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    created_at: datetime
    data_file: str
    data_sha256: str
    evaluated_rows: int
    tolerance: float
    current_version: str | None
    candidate_from: Literal["current", "scratch"]
    current: dict[str, float | None] | None
    candidate: dict[str, float | None]
    decision: Literal["publish", "reject"]
    reasons: list[str]
    published_version: str | None = None
    report_path: str | None = None


class CandidateRejectedError(GateRejectedError):
    """The gate rejected the candidate; ``report`` says why (also saved in the registry)."""

    def __init__(self, message: str, report: GateReport) -> None:
        super().__init__(message)
        self.report = report


def _gate_metrics(evaluation: Evaluation) -> dict[str, float | None]:
    return {name: getattr(evaluation, name) for name, _ in GATE_METRICS}


def gate(
    candidate: dict[str, float | None], current: dict[str, float | None] | None, tolerance: float
) -> list[str]:
    """Reasons to reject the candidate (empty: publish)."""
    if current is None:
        return []
    reasons = []
    for name, direction in GATE_METRICS:
        new, old = candidate.get(name), current.get(name)
        if old is None:
            continue  # undefined for the current model on these rows: nothing to defend
        if new is None:
            reasons.append(f"{name}: undefined for the candidate, {old:.4f} for the current model")
        elif direction * (new - old) < -tolerance:
            word = "below" if direction > 0 else "above"
            reasons.append(
                f"{name}: candidate {new:.4f} is {abs(new - old):.4f} {word} the current {old:.4f} "
                f"(tolerance {tolerance:g})"
            )
    return reasons


def _write_report(registry: Registry, report: GateReport) -> GateReport:
    directory = registry.root / REPORTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"retrain-{report.created_at:%Y%m%dT%H%M%S%fZ}.json"
    report = report.model_copy(update={"report_path": str(path)})
    path.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    return report


def retrain_once(
    data: HeadlineData,
    registry: Registry,
    *,
    config: TrainConfig | None = None,
    tolerance: float = 0.005,
    fresh: bool = False,
    work_dir: Path | None = None,
    clock: Clock = utc_now,
) -> GateReport:
    """One retrain round; returns the report of a published candidate or raises :class:`GateRejectedError`."""
    current_version = registry.current_version()
    resume: Path | None = None
    if current_version is not None and not fresh:
        current_dir = registry.version_dir(current_version)
        load_model(current_dir)  # verifies every file hash, including the checkpoint's
        resume = current_dir / CHECKPOINT_FILE
    own_work = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="headline-retrain-")) if work_dir is None else work_dir
    try:
        logger.info(
            "retrain: %s on %s",
            f"continuing {current_version}" if resume else "from scratch",
            data.summary.file,
        )
        result = train(data, work / "candidate", config, resume=resume, progress=False)
        held_out = data.subset(result.val_index)
        candidate = TrainedModel.from_checkpoint(result.best_checkpoint)
        cats = held_out.categories
        cand_eval = evaluate_predictions(candidate, held_out, candidate.predict(held_out.titles, cats))
        cur_metrics = None
        if current_version is not None:
            current = TrainedModel.from_checkpoint(registry.version_dir(current_version) / CHECKPOINT_FILE)
            cur_eval = evaluate_predictions(current, held_out, current.predict(held_out.titles, cats))
            cur_metrics = _gate_metrics(cur_eval)
        cand_metrics = _gate_metrics(cand_eval)
        reasons = gate(cand_metrics, cur_metrics, tolerance)
        report = GateReport(
            created_at=clock().astimezone(UTC),
            data_file=data.summary.file,
            data_sha256=data.summary.sha256,
            evaluated_rows=len(held_out),
            tolerance=tolerance,
            current_version=current_version,
            candidate_from="current" if resume else "scratch",
            current=cur_metrics,
            candidate=cand_metrics,
            decision="reject" if reasons else "publish",
            reasons=reasons,
        )
        if reasons:
            report = _write_report(registry, report)
            logger.warning("retrain: candidate rejected: %s", "; ".join(reasons))
            raise CandidateRejectedError(
                f"candidate rejected, keeping {current_version}: {'; '.join(reasons)} "
                f"(report {report.report_path})",
                report,
            )
        exported = export_to_registry(result.best_checkpoint, data, registry, clock=clock)
        report = _write_report(registry, report.model_copy(update={"published_version": exported.version}))
        logger.info("retrain: published %s (report %s)", exported.version, report.report_path)
        return report
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``6h``, ``1d`` -> seconds (> 0)."""
    match = _DURATION.match(text)
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else 0.0
    if seconds <= 0:
        raise ValueError(f"expected a positive duration like 90s, 15m, 6h or 1d, got {text!r}")
    return seconds


def retrain_loop(
    round_: Callable[[], object],
    every: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rounds: int | None = None,
) -> None:
    """Run ``round_`` every ``every`` seconds (forever unless ``rounds``); a failed round is logged."""
    done = 0
    while rounds is None or done < rounds:
        started = time.monotonic()
        try:
            round_()
        except HeadlineScorerError as exc:
            logger.error("retrain round failed: %s", exc)
        done += 1
        if rounds is None or done < rounds:
            sleep(max(0.0, every - (time.monotonic() - started)))


def report_json(report: GateReport) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=2)
