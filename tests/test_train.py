"""Training: reproducible, leak-free, resumable, with grouped splits and the best checkpoint kept."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from artifact.features import normalize_title, tokenize
from headline_scorer import SAMPLE_DATA
from training.data import HeadlineData, load_dataset
from training.mapping import SEED, UPWORTHY
from training.predict import LAST_CHECKPOINT, TrainedModel
from training.split import NoValidationRowsError, connected_groups, grouped_split
from training.train import TrainConfig, train

pytestmark = pytest.mark.slow

# The default learning rate is tuned for many epochs on real data; these tests run a few epochs.
FAST = TrainConfig(epochs=4, patience=50, batch_size=64, learning_rate=2e-3)


@pytest.fixture(scope="module")
def sample() -> HeadlineData:
    return load_dataset(SAMPLE_DATA / "train.csv", SEED)


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory: pytest.TempPathFactory, sample: HeadlineData) -> Path:
    out = tmp_path_factory.mktemp("run")
    train(sample, out, FAST, progress=False)
    return out


def test_same_seed_gives_the_same_run(tmp_path: Path, sample: HeadlineData) -> None:
    config = TrainConfig(epochs=2, patience=50)
    a = train(sample, tmp_path / "a", config, progress=False)
    b = train(sample, tmp_path / "b", config, progress=False)
    assert [r.train_loss for r in a.history] == [r.train_loss for r in b.history]
    assert [r.val_loss for r in a.history] == [r.val_loss for r in b.history]
    c = train(sample, tmp_path / "c", config.model_copy(update={"seed": 7}), progress=False)
    assert [r.train_loss for r in c.history] != [r.train_loss for r in a.history]


def test_the_model_learns_the_sample_signal(trained_dir: Path, sample: HeadlineData) -> None:
    from training.evaluate import evaluate

    model = TrainedModel.from_checkpoint(trained_dir)
    result, predictions = evaluate(model, sample)
    assert result.quality_roc_auc is not None and result.quality_roc_auc > 0.7
    assert result.ctr_spearman is not None and result.ctr_spearman > 0.3
    assert predictions.ctr is not None
    np.testing.assert_allclose(model.scaling.to_raw(predictions.ctr_normalized), predictions.ctr)  # type: ignore[union-attr]
    assert np.all((predictions.quality_prob > 0) & (predictions.quality_prob < 1))


def test_leaky_columns_never_change_a_prediction(trained_dir: Path, tmp_path: Path) -> None:
    """Impressions, clicks and every column derived from the outcome are not model inputs."""
    model = TrainedModel.from_checkpoint(trained_dir)
    frame = pd.read_csv(SAMPLE_DATA / "train.csv")
    mutated = frame.copy()
    rng = np.random.default_rng(0)
    mutated["Impressions"] = rng.integers(1_000_000, 2_000_000, len(frame))
    mutated["Url Clicks"] = rng.integers(0, 1000, len(frame))
    mutated["URL CTR"] = mutated["Url Clicks"] / mutated["Impressions"]
    mutated["Log URL CTR"] = np.log1p(mutated["URL CTR"])
    mutated["Normalized URL CTR"] = rng.random(len(frame))
    mutated["STR_High_Low"] = 1 - frame["STR_High_Low"]
    mutated["CTR_per_cluster_avg"] = rng.random(len(frame)) * 10
    for name, f in (("orig.csv", frame), ("mutated.csv", mutated)):
        f.to_csv(tmp_path / name, index=False)
    a = load_dataset(tmp_path / "orig.csv", SEED)
    b = load_dataset(tmp_path / "mutated.csv", SEED)
    pa = model.predict(a.titles, a.categories)
    pb = model.predict(b.titles, b.categories)
    np.testing.assert_array_equal(pa.ctr_normalized, pb.ctr_normalized)
    np.testing.assert_array_equal(pa.quality_prob, pb.quality_prob)
    # ... while the title does change it.
    c = model.predict(
        [t + " shocking secret revealed" for t in a.titles[:50]], a.categories[:50] if a.categories else None
    )
    assert not np.allclose(c.ctr_normalized, pa.ctr_normalized[:50])


def test_leaky_columns_of_the_training_file_never_change_the_model(tmp_path: Path) -> None:
    """Trained on a file whose post-publication columns (other than the target itself) are scrambled,
    the model is the same, weight for weight: they reach neither the features nor the loss."""
    frame = pd.read_csv(SAMPLE_DATA / "train.csv").iloc[:400]
    mutated = frame.copy()
    rng = np.random.default_rng(1)
    mutated["STR_High_Low"] = 1 - frame["STR_High_Low"]
    mutated["CTR_per_cluster_avg"] = rng.random(len(frame))
    mutated["cluster"] = rng.integers(0, 50, len(frame))
    mutated["keyword_strength"] = rng.random(len(frame))
    # Impressions and clicks rescaled by the same factor keep URL CTR, the target's source.
    mutated["Impressions"] = frame["Impressions"] * 3
    mutated["Url Clicks"] = frame["Url Clicks"] * 3
    config = TrainConfig(epochs=2, patience=50)
    models = []
    for name, f in (("orig", frame), ("mutated", mutated)):
        f.to_csv(tmp_path / f"{name}.csv", index=False)
        data = load_dataset(tmp_path / f"{name}.csv", SEED)
        result = train(data, tmp_path / name, config, progress=False)
        models.append(TrainedModel.from_checkpoint(result.best_checkpoint))
    a, b = (m.checkpoint["model_state"] for m in models)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_feature_state_is_fitted_on_training_rows_only(tmp_path: Path, sample: HeadlineData) -> None:
    result = train(sample, tmp_path, TrainConfig(epochs=1), progress=False)
    model = TrainedModel.from_checkpoint(result.best_checkpoint)
    assert model.featurizer.state.n_train_rows == len(result.train_index)

    def words(index: np.ndarray) -> set[str]:
        return {w for i in index for w in tokenize(normalize_title(sample.titles[i], 300))}

    val_only_words = words(result.val_index) - words(result.train_index)
    vocab = set(model.featurizer.state.vocabulary)
    assert val_only_words and not any(f"w:{w}" in vocab for w in val_only_words)


def test_resume_continues_from_the_last_loss(
    tmp_path: Path, sample: HeadlineData, caplog: pytest.LogCaptureFixture
) -> None:
    # A zero-started wide path: the ridge start is near its loss after one epoch already, and this test
    # needs a run whose loss visibly falls.
    config = FAST.model_copy(update={"epochs": 6, "wide_init": "zero"})
    first = train(sample, tmp_path / "first", config, progress=False)
    scratch_loss = first.history[0].train_loss
    last_loss = first.history[-1].train_loss
    assert scratch_loss - last_loss > 0.05, "the test needs a run that actually learned"
    with caplog.at_level(logging.INFO, logger="training.train"):
        resumed = train(
            sample,
            tmp_path / "resumed",
            TrainConfig(epochs=2, patience=50),
            resume=tmp_path / "first" / LAST_CHECKPOINT,
            progress=False,
        )
    assert resumed.start_epoch == 6
    assert [r.epoch for r in resumed.history] == [1, 2, 3, 4, 5, 6, 7, 8]
    first_resumed = resumed.history[6].train_loss
    assert abs(first_resumed - last_loss) < 0.35 * (scratch_loss - last_loss), (
        first_resumed,
        last_loss,
        scratch_loss,
    )
    assert "weights were not reset" in caplog.text and "epoch 6" in caplog.text
    # The optimizer and the scheduler continue: Adam's step count and the scheduler's epoch go on
    # from the checkpoint's instead of starting again.
    first_state = torch.load(tmp_path / "first" / LAST_CHECKPOINT, weights_only=True)
    resumed_state = torch.load(tmp_path / "resumed" / LAST_CHECKPOINT, weights_only=True)
    steps_per_epoch = math.ceil(len(first.train_index) / config.batch_size)
    first_steps = float(first_state["optimizer_state"]["state"][0]["step"])
    assert first_steps == 6 * steps_per_epoch
    assert float(resumed_state["optimizer_state"]["state"][0]["step"]) == first_steps + 2 * steps_per_epoch
    assert first_state["scheduler_state"]["last_epoch"] == 6
    assert resumed_state["scheduler_state"]["last_epoch"] == 8
    # The fitted state and scaling come from the checkpoint, not from a refit.
    before = TrainedModel.from_checkpoint(tmp_path / "first" / LAST_CHECKPOINT)
    after = TrainedModel.from_checkpoint(resumed.best_checkpoint)
    assert before.featurizer.state == after.featurizer.state
    assert before.scaling == after.scaling


def test_resume_keeps_the_checkpoints_validation_rows(
    tmp_path: Path, sample: HeadlineData, caplog: pytest.LogCaptureFixture
) -> None:
    first = train(
        sample, tmp_path / "first", FAST.model_copy(update={"epochs": 1, "seed": 5}), progress=False
    )
    checkpoint = tmp_path / "first" / LAST_CHECKPOINT
    # No seed given: the checkpoint's seed, so the same rows are held out and the resumed run is
    # judged on rows it never trained on.
    same = train(sample, tmp_path / "same", TrainConfig(epochs=2), resume=checkpoint, progress=False)
    assert np.array_equal(same.val_index, first.val_index)
    assert (
        json.loads(TrainedModel.from_checkpoint(same.best_checkpoint).checkpoint["train_config"])["seed"] == 5
    )
    # A different seed is honoured, with a warning that the validation rows change.
    with caplog.at_level(logging.WARNING, logger="training.train"):
        other = train(
            sample, tmp_path / "other", TrainConfig(epochs=2, seed=7), resume=checkpoint, progress=False
        )
    assert not np.array_equal(other.val_index, first.val_index)
    assert "differs from the checkpoint's seed 5" in caplog.text


def test_early_stopping_keeps_the_best_checkpoint(tmp_path: Path, sample: HeadlineData) -> None:
    result = train(
        sample,
        tmp_path,
        TrainConfig(epochs=40, patience=2, lr_patience=0, learning_rate=5e-3),
        progress=False,
    )
    assert result.stopped_early
    best = min(result.history, key=lambda r: r.val_loss)
    assert result.best_epoch == best.epoch
    model = TrainedModel.from_checkpoint(result.best_checkpoint)
    assert model.checkpoint["epoch"] == best.epoch
    assert result.history[-1].epoch == best.epoch + 2
    rates = [r.learning_rate for r in result.history]
    assert rates[-1] < rates[0], "ReduceLROnPlateau lowered the learning rate"


def test_grouped_split_keeps_groups_and_identical_titles_together() -> None:
    titles = ["a", "b", "c", "a", "d", "e", "f", "g"]
    groups = ["t1", "t1", "t2", "t3", "t3", "t4", "t5", "t5"]
    component = connected_groups(titles, groups)
    # t1 and t3 share the title "a", so rows 0,1,3,4 form one component.
    assert len({component[i] for i in (0, 1, 3, 4)}) == 1
    assert component[2] != component[0] and component[6] == component[7]
    for seed in range(10):
        tr, va = grouped_split(titles, groups, 0.3, seed)
        assert sorted([*tr, *va]) == list(range(8))
        assert not {component[i] for i in tr} & {component[i] for i in va}


def test_grouped_split_keeps_the_sides_of_a_resumed_model() -> None:
    titles = [f"title {i}" for i in range(200)]
    for seed in range(5):
        plain = grouped_split(titles, None, 0.2, seed)
        none = np.zeros(200, dtype=bool)
        # No marks (or empty ones): the split a seed always gave.
        for marks in ((None, None), (none, none)):
            got = grouped_split(titles, None, 0.2, seed, *marks)
            assert all(np.array_equal(a, b) for a, b in zip(got, plain, strict=True))
        # Rows 0-99 were the previous run's data: 80 trained on, 20 validated on; 100-199 are new.
        trained, validated = none.copy(), none.copy()
        trained[:80], validated[80:100] = True, True
        validated[5] = True  # a row on both sides (a title seen in both) stays in training
        tr, va = grouped_split(titles, None, 0.2, seed, trained, validated)
        assert set(range(80)) <= set(tr.tolist()) and set(range(80, 100)) <= set(va.tolist())
        new_val = [i for i in va.tolist() if i >= 100]
        assert 15 <= len(new_val) <= 25  # about val_fraction of the new rows
    everything = np.ones(200, dtype=bool)
    with pytest.raises(NoValidationRowsError, match="every one is kept in training"):
        grouped_split(titles, None, 0.2, 0, everything, None)


def test_resume_on_grown_data_validates_only_on_unseen_rows(
    tmp_path: Path, sample: HeadlineData, caplog: pytest.LogCaptureFixture
) -> None:
    old_rows = sample.subset(np.arange(600))
    first = train(old_rows, tmp_path / "first", FAST.model_copy(update={"epochs": 1}), progress=False)
    trained_titles = {old_rows.titles[i] for i in first.train_index}
    validated_titles = {old_rows.titles[i] for i in first.val_index}
    with caplog.at_level(logging.INFO, logger="training.train"):
        grown = train(
            sample,
            tmp_path / "grown",
            TrainConfig(epochs=1, seed=3),
            resume=first.best_checkpoint,
            progress=False,
        )
    val_titles = {sample.titles[i] for i in grown.val_index}
    assert not val_titles & trained_titles  # never validated on a row it trained on
    assert validated_titles <= val_titles  # the held-out rows stay held out
    new_val = [i for i in grown.val_index if i >= 600 and sample.titles[i] not in validated_titles]
    assert 0.1 * 600 <= len(new_val) <= 0.3 * 600
    assert "rows it trained on stay in training" in caplog.text
    # Data made only of rows it trained on: no unseen row is left, so validation is drawn from them.
    with caplog.at_level(logging.WARNING, logger="training.train"):
        seen_only = train(
            old_rows.subset(first.train_index),
            tmp_path / "seen",
            TrainConfig(epochs=1),
            resume=first.best_checkpoint,
        )
    assert len(seen_only.val_index) > 0
    assert "every row is one the resumed model trained on" in caplog.text


def test_group_label_is_above_the_group_mean(tmp_path: Path) -> None:
    data = load_dataset(SAMPLE_DATA / "ab_tests.csv", UPWORTHY)
    result = train(data, tmp_path, TrainConfig(epochs=1), progress=False)
    ctr = data.raw_ctr
    assert ctr is not None and data.groups is not None
    means = pd.Series(ctr).groupby(data.groups).transform("mean").to_numpy()
    np.testing.assert_array_equal(result.targets.labels, (ctr > means).astype(float))
    train_groups = set(data.groups[result.train_index])
    assert not train_groups & set(data.groups[result.val_index])


@pytest.mark.parametrize("ctr_loss", ["mse", "l1", "huber"])
def test_ctr_loss_choice_is_used_and_stored(tmp_path: Path, sample: HeadlineData, ctr_loss: str) -> None:
    from training.model import HybridLoss

    config = TrainConfig.model_validate({"epochs": 1, "ctr_loss": ctr_loss})
    result = train(sample, tmp_path, config, progress=False)
    saved = TrainConfig.model_validate_json(
        TrainedModel.from_checkpoint(result.best_checkpoint).checkpoint["train_config"]
    )
    assert saved.ctr_loss == ctr_loss
    pred, true = torch.tensor([0.2, 0.9]), torch.tensor([0.5, 0.5])
    _, part, _ = HybridLoss(1.0, 1.0, 1.0, ctr_loss, 0.05)(pred, torch.zeros(2), true, torch.zeros(2))
    expected = {
        "mse": (0.09 + 0.16) / 2,
        "l1": (0.3 + 0.4) / 2,
        "huber": 0.05 * (0.3 - 0.025 + 0.4 - 0.025) / 2,
    }
    assert float(part) == pytest.approx(expected[ctr_loss])


def test_hybrid_loss_weights_and_positive_class_weight() -> None:
    from training.model import HybridLoss

    ctr_pred, ctr_true = torch.tensor([0.2, 0.9]), torch.tensor([0.5, 0.5])
    logit, label = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])
    ln2 = math.log(2.0)  # BCE of a zero logit, either class
    total, ctr_part, quality_part = HybridLoss(2.0, 0.5, 1.0, "l1")(ctr_pred, logit, ctr_true, label)
    assert float(ctr_part) == pytest.approx(0.35) and float(quality_part) == pytest.approx(ln2)
    assert float(total) == pytest.approx(2.0 * 0.35 + 0.5 * ln2)
    # pos_weight multiplies the positive rows' term only: (3 ln2 + ln2) / 2
    _, _, weighted = HybridLoss(1.0, 1.0, 3.0, "l1")(ctr_pred, logit, ctr_true, label)
    assert float(weighted) == pytest.approx(2 * ln2)
    # A zero weight removes that head from the gradient.
    pred = ctr_pred.clone().requires_grad_(True)
    HybridLoss(0.0, 1.0, 1.0, "l1")(pred, logit, ctr_true, label)[0].backward()
    assert pred.grad is not None and torch.count_nonzero(pred.grad) == 0
    with pytest.raises(ValueError, match="not both 0"):
        HybridLoss(0.0, 0.0)
    with pytest.raises(ValueError, match="positive pos_weight"):
        HybridLoss(1.0, 1.0, 0.0)


def test_training_uses_the_configured_loss_weights(tmp_path: Path, sample: HeadlineData) -> None:
    base = train(sample, tmp_path / "a", FAST.model_copy(update={"epochs": 1}), progress=False)
    heavy = train(
        sample, tmp_path / "b", FAST.model_copy(update={"epochs": 1, "quality_weight": 3.0}), progress=False
    )
    weighted = train(
        sample, tmp_path / "c", FAST.model_copy(update={"epochs": 1, "pos_weight": 4.0}), progress=False
    )
    losses = [r.history[0].train_loss for r in (base, heavy, weighted)]
    assert len(set(losses)) == 3, losses  # each setting changes the objective that was minimised
