"""The rows one export scores: from the training CSV when given, otherwise from the checkpoint.

:func:`export_inputs` picks the rows for one export: from the training CSV
when it is given (its sha256 must match the checkpoint's data fingerprint;
the drift reference then uses every training row), otherwise from the rows
``train`` stored in the checkpoint (:mod:`training.export_rows`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from artifact.errors import ExportError
from training.data import HeadlineData
from training.export_rows import stored_rows

DriftSource = Literal["data", "checkpoint sample"]


@dataclass(frozen=True)
class ExportInputs:
    """The rows one export scores."""

    validation: HeadlineData
    drift_titles: list[str]
    drift_categories: list[str | None]
    drift_source: DriftSource
    train_rows: int  # training rows of the checkpoint's split (the drift rows are all or a sample)

    def manifest_info(self) -> dict[str, Any]:
        return {
            "train_rows": self.train_rows,
            "validation_rows": len(self.validation),
            "drift_reference_rows": len(self.drift_titles),
            "drift_reference_source": self.drift_source,
        }


def _split(payload: dict[str, Any], data: HeadlineData) -> tuple[HeadlineData, HeadlineData]:
    """(training rows, validation rows) of ``data`` by the checkpoint's split."""
    fingerprint = json.loads(payload.get("data_fingerprint") or "null")
    if fingerprint is None or "split" not in payload:
        raise ExportError("checkpoint holds no data fingerprint or validation split: re-train to export it")
    if fingerprint.get("sha256") != data.summary.sha256:
        raise ExportError(
            f"{data.summary.file}: sha256 {data.summary.sha256[:12]}... differs from the data the checkpoint "
            f"was trained on ({fingerprint.get('file')}, {str(fingerprint.get('sha256'))[:12]}...): "
            "pass the training CSV (and its mapping)"
        )
    val_ids = set(json.loads(payload["split"])["val_ids"])
    is_val = np.fromiter((str(i) in val_ids for i in data.ids), dtype=bool, count=len(data))
    if not is_val.any() or is_val.all():
        raise ExportError(
            f"{data.summary.file}: the checkpoint's validation split matches {int(is_val.sum())} rows"
        )
    return data.subset(np.flatnonzero(~is_val)), data.subset(np.flatnonzero(is_val))


def export_inputs(payload: dict[str, Any], data: HeadlineData | None) -> ExportInputs:
    """The rows for an export of the checkpoint ``payload``: from ``data`` when given, else stored ones."""
    if data is not None:
        train_rows, val_rows = _split(payload, data)
        return ExportInputs(
            validation=val_rows,
            drift_titles=train_rows.titles,
            drift_categories=train_rows.categories or [None] * len(train_rows),
            drift_source="data",
            train_rows=len(train_rows),
        )
    rows = stored_rows(payload)
    if rows is None:
        raise ExportError(
            "the checkpoint holds no stored validation and training rows (written before export "
            "became self-contained, or not the final best.pt of a training run): pass the training "
            "CSV with --data, or retrain"
        )
    validation = rows.validation.to_data()
    if len(validation) == 0 or not rows.drift_sample.titles:
        raise ExportError(
            f"the checkpoint's stored rows are incomplete ({len(validation)} validation rows, "
            f"{len(rows.drift_sample.titles)} training rows)"
        )
    sample = rows.drift_sample
    return ExportInputs(
        validation=validation,
        drift_titles=sample.titles,
        drift_categories=sample.categories or [None] * len(sample.titles),
        drift_source="checkpoint sample",
        train_rows=sample.drawn_from,
    )
