"""Training stage 2: the training loop.

The dual-task model is trained with a hybrid loss (plus, with ``rank_weight`` and a
group column, a within-group ranking loss on group-aware batches:
:mod:`training.ranking`; the train and validation losses then include it).
ReduceLROnPlateau lowers the learning rate and early stopping ends the run. Every
epoch writes ``last.pt``; an epoch that improves the validation loss writes
``best.pt`` and is kept in memory for the next stage. A resumed run restores the
weights, optimizer, scheduler, epoch counter, best loss and epoch table first.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau
from tqdm import tqdm

from artifact.errors import CheckpointError
from training.checkpoint import BEST_CHECKPOINT, LAST_CHECKPOINT, Checkpoint, Progress
from training.history import EpochRecord
from training.model import DualHeadModel, HybridLoss
from training.ranking import RankingRows, group_batches
from training.stages.prepare import Prepared
from training.tensors import evaluate_loss
from training.wide_init import init_wide_from_ridge

logger = logging.getLogger(__name__)

#: Rows per forward pass when validating.
EVAL_BATCH = 1024


@dataclass(frozen=True)
class Fitted:
    """What the loop produced: the best checkpoint (in memory, also written) and the epoch table."""

    best: Checkpoint
    best_val_loss: float  # the lowest validation loss of the run (or of the run it continued)
    history: list[EpochRecord]
    best_epoch: int
    start_epoch: int
    stopped_early: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class _Loop:
    """The model and its optimisation state, as the loop changes them."""

    model: DualHeadModel
    optimizer: torch.optim.AdamW
    scheduler: ReduceLROnPlateau
    start_epoch: int = 0
    best_val: float = math.inf
    history: list[EpochRecord] = field(default_factory=list)

    def progress(self, epoch: int) -> Progress:
        """The live state (shares tensors with the model and optimizer: save it or snapshot it)."""
        return Progress(
            model_state=self.model.state_dict(),
            optimizer_state=self.optimizer.state_dict(),
            scheduler_state=self.scheduler.state_dict(),
            epoch=epoch,
            best_val_loss=self.best_val,
            history=tuple(self.history),
        )


def _start(prepared: Prepared, notes: list[str]) -> _Loop:
    """A new model (the wide path from the ridge fit when configured) or the resumed one, restored."""
    config, model_config = prepared.config, prepared.setup.model_config
    model = DualHeadModel(model_config)
    if prepared.resumed is None and model_config.wide and config.wide_init == "ridge":
        ids, weights, _, _ = prepared.train.inputs
        groups = prepared.data.groups
        init_wide_from_ridge(
            model,
            ids,
            weights,
            prepared.train.ctr.double().numpy(),
            prepared.train.label.double().numpy(),
            config.ridge_alpha,
            groups=None if groups is None else groups[prepared.train_index],
            within=config.ridge_within,
        )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = ReduceLROnPlateau(
        optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience, min_lr=config.min_lr
    )
    loop = _Loop(model, optimizer, scheduler)
    if prepared.resumed is not None:
        resumed, saved = prepared.resumed, prepared.resumed.checkpoint.progress
        try:
            model.load_state_dict(saved.model_state)
            optimizer.load_state_dict(saved.optimizer_state)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{resumed.path}: incomplete or inconsistent checkpoint ({exc})") from exc
        scheduler.load_state_dict(saved.scheduler_state)
        loop.start_epoch, loop.best_val, loop.history = saved.epoch, saved.best_val_loss, list(saved.history)
        message = (
            f"resumed from {resumed.path} at epoch {saved.epoch} "
            f"(best validation loss {saved.best_val_loss:.5f}): "
            "weights, optimizer, scheduler, feature state and target scaling restored; weights were not reset"
        )
        logger.info(message)
        notes.append(message)
    return loop


def _rankers(prepared: Prepared, notes: list[str]) -> tuple[RankingRows | None, RankingRows | None]:
    """The ranking loss's rows on the training and validation sides (None: no ranking loss)."""
    config, data = prepared.config, prepared.data
    if config.rank_weight <= 0:
        return None, None
    if data.groups is None:
        notes.append("rank_weight > 0 ignored: the data has no group column (no within-group pairs)")
        logger.info(notes[-1])
        return None, None
    pool = config.rank_pool_headlines
    return (
        RankingRows.build(data, prepared.train_index, config.rank_pairs, pool),
        RankingRows.build(data, prepared.val_index, config.rank_pairs, pool),
    )


