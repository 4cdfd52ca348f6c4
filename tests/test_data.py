"""Reading and validating headline CSVs (training/data.py): every fatal and every drop rule."""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from artifact.errors import CsvReadError, CsvValidationError, DataError
from training.data import DroppedRows, HeadlineData, load_dataset
from training.mapping import SEED, UPWORTHY, ColumnMapping

RAW = ColumnMapping(name="raw", id="id", title="title", ctr="ctr")
NORM = ColumnMapping(name="norm", id="id", title="title", ctr_normalized="norm")
COUNTS = ColumnMapping(name="counts", id="id", title="title", clicks="clicks", impressions="imps")
FULL = ColumnMapping(
    name="full",
    id="id",
    title="title",
    category="cat",
    group="grp",
    ctr_normalized="norm",
    ctr="ctr",
    clicks="clicks",
    impressions="imps",
)


def write(tmp_path: Path, content: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def rejects(path: Path, mapping: ColumnMapping, error: type[DataError], *fragments: str) -> str:
    """Assert ``load_dataset`` raises ``error`` with a one-line message naming the file and ``fragments``."""
    with pytest.raises(error) as info:
        load_dataset(path, mapping)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "\n" not in message, message
    assert "np." not in message, message  # no numpy reprs such as np.float64(1.5)
    return message


# --- read errors ---------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    rejects(tmp_path / "nope.csv", RAW, CsvReadError, "file not found")


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    rejects(tmp_path, RAW, CsvReadError, "file not found")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(b"", "the file is empty; expected a header row and data rows", id="zero-bytes"),
        pytest.param(b"  \n\t\r\n  ", "the file is empty", id="whitespace-only"),
        pytest.param(codecs.BOM_UTF8, "the file is empty", id="bom-only"),
        pytest.param(b"id,title,ctr\n", "header but no data rows", id="header-only"),
        pytest.param(b"id,title,ctr", "header but no data rows", id="header-no-newline"),
        pytest.param(b"id,title,ctr\r\n\r\n\r\n", "header but no data rows", id="header-and-blank-lines"),
        pytest.param(codecs.BOM_UTF8 + b"id,title,ctr\n", "header but no data rows", id="bom-header-only"),
    ],
)
def test_empty_files(tmp_path: Path, content: bytes, expected: str) -> None:
    rejects(write(tmp_path, content), RAW, CsvReadError, expected)


@pytest.mark.parametrize(
    ("prefix", "encoding", "title"),
    [
        pytest.param(b"", "latin-1", "caf\u00e9 au lait", id="latin-1"),
        pytest.param(b"", "cp1255", "כותרת", id="cp1255-hebrew"),
        # With a BOM the byte offset and line must still point at the bad byte itself.
        pytest.param(codecs.BOM_UTF8, "latin-1", "na\u00efve", id="latin-1-after-bom"),
        pytest.param(codecs.BOM_UTF8, "cp1255", "ש\nל", id="cp1255-after-bom-multiline"),
    ],
)
def test_wrong_encoding_names_line_and_byte(tmp_path: Path, prefix: bytes, encoding: str, title: str) -> None:
    good = b"id,title,ctr\n1,plain ascii,0.1\n2,also fine,0.2\n"
    bad_row = f'3,"{title}",0.3\n'.encode(encoding)
    data = prefix + good + bad_row
    offset = len(prefix + good) + next(i for i, b in enumerate(bad_row) if b >= 0x80)
    message = rejects(
        write(tmp_path, data),
        RAW,
        CsvReadError,
        "expected UTF-8",
        "line 4,",
        "row 3, column 'title',",
        f"byte {offset}:",
        f"0x{data[offset]:02x}",
    )
    assert "re-save the file as UTF-8" in message


def test_wrong_encoding_in_the_header_says_so(tmp_path: Path) -> None:
    data = "id,titl\u00e9,ctr\n1,a,0.1\n".encode("latin-1")
    message = rejects(write(tmp_path, data), RAW, CsvReadError, "line 1, in the header, byte 7:")
    assert "0xe9" in message


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    data = load_dataset(write(tmp_path, codecs.BOM_UTF8 + b"id,title,ctr\n7,first,0.25\n"), RAW)
    assert data.summary.columns == ["id", "title", "ctr"]
    assert data.ids.tolist() == ["7"]
    assert data.titles == ["first"]
    assert data.raw_ctr is not None and data.raw_ctr.tolist() == [0.25]


