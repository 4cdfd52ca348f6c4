"""A within-group ranking loss for the CTR head and the group-aware batch order it needs.

With a group column (an A/B test id) the product is judged on how it orders the
headlines of one test (``training.pairwise.pairwise_accuracy``). ``TrainConfig.rank_weight``
adds a RankNet-style loss to the hybrid loss: for every pair of rows of one batch
that share a group, have different headlines and different observed CTR,
``softplus(-s * (z_i - z_j))`` where ``s`` is the sign of the observed CTR
difference and ``z`` the CTR head's pre-sigmoid output; the mean over pairs,
weighted by ``pair_weights`` (all pairs alike, only significant ones, or by |z| of
the two-proportion test).

Random batches of 64 out of thousands of rows almost never hold two rows of one
group, so ``group_batches`` packs whole groups into batches in a seeded random
group order. Pairs of packages with the same headline (image-only variants) are
left out: the model sees the same input twice, so their order is noise to it.

With ``pool`` (``TrainConfig.rank_pool_headlines``) the rows of one headline in one
group are pooled as the metric pools them (``training.pairwise.pairwise_accuracy``
with titles): the observed CTR of a row is its headline's (clicks and impressions
summed, else the mean observed value), the ``z`` of a pair is computed on the pooled
counts, and a pair of rows is weighted ``1 / (m_i * m_j)`` (``m``: rows of the
headline), so every headline pair weighs the same as in the metric instead of a
headline with three image variants counting three times, each with a noisier CTR.
Batches and ``full_loss`` blocks hold whole groups, so pooling within a batch pools
within the group.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray

from artifact.errors import CsvValidationError
from training.data import HeadlineData
from training.pairwise import Z_CRITICAL, headline_codes, two_proportion_z

logger = logging.getLogger(__name__)

#: Which within-group pairs the ranking loss uses and how it weights them.
RankPairs = Literal["all", "significant", "z"]

#: Keeps the logit finite where the sigmoid output saturates.
_LOGIT_EPS = 1e-6


def group_batches(
    groups: NDArray[np.intp], batch_size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Row indices in batches that keep each group's rows together.

    Groups are visited in a random order drawn from ``generator`` and packed
    greedily: a batch takes whole groups while they fit in ``batch_size`` rows; a
    group larger than ``batch_size`` forms a batch of its own. Every row appears
    exactly once; rows of one group keep their relative order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    codes = np.asarray(groups)
    if codes.ndim != 1:
        raise ValueError(f"groups: expected a 1-D array of group codes, got shape {codes.shape}")
    _, inverse = np.unique(codes, return_inverse=True)
    inverse = inverse.reshape(-1)
    n_groups = int(inverse.max()) + 1 if inverse.size else 0
    by_group = np.argsort(inverse, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(inverse, minlength=n_groups))]
    visit = torch.randperm(n_groups, generator=generator).tolist()
    batches: list[torch.Tensor] = []
    current: list[NDArray[np.intp]] = []
    filled = 0
    for g in visit:
        rows = by_group[bounds[g] : bounds[g + 1]]
        if current and filled + rows.size > batch_size:
            batches.append(torch.from_numpy(np.concatenate(current)))
            current, filled = [], 0
        current.append(rows)
        filled += rows.size
    if current:
        batches.append(torch.from_numpy(np.concatenate(current)))
    return batches


def rank_loss_terms(
    scores: torch.Tensor,
    observed: torch.Tensor,
    groups: torch.Tensor,
    headlines: torch.Tensor | None = None,
    pair_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weighted sum of the pair losses and the sum of the weights (see ``pairwise_rank_loss``)."""
    if scores.ndim != 1 or observed.shape != scores.shape or groups.shape != scores.shape:
        raise ValueError(
            "expected 1-D scores, observed and groups of one length, got shapes "
            f"{tuple(scores.shape)}, {tuple(observed.shape)}, {tuple(groups.shape)}"
        )
    n = scores.shape[0]
    sign = torch.sign(observed.unsqueeze(1) - observed.unsqueeze(0))
    mask = (groups.unsqueeze(1) == groups.unsqueeze(0)) & (sign != 0)
    mask &= torch.ones(n, n, dtype=torch.bool).triu(diagonal=1)
    if headlines is not None:
        mask &= headlines.unsqueeze(1) != headlines.unsqueeze(0)
    weight = mask.to(scores.dtype)
    if pair_weights is not None:
        weight = weight * pair_weights.to(scores.dtype)
    margin = sign.to(scores.dtype) * (scores.unsqueeze(1) - scores.unsqueeze(0))
    return (weight * torch.nn.functional.softplus(-margin)).sum(), weight.sum()