def fit(
    prepared: Prepared,
    out_dir: Path,
    progress: bool | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> Fitted:
    """Run the epochs, writing ``last.pt`` every epoch and ``best.pt`` on each improvement."""
    config, setup, train_t, val_t = prepared.config, prepared.setup, prepared.train, prepared.val
    notes: list[str] = []
    loop = _start(prepared, notes)
    model, optimizer = loop.model, loop.optimizer
    loss_fn = HybridLoss(
        config.ctr_weight, config.quality_weight, prepared.pos_weight, config.ctr_loss, config.huber_delta
    )
    ranker, val_ranker = _rankers(prepared, notes)
    out_dir.mkdir(parents=True, exist_ok=True)
    best_path = out_dir / BEST_CHECKPOINT
    generator = torch.Generator().manual_seed(config.seed)
    n_train = train_t.ctr.shape[0]
    stale = 0
    stopped_early = False
    best: Checkpoint | None = None
    best_epoch = start_epoch = loop.start_epoch
    for epoch in range(start_epoch + 1, start_epoch + config.epochs + 1):
        model.train()
        if ranker is None:
            order = torch.randperm(n_train, generator=generator)
            batches = [order[s : s + config.batch_size] for s in range(0, n_train, config.batch_size)]
        else:  # whole groups per batch, so the ranking loss sees pairs
            batches = group_batches(ranker.groups.numpy(), config.batch_size, generator)
        running = correct = abs_err = 0.0
        for index in tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=progress is False or None):
            part = train_t.take(index)
            optimizer.zero_grad()
            ctr, logit = model(*part.inputs)
            loss, _, _ = loss_fn(ctr, logit, part.ctr, part.label)
            if ranker is not None:
                loss = loss + config.rank_weight * ranker.loss(ctr, part.ctr, index)
            loss.backward()
            optimizer.step()
            running += loss.item() * part.ctr.shape[0]
            with torch.no_grad():
                correct += float(((logit >= 0).float() == part.label).sum())
                abs_err += float((ctr - part.ctr).abs().sum())
        val_loss, val_acc, val_mae, val_ctr = evaluate_loss(model, loss_fn, val_t, EVAL_BATCH)
        if val_ranker is not None:  # early stopping and the scheduler see the whole objective
            val_loss += config.rank_weight * val_ranker.full_loss(val_ctr, val_t.ctr)
        loop.scheduler.step(val_loss)
        record = EpochRecord(
            epoch=epoch,
            train_loss=running / n_train,
            val_loss=val_loss,
            val_accuracy=val_acc,
            val_mae=val_mae,
            learning_rate=float(optimizer.param_groups[0]["lr"]),
            train_accuracy=correct / n_train,
            train_mae=abs_err / n_train,
        )
        loop.history.append(record)
        logger.info(
            "epoch %3d  train_loss %.5f  val_loss %.5f  train_acc %.3f  val_acc %.3f  "
            "train_mae %.4f  val_mae %.4f  lr %.2g",
            epoch, record.train_loss, val_loss, correct / n_train, val_acc,
            abs_err / n_train, val_mae, record.learning_rate,
        )  # fmt: skip
        if on_epoch is not None:
            on_epoch(record)
        if val_loss < loop.best_val - 1e-6:
            loop.best_val = val_loss
            best_epoch = epoch
            stale = 0
            best = Checkpoint(setup, loop.progress(epoch).snapshot())
            best.save(best_path)
        else:
            stale += 1
        Checkpoint(setup, loop.progress(epoch)).save(out_dir / LAST_CHECKPOINT)
        if stale >= config.patience:
            stopped_early = True
            logger.info("early stopping at epoch %d: no improvement for %d epochs", epoch, stale)
            break
    if best is None:
        best, best_epoch = _unimproved_best(prepared, best_path, best_epoch)
    return Fitted(
        best=best,
        best_val_loss=loop.best_val,
        history=loop.history,
        best_epoch=best_epoch,
        start_epoch=start_epoch,
        stopped_early=stopped_early,
        notes=notes,
    )


def _unimproved_best(prepared: Prepared, best_path: Path, best_epoch: int) -> tuple[Checkpoint, int]:
    """The best checkpoint of a run no epoch of which improved on the best loss it started from.

    That is a resumed run: the restored weights stay the best (written to ``best.pt``), unless the
    output directory already holds a ``best.pt`` (resuming into the run's own directory), which is kept.
    """
    if best_path.exists():
        return Checkpoint.load(best_path), best_epoch
    if prepared.resumed is None:
        raise CheckpointError(f"{best_path}: training produced no checkpoint")
    restored = prepared.resumed.checkpoint
    restored.save(best_path)
    return restored, best_epoch


__all__ = ["EVAL_BATCH", "Fitted", "fit"]
