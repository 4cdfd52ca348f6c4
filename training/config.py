"""Hyper-parameters of one training run (:class:`TrainConfig`, stored in the checkpoint)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from artifact.features import FeatureConfig
from training.model import CtrLoss
from training.ranking import RankPairs

#: The featurizer settings the trainer uses by default: word unigrams and character 1-4-grams measured
#: better than FeatureConfig's own defaults on the shared data (benchmarks/README.md).
DEFAULT_FEATURES = FeatureConfig(word_ngrams=(1, 1), char_ngrams=(1, 4))


class TrainConfig(BaseModel):
    """Hyper-parameters of one training run (stored in the checkpoint).

    The defaults are the best measured on the shared data with ``benchmarks/train_targets.py``
    (chosen on other fold seeds than the reported one; see benchmarks/README.md): a low
    learning rate with many epochs, a light quality weight, and an absolute-error CTR loss.
    The L1 loss makes the CTR head estimate the conditional median of the normalized CTR,
    which lowers the MAE of this skewed target and, the inverse scaling being monotone,
    maps to the median raw CTR. The model has a wide (linear) path on the bag next to the MLP,
    started from a closed-form ridge fit on the training rows (``training.wide_init``): the
    trunk alone stayed about 0.02-0.03 AUC below that ridge.
    With a group column a within-group ranking loss (weight 1, all pairs) lifts Upworthy's pairwise
    accuracy by about 0.05, and the ridge start is
    fitted on the rows quasi-demeaned within their group by the random-effects share (``ridge_within``
    "auto"), about +0.01-0.02 more; without a group column neither is used (the evidence:
    "What was tried" in benchmarks/README.md).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(default=60, ge=1, description="Epochs to run (more epochs after a resume).")
    batch_size: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=2e-4, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    ctr_weight: float = Field(default=1.0, ge=0)
    ctr_loss: CtrLoss = Field(default="l1", description="CTR loss: mse (mean), l1 (median) or huber.")
    huber_delta: float = Field(default=0.05, gt=0)
    quality_weight: float = Field(default=0.2, ge=0)
    pos_weight: float | None = Field(default=None, gt=0, description="None: negatives/positives.")
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    patience: int = Field(default=6, ge=1, description="Early stopping: epochs without improvement.")
    lr_patience: int = Field(default=2, ge=0)
    lr_factor: float = Field(default=0.5, gt=0, lt=1)
    min_lr: float = Field(default=1e-5, ge=0)
    seed: int = 42
    embed_dim: int = Field(default=64, ge=1)
    hidden_dim: int = Field(default=64, ge=1)
    dropout: float = Field(default=0.3, ge=0, lt=1)
    wide: bool = Field(default=True, description="A linear path per head on the bag (ModelConfig.wide).")
    wide_init: Literal["zero", "ridge"] = Field(
        default="ridge", description="Start of the wide path: zeros, or a ridge fit on the training rows."
    )
    ridge_alpha: float = Field(default=2.0, gt=0, description="Ridge penalty of wide_init='ridge'.")
    ridge_within: Literal["auto"] | Annotated[float, Field(ge=0, le=1)] = Field(
        default="auto",
        description="With a group column: share of the group mean taken out of the ridge start's rows "
        "(1: within-group fit, 0: plain ridge, auto: the random-effects share; training.wide_init).",
    )
    rank_weight: float = Field(
        default=1.0,
        ge=0,
        description="Weight of the within-group ranking loss (training.ranking); only with a group column.",
    )
    rank_pairs: RankPairs = Field(
        default="all", description="Ranking-loss pairs: all, significant (|z| > 1.96) or weighted by |z|."
    )
    rank_pool_headlines: bool = Field(
        default=False,
        description="Ranking loss over headlines: pool the rows of one headline in a group, weight "
        "each headline pair once (training.ranking).",
    )
    features: FeatureConfig = DEFAULT_FEATURES


__all__ = ["DEFAULT_FEATURES", "TrainConfig"]
