"""Self-contained export: the rows stored in the checkpoint, export and the CLI without --data."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifact.errors import ExportError
from artifact.manifest import read_manifest
from artifact.registry import Registry
from artifact.runtime import load_model
from export.build import export_version
from export.parity import HARD_ROWS
from headline_scorer import SAMPLE_DATA
from tests.cli_support import invoke
from tests.export_support import exported_version, sample_checkpoint, sample_data
from training.checkpoint import load_checkpoint, save_checkpoint
from training.data import HeadlineData, load_dataset
from training.export_rows import CHECKPOINT_KEY, ExportRows, StoredValidation, build_export_rows
from training.mapping import UPWORTHY
from training.train import TrainConfig, train

FLOAT_KEYS = ("raw_ctr", "ctr_normalized_given", "clicks", "impressions")


def _bits(values: np.ndarray | None) -> list[int] | None:
    return None if values is None else np.asarray(values, dtype=np.float64).view(np.int64).tolist()


def _assert_metrics_close(got: Mapping[str, object], expected: Mapping[str, object]) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
        else:
            assert got[key] == value, key


def _with_rows(tmp_path: Path, rows: ExportRows | None) -> Path:
    """A copy of the sample checkpoint whose stored rows are ``rows`` (None: none, as before they existed)."""
    payload = load_checkpoint(sample_checkpoint())
    payload.pop("format_version")
    payload.pop(CHECKPOINT_KEY)
    if rows is not None:
        payload[CHECKPOINT_KEY] = rows.to_json()
    path = tmp_path / "best.pt"
    save_checkpoint(path, payload)
    return path


def _split_index(data: HeadlineData) -> tuple[np.ndarray, np.ndarray]:
    val_ids = set(json.loads(load_checkpoint(sample_checkpoint())["split"])["val_ids"])
    is_val = np.array([str(i) in val_ids for i in data.ids])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


@pytest.mark.slow
def test_export_without_data_matches_export_with_data(tmp_path: Path) -> None:
    result = export_version(sample_checkpoint(), None, tmp_path / "v")
    with_data = read_manifest(exported_version())
    manifest = read_manifest(tmp_path / "v")
    assert manifest == result.manifest
    assert load_model(tmp_path / "v").version == manifest.model_version
    assert manifest.parity.passed and manifest.parity.rows == with_data.parity.rows > 0
    assert manifest.parity.max_abs_diff_quality_prob <= 1e-5
    _assert_metrics_close(manifest.validation_metrics, with_data.validation_metrics)
    assert manifest.validation_metrics["quality_roc_auc"] is not None
    # The sample has fewer training rows than the cap: the stored sample is every training row.
    assert manifest.drift == with_data.drift and manifest.canaries == with_data.canaries
    train_index, val_index = _split_index(sample_data())
    assert manifest.training["drift_reference_source"] == "checkpoint sample"
    assert with_data.training["drift_reference_source"] == "data"
    for info in (manifest.training, with_data.training):
        assert info["drift_reference_rows"] == info["train_rows"] == len(train_index)
        assert info["validation_rows"] == len(val_index)


@pytest.mark.slow
def test_checkpoint_rows_equal_the_csv_rows() -> None:
    data = sample_data()
    train_index, val_index = _split_index(data)
    rows = ExportRows.from_json(load_checkpoint(sample_checkpoint())[CHECKPOINT_KEY])
    val = rows.validation.to_data()
    expected = data.subset(val_index)
    assert val.ids.tolist() == expected.ids.tolist() and val.titles == expected.titles
    assert val.categories == expected.categories and val.summary == data.summary
    for key in FLOAT_KEYS:
        assert _bits(getattr(val, key)) == _bits(getattr(expected, key)), key
    assert rows.drift_sample.titles == [data.titles[i] for i in train_index]
    assert rows.drift_sample.drawn_from == len(train_index)


def _hard_data() -> HeadlineData:
    extra = ["\u202bשלום\u202c مرحبا", "tab\there\r\nnewline\u2028sep", '"q" \\ /']
    titles = [*(t for t, _ in HARD_ROWS if t), *extra]
    n = len(titles)
    categories: list[object] = [None, "", np.str_("News"), 7, float("nan"), "😀 emoji", "ע", *["x"] * (n - 7)]
    specials = [float("nan"), float("inf"), -float("inf"), -0.0, 5e-324, 0.1 + 0.2, 1.7976931348623157e308]
    raw = np.array([*specials, *np.linspace(0, 1, n - len(specials))], dtype=np.float64)
    return HeadlineData(
        ids=np.array([f"id-{i}-é" for i in range(n)]),
        titles=titles,
        categories=categories,  # type: ignore[arg-type]
        groups=np.array([f"g{i % 3}" for i in range(n)]),
        raw_ctr=raw,
        ctr_normalized_given=None,
        clicks=np.arange(n, dtype=np.float64) * 1e6,
        impressions=None,
        summary=sample_data().summary,
        extra=pd.DataFrame(index=pd.RangeIndex(n)),
    )


def test_stored_rows_round_trip_hard_strings_and_floats(tmp_path: Path) -> None:
    data = _hard_data()
    rows = build_export_rows(data, np.arange(4), np.arange(len(data)), cap=10)
    # Through a real checkpoint file (weights_only loading) and back.
    save_checkpoint(tmp_path / "c.pt", {CHECKPOINT_KEY: rows.to_json()})
    again = ExportRows.from_json(load_checkpoint(tmp_path / "c.pt")[CHECKPOINT_KEY])
    assert again.to_json() == rows.to_json()  # (NaN != NaN, so compare the text)
    back = again.validation.to_data()
    assert back.titles == data.titles and back.ids.tolist() == data.ids.tolist()
    assert back.groups is not None and data.groups is not None
    assert back.groups.tolist() == data.groups.tolist()
    assert back.categories is not None
    assert back.categories[:7] == [None, "", "News", "7", None, "😀 emoji", "ע"]
    assert all(type(c) is str for c in back.categories if c is not None)
    assert back.raw_ctr is not None and data.raw_ctr is not None
    assert np.isnan(back.raw_ctr[0]) and _bits(back.raw_ctr[1:]) == _bits(data.raw_ctr[1:])  # -0.0 too
    assert _bits(back.clicks) == _bits(data.clicks)
    assert back.ctr_normalized_given is None and back.impressions is None
    assert len(back.extra) == len(data)
    assert again.drift_sample.titles == data.titles[:4]


@settings(max_examples=40, deadline=None)
@given(
    titles=st.lists(st.text(st.characters(codec="utf-8")), min_size=1, max_size=8),
    value=st.floats(allow_nan=False),
)
def test_stored_validation_round_trips_any_text(titles: list[str], value: float) -> None:
    n = len(titles)
    data = HeadlineData(
        ids=np.array([*titles, "x"])[:n],
        titles=titles,
        categories=titles[::-1],  # type: ignore[arg-type]
        groups=None,
        raw_ctr=np.full(n, value),
        ctr_normalized_given=None,
        clicks=None,
        impressions=None,
        summary=sample_data().summary,
        extra=pd.DataFrame(index=pd.RangeIndex(n)),
    )
    back = StoredValidation.model_validate_json(StoredValidation.from_data(data).model_dump_json()).to_data()
    assert back.titles == titles and back.categories == titles[::-1]
    assert back.ids.tolist() == data.ids.tolist()
    assert _bits(back.raw_ctr) == _bits(data.raw_ctr)


@pytest.mark.slow
def test_drift_sample_is_capped_seeded_and_recorded(tmp_path: Path) -> None:
    data = sample_data()
    train_index, val_index = _split_index(data)
    capped = build_export_rows(data, train_index, val_index, cap=100, seed=3)
    sample = capped.drift_sample
    assert len(sample.titles) == 100 and sample.drawn_from == len(train_index) and sample.seed == 3
    positions = [data.titles.index(t) for t in sample.titles]
    assert positions == sorted(positions) and set(positions) <= set(train_index.tolist())
    assert build_export_rows(data, train_index, val_index, cap=100, seed=3) == capped
    assert build_export_rows(data, train_index, val_index, cap=100, seed=4).drift_sample != sample
    full = build_export_rows(data, train_index, val_index, cap=len(train_index)).drift_sample
    assert len(full.titles) == len(train_index)
    with pytest.raises(ValueError, match="cap >= 1"):
        build_export_rows(data, train_index, val_index, cap=0)
    # Exported from a checkpoint holding the capped sample: the manifest says so.
    manifest = export_version(_with_rows(tmp_path, capped), None, tmp_path / "v").manifest
    assert manifest.training["drift_reference_rows"] == 100
    assert manifest.training["train_rows"] == len(train_index)
    assert manifest.training["drift_reference_source"] == "checkpoint sample"


@pytest.mark.slow
def test_old_checkpoint_without_rows_needs_data(tmp_path: Path) -> None:
    old = _with_rows(tmp_path, None)
    with pytest.raises(ExportError, match=r"no stored validation and training rows.*--data, or retrain"):
        export_version(old, None, tmp_path / "v")
    assert not (tmp_path / "v").exists()
    cli = invoke("export", "--checkpoint", old, "--registry", tmp_path / "reg", "--log-level", "WARNING")
    assert cli.exit_code == 2 and "--data" in cli.stderr and len(cli.stderr.strip().splitlines()) == 1
    assert Registry(tmp_path / "reg").versions() == []
    # With the training CSV the old checkpoint still exports, as before.
    manifest = export_version(old, sample_data(), tmp_path / "v").manifest
    assert manifest.training["drift_reference_source"] == "data"


@pytest.mark.slow
def test_cli_export_without_data_publishes(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    args = ("--checkpoint", sample_checkpoint(), "--registry", reg, "--log-level", "WARNING")
    result = invoke("export", *args)
    assert result.exit_code == 0, result.output
    version = Registry(reg).current_version()
    assert version is not None and f"exported {version}" in result.stdout
    manifest = Registry(reg).load_current().manifest
    assert manifest.training["drift_reference_source"] == "checkpoint sample"
    # --data is still accepted (another registry: the same model within the same second has the same name).
    other = tmp_path / "other"
    again = invoke(
        "export", "--checkpoint", sample_checkpoint(), "--registry", other,
        "--data", SAMPLE_DATA / "train.csv", "--log-level", "WARNING",
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert Registry(other).load_current().manifest.training["drift_reference_source"] == "data"


@pytest.mark.slow
def test_groups_and_counts_survive_the_checkpoint(tmp_path: Path) -> None:
    """A/B data (groups, clicks, impressions): the pairwise metrics match an export with the CSV."""
    data = load_dataset(SAMPLE_DATA / "ab_tests.csv", UPWORTHY)
    run = train(data, tmp_path / "run", TrainConfig(epochs=1), progress=False, drift_sample_rows=50)
    rows = ExportRows.from_json(load_checkpoint(run.best_checkpoint)[CHECKPOINT_KEY])
    assert rows.validation.groups is not None and rows.validation.clicks is not None
    assert len(rows.drift_sample.titles) == 50 and rows.drift_sample.drawn_from == len(run.train_index)
    alone = export_version(run.best_checkpoint, None, tmp_path / "alone").manifest
    with_data = export_version(run.best_checkpoint, data, tmp_path / "with-data").manifest
    assert alone.validation_metrics["pairwise_accuracy"] is not None
    _assert_metrics_close(alone.validation_metrics, with_data.validation_metrics)
    assert alone.training["drift_reference_rows"] == 50
    assert with_data.training["drift_reference_rows"] == len(run.train_index)
