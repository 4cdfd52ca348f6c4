"""The wide (linear) path: ridge start, old checkpoints without it still load and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from artifact.features import NUMERIC_FEATURES, fit_feature_state
from artifact.featurizer import Featurizer
from headline_scorer import SAMPLE_DATA
from training.checkpoint import load_checkpoint, save_checkpoint
from training.data import HeadlineData, load_dataset
from training.mapping import SEED
from training.model import WIDE_COLUMNS, DualHeadModel, ModelConfig
from training.predict import LAST_CHECKPOINT, TrainedModel, batch_tensors
from training.train import DEFAULT_FEATURES, TrainConfig, train
from training.wide_init import _bag_matrix, init_wide_from_ridge

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample() -> HeadlineData:
    return load_dataset(SAMPLE_DATA / "train.csv", SEED)


def test_model_config_without_wide_builds_the_narrow_model() -> None:
    # Checkpoints saved before the wide path have no "wide" in their model config.
    narrow = DualHeadModel(
        ModelConfig.model_validate_json('{"n_features": 5, "n_categories": 2, "n_numeric": 3}')
    )
    assert narrow.wide_weight is None and narrow.embedding.weight.shape == (5, 64)
    wide = DualHeadModel(ModelConfig(n_features=5, n_categories=2, n_numeric=3, wide=True))
    assert wide.embedding.weight.shape == (5, 64 + WIDE_COLUMNS)
    assert wide.wide_weight is not None and float(wide.wide_weight.detach().abs().sum()) == 0.0


def test_ridge_start_puts_the_ridge_into_both_outputs(sample: HeadlineData) -> None:
    from sklearn.linear_model import Ridge

    state = fit_feature_state(sample.titles, sample.categories, DEFAULT_FEATURES)
    ids, weights, cats, numeric = batch_tensors(Featurizer(state).transform(sample.titles, sample.categories))
    ctr = np.asarray(sample.ctr_normalized_given, dtype=np.float64)
    labels = (ctr > np.median(ctr)).astype(np.float64)
    config = ModelConfig(
        n_features=state.n_features,
        n_categories=state.n_categories,
        n_numeric=len(NUMERIC_FEATURES),
        wide=True,
    )
    torch.manual_seed(0)
    model = DualHeadModel(config).eval()
    with torch.no_grad():  # silence the MLP so the outputs are the wide path alone
        for head in (model.ctr_head, model.quality_head):
            head.weight.zero_()
            head.bias.zero_()
    init_wide_from_ridge(model, ids, weights, ctr, labels, alpha=2.0)
    matrix = _bag_matrix(ids, weights, state.n_features)
    ridge = Ridge(alpha=2.0).fit(matrix, ctr).predict(matrix)
    with torch.no_grad():
        out_ctr, logit = model(ids, weights, cats, numeric)
    # The CTR is the ridge through the linearised sigmoid: close where the ridge is, same order.
    assert np.corrcoef(out_ctr.numpy(), ridge)[0, 1] > 0.99
    assert float(np.abs(out_ctr.numpy() - ridge).mean()) < 0.01
    # The quality logit ranks as the ridge does and separates the training labels.
    assert np.corrcoef(logit.numpy(), ridge)[0, 1] > 0.999
    assert float(logit.numpy()[labels == 1].mean()) > float(logit.numpy()[labels == 0].mean())
    assert model.wide_weight is not None and float(model.wide_weight[0].detach().abs().sum()) == 0.0


def test_init_wide_needs_a_wide_model() -> None:
    narrow = DualHeadModel(ModelConfig(n_features=3, n_categories=1, n_numeric=0))
    with pytest.raises(ValueError, match="no wide path"):
        init_wide_from_ridge(
            narrow, torch.zeros(1, 1, dtype=torch.int64), torch.zeros(1, 1), np.zeros(1), np.zeros(1), 1.0
        )


def test_default_training_starts_from_the_ridge(tmp_path: Path, sample: HeadlineData) -> None:
    result = train(sample, tmp_path, TrainConfig(epochs=1), progress=False)
    model = TrainedModel.from_checkpoint(result.best_checkpoint)
    assert model.model.config.wide and model.model.wide_weight is not None
    assert float(model.model.wide_weight[1:].detach().abs().sum()) > 0


def _strip_wide(path: Path) -> None:
    """Rewrite a narrow checkpoint as one saved before the wide-path fields existed."""
    payload = load_checkpoint(path)
    payload.pop("format_version", None)
    for key, fields in (("model_config", ("wide",)), ("train_config", ("wide", "wide_init", "ridge_alpha"))):
        raw = json.loads(payload[key])
        for name in fields:
            raw.pop(name)
        payload[key] = json.dumps(raw)
    save_checkpoint(path, payload)


def test_checkpoint_from_before_the_wide_path_loads_and_resumes(tmp_path: Path, sample: HeadlineData) -> None:
    first = train(sample, tmp_path / "old", TrainConfig(epochs=2, wide=False), progress=False)
    expected = TrainedModel.from_checkpoint(first.best_checkpoint).predict(sample.titles, sample.categories)
    for name in (first.best_checkpoint.name, LAST_CHECKPOINT):
        _strip_wide(tmp_path / "old" / name)
    old = TrainedModel.from_checkpoint(first.best_checkpoint)
    assert "wide" not in json.loads(old.checkpoint["model_config"])
    assert not old.model.config.wide
    np.testing.assert_array_equal(
        old.predict(sample.titles, sample.categories).ctr_normalized, expected.ctr_normalized
    )
    # Resuming it with today's defaults (wide) keeps its architecture.
    resumed = train(
        sample,
        tmp_path / "resumed",
        TrainConfig(epochs=1),
        resume=tmp_path / "old" / LAST_CHECKPOINT,
        progress=False,
    )
    model = TrainedModel.from_checkpoint(resumed.best_checkpoint)
    assert not model.model.config.wide
    assert not TrainConfig.model_validate_json(model.checkpoint["train_config"]).wide
