"""An experimental copy of the training loop, to measure changes that need code in the model or loss.

It reuses the project's featurizer, split, label rule and ``TrainConfig`` and
adds, each off by default (so ``ExpConfig()`` reproduces the project loop up
to calibration):

* ``input_dropout``: drop bag entries (feature occurrences) with this
  probability during training, rescaling the kept weights by ``1 / (1 - p)``;
* ``quality_source``: ``head`` (the quality head's logit), ``ctr`` (rank by the
  CTR head: the label is a threshold on CTR, so the regression output orders it
  with more information than a binary head) or ``blend`` (mean of the two
  standardised scores);
* ``ctr_target``: ``level`` (normalized CTR) or ``deviation`` (normalized CTR
  minus the mean of its group plus the overall mean: for A/B data, the CTR this
  headline would get in an average test; the story/period level is removed);
* ``rank_weight``: an auxiliary RankNet loss ``softplus(-(s_i - s_j) sign(y_i - y_j))``
  on the CTR logit over pairs of one batch: pairs within a group (batches are
  built from whole groups) when the data has groups, else all pairs;
* ``n_seeds``: average the predictions of models trained with seeds
  ``seed, seed + 1, ...`` (each with its own validation split);
* ``embed_l2``: a coupled L2 penalty ``embed_l2 * ||E||^2`` on the feature
  embedding added to the loss (ridge-like shrinkage of rare n-grams, which
  Adam otherwise moves as fast as frequent ones);
* ``embed_sgd_lr``: train the feature embedding with plain SGD (momentum 0.9)
  at this learning rate instead of AdamW, so a feature moves in proportion to
  how often it occurs (Adam's per-parameter normalisation moves a feature seen
  in two titles as fast as a frequent one);
* ``init_ctr_bias``: start the CTR head's bias at ``logit(mean training target)``
  instead of 0 (sigmoid 0.5), so the first epochs are not spent moving the
  output level from 0.5 to the mean;
* ``use_category`` / ``use_numeric``: feed the category index / the numeric
  length features (off: zeros), to measure what they add;
* ``refit_full``: after early stopping, train a fresh model on all the rows
  (training + validation) for the best epoch count (no early stopping; the
  plateau scheduler then watches the training loss);
* ``linear``: replace the two-layer trunk by the identity (heads read the bag
  embedding, category and numeric features directly).

The CTR loss is the base config's ``ctr_loss`` when it is ``l1``, else the squared error.

Early stopping and the best epoch use the validation loss, as in the project,
or with ``select="pairs"`` (data with groups) the within-group pairwise
accuracy of the CTR output on the validation rows (higher is better).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from artifact.features import NUMERIC_FEATURES, fit_feature_state
from artifact.featurizer import Featurizer
from benchmarks.common import FitPredict, FloatArray
from training.data import HeadlineData
from training.predict import batch_tensors
from training.split import grouped_split
from training.train import TrainConfig, seed_everything

#: Diagnostics: a callable (model, featurizer) -> tuple run after each epoch; results in _HOOK_LOG.
_HOOK: Any = None
_HOOK_LOG: list[Any] = []


@dataclass(frozen=True)
class ExpConfig:
    base: TrainConfig = TrainConfig()
    input_dropout: float = 0.0
    quality_source: Literal["head", "ctr", "blend"] = "head"
    ctr_target: Literal["level", "deviation"] = "level"
    rank_weight: float = 0.0
    n_seeds: int = 1
    linear: bool = False
    embed_l2: float = 0.0
    embed_sgd_lr: float | None = None
    init_ctr_bias: bool = False
    use_category: bool = True
    use_numeric: bool = True
    select: Literal["loss", "pairs"] = "loss"
    refit_full: bool = False


class ExpModel(nn.Module):
    """``training.model.DualHeadModel`` plus input dropout and an optional linear trunk; returns logits."""

    def __init__(self, n_features: int, n_categories: int, cfg: ExpConfig) -> None:
        super().__init__()
        b = cfg.base
        self.input_dropout = cfg.input_dropout
        self.use_category = cfg.use_category
        self.use_numeric = cfg.use_numeric
        self.embedding = nn.Embedding(n_features, b.embed_dim, padding_idx=0)
        self.category = nn.Embedding(n_categories, 8)
        width = b.embed_dim + 8 + len(NUMERIC_FEATURES)
        if cfg.linear:
            self.trunk: nn.Module = nn.Dropout(b.dropout)
            out = width
        else:
            self.trunk = nn.Sequential(
                nn.Dropout(b.dropout),
                nn.Linear(width, b.hidden_dim),
                nn.ReLU(),
                nn.Dropout(b.dropout),
                nn.Linear(b.hidden_dim, b.hidden_dim),
                nn.ReLU(),
            )
            out = b.hidden_dim
        self.ctr_head = nn.Linear(out, 1)
        self.quality_head = nn.Linear(out, 1)
        nn.init.normal_(self.embedding.weight, std=0.05)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(
        self, ids: torch.Tensor, weights: torch.Tensor, cats: torch.Tensor, numeric: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and self.input_dropout > 0:
            keep = (torch.rand_like(weights) >= self.input_dropout).float()
            weights = weights * keep / (1.0 - self.input_dropout)
        bag = (self.embedding(ids) * weights.unsqueeze(-1)).sum(dim=1)
        if not self.use_category:
            cats = torch.zeros_like(cats)
        if not self.use_numeric:
            numeric = torch.zeros_like(numeric)
        hidden = self.trunk(torch.cat([bag, self.category(cats), numeric], dim=1))
        return self.ctr_head(hidden).squeeze(-1), self.quality_head(hidden).squeeze(-1)


def _normalized(rows: HeadlineData, ref: HeadlineData) -> FloatArray:
    if rows.ctr_normalized_given is not None:
        return rows.ctr_normalized_given
    assert rows.raw_ctr is not None and ref.raw_ctr is not None
    logs = np.log1p(ref.raw_ctr)
    return (np.log1p(rows.raw_ctr) - logs.min()) / (logs.max() - logs.min())


def _group_codes(rows: HeadlineData) -> NDArray[np.int64] | None:
    if rows.groups is None:
        return None
    return np.unique(rows.groups, return_inverse=True)[1].astype(np.int64)


def _targets(
    rows: HeadlineData, ref: HeadlineData, cfg: ExpConfig, median: float
) -> tuple[FloatArray, FloatArray]:
    """CTR target (level or deviation) and the quality label (group mean rule with groups, else median)."""
    y = _normalized(rows, ref)
    codes = _group_codes(rows)
    if codes is not None:
        assert rows.raw_ctr is not None
        raw = rows.raw_ctr
        label = (raw > (np.bincount(codes, raw) / np.bincount(codes))[codes]).astype(np.float64)
        if cfg.ctr_target == "deviation":
            y = y - (np.bincount(codes, y) / np.bincount(codes))[codes] + median
    else:
        label = (y > median).astype(np.float64)
    return y, label


def _inputs(f: Featurizer, rows: HeadlineData) -> tuple[torch.Tensor, ...]:
    return batch_tensors(f.transform(rows.titles, rows.categories))


def _take(inputs: tuple[torch.Tensor, ...], idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
    ids, w, c, n = inputs
    width = max(int((w[idx] != 0).sum(dim=1).max()), 1)
    return ids[idx, :width], w[idx, :width], c[idx], n[idx]


def _rank_loss(score: torch.Tensor, y: torch.Tensor, same: torch.Tensor | None) -> torch.Tensor:
    diff = y.unsqueeze(1) - y.unsqueeze(0)
    mask = diff > 0
    if same is not None:
        mask &= same
    if not bool(mask.any()):
        return score.sum() * 0.0
    s = score.unsqueeze(1) - score.unsqueeze(0)
    return nn.functional.softplus(-s[mask]).mean()


def _train_one(
    rows: HeadlineData, cfg: ExpConfig, seed: int, fixed_epochs: int | None = None
) -> tuple[ExpModel, Featurizer, float, float, float]:
    """Train one model; return it with its featurizer, the quality score scale stats and the best epoch.

    With ``fixed_epochs`` all rows train for that many epochs (validation = training rows, no stopping)."""
    b = cfg.base
    seed_everything(seed)
    if fixed_epochs is None:
        groups = None if rows.groups is None else list(rows.groups)
        tr_idx, va_idx = grouped_split(rows.titles, groups, b.val_fraction, seed)
        tr, va = rows.subset(tr_idx), rows.subset(va_idx)
    else:
        tr = va = rows
        b = b.model_copy(update={"epochs": fixed_epochs, "patience": fixed_epochs + 1})
    featurizer = Featurizer(fit_feature_state(tr.titles, tr.categories, b.features))
    median = float(np.median(_normalized(tr, tr)))
    y_tr, l_tr = _targets(tr, tr, cfg, median)
    y_va, l_va = _targets(va, tr, cfg, median)
    x_tr, x_va = _inputs(featurizer, tr), _inputs(featurizer, va)
    yt, lt = torch.tensor(y_tr, dtype=torch.float32), torch.tensor(l_tr, dtype=torch.float32)
    yv, lv = torch.tensor(y_va, dtype=torch.float32), torch.tensor(l_va, dtype=torch.float32)
    codes = _group_codes(tr)
    pos = float(lt.sum())
    pos_weight = b.pos_weight or (lt.numel() - pos) / pos
    model = ExpModel(featurizer.state.n_features, featurizer.state.n_categories, cfg)
    if cfg.embed_sgd_lr is None:
        opt: torch.optim.Optimizer = torch.optim.AdamW(
            model.parameters(), lr=b.learning_rate, weight_decay=b.weight_decay
        )
        opts = [opt]
    else:
        rest = [p for name, p in model.named_parameters() if not name.startswith("embedding.")]
        opt = torch.optim.AdamW(rest, lr=b.learning_rate, weight_decay=b.weight_decay)
        opts = [opt, torch.optim.SGD(model.embedding.parameters(), lr=cfg.embed_sgd_lr, momentum=0.9)]
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=b.lr_factor, patience=b.lr_patience, min_lr=b.min_lr
    )
    if cfg.init_ctr_bias:
        mean = float(np.clip(y_tr.mean(), 1e-3, 1 - 1e-3))
        with torch.no_grad():
            model.ctr_head.bias.fill_(math.log(mean / (1 - mean)))
    bce = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
    gen = torch.Generator().manual_seed(seed)

    def loss_of(
        ctr_logit: torch.Tensor, q_logit: torch.Tensor, y: torch.Tensor, lab: torch.Tensor
    ) -> torch.Tensor:
        ctr_error = nn.functional.l1_loss if b.ctr_loss == "l1" else nn.functional.mse_loss
        return b.ctr_weight * ctr_error(torch.sigmoid(ctr_logit), y) + b.quality_weight * bce(q_logit, lab)

    best, best_state, best_epoch, stale = math.inf, None, 0, 0
    _HOOK_LOG.clear()
    n = yt.shape[0]
    for epoch in range(1, b.epochs + 1):
        model.train()
        if codes is not None and cfg.rank_weight > 0:
            perm = torch.randperm(int(codes.max()) + 1, generator=gen).numpy()
            order = torch.from_numpy(np.argsort(perm[codes], kind="stable"))
        else:
            order = torch.randperm(n, generator=gen)
        for start in range(0, n, b.batch_size):
            idx = order[start : start + b.batch_size]
            ctr_logit, q_logit = model(*_take(x_tr, idx))
            loss = loss_of(ctr_logit, q_logit, yt[idx], lt[idx])
            if cfg.rank_weight > 0:
                same = None
                if codes is not None:
                    g = torch.from_numpy(codes)[idx]
                    same = g.unsqueeze(1) == g.unsqueeze(0)
                loss = loss + cfg.rank_weight * _rank_loss(ctr_logit, yt[idx], same)
            if cfg.embed_l2 > 0:
                loss = loss + cfg.embed_l2 * model.embedding.weight.pow(2).sum()
            for o in opts:
                o.zero_grad()
            loss.backward()
            for o in opts:
                o.step()
        model.eval()
        with torch.no_grad():
            c, q = model(*x_va)
            val = float(loss_of(c, q, yv, lv))
        if cfg.select == "pairs" and va.groups is not None:
            from training.pairwise import pairwise_accuracy

            assert va.raw_ctr is not None
            val = -pairwise_accuracy(va.groups, va.raw_ctr, c.double().numpy()).accuracy
        sched.step(val)
        if _HOOK is not None:
            _HOOK_LOG.append(_HOOK(model, featurizer))
            model.eval()
        if val < best - 1e-6:
            best, best_epoch, stale = val, epoch, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= b.patience:
                break
    if fixed_epochs is not None:
        best_state, best_epoch = model.state_dict(), fixed_epochs
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        c, q = model(*x_tr)
    return model, featurizer, float(c.std()), float(q.std()), float(best_epoch)


def experimental_fit(cfg: ExpConfig, log: list[dict[str, float]] | None = None) -> FitPredict:
    def fit(train_rows: HeadlineData, test_rows: HeadlineData) -> tuple[FloatArray, FloatArray]:
        ctrs, quals = [], []
        for k in range(cfg.n_seeds):
            model, featurizer, c_std, q_std, best_epoch = _train_one(train_rows, cfg, cfg.base.seed + k)
            if cfg.refit_full:
                model, featurizer, c_std, q_std, best_epoch = _train_one(
                    train_rows, cfg, cfg.base.seed + k, fixed_epochs=int(best_epoch)
                )
            with torch.no_grad():
                c, q = model(*_inputs(featurizer, test_rows))
            ctr = torch.sigmoid(c).double().numpy()
            if cfg.quality_source == "head":
                qual = q.double().numpy()
            elif cfg.quality_source == "ctr":
                qual = c.double().numpy()
            else:
                qual = c.double().numpy() / max(c_std, 1e-9) + q.double().numpy() / max(q_std, 1e-9)
            ctrs.append(ctr)
            quals.append(qual)
            if log is not None:
                log.append({"best_epoch": best_epoch})
        return np.mean(ctrs, axis=0), np.mean(quals, axis=0)

    return fit


def with_base(cfg: ExpConfig, **updates: object) -> ExpConfig:
    """``cfg`` with fields of its ``TrainConfig`` replaced."""
    return replace(cfg, base=cfg.base.model_copy(update=updates))
