"""Shared protocol of the benchmarks: data, folds, splits, metrics and timing.

Every benchmark compares models on the same rows:

* seed (``seed/train.csv``, Hebrew): K-fold cross-validation over components of
  identical titles (``training.split.connected_groups``), folds drawn with
  ``FOLD_SEED``. Per fold the quality label is "normalized CTR above the
  training-fold median"; AUC is averaged over folds; the MAE gain is
  ``1 - MAE(model) / MAE(training-fold mean)`` on the pooled held-out rows.
* Upworthy (``upworthy/packages.csv``): one split by test id with identical
  headlines on one side (``training.split.grouped_split``, 20 % held out,
  ``SPLIT_SEED``). Pairwise accuracy within tests of the predicted CTR, on all
  pairs and on significant pairs (|z| > 1.96), as ``training.pairwise`` defines
  it (a tie in the prediction scores 0.5), over *headline* pairs: the packages of
  one test sharing a headline (image-only variants) are pooled first
  (``pairwise_accuracy(..., titles=...)``, the issue's "headline pairs"). For
  information also per package (the older definition, where half of all pairs
  are image-only variants that no headline model can order) and per package over
  the pairs whose two headlines differ.

A model is a ``FitPredict``: ``fit_predict(train_rows, test_rows)`` returns the
predicted normalized CTR and a quality score for the test rows.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.data import HeadlineData, load_dataset
from training.mapping import SEED, UPWORTHY
from training.metrics import classification_metrics
from training.pairwise import headline_key, pairwise_accuracy
from training.split import connected_groups, grouped_split

DATA_DIR = Path(
    os.environ.get("HEADLINE_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)
SEED_CSV = DATA_DIR / "seed" / "train.csv"
UPWORTHY_CSV = DATA_DIR / "upworthy" / "packages.csv"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
FOLD_SEED = 0
SPLIT_SEED = 0
UPWORTHY_TEST_FRACTION = 0.2

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.int64]
#: (train rows, test rows) -> (predicted normalized CTR, quality score) for the test rows.
FitPredict = Callable[[HeadlineData, HeadlineData], tuple[FloatArray, FloatArray]]


def require_data() -> None:
    """Exit with a clear message (status 0: nothing to benchmark) when the real data is absent."""
    missing = [p for p in (SEED_CSV, UPWORTHY_CSV) if not p.is_file()]
    if missing:
        print(
            "benchmark skipped: the real data is absent ("
            + ", ".join(str(p) for p in missing)
            + "); set HEADLINE_DATA_DIR or place shared/data beside the project"
        )
        sys.exit(0)


def set_threads(n: int = 1) -> None:
    import torch

    torch.set_num_threads(n)


def load_seed() -> HeadlineData:
    return load_dataset(SEED_CSV, SEED)


def load_upworthy() -> HeadlineData:
    return load_dataset(UPWORTHY_CSV, UPWORTHY)


def seed_target(data: HeadlineData) -> FloatArray:
    assert data.ctr_normalized_given is not None
    return data.ctr_normalized_given


def kfold(data: HeadlineData, k: int, seed: int = FOLD_SEED) -> list[tuple[IndexArray, IndexArray]]:
    """K folds over components of identical titles (and groups, when the data has them)."""
    component = connected_groups(data.titles, None if data.groups is None else list(data.groups))
    n_comp = int(component.max()) + 1
    fold_of_comp = np.random.default_rng(seed).permutation(n_comp) % k
    fold = fold_of_comp[component]
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def upworthy_split(data: HeadlineData, seed: int = SPLIT_SEED) -> tuple[IndexArray, IndexArray]:
    assert data.groups is not None
    return grouped_split(data.titles, list(data.groups), UPWORTHY_TEST_FRACTION, seed)


@dataclass
class SeedScore:
    auc: float
    auc_folds: list[float]
    mae: float
    mae_mean_baseline: float
    mae_gain: float
    spearman: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def evaluate_seed(
    data: HeadlineData, folds: Sequence[tuple[IndexArray, IndexArray]], fit: FitPredict
) -> SeedScore:
    from scipy.stats import rankdata, spearmanr

    y = seed_target(data)
    aucs, abs_err, abs_base, preds, trues = [], [], [], [], []
    for train_idx, test_idx in folds:
        ctr, quality = fit(data.subset(train_idx), data.subset(test_idx))
        label = (y[test_idx] > np.median(y[train_idx])).astype(np.float64)
        prob = rankdata(quality) / (len(quality) + 1.0)  # AUC needs the order only
        aucs.append(classification_metrics(label, prob).roc_auc)
        abs_err.append(np.abs(ctr - y[test_idx]))
        abs_base.append(np.abs(y[train_idx].mean() - y[test_idx]))
        preds.append(ctr)
        trues.append(y[test_idx])
    mae = float(np.concatenate(abs_err).mean())
    base = float(np.concatenate(abs_base).mean())
    rho = float(spearmanr(np.concatenate(trues), np.concatenate(preds)).statistic)
    return SeedScore(
        auc=float(np.mean(aucs)),
        auc_folds=[round(float(a), 4) for a in aucs],
        mae=mae,
        mae_mean_baseline=base,
        mae_gain=1.0 - mae / base,
        spearman=rho,
    )


@dataclass
class PairScore:
    """Upworthy pairwise figures; ``all``/``significant`` are the target's (headline pairs)."""

    all: float
    significant: float
    distinct_all: float
    distinct_significant: float
    pairs: int
    significant_pairs: int
    distinct_pairs: int
    distinct_significant_pairs: int
    quality_all: float | None = None
    quality_significant: float | None = None
    pooled_rows: int = 0
    package_all: float | None = None  # per package, the older definition (image variants tie)
    package_significant: float | None = None
    package_pairs: int | None = None
    package_significant_pairs: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def evaluate_pairs(test: HeadlineData, predicted: FloatArray, quality: FloatArray | None = None) -> PairScore:
    """Pairwise accuracy of ``predicted`` within tests of ``test``: headline pairs (the target),
    per package, and per package over distinct-headline pairs."""
    assert test.groups is not None and test.raw_ctr is not None
    counts = (test.clicks, test.impressions)
    headline = pairwise_accuracy(test.groups, test.raw_ctr, predicted, *counts, titles=test.titles)
    package = pairwise_accuracy(test.groups, test.raw_ctr, predicted, *counts)
    norm = np.array([headline_key(t) for t in test.titles])
    distinct = _distinct_pair_accuracy(test, norm, predicted)
    q_all = q_sig = None
    if quality is not None:
        qr = pairwise_accuracy(test.groups, test.raw_ctr, quality, *counts, titles=test.titles)
        q_all, q_sig = qr.accuracy, qr.accuracy_significant
    return PairScore(
        all=headline.accuracy,
        significant=headline.accuracy_significant,
        distinct_all=distinct[0],
        distinct_significant=distinct[1],
        pairs=headline.pairs,
        significant_pairs=headline.significant_pairs,
        distinct_pairs=distinct[2],
        distinct_significant_pairs=distinct[3],
        quality_all=q_all,
        quality_significant=q_sig,
        pooled_rows=headline.pooled_rows,
        package_all=package.accuracy,
        package_significant=package.accuracy_significant,
        package_pairs=package.pairs,
        package_significant_pairs=package.significant_pairs,
    )


