"""The dual-task model: a shared trunk over a bag of text features, a CTR head and a quality head."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

#: Extra embedding columns of the wide path: one added to the CTR pre-sigmoid, one to the quality logit.
WIDE_COLUMNS = 2


class ModelConfig(BaseModel):
    """Architecture hyper-parameters (stored in the checkpoint)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_features: int = Field(ge=1, description="Embedding rows: vocabulary + padding.")
    n_categories: int = Field(ge=1, description="Category rows: known categories + unknown.")
    n_numeric: int = Field(ge=0)
    embed_dim: int = Field(default=64, ge=1)
    category_dim: int = Field(default=8, ge=1)
    hidden_dim: int = Field(default=64, ge=1)
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    wide: bool = Field(
        default=False,
        description="A linear path per head on the bag (False: checkpoints from before it existed).",
    )


class DualHeadModel(nn.Module):
    """Bag-of-features embedding -> shared MLP trunk -> (normalized CTR, quality logit).

    The bag is a weighted sum of feature embeddings (padding id 0 has a zero
    row), which is a linear layer over the sparse TF-IDF vector; it exports to
    ONNX as Gather + MatMul (weights [B, 1, T] times embeddings [B, T, D]; about
    40 % faster in onnxruntime than Mul + ReduceSum) and costs in proportion to
    the features a title has, not the vocabulary size.

    With ``config.wide`` the embedding has two more columns (``WIDE_COLUMNS``:
    one per head, zero at start) whose weighted sum bypasses the trunk and is
    added to the CTR pre-sigmoid and to the quality logit: a linear model on the
    sparse bag (as ridge / logistic regression on the TF-IDF vector) next to the
    MLP. They ride in the same Gather as the embedding: a separate two-column
    embedding measured 20-40 % more per ONNX call (the gather's per-index cost),
    the extra columns a few percent.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        extra = WIDE_COLUMNS if config.wide else 0
        self.embedding = nn.Embedding(config.n_features, config.embed_dim + extra, padding_idx=0)
        self.category = nn.Embedding(config.n_categories, config.category_dim)
        width = config.embed_dim + config.category_dim + config.n_numeric
        self.trunk = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(width, config.hidden_dim),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_dim, config.hidden_dim),
            nn.ReLU(),
        )
        self.ctr_head = nn.Linear(config.hidden_dim, 1)
        self.quality_head = nn.Linear(config.hidden_dim, 1)
        nn.init.normal_(self.embedding.weight, std=0.05)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
            self.embedding.weight[:, config.embed_dim :].zero_()

    @property
    def wide_weight(self) -> torch.Tensor | None:
        """The wide path's weights (a view: columns CTR, quality), or None without one."""
        return self.embedding.weight[:, self.config.embed_dim :] if self.config.wide else None

    def forward(
        self,
        token_ids: torch.Tensor,
        token_weights: torch.Tensor,
        category_ids: torch.Tensor,
        numeric: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bag = torch.bmm(token_weights.unsqueeze(1), self.embedding(token_ids)).squeeze(1)
        dim = self.config.embed_dim
        hidden = self.trunk(torch.cat([bag[:, :dim], self.category(category_ids), numeric], dim=1))
        ctr_z = self.ctr_head(hidden).squeeze(-1)
        quality_logit = self.quality_head(hidden).squeeze(-1)
        if self.config.wide:
            ctr_z = ctr_z + bag[:, dim]
            quality_logit = quality_logit + bag[:, dim + 1]
        return torch.sigmoid(ctr_z), quality_logit


CtrLoss = Literal["mse", "l1", "huber"]


class HybridLoss(nn.Module):
    """``ctr_weight * L(ctr) + quality_weight * BCE(quality, pos_weight)``; parts are reported too.

    ``L`` is the squared error (``mse``: the CTR head estimates the mean), the absolute
    error (``l1``: the median, which minimises the MAE of a skewed target) or Huber
    with ``huber_delta`` (quadratic near 0, absolute beyond).
    """

    def __init__(
        self,
        ctr_weight: float = 1.0,
        quality_weight: float = 1.0,
        pos_weight: float = 1.0,
        ctr_loss: CtrLoss = "mse",
        huber_delta: float = 0.05,
    ) -> None:
        super().__init__()
        if ctr_weight < 0 or quality_weight < 0 or ctr_weight + quality_weight == 0:
            raise ValueError(
                f"expected non-negative loss weights that are not both 0, got {ctr_weight}, {quality_weight}"
            )
        if pos_weight <= 0:
            raise ValueError(f"expected a positive pos_weight, got {pos_weight}")
        self.ctr_weight = ctr_weight
        self.quality_weight = quality_weight
        losses: dict[str, nn.Module] = {
            "mse": nn.MSELoss(),
            "l1": nn.L1Loss(),
            "huber": nn.HuberLoss(delta=huber_delta),
        }
        if ctr_loss not in losses:
            raise ValueError(f"expected ctr_loss in {sorted(losses)}, got {ctr_loss!r}")
        self.ctr_loss = losses[ctr_loss]
        self.bce = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))

    def forward(
        self,
        ctr_pred: torch.Tensor,
        quality_logit: torch.Tensor,
        ctr_true: torch.Tensor,
        quality_true: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ctr_loss = self.ctr_loss(ctr_pred, ctr_true)
        quality_loss = self.bce(quality_logit, quality_true)
        return self.ctr_weight * ctr_loss + self.quality_weight * quality_loss, ctr_loss, quality_loss