def test_unparsable_csv_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "id,title,ctr\n1,a,0.1\n2,b,0.2,extra\n")
    rejects(path, RAW, CsvReadError, "cannot parse as CSV", "line 3")


# --- schema ---------------------------------------------------------------------------------------


def test_missing_mapped_column_lists_the_file_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "id,headline,ctr\n1,a,0.1\n")
    rejects(
        path,
        RAW,
        CsvValidationError,
        "missing column 'title'",
        "required by mapping 'raw'",
        "the file has 'id', 'headline', 'ctr'",
    )


def test_several_missing_columns_are_all_named(tmp_path: Path) -> None:
    path = write(tmp_path, "headline,norm\na,0.1\n")
    rejects(
        path, FULL, CsvValidationError, "missing columns 'title', 'id', 'cat', 'grp'", "'headline', 'norm'"
    )


# --- target values -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "", "   ", "nan", "NaN", "inf", "-inf", "1e999", "0.1%"])
def test_non_finite_raw_ctr_is_fatal(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"id,title,ctr\n1,a,0.1\n2,b,{value}\n3,c,0.3\n")
    rejects(path, RAW, CsvValidationError, "column 'ctr'", "row 2:", "expected a finite number", "got '")


def test_non_numeric_value_is_quoted_in_the_message(tmp_path: Path) -> None:
    path = write(tmp_path, "id,title,norm\n1,a,0.1\n2,b,0.2\n3,c,high\n4,d,low\n")
    rejects(
        path, NORM, CsvValidationError, "column 'norm'", "rows 3, 4:", "expected a finite number", "'high'"
    )


@pytest.mark.parametrize("column", ["clicks", "imps"])
def test_non_numeric_counts_are_fatal(tmp_path: Path, column: str) -> None:
    values = {"clicks": "5", "imps": "100", column: "n/a"}
    path = write(tmp_path, f"id,title,clicks,imps\n1,a,1,10\n2,b,{values['clicks']},{values['imps']}\n")
    rejects(
        path, COUNTS, CsvValidationError, f"column {column!r}", "row 2:", "expected a finite number", "'n/a'"
    )


@pytest.mark.parametrize(("value", "shown"), [("-0.01", "-0.01"), ("1.5", "1.5"), ("1.0000001", "1.0000001")])
def test_raw_ctr_outside_unit_interval(tmp_path: Path, value: str, shown: str) -> None:
    path = write(tmp_path, f"id,title,ctr\n1,a,0\n2,b,1\n3,c,{value}\n")
    rejects(
        path,
        RAW,
        CsvValidationError,
        "column 'ctr'",
        "row 3:",
        "expected a value within [0, 1]",
        f"got {shown}",
    )


@pytest.mark.parametrize("value", ["-0.2", "1.2"])
def test_normalized_ctr_outside_unit_interval(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"id,title,norm\n1,a,{value}\n2,b,0.5\n")
    rejects(
        path,
        NORM,
        CsvValidationError,
        "column 'norm'",
        "row 1:",
        "expected a value within [0, 1]",
        f"got {value}",
    )


def test_unit_interval_bounds_are_accepted(tmp_path: Path) -> None:
    data = load_dataset(write(tmp_path, "id,title,ctr\n1,a,0\n2,b,1\n3,c,0.0\n"), RAW)
    assert data.raw_ctr is not None and data.raw_ctr.tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize(("column", "row"), [("clicks", "2,b,-1,10"), ("imps", "2,b,0,-10")])
def test_negative_counts(tmp_path: Path, column: str, row: str) -> None:
    path = write(tmp_path, f"id,title,clicks,imps\n1,a,1,10\n{row}\n")
    rejects(
        path, COUNTS, CsvValidationError, f"column {column!r}", "row 2:", "expected a value within [0, inf]"
    )