def pairwise_rank_loss(
    scores: torch.Tensor,
    observed: torch.Tensor,
    groups: torch.Tensor,
    headlines: torch.Tensor | None = None,
    pair_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted mean RankNet loss over the comparable within-group pairs of a batch.

    A pair ``(i, j)``, ``i < j``, counts when ``groups`` are equal, ``observed``
    differ and (with ``headlines``) the headline codes differ; its loss is
    ``softplus(-sign(observed_i - observed_j) * (scores_i - scores_j))`` (``log 2``
    for a tie in the scores, 0 in the limit of the right order). ``pair_weights``
    (``[B, B]``, non-negative) weights the pairs. Zero, still attached to the graph,
    when no pair counts.
    """
    total, weight = rank_loss_terms(scores, observed, groups, headlines, pair_weights)
    if float(weight) == 0.0:
        return scores.sum() * 0.0
    return total / weight


def _z_weights(pairs: RankPairs, clicks: torch.Tensor, imps: torch.Tensor) -> torch.Tensor:
    """``[B, B]`` pair weights from the metric's z-test (``training.pairwise.two_proportion_z``):
    |z| for ``"z"``, 1 where |z| > 1.96 (else 0) for ``"significant"``."""
    c, n = clicks.numpy(), imps.numpy()
    z = np.abs(two_proportion_z(c[:, None], n[:, None], c[None, :], n[None, :]))
    return torch.from_numpy((z > Z_CRITICAL).astype(np.float64) if pairs == "significant" else z)


@dataclass(frozen=True)
class RankingRows:
    """What the ranking loss needs of the training rows (indexed like the training tensors)."""

    groups: torch.Tensor  # int64 group code per row
    headlines: torch.Tensor  # int64 code per (group, headline_key)
    clicks: torch.Tensor | None  # float64, with impressions, when the data has counts
    impressions: torch.Tensor | None
    pairs: RankPairs
    pool: bool = False  # pool the rows of one headline in one group (module docstring)

    @classmethod
    def build(
        cls, data: HeadlineData, index: NDArray[np.int64], pairs: RankPairs, pool: bool = False
    ) -> RankingRows:
        if data.groups is None:
            raise CsvValidationError(f"{data.summary.file}: the ranking loss needs a group column")
        sub = data.subset(index)
        assert sub.groups is not None
        _, inverse = np.unique(sub.groups, return_inverse=True)
        group_codes = np.asarray(inverse.reshape(-1), dtype=np.intp)
        clicks = impressions = None
        if sub.clicks is not None and sub.impressions is not None:
            clicks = torch.from_numpy(sub.clicks.astype(np.float64))
            impressions = torch.from_numpy(sub.impressions.astype(np.float64))
        elif pairs != "all":
            raise CsvValidationError(
                f"{data.summary.file}: rank_pairs={pairs!r} needs clicks and impressions, "
                "but the mapping names none (use rank_pairs='all')"
            )
        return cls(
            groups=torch.from_numpy(group_codes.astype(np.int64)),
            headlines=torch.from_numpy(headline_codes(group_codes, sub.titles).astype(np.int64)),
            clicks=clicks,
            impressions=impressions,
            pairs=pairs,
            pool=pool,
        )

    def pair_weights(self, index: torch.Tensor) -> torch.Tensor | None:
        if self.pairs == "all" or self.clicks is None or self.impressions is None:
            return None
        return _z_weights(self.pairs, self.clicks[index], self.impressions[index])

    def pair_inputs(
        self, observed: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The observed values and pair weights the loss uses for rows ``index`` (whole groups)."""
        if not self.pool:
            return observed, self.pair_weights(index)
        _, inverse = torch.unique(self.headlines[index], return_inverse=True)
        size = int(inverse.max()) + 1 if inverse.numel() else 0
        rows = torch.bincount(inverse, minlength=size).to(torch.float64)
        weights: torch.Tensor | None = None
        if self.clicks is not None and self.impressions is not None:
            clicks = torch.zeros(size, dtype=torch.float64).index_add_(0, inverse, self.clicks[index])
            imps = torch.zeros(size, dtype=torch.float64).index_add_(0, inverse, self.impressions[index])
            pooled = (clicks / imps)[inverse]
            if self.pairs != "all":
                weights = _z_weights(self.pairs, clicks[inverse], imps[inverse])
        else:
            total = torch.zeros(size, dtype=torch.float64).index_add_(0, inverse, observed.double())
            pooled = (total / rows)[inverse]
        share = 1.0 / rows[inverse]
        multiplicity = share.unsqueeze(1) * share.unsqueeze(0)
        weights = multiplicity if weights is None else weights * multiplicity
        return pooled.to(observed.dtype), weights

    def loss(self, ctr: torch.Tensor, observed: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The ranking loss of a batch: ``ctr`` (the sigmoid output) and ``observed`` of rows ``index``."""
        scores = torch.logit(ctr, eps=_LOGIT_EPS)
        target, weights = self.pair_inputs(observed, index)
        return pairwise_rank_loss(scores, target, self.groups[index], self.headlines[index], weights)

    @torch.no_grad()
    def full_loss(self, ctr: torch.Tensor, observed: torch.Tensor, batch_size: int = 1024) -> float:
        """The ranking loss over every within-group pair of all rows (``ctr``/``observed`` of every row).

        Groups are packed whole into blocks of about ``batch_size`` rows (fixed order), so
        every within-group pair is counted once; 0 when there is no pair.
        """
        total = weight = 0.0
        for index in group_batches(self.groups.numpy(), batch_size, torch.Generator().manual_seed(0)):
            scores = torch.logit(ctr[index].double(), eps=_LOGIT_EPS)
            target, weights = self.pair_inputs(observed[index].double(), index)
            s, w = rank_loss_terms(scores, target, self.groups[index], self.headlines[index], weights)
            total, weight = total + float(s), weight + float(w)
        return total / weight if weight > 0 else 0.0


__all__ = ["RankPairs", "RankingRows", "group_batches", "pairwise_rank_loss", "rank_loss_terms"]
