"""Reading and validating headline CSVs.

``load_dataset`` reads a CSV through a :class:`~training.mapping.ColumnMapping`,
checks it and returns a :class:`HeadlineData` with a :class:`ValidationSummary`.

Rules:

* fatal (raise :class:`~artifact.errors.CsvReadError` / :class:`~artifact.errors.CsvValidationError`,
  naming file, column, rows and what was expected): missing file, wrong encoding,
  empty file, missing mapped column, non-numeric or missing values in a target
  column, CTR outside [0, 1], negative or fractional counts, clicks above
  impressions, empty or duplicate ids, no rows left after the drop rules;
* dropped, counted and reported (never silently): rows whose title is empty
  after trimming, rows with zero impressions (CTR undefined).

A row with an empty title is dropped first and none of its other cells is
checked (a trailing ``,,,`` line is dropped, not fatal); every other rule
applies to the rows still kept.

A mapped target column that is absent but closely matches a column of the
file (case, spaces or a small typo, e.g. ``normalized url ctr``) is named in
the summary's notes and ``target_hints``: without any target the data is in
inference-only mode, and the notice and the "nothing to train on" error say
which column was probably meant.

Row numbers in messages are 1-based data rows (the header is not counted).
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from artifact.errors import CsvReadError, CsvValidationError
from training.mapping import ColumnMapping

logger = logging.getLogger(__name__)

TargetSource = Literal["normalized", "ctr", "clicks/impressions"]
_MAX_LISTED_ROWS = 10


def _rows(rows: NDArray[np.int64] | list[int]) -> str:
    """Render row numbers for a message: the first few and a total."""
    listed = [int(r) for r in list(rows)[:_MAX_LISTED_ROWS]]
    more = len(rows) - len(listed)
    text = ", ".join(str(r) for r in listed)
    return f"row{'s' if len(rows) > 1 else ''} {text}" + (f" and {more} more" if more > 0 else "")


class DroppedRows(BaseModel):
    """Rows removed by one rule: how many and which (first few, 1-based data rows)."""

    model_config = ConfigDict(frozen=True)

    rule: str
    count: int
    rows: list[int]


class ValidationSummary(BaseModel):
    """What validation found: printed before training and kept in the report."""

    model_config = ConfigDict(frozen=True)

    file: str
    mapping: str
    sha256: str
    rows_read: int
    rows_kept: int
    columns: list[str]
    target_source: TargetSource | None
    has_group: bool
    has_category: bool
    dropped: list[DroppedRows] = []
    notes: list[str] = []
    target_hints: list[str] = []

    @property
    def mode(self) -> Literal["train", "inference"]:
        return "inference" if self.target_source is None else "train"

    def dropped_line(self) -> str:
        """One line on the dropped rows ("" when none), for commands that do not print the summary."""
        if not self.dropped:
            return ""
        total = sum(d.count for d in self.dropped)
        parts = "; ".join(f"{d.count} for {d.rule} ({_rows(d.rows)})" for d in self.dropped)
        return f"{self.file}: dropped {total} of {self.rows_read} rows: {parts}"

    def render(self) -> str:
        """A plain-text summary table."""
        lines = [
            "CSV validation summary",
            f"  file            {self.file}",
            f"  mapping         {self.mapping}",
            f"  sha256          {self.sha256[:16]}...",
            f"  rows read       {self.rows_read}",
            f"  rows kept       {self.rows_kept}",
            f"  target          {self.target_source or 'none (inference-only mode)'}",
            f"  group column    {'yes' if self.has_group else 'no'}",
            f"  category column {'yes' if self.has_category else 'no'}",
        ]
        if self.dropped:
            lines.append("  dropped rows:")
            lines.extend(
                f"    {d.rule}: {d.count} ({_rows(d.rows) if d.rows else '-'})" for d in self.dropped
            )
        else:
            lines.append("  dropped rows    0")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


@dataclass(frozen=True)
class HeadlineData:
    """Validated headline rows, aligned arrays (one entry per kept row)."""

    ids: NDArray[np.str_]
    titles: list[str]
    categories: list[str | None] | None
    groups: NDArray[np.str_] | None
    raw_ctr: NDArray[np.float64] | None
    ctr_normalized_given: NDArray[np.float64] | None
    clicks: NDArray[np.float64] | None
    impressions: NDArray[np.float64] | None
    summary: ValidationSummary
    extra: pd.DataFrame = field(repr=False)

    def __len__(self) -> int:
        return len(self.titles)

    @property
    def has_target(self) -> bool:
        return self.raw_ctr is not None or self.ctr_normalized_given is not None

    def subset(self, index: NDArray[np.int64]) -> HeadlineData:
        """The rows at ``index`` (the summary is kept as is)."""

        def pick(a: NDArray[np.float64] | None) -> NDArray[np.float64] | None:
            return None if a is None else a[index]

        return HeadlineData(
            ids=self.ids[index],
            titles=[self.titles[i] for i in index],
            categories=None if self.categories is None else [self.categories[i] for i in index],
            groups=None if self.groups is None else self.groups[index],
            raw_ctr=pick(self.raw_ctr),
            ctr_normalized_given=pick(self.ctr_normalized_given),
            clicks=pick(self.clicks),
            impressions=pick(self.impressions),
            summary=self.summary,
            extra=self.extra.iloc[index].reset_index(drop=True),
        )


def _read_text(path: Path) -> tuple[str, str]:
    if path.is_dir():
        raise CsvReadError(f"{path}: is a directory; expected a CSV file")
    if not path.is_file():
        raise CsvReadError(f"{path}: file not found")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if not data.strip():
        raise CsvReadError(f"{path}: the file is empty; expected a header row and data rows")
    # Strip a BOM here rather than decoding with "utf-8-sig": that codec reports error
    # offsets relative to the text after the BOM, which would name the wrong byte and line.
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8"), digest
    except UnicodeDecodeError as exc:
        start = bom + exc.start
        line = data[:start].count(b"\n") + 1
        cell = _undecodable_cell(data[bom:])
        where = "" if cell is None else f"{cell}, "
        raise CsvReadError(
            f"{path}: line {line}, {where}byte {start}: expected UTF-8 text, got byte 0x{data[start]:02x} "
            "(re-save the file as UTF-8)"
        ) from exc


def _undecodable_cell(data: bytes) -> str | None:
    """Where the first byte that is not UTF-8 sits in the CSV ("row 3, column 'title'"), if it parses."""
    text = data.decode("utf-8", errors="surrogateescape")  # bad bytes become U+DC80..U+DCFF
    header: list[str] = []
    try:
        for row, record in enumerate(csv.reader(io.StringIO(text, newline=""))):
            if row == 0:
                header = record
            for i, value in enumerate(record):
                if any("\udc80" <= ch <= "\udcff" for ch in value):
                    if row == 0:
                        return "in the header"
                    column = repr(header[i]) if i < len(header) else f"field {i + 1} (beyond the header)"
                    return f"row {row}, column {column}"
    except csv.Error:
        return None
    return None


def _numeric(
    frame: pd.DataFrame, column: str, path: Path, rows: NDArray[np.bool_] | None = None
) -> NDArray[np.float64]:
    """Parse a column as floats; a missing or non-numeric cell (among ``rows``, default all) is fatal."""
    raw = frame[column].astype(str).str.strip()
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    invalid = ~np.isfinite(values)
    if rows is not None:
        invalid &= rows
    bad = np.flatnonzero(invalid) + 1
    if bad.size:
        example = raw.iloc[int(bad[0]) - 1]
        raise CsvValidationError(
            f"{path}: column {column!r}, {_rows(bad)}: expected a finite number, got {example!r}"
        )
    return values


def _check_range(
    values: NDArray[np.float64],
    column: str,
    path: Path,
    lo: float,
    hi: float,
    rows: NDArray[np.bool_] | None = None,
) -> None:
    outside = (values < lo) | (values > hi)
    if rows is not None:
        outside &= rows
    bad = np.flatnonzero(outside) + 1
    if bad.size:
        raise CsvValidationError(
            f"{path}: column {column!r}, {_rows(bad)}: expected a value within [{lo:g}, {hi:g}], "
            f"got {float(values[bad[0] - 1])!r}"
        )


def _squash(name: str) -> str:
    return "".join(name.casefold().split()).replace("_", "")


def target_near_misses(mapping: ColumnMapping, columns: list[str]) -> list[str]:
    """Hints for mapped target columns that are absent but closely match a column of the file."""
    present = set(columns)
    hints: list[str] = []
    for field_name in ("ctr_normalized", "ctr", "clicks", "impressions"):
        expected = getattr(mapping, field_name)
        if not expected or expected in present:
            continue
        same = [c for c in columns if _squash(c) == _squash(expected)]
        if same:
            hints.append(
                f"column {same[0]!r} differs only in case, spaces or underscores from {expected!r}, "
                f"the {field_name} column of mapping {mapping.name!r}"
            )
            continue
        close = difflib.get_close_matches(expected.casefold(), [c.casefold() for c in columns], 1, 0.85)
        if close:
            actual = next(c for c in columns if c.casefold() == close[0])
            hints.append(
                f"column {actual!r} looks like a misspelling of {expected!r}, "
                f"the {field_name} column of mapping {mapping.name!r}"
            )
    return hints


def _whole_numbers(
    values: NDArray[np.float64], column: str, path: Path, rows: NDArray[np.bool_], raw: pd.Series
) -> None:
    """Counts must be whole numbers (``12`` or ``12.0``; not ``12.5``) on ``rows``."""
    bad = np.flatnonzero((values != np.floor(values)) & rows) + 1
    if bad.size:
        raise CsvValidationError(
            f"{path}: column {column!r}, {_rows(bad)}: expected a whole number (a count), "
            f"got {str(raw.iloc[int(bad[0]) - 1]).strip()!r}"
        )


def separator_hint(text: str) -> str:
    """ "; the file looks semicolon-separated ..." when the header has more ';' or tabs than commas."""
    header = text.split("\n", 1)[0]
    counts = {"semicolon": header.count(";"), "tab": header.count("\t")}
    name, count = max(counts.items(), key=lambda item: item[1])
    if count == 0 or count <= header.count(","):
        return ""
    return f"; the header looks {name}-separated ({count} {name}s): expected comma-separated values"


def load_dataset(path: str | Path, mapping: ColumnMapping) -> HeadlineData:
    """Read and validate ``path`` through ``mapping``; raise a typed error on bad input."""
    path = Path(path)
    text, digest = _read_text(path)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, engine="c")
    except (pd.errors.ParserError, csv.Error) as exc:
        # pandas' tokenizer messages end with a newline: keep the error on one line.
        detail = " ".join(str(exc).split())
        raise CsvReadError(f"{path}: cannot parse as CSV ({detail}){separator_hint(text)}") from exc
    except pd.errors.EmptyDataError as exc:
        raise CsvReadError(f"{path}: the file is empty; expected a header row and data rows") from exc
    rows_read = len(frame)
    if rows_read == 0:
        raise CsvReadError(f"{path}: the file has a header but no data rows")

    required = [mapping.title] + [c for c in (mapping.id, mapping.category, mapping.group) if c]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CsvValidationError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            f"required by mapping {mapping.name!r}; the file has {', '.join(map(repr, frame.columns))}"
            f"{separator_hint(text) if len(frame.columns) == 1 else ''}"
        )

    notes: list[str] = []
    # The target: the first available source in priority order.
    target_source: TargetSource | None = None
    if mapping.ctr_normalized and mapping.ctr_normalized in frame.columns:
        target_source = "normalized"
    elif mapping.ctr and mapping.ctr in frame.columns:
        target_source = "ctr"
    elif (
        mapping.clicks
        and mapping.impressions
        and mapping.clicks in frame.columns
        and mapping.impressions in frame.columns
    ):
        target_source = "clicks/impressions"
    hints = target_near_misses(mapping, [str(c) for c in frame.columns])
    if target_source is None:
        fix = "".join(f"; {h}" for h in hints) + (": fix the header or the mapping to train" if hints else "")
        notes.append("no target column found: inference-only mode (predictions only, no metrics)" + fix)
    elif hints:
        notes.append(f"target taken from {target_source}; " + "; ".join(hints))
    for hint in hints:
        logger.warning("%s: %s", path, hint)

    dropped: list[DroppedRows] = []
    keep = np.ones(rows_read, dtype=bool)

    titles_all = frame[mapping.title].astype(str).str.strip()
    empty_title = np.flatnonzero(titles_all.to_numpy() == "")
    if empty_title.size:
        keep[empty_title] = False
        dropped.append(
            DroppedRows(rule="empty title", count=int(empty_title.size), rows=list(empty_title + 1))
        )

    group_all = (
        None if not mapping.group else frame[mapping.group].astype(str).str.strip().to_numpy(dtype=str)
    )
    if group_all is not None and target_source is not None:
        # A row without its test id cannot take the within-test label or be paired; predictions
        # (inference-only data) do not use the group, so there such rows stay.
        empty_group = np.flatnonzero((group_all == "") & keep)
        if empty_group.size:
            keep[empty_group] = False
            dropped.append(
                DroppedRows(
                    rule=f"empty group id ({mapping.group!r})",
                    count=int(empty_group.size),
                    rows=list(empty_group + 1),
                )
            )

    clicks = impressions = raw_ctr = given = None
    has_counts = bool(
        mapping.clicks
        and mapping.impressions
        and mapping.clicks in frame.columns
        and mapping.impressions in frame.columns
    )
    if target_source is not None and has_counts:
        assert mapping.clicks and mapping.impressions
        clicks = _numeric(frame, mapping.clicks, path, keep)
        impressions = _numeric(frame, mapping.impressions, path, keep)
        for col, values in ((mapping.clicks, clicks), (mapping.impressions, impressions)):
            _check_range(values, col, path, 0.0, np.inf, keep)
            _whole_numbers(values, col, path, keep, frame[col])
        over = np.flatnonzero((clicks > impressions) & keep) + 1
        if over.size:
            raise CsvValidationError(
                f"{path}: columns {mapping.clicks!r}/{mapping.impressions!r}, {_rows(over)}: "
                "expected clicks <= impressions"
            )
        no_imps = np.flatnonzero((impressions == 0) & keep)
        if no_imps.size:
            keep[no_imps] = False
            dropped.append(
                DroppedRows(rule="zero impressions", count=int(no_imps.size), rows=list(no_imps + 1))
            )
    # CTR values are checked on kept rows only: a dropped row's CTR is undefined (zero
    # impressions) or unused (empty title), so it may legitimately be blank.
    if target_source is not None and mapping.ctr and mapping.ctr in frame.columns:
        raw_ctr = _numeric(frame, mapping.ctr, path, keep)
        _check_range(raw_ctr, mapping.ctr, path, 0.0, 1.0, keep)
    elif clicks is not None and impressions is not None:
        raw_ctr = np.divide(clicks, impressions, out=np.zeros_like(clicks), where=impressions > 0)
    if target_source == "normalized":
        assert mapping.ctr_normalized
        given = _numeric(frame, mapping.ctr_normalized, path, keep)
        _check_range(given, mapping.ctr_normalized, path, 0.0, 1.0, keep)
        if raw_ctr is None:
            notes.append("no raw CTR column: CTR is reported normalized only")

    ids_all: NDArray[np.str_]
    if mapping.id:
        ids_all = frame[mapping.id].astype(str).str.strip().to_numpy(dtype=str)
        empty_id = np.flatnonzero((ids_all == "") & keep) + 1
        if empty_id.size:
            raise CsvValidationError(
                f"{path}: column {mapping.id!r}, {_rows(empty_id)}: expected an id, got ''"
            )
        dup_mask = pd.Series(ids_all).where(keep).duplicated(keep=False).to_numpy() & keep
        dups = np.flatnonzero(dup_mask) + 1
        if dups.size:
            raise CsvValidationError(
                f"{path}: column {mapping.id!r}, {_rows(dups)}: expected unique ids, "
                f"got duplicates such as {str(ids_all[dups[0] - 1])!r}"
            )
    else:
        ids_all = np.array([str(i) for i in range(1, rows_read + 1)])
        notes.append("no id column: ids are 1-based row numbers")

    index = np.flatnonzero(keep)
    if index.size == 0:
        raise CsvValidationError(
            f"{path}: no rows left after validation ({rows_read} read; "
            + ", ".join(f"{d.count} dropped for {d.rule}" for d in dropped)
            + ")"
        )

    categories: list[str | None] | None = None
    if mapping.category:
        cats = frame[mapping.category].astype(str).str.strip()
        categories = [c if c else None for c in cats.iloc[index]]
    groups = None if group_all is None else group_all[index]

    def pick(a: NDArray[np.float64] | None) -> NDArray[np.float64] | None:
        return None if a is None else a[index]

    summary = ValidationSummary(
        file=str(path),
        mapping=mapping.name,
        sha256=digest,
        rows_read=rows_read,
        rows_kept=int(index.size),
        columns=[str(c) for c in frame.columns],
        target_source=target_source,
        has_group=groups is not None,
        has_category=categories is not None,
        dropped=dropped,
        notes=notes,
        target_hints=hints,
    )
    logger.debug("validated %s: %d rows read, %d kept", path, rows_read, index.size)
    return HeadlineData(
        ids=ids_all[index],
        titles=titles_all.iloc[index].tolist(),
        categories=categories,
        groups=groups,
        raw_ctr=pick(raw_ctr),
        ctr_normalized_given=pick(given),
        clicks=pick(clicks),
        impressions=pick(impressions),
        summary=summary,
        extra=frame.iloc[index].reset_index(drop=True),
    )