@pytest.mark.parametrize(
    ("column", "row", "shown"),
    [
        ("clicks", "2,b,2.5,10", "'2.5'"),
        ("imps", "2,b,1,10.25", "'10.25'"),
        ("clicks", "2,b,1e-3,10", "'1e-3'"),
    ],
)
def test_fractional_counts_are_fatal(tmp_path: Path, column: str, row: str, shown: str) -> None:
    path = write(tmp_path, f"id,title,clicks,imps\n1,a,1,10\n{row}\n3,c,4,9\n")
    rejects(
        path, COUNTS, CsvValidationError, f"column {column!r}", "row 2:", "expected a whole number", shown
    )


def test_fractional_counts_list_every_bad_row(tmp_path: Path) -> None:
    path = write(tmp_path, "id,title,clicks,imps\n1,a,0.5,10\n2,b,1,10\n3,c,1.5,10\n")
    rejects(path, COUNTS, CsvValidationError, "column 'clicks'", "rows 1, 3:", "'0.5'")


def test_whole_counts_written_as_floats_are_accepted(tmp_path: Path) -> None:
    """``12.0`` and ``1e3`` are whole numbers (a spreadsheet export may write counts so)."""
    data = load_dataset(write(tmp_path, "id,title,clicks,imps\n1,a,12.0,1e3\n2,b, 3 ,40.00\n"), COUNTS)
    assert data.clicks is not None and data.clicks.tolist() == [12.0, 3.0]
    assert data.impressions is not None and data.impressions.tolist() == [1000.0, 40.0]


def test_clicks_above_impressions(tmp_path: Path) -> None:
    path = write(tmp_path, "id,title,clicks,imps\n1,a,1,10\n2,b,11,10\n3,c,10,10\n4,d,3,2\n")
    rejects(
        path,
        COUNTS,
        CsvValidationError,
        "columns 'clicks'/'imps'",
        "rows 2, 4:",
        "expected clicks <= impressions",
    )


# --- ids -----------------------------------------------------------------------------------------


def test_duplicate_ids_list_both_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "id,title,ctr\n7,a,0.1\n8,b,0.2\n7,c,0.3\n9,d,0.4\n")
    rejects(path, RAW, CsvValidationError, "column 'id'", "rows 1, 3:", "expected unique ids", "such as '7'")


def test_ids_are_compared_after_trimming(tmp_path: Path) -> None:
    path = write(tmp_path, "id,title,ctr\n7,a,0.1\n 7 ,b,0.2\n")
    rejects(path, RAW, CsvValidationError, "rows 1, 2:", "expected unique ids")


def test_empty_id(tmp_path: Path) -> None:
    path = write(tmp_path, "id,title,ctr\n1,a,0.1\n,b,0.2\n  ,c,0.3\n")
    rejects(path, RAW, CsvValidationError, "column 'id'", "rows 2, 3:", "expected an id")


def test_without_an_id_column_ids_are_row_numbers(tmp_path: Path) -> None:
    mapping = ColumnMapping(title="title", ctr="ctr")
    data = load_dataset(write(tmp_path, "title,ctr\na,0.1\n,0.2\nc,0.3\n"), mapping)
    assert data.ids.tolist() == ["1", "3"]  # the original data-row numbers of the kept rows
    assert "no id column: ids are 1-based row numbers" in data.summary.notes


# --- drop rules ----------------------------------------------------------------------------------


def test_empty_titles_are_dropped_and_reported(tmp_path: Path) -> None:
    path = write(tmp_path, 'id,title,ctr\n1,a,0.1\n2,,0.2\n3,c,0.3\n4,"   ",0.4\n5,e,0.5\n')
    data = load_dataset(path, RAW)
    summary = data.summary
    assert summary.rows_read == 5
    assert summary.rows_kept == 3 == len(data)
    assert summary.dropped == [DroppedRows(rule="empty title", count=2, rows=[2, 4])]
    assert data.ids.tolist() == ["1", "3", "5"]
    assert data.titles == ["a", "c", "e"]
    assert data.raw_ctr is not None and data.raw_ctr.tolist() == [0.1, 0.3, 0.5]
    assert len(data.extra) == 3 and data.extra["id"].tolist() == ["1", "3", "5"]
    rendered = summary.render()
    assert "empty title: 2 (rows 2, 4)" in rendered
    assert "rows read       5" in rendered and "rows kept       3" in rendered


