"""Training stage 1: the split, feature state, target scaling and label rule, and the tensors.

A run from scratch fits the feature state, scaling and label rule on its
training rows. A resumed run takes them, its configuration (all but epochs and
seed), its architecture and, when the checkpoint stores them, the sides of its
split from the checkpoint.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from artifact.errors import CsvValidationError
from artifact.features import NUMERIC_FEATURES, fit_feature_state
from artifact.featurizer import Featurizer
from artifact.manifest import DataFingerprint
from training.checkpoint import Checkpoint, Setup
from training.config import TrainConfig
from training.data import HeadlineData
from training.export_rows import ExportRows
from training.model import ModelConfig
from training.split import NoValidationRowsError, grouped_split
from training.target import Targets, build_targets, fit_label_rule, fit_scaling
from training.tensors import TrainTensors, build_tensors

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resumed:
    """The checkpoint a run continues, and where it was read from."""

    checkpoint: Checkpoint
    path: Path


@dataclass(frozen=True)
class Prepared:
    """Everything the training loop needs, fixed before its first epoch."""

    data: HeadlineData
    config: TrainConfig  # the effective one (resumed: the checkpoint's, with epochs and seed)
    setup: Setup  # what the checkpoints store of this run's configuration and fitted state
    train_index: NDArray[np.int64]
    val_index: NDArray[np.int64]
    targets: Targets
    train: TrainTensors
    val: TrainTensors
    pos_weight: float
    resumed: Resumed | None
    notes: list[str] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _note(notes: list[str], message: str, level: int = logging.INFO) -> None:
    notes.append(message)
    logger.log(level, "%s", message)


def resumed_config(config: TrainConfig, previous: Checkpoint, notes: list[str]) -> TrainConfig:
    """The checkpoint's configuration with ``config``'s epochs, and its seed unless one is given.

    The same seed draws the same validation rows from the same data, so the resumed run is
    judged on rows it has never trained on.
    """
    saved = previous.setup.train_config
    seed = config.seed if "seed" in config.model_fields_set else saved.seed
    if previous.stored_rows is None and seed != saved.seed:
        _note(
            notes,
            f"seed {seed} differs from the checkpoint's seed {saved.seed} and the checkpoint stores no "
            "rows: the validation rows are drawn anew and may include rows the resumed model trained on",
            logging.WARNING,
        )
    return saved.model_copy(update={"epochs": config.epochs, "seed": seed})


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
        _note(
            notes,
            f"the resumed checkpoint stores {len(sample.titles)} of its {sample.drawn_from} training titles; "
            "only those are known to stay out of validation",
            logging.WARNING,
        )
    _note(
        notes,
        f"split continues the resumed model's: {int(trained.sum())} rows it trained on stay in training, "
        f"{int((validated & ~trained).sum())} it validated on stay in validation",
    )
    return trained, validated


def split(
    data: HeadlineData, config: TrainConfig, resumed_rows: ExportRows | None, notes: list[str]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The validation split; continuing a checkpoint that stores its rows, that checkpoint's sides."""
    groups = None if data.groups is None else list(data.groups)
    if resumed_rows is not None:
        trained, validated = _resumed_sides(resumed_rows, data, notes)
        try:
            return grouped_split(data.titles, groups, config.val_fraction, config.seed, trained, validated)
        except NoValidationRowsError:
            _note(
                notes,
                "every row is one the resumed model trained on: the validation rows are drawn from them",
                logging.WARNING,
            )
    return grouped_split(data.titles, groups, config.val_fraction, config.seed)


def _fitted_setup(data: HeadlineData, config: TrainConfig, train_index: NDArray[np.int64]) -> Setup:
    """Feature state, target scaling and label rule fitted on the training rows."""
    sub = data.subset(train_index)
    state = fit_feature_state(sub.titles, sub.categories, config.features)
    scaling = fit_scaling(data, train_index)
    provisional = data.ctr_normalized_given
    if provisional is None:
        assert scaling is not None and data.raw_ctr is not None
        provisional = scaling.normalize(data.raw_ctr)
    rule = fit_label_rule(data, provisional, train_index)
    model_config = ModelConfig(
        n_features=state.n_features,
        n_categories=state.n_categories,
        n_numeric=len(NUMERIC_FEATURES),
        embed_dim=config.embed_dim,
        hidden_dim=config.hidden_dim,
        dropout=config.dropout,
        wide=config.wide,
    )
    return Setup(model_config, config, state, scaling, rule, _fingerprint(data))


def _fingerprint(data: HeadlineData) -> DataFingerprint:
    summary = data.summary
    return DataFingerprint(file=summary.file, sha256=summary.sha256, rows=summary.rows_kept)


def prepare(data: HeadlineData, config: TrainConfig, resume: Path | None = None) -> Prepared:
    """Seed, split and fit (or restore) everything the loop needs; errors for data it cannot train on."""
    notes: list[str] = []
    resumed: Resumed | None = None
    resumed_rows: ExportRows | None = None
    if resume is not None:
        resumed = Resumed(Checkpoint.load(resume), resume)
        config = resumed_config(config, resumed.checkpoint, notes)
        resumed_rows = resumed.checkpoint.stored_rows
    seed_everything(config.seed)

    train_index, val_index = split(data, config, resumed_rows, notes)
    if resumed is not None:
        previous = resumed.checkpoint.setup
        if previous.label_rule.rule == "group_mean" and data.groups is None:
            raise CsvValidationError(
                f"{data.summary.file}: the resumed model's label is defined within groups, "
                "but this data has no group column"
            )
        # The architecture is the checkpoint's (one saved before the wide path existed has none).
        config = config.model_copy(update={"wide": previous.model_config.wide})
        setup = Setup(
            previous.model_config,
            config,
            previous.feature_state,
            previous.scaling,
            previous.label_rule,
            _fingerprint(data),
        )
    else:
        setup = _fitted_setup(data, config, train_index)
    targets = build_targets(data, setup.scaling, setup.label_rule)
    featurizer = Featurizer(setup.feature_state)
    train_t = build_tensors(featurizer, data, targets, train_index)
    val_t = build_tensors(featurizer, data, targets, val_index)

    positives = float(train_t.label.sum())
    negatives = float(train_t.label.numel()) - positives
    if positives == 0 or negatives == 0:
        raise CsvValidationError(
            f"{data.summary.file}: the quality label has a single class on the training rows "
            f"({int(positives)} positive, {int(negatives)} negative); cannot train the quality head"
        )
    return Prepared(
        data=data,
        config=config,
        setup=setup,
        train_index=train_index,
        val_index=val_index,
        targets=targets,
        train=train_t,
        val=val_t,
        pos_weight=config.pos_weight or negatives / positives,
        resumed=resumed,
        notes=notes,
    )


__all__ = ["Prepared", "Resumed", "prepare", "resumed_config", "seed_everything", "split"]
