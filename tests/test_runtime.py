"""Runtime loader: batch sizes, outputs, verification failures, and no torch at serving time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from artifact.drift import NUMERIC_SIGNALS
from artifact.errors import CanaryError, ManifestError, ModelLoadError, ScoringError
from artifact.manifest import (
    FEATURE_STATE_FILE,
    MODEL_FILE,
    manifest_digest,
    manifest_json,
    read_manifest,
    sha256_file,
)
from artifact.runtime import ScoreBatch, load_model
from export.onnx_export import stamp_metadata
from tests.export_support import copy_version, exported_version, sample_data

# Every test scores with the model trained on the sample (tests.export_support): slow.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("size", [0, 1, 2, 7, 300])
def test_any_batch_size_scores(size: int) -> None:
    model = load_model(exported_version())
    data = sample_data()
    titles = (data.titles * 2)[:size]
    cats = ((data.categories or []) * 2)[:size]
    scores = model.score(titles, cats)
    assert isinstance(scores, ScoreBatch) and len(scores) == size
    for array in (scores.ctr, scores.ctr_normalized, scores.quality_prob):
        assert array.shape == (size,) and array.dtype == np.float64 and np.all(np.isfinite(array))
    assert scores.quality_label.dtype == np.bool_ and scores.category_known.shape == (size,)
    assert set(scores.signals) == set(NUMERIC_SIGNALS)
    assert all(v.shape == (size,) for v in scores.signals.values())
    assert np.all((scores.quality_prob > 0) & (scores.quality_prob < 1)) and np.all(scores.ctr > -1)
    threshold = model.manifest.quality_threshold
    np.testing.assert_array_equal(scores.quality_label, scores.quality_prob >= threshold)


@pytest.mark.parametrize("rows_per_call", [1, 3, 64, 1000])
def test_scoring_in_row_chunks_equals_one_call(rows_per_call: int) -> None:
    # score() runs the model in calls of rows_per_call rows, each cut to its longest row; the
    # cut columns are padding, so the outputs equal one call on the whole padded batch.
    model = load_model(exported_version(), rows_per_call=rows_per_call)
    data = sample_data()
    titles = [*data.titles[:150], "", "x", "word " * 200]  # lengths from 0 to the feature cap
    cats = [*(data.categories or [None] * 150)[:150], None, "nope", None]
    scorer = model.scorer
    batch = scorer.featurizer.transform(titles, cats)
    assert batch.token_counts is not None and batch.token_counts.min() == 0
    assert batch.token_counts.max() == batch.token_ids.shape[1]
    assert np.all(batch.token_ids[np.arange(batch.token_ids.shape[1]) >= batch.token_counts[:, None]] == 0)
    whole = scorer.model_outputs(batch)
    chunked = scorer.chunked_outputs(batch)
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    scores = model.score(titles, cats)
    np.testing.assert_allclose(scores.ctr_normalized, whole[0], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="rows_per_call"):
        load_model(exported_version(), rows_per_call=0)


def test_scores_do_not_depend_on_batch_composition() -> None:
    model = load_model(exported_version())
    data = sample_data()
    cats = data.categories or [None] * len(data)
    together = model.score(data.titles[:64], cats[:64])
    alone = [model.score([t], [c]) for t, c in zip(data.titles[:64], cats[:64], strict=True)]
    np.testing.assert_allclose(together.quality_prob, [a.quality_prob[0] for a in alone], atol=1e-6)
    np.testing.assert_allclose(together.ctr_normalized, [a.ctr_normalized[0] for a in alone], atol=1e-6)


def test_categories_as_the_model_sees_them() -> None:
    model = load_model(exported_version())
    known = model.scorer.featurizer.state.categories[0]
    scores = model.score(["a", "b", "c", "d"], [known, "never seen", None, ""])
    assert scores.categories == [known, "never seen", None, None]
    assert scores.category_known.tolist() == [True, False, False, False]
    assert scores.signals["title_chars"].tolist() == [1.0] * 4
    with pytest.raises(ScoringError, match="one category per title"):
        model.score(["a", "b"], [None])


def test_intra_op_threads_is_configurable() -> None:
    model = load_model(exported_version(), intra_op_threads=2)
    assert model.scorer.session.get_session_options().intra_op_num_threads == 2
    with pytest.raises(ModelLoadError, match="intra_op_threads"):
        load_model(exported_version(), intra_op_threads=0)


def _rewrite_manifest(version_dir: Path, **changes: object) -> None:
    manifest = read_manifest(version_dir).model_copy(update=changes)
    (version_dir / "manifest.json").write_bytes(manifest_json(manifest))


def test_corrupt_file_is_detected(tmp_path: Path) -> None:
    version = copy_version(tmp_path / "v")
    data = bytearray((version / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (version / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"model\.onnx: sha256 .* differs"):
        load_model(version)


def test_missing_file_and_missing_manifest(tmp_path: Path) -> None:
    version = copy_version(tmp_path / "v")
    (version / FEATURE_STATE_FILE).unlink()
    with pytest.raises(ModelLoadError, match=r"feature_state\.json: file listed in the manifest is missing"):
        load_model(version)
    (version / "manifest.json").unlink()
    with pytest.raises(ManifestError, match="manifest not found"):
        load_model(version)


def test_edited_manifest_no_longer_matches_the_model(tmp_path: Path) -> None:
    version = copy_version(tmp_path / "v")
    _rewrite_manifest(version, quality_threshold=0.99)  # file hashes still right
    with pytest.raises(ModelLoadError, match="manifest was changed after export"):
        load_model(version)


def test_model_of_another_version_is_refused(tmp_path: Path) -> None:
    version = copy_version(tmp_path / "v")
    manifest = read_manifest(version)
    other = stamp_metadata((version / MODEL_FILE).read_bytes(), "20250101T000000Z-00000000", "0" * 64)
    (version / MODEL_FILE).write_bytes(other)
    _rewrite_manifest(version, files={**manifest.files, MODEL_FILE: sha256_file(version / MODEL_FILE)})
    with pytest.raises(ModelLoadError, match="different versions"):
        load_model(version)


def test_canaries_that_no_longer_score_as_recorded(tmp_path: Path) -> None:
    # A consistent artifact (hashes and metadata right) whose numbers changed: e.g. a featurizer bug.
    version = copy_version(tmp_path / "v")
    manifest = read_manifest(version)
    first = manifest.canaries[0].model_copy(update={"quality_prob": manifest.canaries[0].quality_prob + 0.01})
    manifest = manifest.model_copy(update={"canaries": [first, *manifest.canaries[1:]]})
    graph = stamp_metadata(
        (version / MODEL_FILE).read_bytes(), manifest.model_version, manifest_digest(manifest)
    )
    (version / MODEL_FILE).write_bytes(graph)
    manifest = manifest.model_copy(
        update={"files": {**manifest.files, MODEL_FILE: sha256_file(version / MODEL_FILE)}}
    )
    (version / "manifest.json").write_bytes(manifest_json(manifest))
    with pytest.raises(CanaryError, match="canary rows score differently"):
        load_model(version)


def test_garbage_onnx_with_matching_hash_is_a_load_error(tmp_path: Path) -> None:
    version = copy_version(tmp_path / "v")
    (version / MODEL_FILE).write_bytes(b"not a model")
    manifest = read_manifest(version)
    _rewrite_manifest(version, files={**manifest.files, MODEL_FILE: sha256_file(version / MODEL_FILE)})
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load"):
        load_model(version)


def test_serving_never_imports_torch() -> None:
    code = f"""
import json, sys
from pathlib import Path
from artifact.registry import Registry
from artifact.runtime import load_model
model = load_model(Path({str(exported_version())!r}))
scores = model.score(["Scientists find water on Mars", ""], ["Tech", None])
loaded = set(sys.modules)
print(json.dumps({{"torch": "torch" in loaded, "training": any(m.startswith("training") for m in loaded),
                  "n": len(scores)}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"torch": False, "training": False, "n": 2}