def test_rows_without_a_group_id_are_dropped_and_reported(tmp_path: Path) -> None:
    mapping = ColumnMapping(title="title", group="test", clicks="clicks", impressions="imps")
    body = "title,test,clicks,imps\na,t1,1,10\nb, ,2,10\nc,t1,3,10\nd,,0,10\n,,0,10\n"
    data = load_dataset(write(tmp_path, body), mapping)
    # Row 5 has no title either: counted once, under the first rule.
    assert data.summary.dropped == [
        DroppedRows(rule="empty title", count=1, rows=[5]),
        DroppedRows(rule="empty group id ('test')", count=2, rows=[2, 4]),
    ]
    assert data.groups is not None and data.groups.tolist() == ["t1", "t1"]
    assert "empty group id ('test'): 2 (rows 2, 4)" in data.summary.render()
    # Without a target (predictions only) the group is unused and every titled row stays.
    unlabelled = load_dataset(write(tmp_path, "title,test\na,t1\nb,\n", "inference.csv"), mapping)
    assert unlabelled.titles == ["a", "b"] and unlabelled.summary.dropped == []


def test_zero_impression_rows_are_dropped_and_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "id,title,clicks,imps\n1,a,1,10\n2,b,0,0\n3,,0,0\n4,d,5,20\n5,e,0,0\n")
    data = load_dataset(path, COUNTS)
    # Row 3 is dropped for its empty title and counted once, under that rule only.
    assert data.summary.dropped == [
        DroppedRows(rule="empty title", count=1, rows=[3]),
        DroppedRows(rule="zero impressions", count=2, rows=[2, 5]),
    ]
    assert data.ids.tolist() == ["1", "4"]
    assert data.raw_ctr is not None and data.raw_ctr.tolist() == [0.1, 0.25]
    assert "zero impressions: 2 (rows 2, 5)" in data.summary.render()


def test_undefined_ctr_of_a_zero_impression_row_is_not_fatal(tmp_path: Path) -> None:
    """Seed layout: with zero impressions the CTR columns are blank (0/0), and the row is dropped."""
    path = write(
        tmp_path,
        "id,post_title,category_name,Impressions,Url Clicks,URL CTR,Normalized URL CTR\n"
        "1,a,Tech,100,5,0.05,0.5\n"
        "2,b,Tech,0,0,,\n"
        "3,c,Gaming,50,1,0.02,0.2\n",
    )
    data = load_dataset(path, SEED)
    assert data.summary.dropped == [DroppedRows(rule="zero impressions", count=1, rows=[2])]
    assert data.raw_ctr is not None and data.raw_ctr.tolist() == [0.05, 0.02]
    assert data.ctr_normalized_given is not None and data.ctr_normalized_given.tolist() == [0.5, 0.2]


def test_bad_ctr_of_a_kept_row_is_still_fatal_next_to_dropped_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "id,post_title,category_name,Impressions,Url Clicks,URL CTR,Normalized URL CTR\n"
        "1,a,Tech,0,0,,\n"
        "2,b,Tech,10,1,,0.5\n",
    )
    rejects(path, SEED, CsvValidationError, "column 'URL CTR'", "row 2:", "expected a finite number")


