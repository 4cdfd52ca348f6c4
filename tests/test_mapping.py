"""Column mappings (training/mapping.py): built-ins, custom JSON/TOML files and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artifact.errors import DataError, MappingError
from training.data import load_dataset
from training.mapping import BUILTIN, SEED, UPWORTHY, ColumnMapping, resolve_mapping


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def rejects(spec: str | Path, *fragments: str) -> str:
    with pytest.raises(MappingError) as info:
        resolve_mapping(spec)
    message = str(info.value)
    assert message.startswith(f"mapping {spec}"), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --- built-ins -----------------------------------------------------------------------------------


def test_builtins_resolve_by_name() -> None:
    assert resolve_mapping("seed") is SEED
    assert resolve_mapping("upworthy") is UPWORTHY
    assert resolve_mapping(None) is SEED
    assert set(BUILTIN) == {"seed", "upworthy", "outcomes", "outcomes-ungrouped"}


def test_seed_mapping_matches_the_seed_layout() -> None:
    assert (SEED.name, SEED.id, SEED.title, SEED.category) == ("seed", "id", "post_title", "category_name")
    assert SEED.ctr_normalized == "Normalized URL CTR"
    assert SEED.ctr == "URL CTR"
    assert (SEED.clicks, SEED.impressions) == ("Url Clicks", "Impressions")
    assert SEED.group is None
    assert {"STR_High_Low", "CTR_per_cluster_avg", "Impressions", "Url Clicks"} <= set(SEED.leaky)


def test_upworthy_mapping_matches_the_archive_layout() -> None:
    assert (UPWORTHY.name, UPWORTHY.id, UPWORTHY.title) == ("upworthy", "row_id", "headline")
    assert UPWORTHY.group == "clickability_test_id"
    assert (UPWORTHY.clicks, UPWORTHY.impressions) == ("clicks", "impressions")
    assert UPWORTHY.ctr is None and UPWORTHY.ctr_normalized is None and UPWORTHY.category is None


def test_mappings_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        SEED.title = "headline"  # type: ignore[misc]


# --- custom files --------------------------------------------------------------------------------

README_EXAMPLE = {"title": "headline", "group": "test_id", "clicks": "clicks", "impressions": "views"}


def test_custom_json_file(tmp_path: Path) -> None:
    path = write(tmp_path / "my_tests.json", json.dumps(README_EXAMPLE))
    mapping = resolve_mapping(str(path))
    assert mapping == ColumnMapping(name="my_tests", **README_EXAMPLE)
    assert mapping.name == "my_tests"  # the file stem
    assert mapping.id is None and mapping.ctr is None
    assert resolve_mapping(path) == mapping  # a Path works as well as a str


def test_custom_toml_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "news.toml",
        'title = "headline"\nid = "uid"\ncategory = "section"\nctr = "rate"\nleaky = ["rate", "views"]\n',
    )
    mapping = resolve_mapping(str(path))
    assert mapping.name == "news"
    assert (mapping.title, mapping.id, mapping.category, mapping.ctr) == (
        "headline",
        "uid",
        "section",
        "rate",
    )
    assert mapping.leaky == ("rate", "views")
    assert mapping.clicks is None and mapping.impressions is None


def test_an_explicit_name_wins_over_the_file_stem(tmp_path: Path) -> None:
    path = write(tmp_path / "file.json", json.dumps({"name": "newsroom", "title": "t"}))
    assert resolve_mapping(path).name == "newsroom"


def test_a_file_named_like_a_builtin_is_still_a_file(tmp_path: Path) -> None:
    path = write(tmp_path / "seed.json", json.dumps({"title": "headline"}))
    mapping = resolve_mapping(path)
    assert mapping is not SEED and mapping.title == "headline"


# --- errors --------------------------------------------------------------------------------------


def test_mapping_error_is_a_data_error() -> None:
    assert issubclass(MappingError, DataError)


def test_unknown_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "m.json", json.dumps({"title": "headline", "headline_column": "x", "ctr": "c"}))
    rejects(path, "headline_column", "Extra inputs are not permitted")


@pytest.mark.parametrize("only", ["clicks", "impressions"])
def test_clicks_and_impressions_go_together(tmp_path: Path, only: str) -> None:
    path = write(tmp_path / "m.json", json.dumps({"title": "headline", only: "n"}))
    rejects(path, "clicks and impressions must be mapped together")


def test_title_is_required(tmp_path: Path) -> None:
    path = write(tmp_path / "m.toml", 'id = "uid"\nctr = "rate"\n')
    rejects(path, "title: Field required")


def test_column_names_must_be_strings(tmp_path: Path) -> None:
    path = write(tmp_path / "m.json", json.dumps({"title": 3}))
    rejects(path, "title:", "valid string")


@pytest.mark.parametrize(
    ("text", "kind"), [("[1, 2]", "list"), ('"seed"', "str"), ("42", "int"), ("null", "NoneType")]
)
def test_not_a_table(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path / "m.json", text)
    rejects(path, "expected a table of column names", f"got {kind}")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("m.json", '{"title": "headline",'),
        ("m.json", ""),
        ("m.toml", 'title = "headline\n'),
        ("m.toml", "title: headline\n"),
        ("m.json", b'{"title": "caf\xe9"}'),
    ],
    ids=["json-truncated", "json-empty", "toml-unterminated", "toml-yaml-like", "json-latin-1"],
)
def test_unparsable_files(tmp_path: Path, name: str, text: str | bytes) -> None:
    rejects(write(tmp_path / name, text), "cannot parse")


@pytest.mark.parametrize("spec", ["bogus", "Seed", "no/such/mapping.json"])
def test_unknown_name_or_missing_file(spec: str) -> None:
    rejects(
        spec,
        "expected one of ['outcomes', 'outcomes-ungrouped', 'seed', 'upworthy'] or a JSON/TOML mapping file",
    )


def test_a_directory_is_not_a_mapping_file(tmp_path: Path) -> None:
    rejects(tmp_path, "expected one of ['outcomes', 'outcomes-ungrouped', 'seed', 'upworthy']")


# --- a custom mapping drives load_dataset ---------------------------------------------------------


def test_custom_mapping_with_a_raw_ctr_column(tmp_path: Path) -> None:
    mapping = resolve_mapping(
        write(
            tmp_path / "press.json",
            json.dumps({"title": "headline", "id": "uid", "category": "section", "ctr": "rate"}),
        )
    )
    csv = write(
        tmp_path / "press.csv",
        "uid,headline,section,rate,views\na1,Budget vote tonight,Politics,0.031,1000\n"
        "a2,Ten tips for spring,,0.12,50\na3,,Sport,0.5,10\n",
    )
    data = load_dataset(csv, mapping)
    assert data.summary.mapping == "press"
    assert data.summary.target_source == "ctr"
    assert data.summary.mode == "train"
    assert data.ids.tolist() == ["a1", "a2"]
    assert data.titles == ["Budget vote tonight", "Ten tips for spring"]
    assert data.categories == ["Politics", None]
    assert data.raw_ctr is not None and data.raw_ctr.tolist() == [0.031, 0.12]
    assert data.ctr_normalized_given is None and data.clicks is None and data.groups is None
    assert [d.rule for d in data.summary.dropped] == ["empty title"]

    # The mapping's target column is the one validated.
    write(csv, "uid,headline,section,rate\na1,x,Politics,0.2\na2,y,Sport,1.2\n")
    with pytest.raises(DataError, match=r"column 'rate', row 2: expected a value within \[0, 1\], got 1.2"):
        load_dataset(csv, mapping)

    # Without its target column the same mapping scores in inference-only mode.
    write(csv, "uid,headline,section\na1,x,Politics\n")
    assert load_dataset(csv, mapping).summary.mode == "inference"


def test_a_misspelled_target_in_a_custom_mapping_is_named_wherever_it_matters(tmp_path: Path) -> None:
    """The mapping says ``click rate``, the file says ``Click Rate``: no exact target column, so the data
    is inference-only (predict still works), but the notice, the ``train`` error and the evaluation
    notice all name the near miss instead of silently dropping the target."""
    from artifact.errors import CsvValidationError
    from training.evaluate import INFERENCE_NOTICE, inference_notice
    from training.run import ensure_trainable
    from training.train import train

    mapping = resolve_mapping(
        write(tmp_path / "m.json", json.dumps({"title": "headline", "ctr": "click rate"}))
    )
    csv = write(tmp_path / "d.csv", "headline,Click Rate\nBudget vote tonight,0.03\nTen tips,0.12\n")
    data = load_dataset(csv, mapping)
    assert data.summary.mode == "inference" and len(data) == 2
    expected = "column 'Click Rate' differs only in case, spaces or underscores from 'click rate'"
    assert data.summary.target_hints[0].startswith(expected)
    assert expected in data.summary.render()
    notice = inference_notice(data)
    assert notice.startswith(INFERENCE_NOTICE) and expected in notice
    for attempt in (lambda: ensure_trainable(data, None), lambda: train(data, tmp_path / "out")):
        with pytest.raises(CsvValidationError) as info:
            attempt()
        message = str(info.value)
        assert str(csv) in message and "nothing to train on" in message and expected in message
        assert "\n" not in message
    assert not (tmp_path / "out").exists()
