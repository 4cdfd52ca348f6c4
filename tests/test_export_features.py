"""The fast featurizer gives exactly what the straightforward one gave.

``ReferenceFeaturizer`` is the implementation before the batch vectorisation,
kept here verbatim (only renamed, and reading ``None`` n-gram ranges as off):
the new one must produce the same feature ids in the same positions, the same
weights (within 1e-6) and the same numeric features and signals.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import ValidationError

from export.features import (
    NUMERIC_FEATURES,
    FeatureBatch,
    FeatureConfig,
    FeatureState,
    Featurizer,
    _is_word,
    _raw_numeric,
    fit_feature_state,
    tokenize,
)

_CONTROL = {c: " " for c in range(0x20)} | {0x7F: " "}

HARD = [
    "",
    "   ",
    "x" * 5000,
    "word " * 1200,
    "😀🔥 emoji headline 👍🏽 family 👨‍👩‍👧",
    'מדענים מצאו מים על מאדים: "פריצת דרך"',
    "Apple השיקה iPhone חדש — 你好 мир مرحبا",
    "control\x00chars\x07and\x1b[31mescapes\x7f",
    "\u202eevil\u202c right-to-left override",
    "ＦＵＬＬ ｗｉｄｔｈ １２３",
    "Why?! Numbers 42 and 'quotes' “curly”",
    "tab\tnew\nline\r\n",
]


def reference_normalize(title: str, max_chars: int) -> str:
    text = unicodedata.normalize("NFKC", title[: max_chars * 2]).translate(_CONTROL).casefold()
    return " ".join(text.split())[:max_chars]


class ReferenceFeaturizer:
    """The featurizer before the speed-up (commit 4ce8eec), kept verbatim as the reference.

    Per title the work is a regex split and one cached lookup per word (its
    unigram and character n-gram ids); counting, TF-IDF weighting, the L2
    norm and padding are vectorised over the whole batch.
    """

    _CACHE_LIMIT = 200_000

    def __init__(self, state: FeatureState) -> None:
        self.state = state
        self._config = state.config
        self._index = {f: i + 1 for i, f in enumerate(state.vocabulary)}
        self._idf = np.concatenate([[0.0], np.asarray(state.idf, dtype=np.float64)])
        self._categories = {c: i + 1 for i, c in enumerate(state.categories)}
        self._mean = np.asarray(state.numeric_mean, dtype=np.float64)
        self._std = np.asarray(state.numeric_std, dtype=np.float64)
        self._word_cache: dict[str, tuple[list[int], bool, bool]] = {}
        w_lo, w_hi = state.config.word_ngrams or (0, -1)
        self._unigrams = w_lo <= 1 <= w_hi
        self._bigrams = w_lo <= 2 <= w_hi

    def _word(self, token: str) -> tuple[list[int], bool, bool]:
        """Feature ids of one token (unigram + character n-grams), whether it is a word, and a known one."""
        cached = self._word_cache.get(token)
        if cached is not None:
            return cached
        index = self._index
        unigram = index.get("w:" + token)
        ids = [unigram] if unigram and self._unigrams else []
        padded = f" {token} "
        size = len(padded)
        c_lo, c_hi = self._config.char_ngrams or (1, 0)
        for n in range(c_lo, min(c_hi, size) + 1):
            for i in range(size - n + 1):
                found = index.get("c:" + padded[i : i + n])
                if found:
                    ids.append(found)
        entry = (ids, _is_word(token), unigram is not None)
        if len(self._word_cache) >= self._CACHE_LIMIT:
            self._word_cache.clear()
        self._word_cache[token] = entry
        return entry

    def transform(
        self, titles: Sequence[str], categories: Sequence[str | None] | None = None
    ) -> FeatureBatch:
        """Featurize a batch (any size, including 0)."""
        size = len(titles)
        if categories is not None and len(categories) != size:
            raise ValueError(f"expected {size} categories, got {len(categories)}")
        cfg = self._config
        index = self._index
        cache = self._word_cache
        flat: list[int] = []
        lengths = np.zeros(size, dtype=np.int64)
        numeric = np.zeros((size, len(NUMERIC_FEATURES)), dtype=np.float64)
        n_chars = np.zeros(size)
        n_words = np.zeros(size)
        unknown = np.zeros(size)
        for r, title in enumerate(titles):
            normalized = reference_normalize(title, cfg.max_title_chars)
            tokens = tokenize(normalized)
            start = len(flat)
            words = 0
            unseen = 0
            for tok in tokens:
                ids, is_word, known = cache.get(tok) or self._word(tok)
                flat.extend(ids)
                if is_word:
                    words += 1
                    unseen += not known
            if self._bigrams:
                for a, b in itertools.pairwise(tokens):
                    found = index.get(f"b:{a} {b}")
                    if found:
                        flat.append(found)
            lengths[r] = len(flat) - start
            numeric[r] = _raw_numeric(title, normalized, words)
            n_chars[r] = len(title)
            n_words[r] = words
            unknown[r] = unseen / words if words else 0.0
        token_ids, token_weights = self._bags(flat, lengths)
        if categories is None:
            category_ids = np.zeros(size, dtype=np.int64)
        else:
            category_ids = np.fromiter(
                (self._categories.get(c, 0) if c else 0 for c in categories), dtype=np.int64, count=size
            )
        return FeatureBatch(
            token_ids=token_ids,
            token_weights=token_weights,
            category_ids=category_ids,
            numeric=((numeric - self._mean) / self._std).astype(np.float32),
            n_chars=n_chars,
            n_words=n_words,
            unknown_share=unknown,
            category_known=category_ids > 0,
        )

    def _bags(
        self, flat: list[int], lengths: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Weight each feature occurrence by its IDF, L2-normalise per row, pad.

        A feature that occurs twice in a title appears twice in the bag, which
        the model sums: term frequency times IDF without sorting or counting.
        """
        size = lengths.shape[0]
        cap = self._config.max_features_per_title
        if not flat:
            return np.zeros((size, 1), dtype=np.int64), np.zeros((size, 1), dtype=np.float32)
        ids = np.asarray(flat, dtype=np.int64)
        rows = np.repeat(np.arange(size, dtype=np.int64), lengths)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        pos = np.arange(ids.shape[0]) - starts[rows]
        if int(lengths.max()) > cap:
            keep = pos < cap
            ids, rows, pos = ids[keep], rows[keep], pos[keep]
        w = self._idf[ids]
        norm = np.sqrt(np.bincount(rows, weights=w * w, minlength=size))
        w = w / norm[rows]
        width = max(int(pos.max()) + 1, 1)
        token_ids = np.zeros((size, width), dtype=np.int64)
        token_weights = np.zeros((size, width), dtype=np.float32)
        token_ids[rows, pos] = ids
        token_weights[rows, pos] = w
        return token_ids, token_weights