@pytest.mark.parametrize(
    ("mapping", "content"),
    [
        pytest.param(RAW, "id,title,ctr\n1,a,0.1\n2,,oops\n3,c,0.3\n", id="bad-ctr"),
        pytest.param(NORM, "id,title,norm\n1,a,0.1\n2,  ,7\n3,c,0.3\n", id="normalized-out-of-range"),
        pytest.param(COUNTS, "id,title,clicks,imps\n1,a,1,10\n2,,n/a,\n3,c,3,30\n", id="blank-counts"),
        pytest.param(COUNTS, "id,title,clicks,imps\n1,a,1,10\n2,,2.5,-1\n3,c,3,30\n", id="bad-counts"),
        pytest.param(COUNTS, "id,title,clicks,imps\n1,a,1,10\n2,,9,1\n3,c,3,30\n", id="clicks-over-imps"),
        pytest.param(RAW, "id,title,ctr\n1,a,0.1\n,,\n3,c,0.3\n", id="blank-line-of-commas"),
        pytest.param(RAW, "id,title,ctr\n1,a,0.1\n1,,0.2\n3,c,0.3\n", id="id-of-a-dropped-row"),
    ],
)
def test_an_empty_title_row_is_dropped_whatever_its_other_cells(
    tmp_path: Path, mapping: ColumnMapping, content: str
) -> None:
    """One rule for every target source: an empty-title row is dropped and counted before any other
    cell of it is checked, so its blank or broken values never make the file fatal."""
    data = load_dataset(write(tmp_path, content), mapping)
    assert data.summary.dropped == [DroppedRows(rule="empty title", count=1, rows=[2])]
    assert data.ids.tolist() == ["1", "3"]
    assert data.summary.rows_read == 3 and data.summary.rows_kept == 2
    assert "empty title: 1 (row 2)" in data.summary.render()


def test_no_rows_left_names_the_counts(tmp_path: Path) -> None:
    path = write(tmp_path, "id,title,clicks,imps\n1,,1,10\n2,b,0,0\n3,  ,0,5\n")
    rejects(
        path,
        COUNTS,
        CsvValidationError,
        "no rows left after validation",
        "3 read",
        "2 dropped for empty title",
        "1 dropped for zero impressions",
    )


def test_more_than_ten_bad_rows_lists_ten(tmp_path: Path) -> None:
    rows = "".join(f"{i},t{i},x\n" for i in range(1, 14))
    message = rejects(
        write(tmp_path, "id,title,ctr\n" + rows),
        RAW,
        CsvValidationError,
        "rows 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 3 more:",
    )
    assert ", 11" not in message


def test_more_than_ten_dropped_rows_render_ten(tmp_path: Path) -> None:
    rows = "".join(f"{i},,0.1\n" for i in range(1, 13)) + "13,kept,0.2\n"
    data = load_dataset(write(tmp_path, "id,title,ctr\n" + rows), RAW)
    assert data.summary.dropped[0].count == 12
    assert "empty title: 12 (rows 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2 more)" in data.summary.render()


# --- target source -------------------------------------------------------------------------------

FULL_HEADER = ["id", "title", "cat", "grp", "norm", "ctr", "clicks", "imps"]
FULL_ROWS = [
    ["1", "first", "Tech", "g1", "0.9", "0.05", "10", "100"],
    ["2", "second", "", "g1", "0.1", "0.01", "1", "50"],
    ["3", "third", "Space", "g2", "0.5", "0.02", "3", "30"],
]


def full_csv(tmp_path: Path, drop: tuple[str, ...] = ()) -> Path:
    keep = [i for i, c in enumerate(FULL_HEADER) if c not in drop]
    lines = [",".join(FULL_HEADER[i] for i in keep)] + [",".join(r[i] for i in keep) for r in FULL_ROWS]
    return write(tmp_path, "\n".join(lines) + "\n")


def test_normalized_column_is_preferred(tmp_path: Path) -> None:
    data = load_dataset(full_csv(tmp_path), FULL)
    assert data.summary.target_source == "normalized"
    assert data.summary.mode == "train" and data.has_target
    assert data.ctr_normalized_given is not None and data.ctr_normalized_given.tolist() == [0.9, 0.1, 0.5]
    # The raw CTR column (not clicks/impressions) gives the raw CTR.
    assert data.raw_ctr is not None and data.raw_ctr.tolist() == [0.05, 0.01, 0.02]
    assert data.clicks is not None and data.clicks.tolist() == [10, 1, 3]
    assert data.summary.has_group and data.summary.has_category
    assert data.categories == ["Tech", None, "Space"]
    assert data.groups is not None and data.groups.tolist() == ["g1", "g1", "g2"]