def _distinct_pair_accuracy(
    test: HeadlineData, norm_titles: NDArray[np.str_], predicted: FloatArray
) -> tuple[float, float, int, int]:
    from training.pairwise import Z_CRITICAL, _group_codes, _within_group_pairs, two_proportion_z

    assert test.groups is not None and test.raw_ctr is not None
    assert test.clicks is not None and test.impressions is not None
    left, right = _within_group_pairs(_group_codes(test.groups))
    keep = (test.raw_ctr[left] != test.raw_ctr[right]) & (norm_titles[left] != norm_titles[right])
    left, right = left[keep], right[keep]
    obs = np.sign(test.raw_ctr[left] - test.raw_ctr[right])
    pred = np.sign(predicted[left] - predicted[right])
    score = np.where(pred == 0, 0.5, (pred == obs).astype(np.float64))
    z = two_proportion_z(
        test.clicks[left], test.impressions[left], test.clicks[right], test.impressions[right]
    )
    sig = np.abs(z) > Z_CRITICAL
    return (
        float(score.mean()) if score.size else float("nan"),
        float(score[sig].mean()) if sig.any() else float("nan"),
        int(score.size),
        int(sig.sum()),
    )


def evaluate_upworthy(
    data: HeadlineData, split: tuple[IndexArray, IndexArray], fit: FitPredict
) -> tuple[PairScore, float]:
    """Pairwise scores on the held-out tests and the wall time of ``fit`` (seconds)."""
    train_idx, test_idx = split
    test = data.subset(test_idx)
    start = time.perf_counter()
    ctr, quality = fit(data.subset(train_idx), test)
    return evaluate_pairs(test, ctr, quality), time.perf_counter() - start


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_targets(targets: Sequence[Mapping[str, Any]]) -> None:
    """The target rows (``target``, ``measured``, ``goal``, ``verdict``) as a table."""
    print_table(
        ["target", "measured", "goal", ""],
        [[t["target"], t["measured"], t["goal"], t["verdict"]] for t in targets],
    )


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
