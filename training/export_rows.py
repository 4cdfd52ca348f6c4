"""The rows an export needs, stored in the checkpoint by ``train`` so export is self-contained.

Export scores the validation rows (torch-vs-runtime parity, canaries,
validation metrics) and the training rows (drift reference). ``train`` stores
them in its final checkpoint under :data:`CHECKPOINT_KEY`, as one JSON string
(``torch.load(weights_only=True)`` still accepts the checkpoint):

* ``validation``: every validation row with each column evaluation reads
  (ids, titles, categories, groups, raw CTR, given normalized CTR, clicks,
  impressions; ``null`` for a column the data lacks) and the data's
  validation summary, enough to rebuild an equivalent
  :class:`~training.data.HeadlineData`;
* ``drift_sample``: the training rows' titles and categories, all of them up
  to ``cap`` rows, above it a seeded random sample (in data order), with the
  number of training rows it was drawn from.

Floats round-trip exactly (shortest repr; NaN and infinities as strings).
Categories are stored as the text the model sees: ``None`` stays missing, a
float NaN (a pandas missing cell) becomes missing, any other non-string value
becomes ``str(value)``.

:func:`export.inputs.export_inputs` reads them back at export time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from artifact.errors import ExportError
from training.data import HeadlineData, ValidationSummary

CHECKPOINT_KEY = "export_rows"
#: Training rows kept for the drift reference; above it a seeded random sample.
DRIFT_SAMPLE_ROWS = 50_000


class _Stored(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _categories(values: Sequence[object] | None) -> list[str | None] | None:
    return None if values is None else [_text(v) for v in values]


def _floats(values: NDArray[np.float64] | None) -> list[float] | None:
    return None if values is None else [float(v) for v in values]


def _array(values: list[float] | None) -> NDArray[np.float64] | None:
    return None if values is None else np.asarray(values, dtype=np.float64)


class StoredValidation(_Stored):
    """The validation rows, column by column (``None``: the data has no such column)."""

    ids: list[str]
    titles: list[str]
    categories: list[str | None] | None
    groups: list[str] | None
    raw_ctr: list[float] | None
    ctr_normalized_given: list[float] | None
    clicks: list[float] | None
    impressions: list[float] | None
    summary: ValidationSummary

    @classmethod
    def from_data(cls, data: HeadlineData) -> StoredValidation:
        return cls(
            ids=[str(i) for i in data.ids],
            titles=[str(t) for t in data.titles],
            categories=_categories(data.categories),
            groups=None if data.groups is None else [str(g) for g in data.groups],
            raw_ctr=_floats(data.raw_ctr),
            ctr_normalized_given=_floats(data.ctr_normalized_given),
            clicks=_floats(data.clicks),
            impressions=_floats(data.impressions),
            summary=data.summary,
        )

    def to_data(self) -> HeadlineData:
        """An equivalent :class:`HeadlineData` (no extra columns)."""
        return HeadlineData(
            ids=np.array(self.ids, dtype=str),
            titles=list(self.titles),
            categories=None if self.categories is None else list(self.categories),
            groups=None if self.groups is None else np.array(self.groups, dtype=str),
            raw_ctr=_array(self.raw_ctr),
            ctr_normalized_given=_array(self.ctr_normalized_given),
            clicks=_array(self.clicks),
            impressions=_array(self.impressions),
            summary=self.summary,
            extra=pd.DataFrame(index=pd.RangeIndex(len(self.titles))),
        )


class DriftSample(_Stored):
    """Training titles and categories for the drift reference."""

    titles: list[str]
    categories: list[str | None] | None
    drawn_from: int = Field(ge=0, description="Training rows the sample was drawn from.")
    seed: int


class ExportRows(_Stored):
    """Everything export reads from the training data, as stored in the checkpoint."""

    format_version: Literal[1] = 1
    validation: StoredValidation
    drift_sample: DriftSample

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> ExportRows:
        return cls.model_validate_json(text)


def build_export_rows(
    data: HeadlineData,
    train_index: NDArray[np.int64],
    val_index: NDArray[np.int64],
    *,
    cap: int = DRIFT_SAMPLE_ROWS,
    seed: int = 0,
) -> ExportRows:
    """The rows to store: ``val_index`` in full, ``train_index`` up to ``cap`` (seeded sample above)."""
    if cap < 1:
        raise ValueError(f"expected a drift sample cap >= 1, got {cap}")
    train_index = np.asarray(train_index, dtype=np.int64)
    picked = train_index
    if len(train_index) > cap:
        chosen = np.random.default_rng(seed).choice(len(train_index), size=cap, replace=False)
        picked = train_index[np.sort(chosen)]
    sample = data.subset(picked)
    return ExportRows(
        validation=StoredValidation.from_data(data.subset(np.asarray(val_index, dtype=np.int64))),
        drift_sample=DriftSample(
            titles=[str(t) for t in sample.titles],
            categories=_categories(sample.categories),
            drawn_from=len(train_index),
            seed=seed,
        ),
    )


def stored_rows(payload: dict[str, Any]) -> ExportRows | None:
    """The rows stored in a checkpoint payload (``None`` for a checkpoint written before they were)."""
    text = payload.get(CHECKPOINT_KEY)
    if text is None:
        return None
    try:
        return ExportRows.from_json(text)
    except ValueError as exc:
        raise ExportError(f"the checkpoint's stored export rows are unreadable ({exc})") from exc
