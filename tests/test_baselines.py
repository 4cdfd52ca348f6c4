"""training/baselines.py: the reference models are fitted on the training rows and judged on the
validation rows the model is judged on."""

from __future__ import annotations

import numpy as np
import pytest

from training.baselines import BaselineInputs, baseline_metrics, fit_baselines
from training.metrics import fast_roc_auc
from training.pairwise import pairwise_accuracy


def _rows(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Titles where the word "great" lifts the CTR; the label is CTR above 0.5."""
    rng = np.random.default_rng(seed)
    vocab = ["news", "today", "city", "market", "phone", "game", "report", "story"]
    good = rng.random(n) < 0.5
    titles = [" ".join(rng.choice(vocab, 4)) + (" great" if g else " plain") for g in good]
    ctr = np.clip(0.35 + 0.3 * good + rng.normal(0, 0.05, n), 0, 1)
    return titles, ctr, (ctr > 0.5).astype(float)


def _inputs(groups: np.ndarray | None = None) -> BaselineInputs:
    tt, tc, tl = _rows(300, 0)
    vt, vc, vl = _rows(120, 1)
    return BaselineInputs(tt, tc, tl, vt, vc, vl, val_groups=groups)


def test_baselines_are_scored_on_the_validation_rows() -> None:
    inputs = _inputs()
    predictions = fit_baselines(inputs)
    assert predictions.mean_ctr == pytest.approx(float(np.mean(inputs.train_ctr)))
    assert predictions.ridge_ctr.shape == (120,)
    assert predictions.logistic_prob is not None and predictions.logistic_prob.shape == (120,)
    metrics = {m.name: m for m in baseline_metrics(inputs, predictions)}
    assert list(metrics) == ["training mean", "TF-IDF ridge (CTR)", "TF-IDF logistic (quality)"]

    mean = metrics["training mean"]
    expected = float(np.mean(np.abs(inputs.val_ctr - np.mean(inputs.train_ctr))))
    assert mean.ctr_mae_normalized == pytest.approx(expected, abs=1e-15)
    ridge = metrics["TF-IDF ridge (CTR)"]
    assert ridge.ctr_mae_normalized == pytest.approx(
        float(np.mean(np.abs(inputs.val_ctr - predictions.ridge_ctr)))
    )
    assert ridge.ctr_mae_normalized is not None and mean.ctr_mae_normalized is not None
    assert ridge.ctr_mae_normalized < 0.5 * mean.ctr_mae_normalized  # the word carries the signal
    logistic = metrics["TF-IDF logistic (quality)"]
    assert logistic.quality_roc_auc == pytest.approx(
        fast_roc_auc(inputs.val_labels, predictions.logistic_prob)
    )
    assert logistic.quality_roc_auc is not None and logistic.quality_roc_auc > 0.95
    for m, value in (
        (mean, mean.ctr_mae_normalized),
        (ridge, ridge.ctr_mae_normalized),
    ):
        assert m.ctr_mae_normalized_ci is not None
        assert m.ctr_mae_normalized_ci[0] <= value <= m.ctr_mae_normalized_ci[1]
    assert logistic.quality_roc_auc_ci is not None
    assert ridge.pairwise_accuracy is None  # no groups


def test_baselines_report_pairwise_accuracy_with_groups() -> None:
    groups = np.repeat(np.arange(30).astype(str), 4)
    inputs = _inputs(groups)
    predictions = fit_baselines(inputs)
    metrics = baseline_metrics(inputs, predictions, clusters=np.repeat(np.arange(30), 4))
    ridge = next(m for m in metrics if m.name.startswith("TF-IDF ridge"))
    expected = pairwise_accuracy(groups, inputs.val_ctr, predictions.ridge_ctr, titles=inputs.val_titles)
    assert ridge.pairwise_accuracy == expected.accuracy
    assert ridge.pairwise_accuracy > 0.6  # pairs of one kind tie on the signal; the others are ordered


def test_single_class_training_labels_skip_the_logistic_baseline() -> None:
    tt, tc, _ = _rows(50, 0)
    vt, vc, vl = _rows(20, 1)
    inputs = BaselineInputs(tt, tc, np.zeros(50), vt, vc, vl)
    predictions = fit_baselines(inputs)
    assert predictions.logistic_prob is None
    assert [m.name for m in baseline_metrics(inputs, predictions)] == ["training mean", "TF-IDF ridge (CTR)"]


def test_inputs_of_unequal_length_are_refused() -> None:
    tt, tc, tl = _rows(10, 0)
    with pytest.raises(ValueError, match="expected arrays of equal length"):
        BaselineInputs(tt, tc[:5], tl, tt, tc, tl)
