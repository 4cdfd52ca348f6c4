"""Column mappings: how the columns of an input CSV map onto headline fields.

A mapping names the title column and, optionally, the id, category, group
(A/B test id) and target columns. The target can come from an already
normalized column, a raw CTR column, or clicks + impressions. Built-in
mappings cover the seed format and the Upworthy archive; a custom mapping is
read from a small JSON or TOML file with the same keys. ``outcomes`` (and
``outcomes-ungrouped``, which ignores the A/B group) reads the CSV of
``headline-scorer outcomes export``: the worker's joined production outcomes.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from artifact.errors import MappingError


class ColumnMapping(BaseModel):
    """Which CSV column holds which headline field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="custom", description="A label for reports.")
    title: str = Field(description="Column with the headline text (required).")
    id: str | None = Field(default=None, description="Unique row id; row numbers are used when absent.")
    category: str | None = None
    group: str | None = Field(default=None, description="A/B test id: rows of one test are compared.")
    ctr_normalized: str | None = Field(default=None, description="Target already min-max scaled log1p CTR.")
    ctr: str | None = Field(default=None, description="Raw click-through rate in [0, 1].")
    clicks: str | None = None
    impressions: str | None = None
    leaky: tuple[str, ...] = Field(
        default=(),
        description="Columns known only after publication; never model inputs (documented, never read).",
    )

    @model_validator(mode="after")
    def _clicks_with_impressions(self) -> ColumnMapping:
        if (self.clicks is None) != (self.impressions is None):
            raise ValueError("clicks and impressions must be mapped together")
        return self


SEED = ColumnMapping(
    name="seed",
    id="id",
    title="post_title",
    category="category_name",
    ctr_normalized="Normalized URL CTR",
    ctr="URL CTR",
    clicks="Url Clicks",
    impressions="Impressions",
    leaky=(
        "Impressions",
        "Url Clicks",
        "URL CTR",
        "Log URL CTR",
        "Normalized URL CTR",
        "STR_High_Low",
        "CTR_per_cluster_avg",
    ),
)

UPWORTHY = ColumnMapping(
    name="upworthy",
    id="row_id",
    title="headline",
    group="clickability_test_id",
    clicks="clicks",
    impressions="impressions",
    leaky=("impressions", "clicks", "significance", "winner", "first_place"),
)

# What the scorer learned after publication: `headline-scorer outcomes export` (stream/labelled.py)
# writes these columns. The model version and its scores are the served model's, not inputs.
_OUTCOMES_LEAKY = (
    "impressions",
    "clicks",
    "model_version",
    "score_ctr",
    "score_ctr_normalized",
    "score_quality_prob",
    "scored_at",
    "outcome_at",
)

OUTCOMES = ColumnMapping(
    name="outcomes",
    id="id",
    title="title",
    category="category",
    group="group",
    clicks="clicks",
    impressions="impressions",
    leaky=_OUTCOMES_LEAKY,
)

# The same export for headlines that are not A/B-tested: with a group column, rows without a group
# are dropped; without it every row trains (quality label: CTR above the median).
OUTCOMES_UNGROUPED = OUTCOMES.model_copy(update={"name": "outcomes-ungrouped", "group": None})

BUILTIN: dict[str, ColumnMapping] = {
    "seed": SEED,
    "upworthy": UPWORTHY,
    "outcomes": OUTCOMES,
    "outcomes-ungrouped": OUTCOMES_UNGROUPED,
}


def resolve_mapping(spec: str | Path | None) -> ColumnMapping:
    """Return a built-in mapping by name, or read a custom one from a JSON/TOML file.

    ``None`` means the seed format.
    """
    if spec is None:
        return SEED
    if isinstance(spec, str) and spec in BUILTIN:
        return BUILTIN[spec]
    path = Path(spec)
    if not path.is_file():
        raise MappingError(
            f"mapping {spec!s}: expected one of {sorted(BUILTIN)} or a JSON/TOML mapping file, got neither"
        )
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MappingError(f"mapping {path}: cannot parse ({exc})") from exc
    if not isinstance(raw, dict):
        raise MappingError(f"mapping {path}: expected a table of column names, got {type(raw).__name__}")
    raw.setdefault("name", path.stem)
    try:
        return ColumnMapping.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'mapping'}: {e['msg']}" for e in exc.errors())
        raise MappingError(f"mapping {path}: {problems}") from exc
