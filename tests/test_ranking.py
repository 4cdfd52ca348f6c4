"""The within-group ranking loss and its group-aware batch order (training/ranking.py)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from artifact.errors import CsvValidationError
from headline_scorer import SAMPLE_DATA
from training.checkpoint import load_checkpoint, save_checkpoint
from training.data import HeadlineData, load_dataset
from training.mapping import SEED, UPWORTHY
from training.pairwise import two_proportion_z
from training.predict import LAST_CHECKPOINT, TrainedModel
from training.ranking import RankingRows, RankPairs, group_batches, pairwise_rank_loss
from training.train import TrainConfig, train

# --------------------------------------------------------------------------- the loss


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_loss_value_on_a_tiny_batch() -> None:
    scores = torch.tensor([1.0, 0.0, 2.0, -1.0], dtype=torch.float64)
    observed = torch.tensor([0.3, 0.1, 0.2, 0.4], dtype=torch.float64)
    groups = torch.tensor([0, 0, 1, 1])
    # Group 0: row 0 observed above row 1 and scored 1 higher: softplus(-1).
    # Group 1: row 3 observed above row 2 but scored 3 lower: sign(0.2 - 0.4) = -1, margin -(2 - -1) = -3.
    expected = (_softplus(-1.0) + _softplus(3.0)) / 2
    loss = pairwise_rank_loss(scores, observed, groups)
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    # Weights: the second pair counts three times.
    weights = torch.zeros(4, 4, dtype=torch.float64)
    weights[0, 1], weights[2, 3] = 1.0, 3.0
    weighted = pairwise_rank_loss(scores, observed, groups, pair_weights=weights)
    assert float(weighted) == pytest.approx((_softplus(-1.0) + 3 * _softplus(3.0)) / 4, rel=1e-12)


def test_pairs_in_different_groups_or_with_equal_ctr_give_zero() -> None:
    scores = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    loss = pairwise_rank_loss(scores, torch.tensor([0.1, 0.9, 0.5]).double(), torch.tensor([0, 1, 2]))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert scores.grad is not None and torch.all(scores.grad == 0)
    same_ctr = pairwise_rank_loss(scores, torch.tensor([0.2, 0.2, 0.2]).double(), torch.tensor([0, 0, 0]))
    assert float(same_ctr.detach()) == 0.0


def test_pairs_of_one_headline_are_left_out() -> None:
    scores = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    observed = torch.tensor([0.3, 0.1, 0.2], dtype=torch.float64)
    groups = torch.tensor([0, 0, 0])
    # Rows 0 and 1 are one headline: only the pairs (0, 2) and (1, 2) count.
    loss = pairwise_rank_loss(scores, observed, groups, headlines=torch.tensor([7, 7, 8]))
    assert float(loss) == pytest.approx((_softplus(2.0) + _softplus(-1.0)) / 2, rel=1e-12)


def test_gradient_raises_the_row_observed_higher() -> None:
    scores = torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
    observed = torch.tensor([0.1, 0.5, 0.3], dtype=torch.float64)
    pairwise_rank_loss(scores, observed, torch.tensor([4, 4, 4])).backward()
    grad = scores.grad
    assert grad is not None
    # A gradient step (minus the gradient) moves the scores towards the observed order.
    assert grad[1] < 0 < grad[0]
    assert grad[1] < grad[2] < grad[0]
    assert float(grad.sum()) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("pairs", ["all", "significant", "z"])
def test_pair_weights_come_from_the_metric_z_test(pairs: RankPairs) -> None:
    clicks = torch.tensor([10.0, 30.0, 0.0, 5.0, 13.0], dtype=torch.float64)
    imps = torch.tensor([100.0, 120.0, 50.0, 500.0, 100.0], dtype=torch.float64)
    codes = torch.zeros(5, dtype=torch.int64)
    rows = RankingRows(codes, torch.arange(5), clicks, imps, pairs)
    index = torch.tensor([4, 0, 1, 3])
    weights = rows.pair_weights(index)
    c, n = clicks[index].numpy(), imps[index].numpy()
    z = np.abs(two_proportion_z(c[:, None], n[:, None], c, n))
    if pairs == "all":
        assert weights is None
    else:
        assert weights is not None and weights.shape == (4, 4)
        expected = (z > 1.96).astype(np.float64) if pairs == "significant" else z
        np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-12)
        assert pairs == "z" or 0 < float(weights.sum()) < 16  # some pairs significant, some not


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="one length"):
        pairwise_rank_loss(torch.zeros(3), torch.zeros(2), torch.zeros(3))


# --------------------------------------------------------------------------- the batch order


def _groups(seed: int, n_groups: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, size=n_groups)
    sizes[0] = 20  # larger than the batch: a batch of its own
    return rng.permutation(np.repeat(np.arange(n_groups), sizes))


@pytest.mark.parametrize("seed", [0, 1])
def test_batches_keep_groups_together(seed: int) -> None:
    groups = _groups(seed)
    batches = group_batches(groups, 16, torch.Generator().manual_seed(seed))
    rows = torch.cat(batches).numpy()
    assert sorted(rows.tolist()) == list(range(groups.size))  # every row exactly once
    batch_of = np.empty(groups.size, dtype=int)
    for b, index in enumerate(batches):
        batch_of[index.numpy()] = b
        assert index.numel() <= 16 or len(set(groups[index.numpy()].tolist())) == 1
    for g in np.unique(groups):
        assert len(set(batch_of[groups == g].tolist())) == 1, f"group {g} split over batches"
    # Greedy packing: a batch is closed only when the next group does not fit.
    for this, following in itertools.pairwise(batches):
        next_group = groups[following.numpy()[0]]
        assert this.numel() + int(np.count_nonzero(groups == next_group)) > 16


def test_batch_order_is_seeded() -> None:
    groups = _groups(3)

    def order(seed: int) -> list[list[int]]:
        return [b.tolist() for b in group_batches(groups, 16, torch.Generator().manual_seed(seed))]

    assert order(5) == order(5)
    assert order(5) != order(6)
    generator = torch.Generator().manual_seed(5)
    first = [b.tolist() for b in group_batches(groups, 16, generator)]
    second = [b.tolist() for b in group_batches(groups, 16, generator)]
    assert first != second  # a new order each epoch


# --------------------------------------------------------------------------- training with the loss

FAST = TrainConfig(epochs=3, patience=50, learning_rate=2e-3, rank_weight=0.0)


@pytest.fixture(scope="module")
def ab_tests() -> HeadlineData:
    return load_dataset(SAMPLE_DATA / "ab_tests.csv", UPWORTHY)


def test_ranking_rows_need_counts_for_significant_pairs(ab_tests: HeadlineData) -> None:
    index = np.arange(len(ab_tests), dtype=np.int64)
    rows = RankingRows.build(ab_tests, index, "significant")
    assert rows.clicks is not None and rows.groups.shape == (len(ab_tests),)
    no_counts = dataclasses.replace(ab_tests, clicks=None, impressions=None)
    with pytest.raises(CsvValidationError, match="needs clicks and impressions"):
        RankingRows.build(no_counts, index, "significant")
    seed = load_dataset(SAMPLE_DATA / "train.csv", SEED)
    with pytest.raises(CsvValidationError, match="group column"):
        RankingRows.build(seed, np.arange(len(seed), dtype=np.int64), "all")


@pytest.mark.slow
def test_training_with_the_ranking_loss(tmp_path: Path, ab_tests: HeadlineData) -> None:
    ranked = FAST.model_copy(update={"rank_weight": 1.0, "rank_pairs": "z"})
    a = train(ab_tests, tmp_path / "a", ranked, progress=False)
    b = train(ab_tests, tmp_path / "b", ranked, progress=False)
    plain = train(ab_tests, tmp_path / "plain", FAST, progress=False)
    losses = [r.train_loss for r in a.history]
    assert losses == [r.train_loss for r in b.history]  # seeded: the same run twice
    assert losses != [r.train_loss for r in plain.history]  # the ranking loss was used
    assert all(math.isfinite(x) for x in losses)
    stored = json.loads(TrainedModel.from_checkpoint(a.best_checkpoint).checkpoint["train_config"])
    assert (stored["rank_weight"], stored["rank_pairs"]) == (1.0, "z")


@pytest.mark.slow
def test_rank_weight_without_groups_changes_nothing(tmp_path: Path) -> None:
    seed = load_dataset(SAMPLE_DATA / "train.csv", SEED)
    config = TrainConfig(epochs=2, patience=50, rank_weight=0.0)
    plain = train(seed, tmp_path / "plain", config, progress=False)
    ranked = train(seed, tmp_path / "ranked", config.model_copy(update={"rank_weight": 1.0}), progress=False)
    assert [r.train_loss for r in plain.history] == [r.train_loss for r in ranked.history]
    assert any("no group column" in note for note in ranked.notes)


@pytest.mark.slow
def test_resume_keeps_the_ranking_loss(tmp_path: Path, ab_tests: HeadlineData) -> None:
    ranked = FAST.model_copy(update={"rank_weight": 0.5})
    first = train(ab_tests, tmp_path / "first", ranked, progress=False)
    resumed = train(
        ab_tests, tmp_path / "resumed", TrainConfig(epochs=2), resume=tmp_path / "first" / LAST_CHECKPOINT
    )
    assert resumed.start_epoch == 3
    assert [r.epoch for r in resumed.history] == [1, 2, 3, 4, 5]
    assert resumed.history[:3] == first.history
    stored = json.loads(TrainedModel.from_checkpoint(resumed.best_checkpoint).checkpoint["train_config"])
    assert stored["rank_weight"] == 0.5  # the checkpoint's setting, not the new config's default


@pytest.mark.slow
def test_checkpoint_from_before_the_ranking_loss_resumes(tmp_path: Path, ab_tests: HeadlineData) -> None:
    train(ab_tests, tmp_path / "first", FAST, progress=False)
    path = tmp_path / "first" / LAST_CHECKPOINT
    payload = load_checkpoint(path)
    config = json.loads(payload["train_config"])
    del config["rank_weight"], config["rank_pairs"]
    payload["train_config"] = json.dumps(config)
    payload.pop("format_version")
    save_checkpoint(path, payload)
    # Trained without the ranking loss, so resumed without it (not with today's default).
    assert TrainConfig().rank_weight > 0
    resumed = train(ab_tests, tmp_path / "resumed", TrainConfig(epochs=1), resume=path, progress=False)
    assert resumed.start_epoch == 3 and len(resumed.history) == 4
    stored = json.loads(load_checkpoint(tmp_path / "resumed" / LAST_CHECKPOINT)["train_config"])
    assert (stored["rank_weight"], stored["rank_pairs"]) == (0.0, "all")


def test_full_loss_counts_every_within_group_pair_once(ab_tests: HeadlineData) -> None:
    index = np.arange(len(ab_tests), dtype=np.int64)
    rows = RankingRows.build(ab_tests, index, "z")
    ctr = torch.from_numpy(np.random.default_rng(0).uniform(0.05, 0.95, size=len(ab_tests)))
    assert ab_tests.raw_ctr is not None
    observed = torch.from_numpy(ab_tests.raw_ctr)
    whole = rows.full_loss(ctr, observed, batch_size=len(ab_tests))
    everything = rows.loss(ctr, observed, torch.from_numpy(index))
    assert whole == pytest.approx(float(everything), rel=1e-9)
    assert rows.full_loss(ctr, observed, batch_size=8) == pytest.approx(whole, rel=1e-9)
    assert whole > 0