def _assert_same(new: FeatureBatch, ref: FeatureBatch) -> None:
    np.testing.assert_array_equal(new.token_ids, ref.token_ids)
    assert new.token_ids.dtype == ref.token_ids.dtype and new.token_weights.dtype == ref.token_weights.dtype
    np.testing.assert_allclose(new.token_weights, ref.token_weights, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(new.category_ids, ref.category_ids)
    np.testing.assert_allclose(new.numeric, ref.numeric, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(new.n_chars, ref.n_chars)
    np.testing.assert_array_equal(new.n_words, ref.n_words)
    np.testing.assert_allclose(new.unknown_share, ref.unknown_share, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(new.category_known, ref.category_known)


def _sample(sample_dir: Path) -> tuple[list[str], list[str | None]]:
    import pandas as pd

    frame = pd.read_csv(sample_dir / "train.csv")
    titles = [str(t) for t in frame["post_title"]]
    cats: list[str | None] = [None if pd.isna(c) else str(c) for c in frame["category_name"]]
    return titles, cats


@pytest.mark.parametrize(
    "config",
    [
        FeatureConfig(),
        FeatureConfig(min_df=1, max_features_per_title=40),
        FeatureConfig(char_ngrams=None),
        FeatureConfig(word_ngrams=None, char_ngrams=(2, 4)),
        FeatureConfig(word_ngrams=(1, 1), char_ngrams=(1, 1)),
    ],
    ids=["default", "capped", "no-chars", "no-words", "unigram-chars"],
)
def test_fast_featurizer_matches_reference(sample_dir: Path, config: FeatureConfig) -> None:
    titles, cats = _sample(sample_dir)
    state = fit_feature_state(titles[:300], cats[:300], config)
    queries = titles + HARD
    query_cats = [*cats, *([None, "never seen"] * len(HARD))][: len(queries)]
    new = Featurizer(state)
    ref = ReferenceFeaturizer(state)
    for batch in (queries, queries[:1], queries[:0], HARD, queries[::-1]):
        batch_cats = [dict(zip(queries, query_cats, strict=True))[t] for t in batch]
        _assert_same(new.transform(batch, batch_cats), ref.transform(batch, batch_cats))
    # second pass: everything now comes from the word and title caches
    _assert_same(new.transform(queries, query_cats), ref.transform(queries, query_cats))


def test_fast_featurizer_matches_reference_on_real_data(shared_data: Path) -> None:
    import pandas as pd

    frame = pd.read_csv(shared_data / "upworthy" / "packages.csv", usecols=["headline"], nrows=3000)
    titles = [str(t) for t in frame["headline"]]
    state = fit_feature_state(titles[:2000], None)
    queries = titles[2000:] + HARD
    _assert_same(Featurizer(state).transform(queries), ReferenceFeaturizer(state).transform(queries))


def test_caches_are_bounded(sample_dir: Path) -> None:
    titles, cats = _sample(sample_dir)
    featurizer = Featurizer(fit_feature_state(titles, cats))
    featurizer._TITLE_CACHE_LIMIT = 10
    featurizer._CACHE_LIMIT = 50
    first = featurizer.transform(titles[:100])
    assert len(featurizer._title_cache) <= 10 and len(featurizer._word_cache) <= 50
    _assert_same(featurizer.transform(titles[:100]), first)


@pytest.mark.parametrize("bad", [(0, 0), (0, 3), (4, 2), (-1, 2)])
def test_ngram_ranges_are_validated(bad: tuple[int, int]) -> None:
    with pytest.raises(ValidationError, match="1 <= lo <= hi"):
        FeatureConfig(char_ngrams=bad)
    with pytest.raises(ValidationError, match="1 <= lo <= hi"):
        FeatureConfig(word_ngrams=bad)


def test_char_ngrams_off_emits_no_char_features() -> None:
    state = fit_feature_state(["alpha beta", "alpha gamma"], None, FeatureConfig(min_df=1, char_ngrams=None))
    assert state.vocabulary and not any(f.startswith("c:") for f in state.vocabulary)
    assert NUMERIC_FEATURES  # the numeric block is unaffected
