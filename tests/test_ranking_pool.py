"""The ranking loss over pooled headlines (``RankingRows(pool=True)``, ``rank_pool_headlines``)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from headline_scorer import SAMPLE_DATA
from training.data import load_dataset
from training.mapping import UPWORTHY
from training.pairwise import two_proportion_z
from training.predict import TrainedModel
from training.ranking import RankingRows
from training.train import TrainConfig, train


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# Test 0: headline 0 shown twice (CTR 0.10 and 0.50, pooled 0.30) and headline 1 (CTR 0.20);
# test 1: headlines 2 (0.05) and 3 (0.10).
CLICKS = [10.0, 50.0, 20.0, 5.0, 20.0]
IMPS = [100.0, 100.0, 100.0, 100.0, 200.0]
SCORES = [0.4, 0.4, 1.0, 0.0, -0.5]


def _rows(pairs: str = "all", counts: bool = True, pool: bool = True) -> RankingRows:
    return RankingRows(
        groups=torch.tensor([0, 0, 0, 1, 1]),
        headlines=torch.tensor([0, 0, 1, 2, 3]),
        clicks=torch.tensor(CLICKS, dtype=torch.float64) if counts else None,
        impressions=torch.tensor(IMPS, dtype=torch.float64) if counts else None,
        pairs=pairs,  # type: ignore[arg-type]
        pool=pool,
    )


def _ctr() -> torch.Tensor:
    return torch.sigmoid(torch.tensor(SCORES, dtype=torch.float64))


def _observed() -> torch.Tensor:
    return torch.tensor([c / n for c, n in zip(CLICKS, IMPS, strict=True)], dtype=torch.float64)


def test_pooled_rows_rank_their_headline_and_count_one_pair() -> None:
    index = torch.arange(5)
    # Pooled: headline 0 (0.30) above headline 1 (0.20); each of its two rows' pairs weighs 1/2.
    # Test 1: headline 3 (0.10) above headline 2 (0.05).
    g0 = 0.5 * _softplus(-(0.4 - 1.0)) + 0.5 * _softplus(-(0.4 - 1.0))
    g1 = _softplus(-(-0.5 - 0.0))
    pooled = _rows().loss(_ctr(), _observed(), index)
    assert float(pooled) == pytest.approx((g0 + g1) / 2, rel=1e-6)
    # Per row the two rows of headline 0 disagree about headline 1 and count twice.
    rows = _rows(pool=False).loss(_ctr(), _observed(), index)
    expected_rows = (_softplus(0.4 - 1.0) + _softplus(-(0.4 - 1.0)) + g1) / 3
    assert float(rows) == pytest.approx(expected_rows, rel=1e-6)
    # Over whole groups the validation loss is the same number.
    assert _rows().full_loss(_ctr(), _observed()) == pytest.approx(float(pooled), rel=1e-6)


def test_pooling_without_counts_uses_the_mean_observed_value() -> None:
    observed = torch.tensor([0.1, 0.5, 0.2, 0.05, 0.1], dtype=torch.float64)
    target, weights = _rows(counts=False).pair_inputs(observed, torch.arange(5))
    np.testing.assert_allclose(target.numpy(), [0.3, 0.3, 0.2, 0.05, 0.1])
    assert weights is not None
    assert float(weights[0, 2]) == pytest.approx(0.5) and float(weights[3, 4]) == 1.0


def test_pooled_z_uses_the_summed_counts() -> None:
    _, weights = _rows(pairs="z").pair_inputs(_observed(), torch.arange(5))
    assert weights is not None
    z = abs(
        float(two_proportion_z(np.array([60.0]), np.array([200.0]), np.array([20.0]), np.array([100.0]))[0])
    )
    assert float(weights[0, 2]) == pytest.approx(0.5 * z, rel=1e-9)
    _, significant = _rows(pairs="significant").pair_inputs(_observed(), torch.arange(5))
    assert significant is not None and float(significant[0, 2]) == pytest.approx(0.5 * float(z > 1.96))


@pytest.mark.slow
def test_training_with_pooled_headlines(tmp_path: Path) -> None:
    ab_tests = load_dataset(SAMPLE_DATA / "ab_tests.csv", UPWORTHY)
    # The sample repeats a headline only in tests of one headline; repeat one in every larger test.
    assert ab_tests.groups is not None
    titles = ab_tests.titles.copy()
    for group in np.unique(ab_tests.groups):
        rows = np.flatnonzero(ab_tests.groups == group)
        if rows.size >= 3 and len({titles[r] for r in rows}) == rows.size:
            titles[rows[-1]] = titles[rows[0]]
    ab_tests = dataclasses.replace(ab_tests, titles=titles)
    config = TrainConfig(epochs=2, patience=50, learning_rate=2e-3)
    plain = train(ab_tests, tmp_path / "plain", config, progress=False)
    pooled = train(
        ab_tests, tmp_path / "pooled", config.model_copy(update={"rank_pool_headlines": True}), progress=False
    )
    losses = [r.train_loss for r in pooled.history]
    assert all(math.isfinite(x) for x in losses)
    assert losses != [r.train_loss for r in plain.history]
    assert TrainedModel.from_checkpoint(
        pooled.best_checkpoint
    ).checkpoint.setup.train_config.rank_pool_headlines
