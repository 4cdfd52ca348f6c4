"""Checkpoints: the typed :class:`Checkpoint`, its file names, its on-disk format and migrations.

On disk a checkpoint is a ``torch.save`` dictionary (format :data:`FORMAT_VERSION`)
holding only tensors, numbers, strings, lists and dicts; the fitted feature state,
target scaling, configuration and the other fitted pieces travel as JSON strings
inside it. ``torch.load(weights_only=True)`` refuses anything else, so a checkpoint
cannot carry pickled code. Files are written atomically.

:class:`Checkpoint` is the only reader and writer of those keys; everything else
works with its typed parts, which follow the training stages:

* :class:`Setup` (``training.stages.prepare``): model and training configuration,
  feature state, target scaling, label rule and the training data's fingerprint;
* :class:`Progress` (``training.stages.fit``): weights, optimizer and scheduler
  state, epoch counter, best validation loss and the epoch table;
* :class:`Calibration`, the validation ids and the stored rows
  (``training.stages.calibrate``): only in a run's final ``best.pt``.

Checkpoints written by older versions load as today's (:func:`migrate_train_config`):
a configuration saved before the ranking loss, the within-group ridge start or the
wide path existed says how that model was trained; a history saved before train
accuracy and MAE were recorded has them missing; a checkpoint saved before its
rows were stored has none (export then needs the training CSV).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import pickle
import zipfile
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from artifact.errors import CheckpointError, ExportError
from artifact.features import FeatureState
from artifact.manifest import DataFingerprint
from artifact.registry import atomic_write_bytes
from artifact.scaling import TargetScaling
from training.calibration import CalibrationReport, PlattCalibrator
from training.config import TrainConfig
from training.export_rows import CHECKPOINT_KEY as ROWS_KEY
from training.export_rows import ExportRows
from training.history import EpochRecord
from training.model import ModelConfig
from training.target import LabelRule

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file, or the best checkpoint inside a training output directory."""
    return path / BEST_CHECKPOINT if path.is_dir() else path


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialise ``payload`` (plus the format version) and write it atomically."""
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **payload}, buffer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write checkpoint ({exc})") from exc
    logger.debug("checkpoint written to %s", path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint's raw dictionary safely (``weights_only=True``); raise :class:`CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a checkpoint (expected the zip-based torch.save format)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than weights and plain data "
            f"(possibly pickled code): {str(exc).splitlines()[0]}"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        version = payload.get("format_version") if isinstance(payload, dict) else None
        raise CheckpointError(
            f"{path}: expected a headline-scorer checkpoint of format {FORMAT_VERSION}, "
            f"got format {version!r}"
        )
    return payload


def migrate_train_config(stored: dict[str, Any], model_config: ModelConfig) -> dict[str, Any]:
    """A stored training configuration in today's terms (fields added since default to how it trained)."""
    migrated = dict(stored)
    migrated.setdefault("rank_weight", 0.0)  # saved before the ranking loss existed: trained without it
    migrated.setdefault("ridge_within", 0.0)  # saved before the within-group ridge start: a plain one
    migrated.setdefault("wide", model_config.wide)  # saved before the wide path: the model's architecture
    return migrated


@dataclass(frozen=True)
class Setup:
    """What a run fixes before its first epoch (``training.stages.prepare``)."""

    model_config: ModelConfig
    train_config: TrainConfig
    feature_state: FeatureState
    scaling: TargetScaling | None
    label_rule: LabelRule
    data: DataFingerprint | None

    @cached_property
    def payload(self) -> dict[str, str]:
        """The on-disk entries (serialised once: a run writes them at every epoch)."""
        entries = {
            "model_config": self.model_config.model_dump_json(),
            "train_config": self.train_config.model_dump_json(),
            "feature_state": self.feature_state.model_dump_json(),
            "target_scaling": json.dumps(None if self.scaling is None else self.scaling.to_dict()),
            "label_rule": self.label_rule.model_dump_json(),
        }
        if self.data is not None:
            entries["data_fingerprint"] = json.dumps(self.data.model_dump())
        return entries

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Setup:
        model_config = ModelConfig.model_validate_json(payload["model_config"])
        scaling = json.loads(payload["target_scaling"])
        fingerprint = json.loads(payload.get("data_fingerprint") or "null")
        return cls(
            model_config=model_config,
            train_config=TrainConfig.model_validate(
                migrate_train_config(json.loads(payload["train_config"]), model_config)
            ),
            feature_state=FeatureState.model_validate_json(payload["feature_state"]),
            scaling=None if scaling is None else TargetScaling.from_dict(scaling),
            label_rule=LabelRule.model_validate_json(payload["label_rule"]),
            data=None if fingerprint is None else DataFingerprint.model_validate(fingerprint),
        )


