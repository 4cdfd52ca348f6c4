"""Pairwise accuracy within A/B groups: defined in :mod:`artifact.pairwise` (numpy only), so the
stream's live quality and ``evaluate`` share one implementation; re-exported here for training."""

from __future__ import annotations

# Re-exported (``X as X``): training, the tests and the benchmarks import them from here.
from artifact.pairwise import Z_CRITICAL as Z_CRITICAL
from artifact.pairwise import PairwiseResult as PairwiseResult
from artifact.pairwise import _group_codes as _group_codes
from artifact.pairwise import _within_group_pairs as _within_group_pairs
from artifact.pairwise import headline_codes as headline_codes
from artifact.pairwise import headline_key as headline_key
from artifact.pairwise import pairwise_accuracy as pairwise_accuracy
from artifact.pairwise import two_proportion_z as two_proportion_z