def test_raw_ctr_when_no_normalized_column(tmp_path: Path) -> None:
    data = load_dataset(full_csv(tmp_path, drop=("norm",)), FULL)
    assert data.summary.target_source == "ctr"
    assert data.ctr_normalized_given is None
    assert data.raw_ctr is not None and data.raw_ctr.tolist() == [0.05, 0.01, 0.02]


def test_clicks_over_impressions_when_no_ctr_column(tmp_path: Path) -> None:
    data = load_dataset(full_csv(tmp_path, drop=("norm", "ctr")), FULL)
    assert data.summary.target_source == "clicks/impressions"
    assert data.raw_ctr is not None and data.clicks is not None and data.impressions is not None
    np.testing.assert_array_equal(data.raw_ctr, data.clicks / data.impressions)
    assert data.raw_ctr.tolist() == [0.1, 0.02, 0.1]


def test_inference_only_without_any_target(tmp_path: Path) -> None:
    # Clicks without impressions is no target either; its values are then not read at all.
    path = full_csv(tmp_path, drop=("norm", "ctr", "imps"))
    data = load_dataset(path, FULL)
    assert data.summary.target_source is None
    assert data.summary.mode == "inference"
    assert not data.has_target
    assert data.raw_ctr is None and data.ctr_normalized_given is None and data.clicks is None
    assert any("inference-only mode" in note for note in data.summary.notes)
    assert "none (inference-only mode)" in data.summary.render()
    assert len(data) == 3


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("id,title,Norm ", "'Norm '"),
        ("id,title,NORM", "'NORM'"),
    ],
)
def test_misspelled_target_column_is_named_in_the_inference_notice(
    tmp_path: Path, header: str, named: str
) -> None:
    path = write(tmp_path, f"{header}\n1,a,0.1\n2,b,0.2\n")
    data = load_dataset(path, NORM)
    assert data.summary.mode == "inference"  # no exact target column: still inference-only
    assert len(data.summary.target_hints) == 1
    hint = data.summary.target_hints[0]
    assert named in hint and "'norm'" in hint and "mapping 'norm'" in hint
    (note,) = [n for n in data.summary.notes if "inference-only mode" in n]
    assert named in note and "fix the header or the mapping" in note
    assert named in data.summary.render()


def test_a_typo_in_a_seed_target_column_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "id,post_title,category_name,Normalised URL CTR\n1,a,Tech,0.3\n")
    data = load_dataset(path, SEED)
    assert data.summary.mode == "inference"
    assert data.summary.target_hints == [
        "column 'Normalised URL CTR' looks like a misspelling of 'Normalized URL CTR', "
        "the ctr_normalized column of mapping 'seed'"
    ]


def test_misspelled_count_column_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "id,title,Clicks,imps\n1,a,1,10\n")
    data = load_dataset(path, COUNTS)
    assert data.summary.mode == "inference"
    assert data.summary.target_hints == [
        "column 'Clicks' differs only in case, spaces or underscores from 'clicks', "
        "the clicks column of mapping 'counts'"
    ]


def test_misspelled_preferred_target_is_noted_when_another_source_is_used(tmp_path: Path) -> None:
    """A seed-like file whose normalized column is mistyped trains on the raw CTR, and says so."""
    path = write(tmp_path, "id,title,ctr,Normalized\n1,a,0.1,0.5\n2,b,0.2,0.6\n")
    mapping = ColumnMapping(name="m", id="id", title="title", ctr="ctr", ctr_normalized="normalized")
    data = load_dataset(path, mapping)
    assert data.summary.target_source == "ctr"
    assert any(n.startswith("target taken from ctr; column 'Normalized'") for n in data.summary.notes)


def test_unrelated_columns_give_no_hint(tmp_path: Path) -> None:
    data = load_dataset(write(tmp_path, "id,title,score,views\n1,a,0.1,3\n"), FULL_NO_GROUP)
    assert data.summary.mode == "inference"
    assert data.summary.target_hints == []
    assert (
        data.summary.notes[0] == "no target column found: inference-only mode (predictions only, no metrics)"
    )


FULL_NO_GROUP = FULL.model_copy(update={"category": None, "group": None})


