"""Export: round trip, parity (incl. hostile strings, on the real data), manifest, drift reference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from artifact.drift import (
    MISSING_CATEGORY,
    NUMERIC_SIGNALS,
    OTHER_CATEGORY,
    category_bins,
    psi,
    quantile_bins,
)
from artifact.errors import ExportError, ManifestError, ParityError
from artifact.manifest import (
    CHECKPOINT_FILE,
    FEATURE_STATE_FILE,
    META_MANIFEST_SHA256,
    META_VERSION,
    MODEL_FILE,
    VERSION_PATTERN,
    manifest_digest,
    parse_manifest,
    read_manifest,
)
from artifact.runtime import load_model
from export.build import export_version
from export.parity import HARD_ROWS, compare
from tests.export_support import exported_version, sample_checkpoint, sample_data
from training.data import load_dataset
from training.mapping import SEED
from training.predict import TrainedModel


@pytest.mark.slow
def test_export_writes_a_complete_verified_version() -> None:
    version_dir = exported_version()
    assert sorted(p.name for p in version_dir.iterdir()) == sorted(
        ["manifest.json", MODEL_FILE, FEATURE_STATE_FILE, CHECKPOINT_FILE]
    )
    manifest = read_manifest(version_dir)
    assert VERSION_PATTERN.match(manifest.model_version)
    assert manifest.weights_sha256.startswith(manifest.model_version.split("-")[1])
    assert set(manifest.files) == {MODEL_FILE, FEATURE_STATE_FILE, CHECKPOINT_FILE}
    assert manifest.parity.passed and manifest.parity.hard_rows == len(HARD_ROWS)
    assert manifest.parity.max_abs_diff_quality_prob <= 1e-5
    assert manifest.training_data.sha256 == sample_data().summary.sha256
    assert manifest.validation_metrics["quality_roc_auc"] is not None
    assert len(manifest.canaries) >= 8
    # the label rule carries the trained threshold exactly (live quality labels rows with it)
    from stream.quality_measures import parse_label_rule

    trained = TrainedModel.from_checkpoint(sample_checkpoint())
    rule = parse_label_rule(manifest.label_rule)
    assert rule is not None and rule.rule == trained.label_rule.rule
    assert rule.threshold == trained.label_rule.threshold
    # The ONNX file names its version and this manifest's hash.
    props = {p.key: p.value for p in onnx.load(str(version_dir / MODEL_FILE)).metadata_props}
    assert props[META_VERSION] == manifest.model_version
    assert props[META_MANIFEST_SHA256] == manifest_digest(manifest)


@pytest.mark.slow
def test_runtime_scores_match_torch_on_validation_rows_and_hard_strings() -> None:
    trained = TrainedModel.from_checkpoint(sample_checkpoint())
    model = load_model(exported_version())
    data = sample_data()
    titles = [*data.titles[:300], *(t for t, _ in HARD_ROWS)]
    cats = [*(data.categories or [None] * 300)[:300], *(c for _, c in HARD_ROWS)]
    expected = trained.predict(titles, cats)
    got = model.score(titles, cats)
    np.testing.assert_allclose(got.ctr_normalized, expected.ctr_normalized, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got.quality_prob, expected.quality_prob, atol=1e-5, rtol=0)
    assert expected.ctr is not None
    np.testing.assert_allclose(got.ctr, expected.ctr, atol=1e-5, rtol=0)
    agree = got.quality_label == expected.quality_label
    near = np.abs(expected.quality_prob - trained.quality_threshold) < 1e-5
    assert np.all(agree | near)


@pytest.mark.shared_data
@pytest.mark.slow
def test_parity_on_the_real_seed_data(shared_data: Path, tmp_path: Path) -> None:
    from training.train import TrainConfig, train

    data = load_dataset(shared_data / "seed" / "train.csv", SEED)
    result = train(data, tmp_path / "run", TrainConfig(epochs=3), progress=False)
    exported = export_version(result.best_checkpoint, data, tmp_path / "version")
    parity = exported.manifest.parity
    assert parity.rows == len(result.val_index) and parity.hard_rows == len(HARD_ROWS)
    assert parity.max_abs_diff_ctr_normalized <= 1e-5 and parity.max_abs_diff_quality_prob <= 1e-5
    # Independently of the export's own check: Hebrew titles of the real data and the hard strings.
    trained = TrainedModel.from_checkpoint(result.best_checkpoint)
    titles = [*data.titles, *(t for t, _ in HARD_ROWS)]
    cats = [*(data.categories or [None] * len(data)), *(c for _, c in HARD_ROWS)]
    expected = trained.predict(titles, cats)
    got = load_model(tmp_path / "version").score(titles, cats)
    assert float(np.max(np.abs(got.ctr_normalized - expected.ctr_normalized))) <= 1e-5
    assert float(np.max(np.abs(got.quality_prob - expected.quality_prob))) <= 1e-5
    drift = exported.manifest.drift
    assert set(drift.categorical["category"].proportions) >= {OTHER_CATEGORY}
    assert len(drift.numeric["title_chars"].edges) >= 5


@pytest.mark.slow
def test_parity_failure_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ParityError, match=r"tolerance 1e-05"):
        compare([0.1, 0.2], [0.5, 0.5], [0.1, 0.2001], [0.5, 0.5], rows=2, hard_rows=0)
    with pytest.raises(ParityError, match=r"inf"):
        compare([0.1], [0.5], [float("nan")], [0.5], rows=1, hard_rows=0)
    # An impossible tolerance makes a real export fail, and nothing is left half-written to load.
    with pytest.raises(ParityError, match="parity failed"):
        export_version(sample_checkpoint(), sample_data(), tmp_path / "v", tolerance=1e-12)
    assert not (tmp_path / "v" / "manifest.json").exists()


@pytest.mark.slow
def test_export_refuses_data_the_checkpoint_was_not_trained_on(tmp_path: Path, sample_dir: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text((sample_dir / "train.csv").read_text(encoding="utf-8") + "\n", encoding="utf-8")
    with pytest.raises(ExportError, match="differs from the data the checkpoint"):
        export_version(sample_checkpoint(), load_dataset(other, SEED), tmp_path / "v")


@pytest.mark.slow
def test_export_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "junk").write_text("x", encoding="utf-8")
    with pytest.raises(ExportError, match="empty directory"):
        export_version(sample_checkpoint(), sample_data(), tmp_path)


def _manifest_dict() -> dict[str, object]:
    data: dict[str, object] = json.loads((exported_version() / "manifest.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda m: m.pop("drift"), "drift"),
        (lambda m: m.update(format_version=2), "format_version"),
        (lambda m: m.update(model_version="../../etc"), "model_version"),
        (lambda m: m.update(created_at="2026-01-01T00:00:00"), "created_at"),
        (lambda m: m.update(quality_threshold=1.5), "quality_threshold"),
        (lambda m: m.update(canaries=[]), "canaries"),
        (lambda m: m["files"].update({"../x": "0" * 64}), "files"),
        (lambda m: m["drift"]["numeric"].pop("ctr"), "drift"),
        (lambda m: m["drift"]["numeric"]["ctr"].update(proportions=[1.0]), "drift.numeric.ctr"),
        (lambda m: m["drift"]["categorical"]["category"]["proportions"].pop(OTHER_CATEGORY), "drift"),
        (lambda m: m.update(unexpected=1), "unexpected"),
    ],
    ids=[
        "no-drift",
        "format",
        "traversal-version",
        "naive-time",
        "threshold",
        "no-canaries",
        "file-name",
        "missing-signal",
        "bins",
        "no-other",
        "extra-field",
    ],
)
def test_manifest_validation_names_the_problem(edit: object, field: str) -> None:
    manifest = _manifest_dict()
    edit(manifest)  # type: ignore[operator]
    with pytest.raises(ManifestError, match=f"invalid manifest.*{field}"):
        parse_manifest(json.dumps(manifest))


def test_manifest_errors_for_missing_or_garbled_files(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ManifestError, match="invalid manifest"):
        read_manifest(tmp_path)


@pytest.mark.slow
def test_drift_reference_matches_the_contract() -> None:
    manifest = read_manifest(exported_version())
    drift = manifest.drift
    assert set(drift.numeric) == set(NUMERIC_SIGNALS) and set(drift.categorical) == {"category"}
    for bins in drift.numeric.values():
        assert len(bins.proportions) == len(bins.edges) + 1
        assert all(b > a for a, b in zip(bins.edges, bins.edges[1:], strict=False))
        assert sum(bins.proportions) == pytest.approx(1.0)
    cats = drift.categorical["category"].proportions
    assert cats[OTHER_CATEGORY] == 0.0 and sum(cats.values()) == pytest.approx(1.0)
    # Recompute the reference from the training rows through the runtime: same proportions.
    data = sample_data()
    val_ids = set(TrainedModel.from_checkpoint(sample_checkpoint()).checkpoint.val_ids or ())
    train_idx = np.array([i for i, row_id in enumerate(data.ids) if str(row_id) not in val_ids])
    train_rows = data.subset(train_idx)
    scores = load_model(exported_version()).score(
        train_rows.titles, train_rows.categories or [None] * len(train_idx)
    )
    for name, values in scores.signals.items():
        bins = drift.numeric[name]
        counts = np.bincount(bins.bin_of(values), minlength=len(bins.proportions)) / len(values)
        np.testing.assert_allclose(counts, bins.proportions, atol=1e-9)
    assert manifest.training["train_rows"] == len(train_idx)


def test_quantile_bins_and_categories() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=10_000)
    bins = quantile_bins(values, 10)
    assert len(bins.edges) == 9
    np.testing.assert_allclose(bins.proportions, 0.1, atol=1e-3)
    constant = quantile_bins(np.full(50, 3.0))
    assert constant.edges == [] and constant.proportions == [1.0]
    ints = quantile_bins(np.array([1, 1, 1, 1, 2, 2, 3, 9]), 4)
    assert ints.edges[0] > 1 and ints.proportions[0] > 0  # no empty lowest bin
    assert bins.bin_of([-100.0, bins.edges[0], 100.0]).tolist() == [0, 1, 9]  # side="right"
    cats = category_bins(["a", "a", None, "", "b"])
    assert cats.proportions == {"a": 0.4, "b": 0.2, MISSING_CATEGORY: 0.4, OTHER_CATEGORY: 0.0}
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * (1 - 1e-4) * np.log(1 / 1e-4))
    with pytest.raises(ValueError, match="non-empty"):
        quantile_bins([])


@pytest.mark.slow
def test_export_is_reproducible_apart_from_time(tmp_path: Path) -> None:
    first = read_manifest(exported_version())
    shutil.copytree(exported_version(), tmp_path / "copy")
    again = export_version(sample_checkpoint(), sample_data(), tmp_path / "again").manifest
    assert again.weights_sha256 == first.weights_sha256
    assert again.drift == first.drift and again.canaries == first.canaries
    assert again.files[FEATURE_STATE_FILE] == first.files[FEATURE_STATE_FILE]