@dataclass(frozen=True)
class Progress:
    """Where training stands after an epoch (``training.stages.fit``)."""

    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    scheduler_state: dict[str, Any]
    epoch: int
    best_val_loss: float
    history: tuple[EpochRecord, ...]

    def snapshot(self) -> Progress:
        """A copy that later training steps do not change (the live state dicts share tensors).

        Deep copies keep the state dicts' types and metadata, so the copy saves to the same bytes.
        """
        return replace(
            self,
            model_state=copy.deepcopy(self.model_state),
            optimizer_state=copy.deepcopy(self.optimizer_state),
            scheduler_state=copy.deepcopy(self.scheduler_state),
        )

    @property
    def payload(self) -> dict[str, Any]:
        return {
            "model_state": self.model_state,
            "optimizer_state": self.optimizer_state,
            "scheduler_state": self.scheduler_state,
            "epoch": self.epoch,
            "best_val_loss": self.best_val_loss,
            "history": json.dumps([r.as_dict() for r in self.history]),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Progress:
        return cls(
            model_state=payload["model_state"],
            optimizer_state=payload["optimizer_state"],
            scheduler_state=payload["scheduler_state"],
            epoch=int(payload["epoch"]),
            best_val_loss=float(payload["best_val_loss"]),
            history=tuple(EpochRecord.from_dict(r) for r in json.loads(payload.get("history") or "[]")),
        )


@dataclass(frozen=True)
class Calibration:
    """The calibrated quality probability and its threshold (``training.stages.calibrate``)."""

    calibrator: PlattCalibrator
    quality_threshold: float
    report: CalibrationReport | None  # ECE before and after, on the validation rows

    @property
    def payload(self) -> dict[str, Any]:
        entries: dict[str, Any] = {
            "calibration": json.dumps(self.calibrator.to_dict()),
            "quality_threshold": self.quality_threshold,
        }
        if self.report is not None:
            report = self.report
            entries["calibration_report"] = json.dumps(
                {"ece_before": report.ece_before, "ece_after": report.ece_after, "n": report.n}
            )
        return entries

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Calibration | None:
        raw = json.loads(payload.get("calibration") or "null")
        if raw is None:
            return None
        report = json.loads(payload.get("calibration_report") or "null")
        return cls(
            calibrator=PlattCalibrator.from_dict(raw),
            quality_threshold=float(payload.get("quality_threshold", 0.5)),
            report=None if report is None else CalibrationReport(**report),
        )


@dataclass(frozen=True)
class Checkpoint:
    """A training checkpoint, typed; :meth:`load` and :meth:`save` keep the on-disk format."""

    setup: Setup
    progress: Progress
    calibration: Calibration | None = None
    val_ids: tuple[str, ...] | None = None  # the validation rows' ids (final checkpoint only)
    rows_json: str | None = None  # the stored rows' on-disk text; read them with ``stored_rows``

    @cached_property
    def stored_rows(self) -> ExportRows | None:
        """The validation rows and training-row sample export uses (``None``: saved before they were)."""
        if self.rows_json is None:
            return None
        try:
            return ExportRows.from_json(self.rows_json)
        except ValueError as exc:
            raise ExportError(f"the checkpoint's stored export rows are unreadable ({exc})") from exc

    def with_rows(self, rows: ExportRows) -> Checkpoint:
        return replace(self, rows_json=rows.to_json())

    def to_payload(self) -> dict[str, Any]:
        payload = {**self.setup.payload, **self.progress.payload}
        if self.calibration is not None:
            payload |= self.calibration.payload
        if self.val_ids is not None:
            payload["split"] = json.dumps({"val_ids": list(self.val_ids)})
        if self.rows_json is not None:
            payload[ROWS_KEY] = self.rows_json
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any], source: Path | str = "checkpoint") -> Checkpoint:
        """Parse (and migrate) a raw checkpoint dictionary; :class:`CheckpointError` names ``source``."""
        try:
            split = json.loads(payload.get("split") or "null")
            return cls(
                setup=Setup.from_payload(payload),
                progress=Progress.from_payload(payload),
                calibration=Calibration.from_payload(payload),
                val_ids=None if split is None else tuple(str(i) for i in split["val_ids"]),
                rows_json=payload.get(ROWS_KEY),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: incomplete or inconsistent checkpoint ({exc})") from exc

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """The checkpoint at ``path`` (a file, or a training output directory's best one)."""
        path = resolve_checkpoint(path)
        return cls.from_payload(load_checkpoint(path), path)

    def save(self, path: Path) -> None:
        save_checkpoint(path, self.to_payload())


__all__ = [
    "BEST_CHECKPOINT",
    "FORMAT_VERSION",
    "LAST_CHECKPOINT",
    "Calibration",
    "Checkpoint",
    "Progress",
    "Setup",
    "load_checkpoint",
    "migrate_train_config",
    "resolve_checkpoint",
    "save_checkpoint",
]
