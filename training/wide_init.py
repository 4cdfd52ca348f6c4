"""Start the model's wide (linear) path from a closed-form ridge fit on the training rows' bag.

A gradient-trained linear term over tens of thousands of sparse n-grams learns
slowly at the trunk's learning rate and overfits at a fast one (Adam moves a
feature seen in two titles as fast as a frequent one); a ridge regression
solves the same linear model with proper shrinkage in one step. The ridge
predicts the normalized CTR ``r(x) = c + w.x``; the model's CTR is
``sigmoid(head + wide_ctr.x)``, so ``w`` enters through the linearisation of
the sigmoid at the mean prediction ``m`` (``sigmoid(logit(m) + u) ~ m + m(1 - m) u``).
The quality logit gets the same score with the slope and offset of a logistic
fit of the training labels on it (Platt scaling).

With a group column (A/B tests) most of the CTR variance is between tests (the
story, the period, the audience), while the product is judged on the order
*within* a test. ``within`` (``TrainConfig.ridge_within``) then fits the ridge on
quasi-demeaned rows, ``x - within * mean_g(x)`` and ``y - within * mean_g(y)``
(``mean_g``: the mean of the row's group): 1 is the fixed-effects (within-group)
estimator, 0 the plain ridge, values in between the random-effects-style partial
demeaning; ``"auto"`` takes the random-effects (GLS) share per group from the
variance components of the target (``random_effects_theta``). The score's level is
then set so its mean on the training rows is the mean target (the text weights carry
the within-test signal, the heads' biases the level).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from training.model import DualHeadModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WideInit:
    """What the ridge start set (for the log and tests)."""

    alpha: float
    mean_prediction: float
    quality_slope: float
    quality_offset: float
    within: float = 0.0  # the mean share of the group mean taken out (0: plain ridge)


def _bag_matrix(token_ids: torch.Tensor, token_weights: torch.Tensor, n_features: int) -> Any:
    """The bag as a sparse ``[rows, n_features]`` matrix (scipy ``csr_matrix``)."""
    from scipy.sparse import csr_matrix

    ids = token_ids.numpy()
    weights = token_weights.numpy().astype(np.float64)
    rows = np.repeat(np.arange(ids.shape[0]), ids.shape[1])
    keep = weights.ravel() != 0
    return csr_matrix(
        (weights.ravel()[keep], (rows[keep], ids.ravel()[keep])), shape=(ids.shape[0], n_features)
    )


def _group_codes(groups: NDArray[Any]) -> NDArray[np.intp]:
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    return np.asarray(codes.reshape(-1), dtype=np.intp)


def _group_means(
    matrix: Any, target: NDArray[np.float64], codes: NDArray[np.intp]
) -> tuple[Any, NDArray[np.float64]]:
    """Per-row means of ``matrix``'s rows and of ``target`` over the row's group (``codes`` 0..k-1)."""
    from scipy.sparse import csr_matrix, diags

    counts = np.bincount(codes).astype(np.float64)
    member = csr_matrix(
        (np.ones(codes.size), (np.arange(codes.size), codes)), shape=(codes.size, counts.size)
    )
    x_mean = member @ (diags(1.0 / counts) @ (member.T @ matrix))
    y_mean = (np.bincount(codes, weights=target) / counts)[codes]
    return x_mean, np.asarray(y_mean, dtype=np.float64)


def random_effects_theta(target: NDArray[np.float64], codes: NDArray[np.intp]) -> NDArray[np.float64]:
    """Per group, the share of the group mean the random-effects (GLS) estimator takes out.

    ``theta_g = 1 - sqrt(s_e / (s_e + n_g * s_u))`` with the one-way ANOVA estimates of
    the within-group variance ``s_e`` and the between-group variance ``s_u`` of ``target``
    (``n_g``: rows of group g): near 1 when groups differ much more than their rows
    (fixed effects), 0 when they do not differ (plain ridge). Groups of one row get
    ``1 - sqrt(s_e / (s_e + s_u))`` too: a single row still carries its group's level.
    """
    counts = np.bincount(codes).astype(np.float64)
    n, k = float(codes.size), counts.size
    if k < 2 or n <= k:
        return np.zeros(k, dtype=np.float64)
    means = np.bincount(codes, weights=target) / counts
    s_e = float(((target - means[codes]) ** 2).sum()) / (n - k)
    between = float((counts * (means - target.mean()) ** 2).sum()) / (k - 1)
    n0 = (n - float((counts**2).sum()) / n) / (k - 1)
    s_u = max((between - s_e) / n0, 0.0)
    if s_e == 0.0:
        return np.ones(k, dtype=np.float64) if s_u > 0 else np.zeros(k, dtype=np.float64)
    return np.asarray(1.0 - np.sqrt(s_e / (s_e + counts * s_u)), dtype=np.float64)


@torch.no_grad()
def init_wide_from_ridge(
    model: DualHeadModel,
    token_ids: torch.Tensor,
    token_weights: torch.Tensor,
    ctr: NDArray[np.float64],
    labels: NDArray[np.float64],
    alpha: float,
    groups: NDArray[Any] | None = None,
    within: float | Literal["auto"] = 0.0,
) -> WideInit:
    """Fit ridge(``alpha``) of ``ctr`` on the bag; write it into the wide columns and the head biases.

    With ``groups`` and ``within`` > 0 the ridge is fitted on the rows quasi-demeaned within
    their group (module docstring); ``within="auto"`` takes the random-effects share per
    group (``random_effects_theta``). ``within`` is ignored without ``groups``.
    """
    from sklearn.linear_model import LogisticRegression, Ridge

    if model.wide_weight is None:
        raise ValueError("the model has no wide path (ModelConfig.wide is False)")
    if within != "auto" and not 0.0 <= within <= 1.0:
        raise ValueError(f"within: expected a value in [0, 1] or 'auto', got {within!r}")
    matrix = _bag_matrix(token_ids, token_weights, model.config.n_features)
    share: NDArray[np.float64] | None = None
    if groups is not None and within != 0.0:
        codes = _group_codes(groups)
        theta = random_effects_theta(ctr, codes) if within == "auto" else np.full(codes.max() + 1, within)
        share = theta[codes]
    if share is None or not share.any():
        ridge = Ridge(alpha=alpha).fit(matrix, ctr)
        coef = np.asarray(ridge.coef_, dtype=np.float64)
        intercept = float(ridge.intercept_)
        mean_share = 0.0
    else:
        from scipy.sparse import diags

        x_mean, y_mean = _group_means(matrix, ctr, codes)
        ridge = Ridge(alpha=alpha).fit(matrix - diags(share) @ x_mean, ctr - share * y_mean)
        coef = np.asarray(ridge.coef_, dtype=np.float64)
        # The level: the score's mean on the training rows is the mean target.
        intercept = float(ctr.mean() - np.asarray(matrix @ coef).mean())
        mean_share = float(share.mean())
    score = np.asarray(matrix @ coef, dtype=np.float64) + intercept
    mean = float(np.clip(score.mean(), 1e-3, 1 - 1e-3))
    gain = 1.0 / (mean * (1.0 - mean))
    # CTR: sigmoid(logit(m) + gain * (intercept - m + coef.x)).
    centred = score - score.mean()
    platt = LogisticRegression(C=1e4, max_iter=1000).fit(centred.reshape(-1, 1), labels.astype(int))
    slope = float(platt.coef_[0, 0])
    offset = float(platt.intercept_[0])
    wide = model.wide_weight
    wide[:, 0] = torch.from_numpy(gain * coef)
    # Quality: offset + slope * (intercept - mean(score) + coef.x).
    wide[:, 1] = torch.from_numpy(slope * coef)
    wide[0] = 0.0
    model.ctr_head.bias.add_(math.log(mean / (1.0 - mean)) + gain * (intercept - mean))
    model.quality_head.bias.add_(offset + slope * (intercept - float(score.mean())))
    result = WideInit(
        alpha=alpha, mean_prediction=mean, quality_slope=slope, quality_offset=offset, within=mean_share
    )
    logger.info(
        "wide path started from ridge (alpha %s, within-group share %.3f): mean CTR %.4f, quality slope %.2f",
        alpha, mean_share, mean, slope,
    )  # fmt: skip
    return result


__all__ = ["WideInit", "init_wide_from_ridge", "random_effects_theta"]
