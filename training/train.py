"""The training loop: seeded, validated, early-stopped, resumable.

``train`` fits (or, with ``resume``, restores) the feature state, target
scaling and label rule, trains the dual-task model with a hybrid loss (plus,
with ``rank_weight`` and a group column, a within-group ranking loss on
group-aware batches: ``training.ranking``; the train and validation losses
then include it), keeps the best checkpoint by validation loss,
then calibrates the quality probability and chooses its threshold on the
validation rows.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from torch.optim.lr_scheduler import ReduceLROnPlateau
from tqdm import tqdm

from artifact.errors import CheckpointError, CsvValidationError
from artifact.features import NUMERIC_FEATURES, FeatureConfig, FeatureState, fit_feature_state
from artifact.featurizer import Featurizer
from artifact.scaling import TargetScaling
from training.calibration import CalibrationReport, calibrate
from training.checkpoint import save_checkpoint
from training.data import HeadlineData
from training.export_rows import CHECKPOINT_KEY as EXPORT_ROWS_KEY
from training.export_rows import DRIFT_SAMPLE_ROWS, ExportRows, build_export_rows, stored_rows
from training.metrics import choose_threshold
from training.model import CtrLoss, DualHeadModel, HybridLoss, ModelConfig
from training.predict import BEST_CHECKPOINT, LAST_CHECKPOINT, TrainedModel
from training.ranking import RankingRows, RankPairs, group_batches
from training.split import NoValidationRowsError, grouped_split
from training.target import LabelRule, Targets, build_targets, fit_label_rule, fit_scaling
from training.tensors import build_tensors, evaluate_loss, predict_logits
from training.wide_init import init_wide_from_ridge

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    val_mae: float
    learning_rate: float
    # Running over the epoch's batches (the weights change as it goes, dropout on), like the train
    # loss; None in checkpoints written before they were recorded.
    train_accuracy: float | None = None
    train_mae: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {k: None if v is None else float(v) for k, v in self.__dict__.items()}


@dataclass
class TrainResult:
    """What a training run produced; the report and CLI are built from it."""

    out_dir: Path
    best_checkpoint: Path
    history: list[EpochRecord]
    best_epoch: int
    start_epoch: int
    resumed_from: Path | None
    stopped_early: bool
    train_index: NDArray[np.int64]
    val_index: NDArray[np.int64]
    targets: Targets
    calibration: CalibrationReport
    quality_threshold: float
    notes: list[str] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _resumed_sides(
    stored: ExportRows, data: HeadlineData, notes: list[str]
) -> tuple[NDArray[np.bool_] | None, NDArray[np.bool_] | None]:
    """Rows of ``data`` whose title the resumed model trained on, and validated on.

    The checkpoint stores its validation rows and its training titles (all of them up to the
    drift sample's cap). Continuing on a grown CSV then keeps each row on the side it was on,
    so validation never holds a row the model has trained on.
    """
    sample = stored.drift_sample
    trained_titles, validated_titles = set(sample.titles), set(stored.validation.titles)
    trained = np.fromiter((t in trained_titles for t in data.titles), dtype=bool, count=len(data))
    validated = np.fromiter((t in validated_titles for t in data.titles), dtype=bool, count=len(data))
    if not (trained.any() or validated.any()):
        return None, None
    if len(sample.titles) < sample.drawn_from:
        notes.append(
            f"the resumed checkpoint stores {len(sample.titles)} of its {sample.drawn_from} training titles; "
            "only those are known to stay out of validation"
        )
        logger.warning(notes[-1])
    notes.append(
        f"split continues the resumed model's: {int(trained.sum())} rows it trained on stay in training, "
        f"{int((validated & ~trained).sum())} it validated on stay in validation"
    )
    logger.info(notes[-1])
    return trained, validated


def _split(
    data: HeadlineData, config: TrainConfig, resumed_rows: ExportRows | None, notes: list[str]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The validation split; continuing a checkpoint that stores its rows, that checkpoint's sides."""
    groups = None if data.groups is None else list(data.groups)
    if resumed_rows is not None:
        trained, validated = _resumed_sides(resumed_rows, data, notes)
        try:
            return grouped_split(data.titles, groups, config.val_fraction, config.seed, trained, validated)
        except NoValidationRowsError:
            notes.append(
                "every row is one the resumed model trained on: the validation rows are drawn from them"
            )
            logger.warning(notes[-1])
    return grouped_split(data.titles, groups, config.val_fraction, config.seed)


def train(
    data: HeadlineData,
    out_dir: Path,
    config: TrainConfig | None = None,
    resume: Path | None = None,
    progress: bool | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    drift_sample_rows: int = DRIFT_SAMPLE_ROWS,
) -> TrainResult:
    """Train on ``data`` and write checkpoints into ``out_dir``.

    With ``resume`` the weights, optimizer, scheduler, epoch counter, feature
    state, target scaling and label rule come from that checkpoint; ``config``
    then only sets how many more epochs to run and the seed.

    The final best checkpoint also stores the rows export needs (the validation
    rows and up to ``drift_sample_rows`` training rows, see :mod:`training.export_rows`),
    so it can be exported without the CSV.
    """
    if not data.has_target:
        hints = "".join(f"; {h}" for h in data.summary.target_hints)
        raise CsvValidationError(
            f"{data.summary.file}: no target column (inference-only data): nothing to train on{hints}; "
            "use `predict` with a trained model"
        )
    if drift_sample_rows < 1:
        raise ValueError(f"expected drift_sample_rows >= 1, got {drift_sample_rows}")
    config = config or TrainConfig()
    notes: list[str] = []
    previous: TrainedModel | None = None
    resumed_rows: ExportRows | None = None
    if resume is not None:
        previous = TrainedModel.from_checkpoint(resume)
        stored = json.loads(previous.checkpoint["train_config"])
        stored.setdefault("rank_weight", 0.0)  # saved before the ranking loss existed: trained without it
        stored.setdefault("ridge_within", 0.0)  # saved before the within-group ridge start: a plain one
        saved = TrainConfig.model_validate(stored)
        # The checkpoint's seed unless one is given: the same seed draws the same validation rows
        # from the same data, so the resumed run is judged on rows it has never trained on.
        seed = config.seed if "seed" in config.model_fields_set else saved.seed
        resumed_rows = stored_rows(previous.checkpoint)
        if resumed_rows is None and seed != saved.seed:
            notes.append(
                f"seed {seed} differs from the checkpoint's seed {saved.seed} and the checkpoint stores no "
                "rows: the validation rows are drawn anew and may include rows the resumed model trained on"
            )
            logger.warning(notes[-1])
        config = saved.model_copy(update={"epochs": config.epochs, "seed": seed})
    seed_everything(config.seed)

    train_index, val_index = _split(data, config, resumed_rows, notes)
    if previous is not None:
        state: FeatureState = previous.featurizer.state
        scaling: TargetScaling | None = previous.scaling
        rule: LabelRule = previous.label_rule
        if rule.rule == "group_mean" and data.groups is None:
            raise CsvValidationError(
                f"{data.summary.file}: the resumed model's label is defined within groups, "
                "but this data has no group column"
            )
    else:
        sub = data.subset(train_index)
        state = fit_feature_state(sub.titles, sub.categories, config.features)
        scaling = fit_scaling(data, train_index)
        provisional = data.ctr_normalized_given
        if provisional is None:
            assert scaling is not None and data.raw_ctr is not None
            provisional = scaling.normalize(data.raw_ctr)
        rule = fit_label_rule(data, provisional, train_index)
    targets = build_targets(data, scaling, rule)
    featurizer = Featurizer(state)
    train_t = build_tensors(featurizer, data, targets, train_index)
    val_t = build_tensors(featurizer, data, targets, val_index)

    positives = float(train_t.label.sum())
    negatives = float(train_t.label.numel()) - positives
    if positives == 0 or negatives == 0:
        raise CsvValidationError(
            f"{data.summary.file}: the quality label has a single class on the training rows "
            f"({int(positives)} positive, {int(negatives)} negative); cannot train the quality head"
        )
    pos_weight = config.pos_weight or negatives / positives

    model_config = ModelConfig(
        n_features=state.n_features,
        n_categories=state.n_categories,
        n_numeric=len(NUMERIC_FEATURES),
        embed_dim=config.embed_dim,
        hidden_dim=config.hidden_dim,
        dropout=config.dropout,
        wide=config.wide,
    )
    if previous is not None:
        # The architecture is the checkpoint's (one saved before the wide path existed has none).
        model_config = previous.model.config
        config = config.model_copy(update={"wide": model_config.wide})
    model = DualHeadModel(model_config)
    if previous is None and model_config.wide and config.wide_init == "ridge":
        ids, weights, _, _ = train_t.inputs
        init_wide_from_ridge(
            model,
            ids,
            weights,
            train_t.ctr.double().numpy(),
            train_t.label.double().numpy(),
            config.ridge_alpha,
            groups=None if data.groups is None else data.groups[train_index],
            within=config.ridge_within,
        )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = ReduceLROnPlateau(
        optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience, min_lr=config.min_lr
    )
    loss_fn = HybridLoss(
        config.ctr_weight, config.quality_weight, pos_weight, config.ctr_loss, config.huber_delta
    )
    start_epoch = 0
    best_val = math.inf
    history: list[EpochRecord] = []
    if previous is not None:
        payload = previous.checkpoint
        model.load_state_dict(payload["model_state"])
        optimizer.load_state_dict(payload["optimizer_state"])
        scheduler.load_state_dict(payload["scheduler_state"])
        start_epoch = int(payload["epoch"])
        best_val = float(payload["best_val_loss"])
        history = [EpochRecord(**r) for r in json.loads(payload["history"])]
        message = (
            f"resumed from {resume} at epoch {start_epoch} (best validation loss {best_val:.5f}): "
            "weights, optimizer, scheduler, feature state and target scaling restored; weights were not reset"
        )
        logger.info(message)
        notes.append(message)

    base_payload: dict[str, Any] = {
        "model_config": model_config.model_dump_json(),
        "train_config": config.model_dump_json(),
        "feature_state": state.model_dump_json(),
        "target_scaling": json.dumps(None if scaling is None else scaling.to_dict()),
        "label_rule": rule.model_dump_json(),
        "data_fingerprint": json.dumps(
            {"file": data.summary.file, "sha256": data.summary.sha256, "rows": data.summary.rows_kept}
        ),
    }

    def payload_now(epoch: int) -> dict[str, Any]:
        return {
            **base_payload,
            "model_state": model.state_dict(),
            "optimizer_state": optimizer.state_dict(),
            "scheduler_state": scheduler.state_dict(),
            "epoch": epoch,
            "best_val_loss": best_val,
            "history": json.dumps([r.as_dict() for r in history]),
        }

    ranker: RankingRows | None = None
    val_ranker: RankingRows | None = None
    if config.rank_weight > 0:
        if data.groups is not None:
            pool = config.rank_pool_headlines
            ranker = RankingRows.build(data, train_index, config.rank_pairs, pool)
            val_ranker = RankingRows.build(data, val_index, config.rank_pairs, pool)
        else:
            notes.append("rank_weight > 0 ignored: the data has no group column (no within-group pairs)")
            logger.info(notes[-1])
    out_dir.mkdir(parents=True, exist_ok=True)
    best_path = out_dir / BEST_CHECKPOINT
    generator = torch.Generator().manual_seed(config.seed)
    n_train = train_t.ctr.shape[0]
    stale = 0
    stopped_early = False
    best_epoch = start_epoch
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
        val_loss, val_acc, val_mae, val_ctr = evaluate_loss(model, loss_fn, val_t, 1024)
        if val_ranker is not None:  # early stopping and the scheduler see the whole objective
            val_loss += config.rank_weight * val_ranker.full_loss(val_ctr, val_t.ctr)
        scheduler.step(val_loss)
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
        history.append(record)
        logger.info(
            "epoch %3d  train_loss %.5f  val_loss %.5f  train_acc %.3f  val_acc %.3f  "
            "train_mae %.4f  val_mae %.4f  lr %.2g",
            epoch, record.train_loss, val_loss, correct / n_train, val_acc,
            abs_err / n_train, val_mae, record.learning_rate,
        )  # fmt: skip
        if on_epoch is not None:
            on_epoch(record)
        if val_loss < best_val - 1e-6:
            best_val = val_loss
            best_epoch = epoch
            stale = 0
            save_checkpoint(best_path, payload_now(epoch))
        else:
            stale += 1
        save_checkpoint(out_dir / LAST_CHECKPOINT, payload_now(epoch))
        if stale >= config.patience:
            stopped_early = True
            logger.info("early stopping at epoch %d: no improvement for %d epochs", epoch, stale)
            break
    if not best_path.exists():
        # A resumed run that never beat the restored best: keep the restored weights as best.
        if previous is None:
            raise CheckpointError(f"{best_path}: training produced no checkpoint")
        save_checkpoint(best_path, {k: v for k, v in previous.checkpoint.items() if k != "format_version"})
        best_epoch = start_epoch

    best = TrainedModel.from_checkpoint(best_path)
    _, val_logits = predict_logits(best.model, val_t, 1024)
    raw_probs = 1.0 / (1.0 + np.exp(-val_logits))
    val_labels = targets.labels[val_index]
    calibrator, cal_report = calibrate(val_labels, raw_probs)
    threshold = choose_threshold(val_labels, calibrator.apply(raw_probs))
    final = dict(best.checkpoint)
    final.pop("format_version", None)
    final["calibration"] = json.dumps(calibrator.to_dict())
    final["quality_threshold"] = float(threshold)
    final["calibration_report"] = json.dumps(
        {"ece_before": cal_report.ece_before, "ece_after": cal_report.ece_after, "n": cal_report.n}
    )
    final["split"] = json.dumps({"val_ids": [str(i) for i in data.ids[val_index]]})
    final[EXPORT_ROWS_KEY] = build_export_rows(
        data, train_index, val_index, cap=drift_sample_rows, seed=config.seed
    ).to_json()
    save_checkpoint(best_path, final)
    logger.info(
        "best epoch %d (validation loss %.5f); quality calibrated (ECE %.4f -> %.4f), threshold %.3f",
        best_epoch, best_val, cal_report.ece_before, cal_report.ece_after, threshold,
    )  # fmt: skip
    return TrainResult(
        out_dir=out_dir,
        best_checkpoint=best_path,
        history=history,
        best_epoch=best_epoch,
        start_epoch=start_epoch,
        resumed_from=resume,
        stopped_early=stopped_early,
        train_index=train_index,
        val_index=val_index,
        targets=targets,
        calibration=cal_report,
        quality_threshold=float(threshold),
        notes=notes,
    )


__all__ = ["DEFAULT_FEATURES", "EpochRecord", "TrainConfig", "TrainResult", "seed_everything", "train"]
