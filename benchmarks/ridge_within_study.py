"""The ridge alone on Upworthy, plain vs fitted within tests (session 4, ranking round 2).

Run from the project root::

    PYTHONPATH=. .venv/bin/python benchmarks/ridge_within_study.py

The trainer's wide path starts from a ridge on the bag (``training.wide_init``); this
measures that ridge by itself, with the rows quasi-demeaned within their test by a share
``within`` (0: plain, 1: fixed effects, ``auto``: the random-effects share per test), on
(a) 3 grouped folds of the *training* tests (choosing without the held-out split) and
(b) the held-out tests of ``benchmarks.common.upworthy_split`` (headline pairs).
Writes ``benchmarks/results/ridge_within_study.json``. ~1 min, one thread.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.common import (
    RESULTS_DIR,
    evaluate_pairs,
    load_upworthy,
    require_data,
    set_threads,
    upworthy_split,
    upworthy_target,
)

ALPHAS = (2.0, 8.0, 32.0)
WITHIN: tuple[float | str, ...] = (0.0, 0.5, 0.8, 0.9, 1.0, "auto")


def main() -> int:
    require_data()
    set_threads(1)
    from scipy.sparse import diags
    from sklearn.linear_model import Ridge

    from artifact.features import fit_feature_state
    from artifact.featurizer import Featurizer
    from training.data import HeadlineData
    from training.pairwise import pairwise_accuracy
    from training.predict import batch_tensors
    from training.train import DEFAULT_FEATURES
    from training.wide_init import _bag_matrix, _group_codes, _group_means, random_effects_theta

    data = load_upworthy()
    train_idx, test_idx = upworthy_split(data)
    train, test = data.subset(train_idx), data.subset(test_idx)
    state = fit_feature_state(train.titles, train.categories, DEFAULT_FEATURES)
    featurizer = Featurizer(state)

    def bag(rows: HeadlineData) -> Any:
        ids, weights, _, _ = batch_tensors(featurizer.transform(rows.titles, rows.categories))
        return _bag_matrix(ids, weights, state.n_features)

    x, x_test = bag(train), bag(test)
    y = upworthy_target(train)
    assert train.groups is not None
    codes = _group_codes(train.groups)

    def fit(rows: np.ndarray, within: float | str, alpha: float) -> Any:
        c = _group_codes(train.groups[rows])  # type: ignore[index]
        share = random_effects_theta(y[rows], c)[c] if within == "auto" else np.full(rows.size, within)
        x_mean, y_mean = _group_means(x[rows], y[rows], c)
        return Ridge(alpha=alpha).fit(x[rows] - diags(share) @ x_mean, y[rows] - share * y_mean)

    fold_of_group = np.random.default_rng(0).integers(0, 3, size=int(codes.max()) + 1)
    fold = fold_of_group[codes]
    runs: list[dict[str, Any]] = []
    for within in WITHIN:
        for alpha in ALPHAS:
            inner = []
            for k in range(3):
                fitted = fit(np.flatnonzero(fold != k), within, alpha)
                rows = train.subset(np.flatnonzero(fold == k))
                assert rows.groups is not None and rows.raw_ctr is not None
                score = pairwise_accuracy(
                    rows.groups,
                    rows.raw_ctr,
                    fitted.predict(x[fold == k]),
                    rows.clicks,
                    rows.impressions,
                    titles=rows.titles,
                )
                inner.append((score.accuracy_significant, score.accuracy))
            held = evaluate_pairs(test, fit(np.arange(y.size), within, alpha).predict(x_test))
            sig, every = np.mean(inner, axis=0)
            runs.append(
                {
                    "within": within,
                    "alpha": alpha,
                    "inner_cv_significant": float(sig),
                    "inner_cv_all": float(every),
                    "held_out_significant": held.significant,
                    "held_out_all": held.all,
                }
            )
            print(
                f"within {within} alpha {alpha:g}: training-test folds {sig:.3f} / {every:.3f}; "
                f"held-out {held.significant:.3f} / {held.all:.3f}",
                flush=True,
            )
    theta = random_effects_theta(y, codes)
    payload = {
        "protocol": "ridge on the trainer's bag (DEFAULT_FEATURES fitted on all training tests), target "
        "normalized CTR; inner: 3 folds of the training tests (significant / all headline pairs, mean); "
        "held-out: the upworthy_split test tests",
        "random_effects_theta": {
            "mean_per_row": float(theta[codes].mean()),
            "median": float(np.median(theta)),
        },
        "runs": runs,
    }
    out = RESULTS_DIR / "ridge_within_study.json"
    out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"random-effects share: mean per row {theta[codes].mean():.3f}\nsaved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
