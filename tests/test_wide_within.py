"""The ridge start fitted within groups (``TrainConfig.ridge_within``, ``init_wide_from_ridge``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from headline_scorer import SAMPLE_DATA
from training.data import HeadlineData, load_dataset
from training.mapping import SEED, UPWORTHY
from training.model import DualHeadModel, ModelConfig
from training.predict import TrainedModel
from training.train import TrainConfig, train
from training.wide_init import init_wide_from_ridge, random_effects_theta

GOOD = 2  # feature id of a word that lifts CTR within a test; id 1 is in every title


def _confounded_tests() -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """40 tests of 4 headlines. Within a test the GOOD word adds 0.1 to the CTR, but it is
    common in the low-CTR tests (3 of 4 headlines, level 0.2) and rare in the high ones
    (1 of 4, level 0.7): across tests it goes with a *lower* CTR."""
    ids, weights, ctr, groups = [], [], [], []
    for g in range(40):
        high = g % 2 == 0
        for k in range(4):
            good = k == 0 if high else k < 3
            ids.append([1, GOOD] if good else [1, 0])
            weights.append([1.0, 1.0] if good else [1.0, 0.0])
            ctr.append((0.7 if high else 0.2) + (0.1 if good else 0.0))
            groups.append(f"t{g}")
    return (
        torch.tensor(ids, dtype=torch.int64),
        torch.tensor(weights, dtype=torch.float32),
        np.asarray(ctr, dtype=np.float64),
        np.asarray(groups),
    )


def _wide_model() -> DualHeadModel:
    torch.manual_seed(0)
    model = DualHeadModel(ModelConfig(n_features=3, n_categories=1, n_numeric=0, wide=True)).eval()
    with torch.no_grad():  # silence the MLP so the outputs are the wide path alone
        for head in (model.ctr_head, model.quality_head):
            head.weight.zero_()
            head.bias.zero_()
    return model


def _wide_ctr(model: DualHeadModel, ids: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        ctr, _ = model(
            ids, weights, torch.zeros(ids.shape[0], dtype=torch.int64), torch.zeros(ids.shape[0], 0)
        )
    return np.asarray(ctr.numpy(), dtype=np.float64)


@pytest.mark.parametrize("within", [1.0, 0.8, "auto"])
def test_within_group_fit_orders_the_rows_of_a_test(within: float | str) -> None:
    ids, weights, ctr, groups = _confounded_tests()
    labels = (ctr > np.repeat(ctr.reshape(-1, 4).mean(axis=1), 4)).astype(np.float64)
    plain, inside = _wide_model(), _wide_model()
    init_wide_from_ridge(plain, ids, weights, ctr, labels, alpha=0.1)
    info = init_wide_from_ridge(
        inside,
        ids,
        weights,
        ctr,
        labels,
        alpha=0.1,
        groups=groups,
        within=within,  # type: ignore[arg-type]
    )
    assert info.within == pytest.approx(within) if within != "auto" else 0.85 < info.within < 0.95
    assert plain.wide_weight is not None and inside.wide_weight is not None
    # The plain ridge learns the between-test confound (GOOD lowers CTR), the within fit the effect.
    assert float(plain.wide_weight[GOOD, 0].detach()) < 0 < float(inside.wide_weight[GOOD, 0].detach())
    assert (
        float(inside.wide_weight[GOOD, 1].detach()) > 0
    )  # the quality logit too (label: above the test mean)
    good = weights[:, 1].numpy() > 0
    out = _wide_ctr(inside, ids, weights)
    assert out[good].min() > out[~good].max()
    # The level stays the training mean (the text weights carry the within-test part only).
    assert abs(float(out.mean()) - float(ctr.mean())) < 0.02


def test_within_is_ignored_without_groups_and_checked() -> None:
    ids, weights, ctr, _ = _confounded_tests()
    labels = (ctr > np.median(ctr)).astype(np.float64)
    plain, ignored = _wide_model(), _wide_model()
    init_wide_from_ridge(plain, ids, weights, ctr, labels, alpha=1.0)
    info = init_wide_from_ridge(ignored, ids, weights, ctr, labels, alpha=1.0, within=1.0)
    assert info.within == 0.0
    assert plain.wide_weight is not None and ignored.wide_weight is not None
    assert torch.equal(plain.wide_weight, ignored.wide_weight)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="within"):
            init_wide_from_ridge(_wide_model(), ids, weights, ctr, labels, alpha=1.0, within=bad)


def test_train_config_bounds_ridge_within() -> None:
    assert TrainConfig(ridge_within=1.0).ridge_within == 1.0
    assert TrainConfig.model_validate_json('{"ridge_within": "auto"}').ridge_within == "auto"
    for bad in (1.5, -0.2, "fixed"):
        with pytest.raises(ValueError):
            TrainConfig(ridge_within=bad)  # type: ignore[arg-type]


def test_random_effects_theta_by_hand() -> None:
    # Two tests of two rows: means 1 and 11; within variance (1+1+1+1)/(4-2) = 2; between mean
    # square 2*25 + 2*25 = 100, n0 = (4 - 8/4)/1 = 2, so s_u = (100 - 2)/2 = 49 and
    # theta = 1 - sqrt(2 / (2 + 2*49)).
    theta = random_effects_theta(np.array([0.0, 2.0, 10.0, 12.0]), np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(theta, [1 - np.sqrt(0.02)] * 2, rtol=1e-12)


def test_random_effects_theta_follows_the_between_share() -> None:
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 9, size=300)
    codes = np.repeat(np.arange(sizes.size), sizes)
    noise = rng.normal(0.0, 1.0, size=codes.size)
    # No level differences between tests: nothing to take out (up to the estimate's noise).
    assert float(random_effects_theta(noise, codes).max()) < 0.35
    # Strong levels: close to the within-group fit, more for larger tests.
    theta = random_effects_theta(noise + 5.0 * rng.normal(size=sizes.size)[codes], codes)
    assert float(theta.min()) > 0.75
    assert theta[sizes == sizes.max()].min() > theta[sizes == 1].max()
    # Degenerate: one group, or no within-group variation.
    assert random_effects_theta(noise[:5], np.zeros(5, dtype=np.intp)).tolist() == [0.0]
    np.testing.assert_array_equal(
        random_effects_theta(np.array([1.0, 1.0, 3.0, 3.0]), np.array([0, 0, 1, 1])), 1.0
    )


@pytest.mark.slow
def test_ridge_within_changes_grouped_training_only(tmp_path: Path) -> None:
    def wide_start(data: HeadlineData, within: float, name: str) -> tuple[torch.Tensor, list[float]]:
        config = TrainConfig(epochs=1, ridge_within=within, rank_weight=0.0)
        result = train(data, tmp_path / name, config, progress=False)
        model = TrainedModel.from_checkpoint(result.best_checkpoint)
        assert model.model.wide_weight is not None
        return model.model.wide_weight.detach().clone(), [r.train_loss for r in result.history]

    ab_tests = load_dataset(SAMPLE_DATA / "ab_tests.csv", UPWORTHY)
    level, _ = wide_start(ab_tests, 0.0, "ab0")
    inside, _ = wide_start(ab_tests, 1.0, "ab1")
    assert not torch.allclose(level, inside)
    seed = load_dataset(SAMPLE_DATA / "train.csv", SEED)  # no group column: the same run
    plain_w, plain_loss = wide_start(seed, 0.0, "s0")
    within_w, within_loss = wide_start(seed, 1.0, "s1")
    assert torch.equal(plain_w, within_w) and plain_loss == within_loss


@pytest.mark.slow
def test_checkpoint_from_before_ridge_within_resumes_as_a_plain_start(tmp_path: Path) -> None:
    from training.checkpoint import load_checkpoint, save_checkpoint
    from training.predict import LAST_CHECKPOINT

    ab_tests = load_dataset(SAMPLE_DATA / "ab_tests.csv", UPWORTHY)
    train(ab_tests, tmp_path / "first", TrainConfig(epochs=1, ridge_within=0.0), progress=False)
    path = tmp_path / "first" / LAST_CHECKPOINT
    payload = load_checkpoint(path)
    payload.pop("format_version")
    config = json.loads(payload["train_config"])
    del config["ridge_within"]
    payload["train_config"] = json.dumps(config)
    save_checkpoint(path, payload)
    assert TrainConfig().ridge_within == "auto"
    resumed = train(ab_tests, tmp_path / "resumed", TrainConfig(epochs=1), resume=path, progress=False)
    assert resumed.start_epoch == 1
    stored = json.loads(load_checkpoint(tmp_path / "resumed" / LAST_CHECKPOINT)["train_config"])
    assert stored["ridge_within"] == 0.0  # what the resumed weights were started with