def test_normalized_only_notes_that_ctr_is_reported_normalized(tmp_path: Path) -> None:
    data = load_dataset(full_csv(tmp_path, drop=("ctr", "clicks", "imps")), FULL)
    assert data.summary.target_source == "normalized"
    assert data.raw_ctr is None
    assert "no raw CTR column: CTR is reported normalized only" in data.summary.notes


# --- text ----------------------------------------------------------------------------------------


def test_multiline_quoted_hebrew_and_emoji_titles_are_intact(tmp_path: Path) -> None:
    titles = [
        "first line\nsecond line",
        'He said "wow", twice',
        "כותרת בעברית: מה חדש?",
        "Rocket launch 🚀 today 👨\u200d👩\u200d👧",
    ]
    frame = pd.DataFrame({"id": ["1", "2", "3", "4"], "title": titles, "ctr": ["0.1", "0.2", "0.3", "0.4"]})
    path = tmp_path / "text.csv"
    frame.to_csv(path, index=False, encoding="utf-8")
    assert b'"first line\nsecond line"' in path.read_bytes()
    data = load_dataset(path, RAW)
    assert data.titles == titles
    assert data.ids.tolist() == ["1", "2", "3", "4"]
    assert data.summary.rows_read == 4


def test_subset_keeps_arrays_aligned(tmp_path: Path) -> None:
    data = load_dataset(full_csv(tmp_path), FULL)
    part = data.subset(np.array([2, 0], dtype=np.int64))
    assert isinstance(part, HeadlineData)
    assert part.ids.tolist() == ["3", "1"]
    assert part.titles == ["third", "first"]
    assert part.categories == ["Space", "Tech"]
    assert part.groups is not None and part.groups.tolist() == ["g2", "g1"]
    assert part.raw_ctr is not None and part.raw_ctr.tolist() == [0.02, 0.05]
    assert part.ctr_normalized_given is not None and part.ctr_normalized_given.tolist() == [0.5, 0.9]
    assert part.clicks is not None and part.clicks.tolist() == [3, 10]
    assert part.impressions is not None and part.impressions.tolist() == [30, 100]
    assert part.extra["id"].tolist() == ["3", "1"]
    assert part.extra.index.tolist() == [0, 1]
    assert len(part) == 2
    assert part.summary == data.summary
    # The original is untouched.
    assert data.ids.tolist() == ["1", "2", "3"]


def test_summary_records_file_mapping_and_digest(tmp_path: Path) -> None:
    import hashlib

    path = full_csv(tmp_path)
    summary = load_dataset(path, FULL).summary
    assert summary.file == str(path)
    assert summary.mapping == "full"
    assert summary.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary.columns == FULL_HEADER
    assert "dropped rows    0" in summary.render()


# --- the real data (../shared/data) --------------------------------------------------------------


@pytest.mark.shared_data
def test_seed_train_csv(shared_data: Path) -> None:
    data = load_dataset(shared_data / "seed" / "train.csv", SEED)
    assert len(data) == 799 == data.summary.rows_read == data.summary.rows_kept
    assert data.summary.target_source == "normalized"
    assert data.summary.mode == "train"
    assert data.ctr_normalized_given is not None
    assert float(data.ctr_normalized_given.min()) == 0.0 and float(data.ctr_normalized_given.max()) == 1.0
    assert data.categories is not None and data.groups is None


@pytest.mark.shared_data
def test_seed_inference_csv(shared_data: Path) -> None:
    data = load_dataset(shared_data / "seed" / "inference.csv", SEED)
    assert data.summary.mode == "inference"
    assert data.summary.target_source is None
    assert len(data) == 200
    assert not data.has_target


@pytest.mark.shared_data
def test_upworthy_packages_csv(shared_data: Path) -> None:
    data = load_dataset(shared_data / "upworthy" / "packages.csv", UPWORTHY)
    assert data.summary.target_source == "clicks/impressions"
    assert data.summary.has_group and data.groups is not None
    assert len(data.groups) == len(data) > 0
    assert data.raw_ctr is not None and data.clicks is not None and data.impressions is not None
    assert bool(np.all(data.impressions > 0))
    np.testing.assert_array_equal(data.raw_ctr, data.clicks / data.impressions)
