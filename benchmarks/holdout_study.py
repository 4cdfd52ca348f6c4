"""Held-out check of the trainer's defaults against TF-IDF baselines (issue 14).

The defaults were tuned on 5-fold CV of the 799 seed rows; this measures whether they carry to rows
no choice was made on. ``seed/train.csv`` is split once by title component (20 % held out, split
seeds 0 and 1); the trainer runs on the other 80 % (its own validation split inside) for training
seeds 42, 1, 2, 3; the held-out rows are scored with the best checkpoint. The quality label of the
held-out rows is "normalized CTR above the median of the 80 %", for every model alike. References:
word 1-2-gram and character 2-5-gram TF-IDF logistic regressions and their average, fitted on the
same 80 %. Upworthy: the benchmark split (``common.upworthy_split``), significant headline pairs.

    PYTHONPATH=. .venv/bin/python benchmarks/holdout_study.py [--configs default,word12] [--seeds 42,1,2,3]

Results: ``results/holdout_study.json`` (appended per configuration).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from artifact.features import FeatureConfig
from benchmarks.common import (
    RESULTS_DIR,
    evaluate_pairs,
    load_seed,
    load_upworthy,
    require_data,
    seed_target,
    set_threads,
    upworthy_split,
)
from training.data import HeadlineData
from training.metrics import fast_roc_auc
from training.predict import TrainedModel
from training.split import grouped_split
from training.target import build_targets
from training.train import TrainConfig, train

CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "word12": {"features": FeatureConfig(word_ngrams=(1, 2), char_ngrams=(1, 4))},
    "alpha8": {"ridge_alpha": 8.0},
    "word12_alpha8": {"features": FeatureConfig(word_ngrams=(1, 2), char_ngrams=(1, 4)), "ridge_alpha": 8.0},
    "word12_char25_alpha8": {
        "features": FeatureConfig(word_ngrams=(1, 2), char_ngrams=(2, 5)),
        "ridge_alpha": 8.0,
    },
}
OUT = RESULTS_DIR / "holdout_study.json"


def _tfidf_references(
    train_rows: HeadlineData, test_rows: HeadlineData, labels: np.ndarray
) -> dict[str, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    y_train = (seed_target(train_rows) > np.median(seed_target(train_rows))).astype(int)
    probs: dict[str, np.ndarray] = {}
    for name, vec in {
        "tfidf_word12_logistic": TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
        "tfidf_char25_logistic": TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2
        ),
    }.items():
        x = vec.fit_transform(train_rows.titles)
        model = LogisticRegression(C=1.0, max_iter=2000).fit(x, y_train)
        probs[name] = model.predict_proba(vec.transform(test_rows.titles))[:, 1]
    probs["tfidf_word_char_average"] = (probs["tfidf_word12_logistic"] + probs["tfidf_char25_logistic"]) / 2
    return {k: fast_roc_auc(labels, v) for k, v in probs.items()}


def seed_holdout(config: TrainConfig, split_seed: int, seeds: list[int]) -> dict[str, Any]:
    data = load_seed()
    train_idx, test_idx = grouped_split(data.titles, None, 0.2, split_seed)
    train_rows, test_rows = data.subset(train_idx), data.subset(test_idx)
    y_train, y_test = seed_target(train_rows), seed_target(test_rows)
    labels = (y_test > np.median(y_train)).astype(np.float64)
    runs = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = train(train_rows, Path(tmp), config.model_copy(update={"seed": seed}), progress=False)
            model = TrainedModel.from_checkpoint(result.best_checkpoint)
            pred = model.predict(test_rows.titles, test_rows.categories)
            runs.append(
                {
                    "seed": seed,
                    "quality_auc": fast_roc_auc(labels, pred.quality_prob),
                    "ctr_auc": fast_roc_auc(labels, pred.ctr_normalized),
                    "mae": float(np.mean(np.abs(pred.ctr_normalized - y_test))),
                    "mae_mean": float(np.mean(np.abs(np.mean(y_train) - y_test))),
                    "best_epoch": result.best_epoch,
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            print(f"  seed split {split_seed} training seed {seed}: {runs[-1]}", flush=True)
    return {
        "split_seed": split_seed,
        "test_rows": len(test_idx),
        "runs": runs,
        "quality_auc_mean": float(np.mean([r["quality_auc"] for r in runs])),
        "mae_gain_mean": float(np.mean([1 - r["mae"] / r["mae_mean"] for r in runs])),
        "references": _tfidf_references(train_rows, test_rows, labels),
    }


def upworthy(config: TrainConfig, seeds: list[int]) -> dict[str, Any]:
    data = load_upworthy()
    train_idx, test_idx = upworthy_split(data)
    train_rows, test_rows = data.subset(train_idx), data.subset(test_idx)
    runs = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            result = train(train_rows, Path(tmp), config.model_copy(update={"seed": seed}), progress=False)
            model = TrainedModel.from_checkpoint(result.best_checkpoint)
            pred = model.predict(test_rows.titles, test_rows.categories)
            score = evaluate_pairs(test_rows, pred.ctr_normalized, pred.quality_prob)
            labels = build_targets(test_rows, model.scaling, model.label_rule).labels
            predicted = pred.quality_label.astype(np.float64)
            runs.append(
                {
                    "seed": seed,
                    **score.as_dict(),
                    "quality_auc": fast_roc_auc(labels, pred.quality_prob),
                    "threshold": model.quality_threshold,
                    "label_positive_share": float(labels.mean()),
                    "predicted_positive_share": float(predicted.mean()),
                    "accuracy": float(np.mean(predicted == labels)),
                    "balanced_accuracy": float(
                        (np.mean(predicted[labels == 1]) + np.mean(1 - predicted[labels == 0])) / 2
                    ),
                }
            )
            print(f"  upworthy seed {seed}: {runs[-1]}", flush=True)
    return {"runs": runs}


def threshold_check(seed: int = 42) -> dict[str, Any]:
    """Upworthy: the quality threshold chosen by F1 (before) and by Youden's J (now), on the trainer's
    validation rows, applied to the held-out tests."""
    from training.metrics import choose_threshold, degeneracy_warnings

    data = load_upworthy()
    train_idx, test_idx = upworthy_split(data)
    train_rows, test_rows = data.subset(train_idx), data.subset(test_idx)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(train_rows, Path(tmp), TrainConfig(seed=seed), progress=False)
        model = TrainedModel.from_checkpoint(result.best_checkpoint)
    val_rows = train_rows.subset(result.val_index)
    val_probs = model.predict(val_rows.titles, val_rows.categories).quality_prob
    val_labels = result.targets.labels[result.val_index]
    test_probs = model.predict(test_rows.titles, test_rows.categories).quality_prob
    labels = build_targets(test_rows, model.scaling, model.label_rule).labels
    out: dict[str, Any] = {"seed": seed, "label_positive_share": float(labels.mean())}
    for objective in ("f1", "youden"):
        threshold = choose_threshold(val_labels, val_probs, objective)  # type: ignore[arg-type]
        predicted = (test_probs >= threshold).astype(np.float64)
        out[objective] = {
            "threshold": threshold,
            "predicted_positive_share": float(predicted.mean()),
            "accuracy": float(np.mean(predicted == labels)),
            "balanced_accuracy": float(
                (np.mean(predicted[labels == 1]) + np.mean(1 - predicted[labels == 0])) / 2
            ),
            "warnings": degeneracy_warnings(labels, predicted),
        }
    print(json.dumps(out, indent=2), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", default="default")
    parser.add_argument("--seeds", default="42,1,2,3")
    parser.add_argument("--split-seeds", default="0,1")
    parser.add_argument("--upworthy-seeds", default="42")
    parser.add_argument("--upworthy-only", action="store_true", help="Only the Upworthy part.")
    parser.add_argument("--threshold-check", action="store_true", help="Upworthy: F1 vs Youden threshold.")
    args = parser.parse_args(argv)
    require_data()
    set_threads(1)
    if args.upworthy_only:
        results = json.loads(OUT.read_text()) if OUT.is_file() else {}
        for name in args.configs.split(","):
            upw_seeds = [int(s) for s in args.upworthy_seeds.split(",")]
            results[f"{name} (Upworthy only)"] = upworthy(TrainConfig(**CONFIGS[name]), upw_seeds)
            OUT.write_text(json.dumps(results, indent=2))
        return 0
    if args.threshold_check:
        results = json.loads(OUT.read_text()) if OUT.is_file() else {}
        results["threshold_check"] = threshold_check()
        OUT.write_text(json.dumps(results, indent=2))
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    for name in args.configs.split(","):
        config = TrainConfig(**CONFIGS[name])
        print(f"{name}: {config.model_dump_json()}", flush=True)
        entry: dict[str, Any] = {
            "config": json.loads(config.model_dump_json()),
            "seed": [seed_holdout(config, int(s), seeds) for s in args.split_seeds.split(",")],
        }
        if args.upworthy_seeds:
            entry["upworthy"] = upworthy(config, [int(s) for s in args.upworthy_seeds.split(",")])
        results[name] = entry
        OUT.write_text(json.dumps(results, indent=2))
        for part in entry["seed"]:
            print(
                f"{name} split {part['split_seed']}: quality AUC mean {part['quality_auc_mean']:.3f}, "
                f"MAE gain {part['mae_gain_mean']:+.1%}, references {part['references']}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
