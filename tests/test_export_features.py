"""The fast featurizer gives exactly what the straightforward one gave.

``ReferenceFeaturizer`` is the implementation before the batch vectorisation,
kept here verbatim (only renamed, and reading ``None`` n-gram ranges as off):
the new one must produce the same feature ids in the same positions, the same
weights (within 1e-6) and the same numeric features and signals, whatever its
caches (title, whitespace chunk, token) hold, and on the ASCII fast path of
the normalisation as on the general one.
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

from artifact.features import (
    NUMERIC_FEATURES,
    FeatureBatch,
    FeatureConfig,
    FeatureState,
    _is_word,
    _raw_numeric,
    fit_feature_state,
    normalize_title,
    normalized_chunks,
    tokenize,
)
from artifact.featurizer import Featurizer

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
#: Strings aimed at the chunk cache and the ASCII fast path: cuts inside a whitespace run,
#: Unicode whitespace, NFKC that creates spaces, casefold that changes length, an ASCII prefix
#: with non-ASCII beyond the cut, quotes, digits and punctuation inside chunks.
CHUNKY = [
    "a" * 299 + "   b c",
    "a " * 149 + "bb" + "  tail",
    "word " * 59 + "x" * 10,
    "x" * 650 + " é “quoted”",
    "x" * 650 + " plain 'quote'",
    "unit\x1fseparator\x1crecord\x1dgroup\x1espace",
    "no\u00a0break\u3000ideographic\u2003em\u2028line",
    "diaeresis\u00a8inside and \u00a8 alone",
    "ligature \ufb01nd and \u2460 circled",
    "STRASSE Straße İstanbul ΣΊΣΥΦΟΣ",
    " \u0301combining after space",
    'it\'s "quoted" 3rd? yes! (no) [x] {y} a-b a_b a.b',
    "A" * 40 + "?!" + "Z" * 40,
    "repeated repeated repeated chunk chunk,",
    "\x00\x01",
    "ascii\x7fdel and\x0bvertical tab\x0cform feed",
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
        FeatureConfig(word_ngrams=(1, 1), char_ngrams=(1, 4)),
        FeatureConfig(word_ngrams=(2, 2), char_ngrams=None, min_df=1, max_title_chars=40),
    ],
    ids=["default", "capped", "no-chars", "no-words", "unigram-chars", "trainer-default", "bigrams-cut"],
)
def test_fast_featurizer_matches_reference(sample_dir: Path, config: FeatureConfig) -> None:
    titles, cats = _sample(sample_dir)
    state = fit_feature_state(titles[:300] + CHUNKY, [*cats[:300], *([None] * len(CHUNKY))], config)
    queries = titles + HARD + CHUNKY
    query_cats = [*cats, *([None, "never seen"] * len(HARD + CHUNKY))][: len(queries)]
    new = Featurizer(state)
    ref = ReferenceFeaturizer(state)
    for batch in (queries, queries[:1], queries[:0], HARD, CHUNKY, queries[::-1]):
        batch_cats = [dict(zip(queries, query_cats, strict=True))[t] for t in batch]
        _assert_same(new.transform(batch, batch_cats), ref.transform(batch, batch_cats))
    # second pass: everything now comes from the word, chunk and title caches
    _assert_same(new.transform(queries, query_cats), ref.transform(queries, query_cats))
    # titles new, chunks and words cached (the stream's steady state), in another order
    new._title_cache.clear()
    _assert_same(new.transform(queries[::3], query_cats[::3]), ref.transform(queries[::3], query_cats[::3]))
    # cached and new titles mixed, and a new title twice in one batch
    mixed = [*queries[::2], *CHUNKY, *CHUNKY]
    new._title_cache.clear()
    new.transform(queries[::3])
    _assert_same(new.transform(mixed), ref.transform(mixed))


@pytest.mark.parametrize(
    "config",
    [
        FeatureConfig(word_ngrams=(1, 1), char_ngrams=(1, 4)),
        FeatureConfig(word_ngrams=None, char_ngrams=(2, 4), max_features_per_title=40),
        FeatureConfig(word_ngrams=(1, 1), char_ngrams=None, max_title_chars=40),
    ],
    ids=["trainer-default", "capped", "cut-40"],
)
def test_raw_chunk_path_matches_reference(sample_dir: Path, config: FeatureConfig) -> None:
    # Without word bigrams, new titles are featurized from their raw (unnormalized) whitespace
    # chunks; a batch with a title that needs the cut takes the normalized path. Both must give
    # the reference's outputs, for every hard string that fits, alone and mixed with real titles.
    titles, cats = _sample(sample_dir)
    state = fit_feature_state(titles[:300] + CHUNKY, [*cats[:300], *([None] * len(CHUNKY))], config)
    limit = config.max_title_chars
    fits = [t for t in HARD + CHUNKY if len(reference_normalize(t, 10**6)) <= limit and len(t) <= 2 * limit]
    expands = "\ufdfa" * 3  # NFKC turns each of these into 18 characters: short raw, long normalized
    assert len(fits) >= 10
    new = Featurizer(state)
    ref = ReferenceFeaturizer(state)
    batches = [fits, fits[::-1], [*titles[300:400], *fits], *([t] for t in fits), [*fits, expands], [expands]]
    for batch in batches:
        new._title_cache.clear()
        _assert_same(new.transform(batch), ref.transform(batch))
    assert new._raw_cache  # the raw path ran
    # raw chunks cached, titles new: the path the stream takes for a new headline with known words
    new._title_cache.clear()
    _assert_same(new.transform([*fits, *titles[300:400]]), ref.transform([*fits, *titles[300:400]]))


@pytest.mark.parametrize("max_chars", [1, 7, 40, 300])
def test_normalized_chunks_match_normalize_title(sample_dir: Path, max_chars: int) -> None:
    titles, _ = _sample(sample_dir)
    for title in [*titles[:200], *HARD, *CHUNKY]:
        expected = reference_normalize(title, max_chars)
        assert normalize_title(title, max_chars) == expected
        assert normalized_chunks(title, max_chars) == (expected.split(), len(expected)), repr(title)
        assert [t for c in expected.split() for t in tokenize(c)] == tokenize(expected)  # chunk-local


def test_cut_inside_whitespace_counts_the_trailing_space() -> None:
    chunks, length = normalized_chunks("ab  cd", 3)
    assert (chunks, length) == (["ab"], 3) and reference_normalize("ab  cd", 3) == "ab "


@pytest.mark.slow
@pytest.mark.shared_data
def test_fast_featurizer_matches_reference_on_real_data(shared_data: Path) -> None:
    import pandas as pd

    frame = pd.read_csv(shared_data / "upworthy" / "packages.csv", usecols=["headline"], nrows=3000)
    titles = [str(t) for t in frame["headline"]]
    state = fit_feature_state(titles[:2000], None)
    queries = titles[2000:] + HARD
    _assert_same(Featurizer(state).transform(queries), ReferenceFeaturizer(state).transform(queries))
    trainer_default = fit_feature_state(
        titles[:2000], None, FeatureConfig(word_ngrams=(1, 1), char_ngrams=(1, 4))
    )
    featurizer = Featurizer(trainer_default)
    featurizer.transform(titles[:2000])  # chunks and words warm from "training" titles
    _assert_same(featurizer.transform(queries), ReferenceFeaturizer(trainer_default).transform(queries))


@pytest.mark.parametrize(
    "config",
    [FeatureConfig(word_ngrams=(1, 1), char_ngrams=(1, 4)), FeatureConfig(word_ngrams=(1, 2))],
    ids=["trainer-default", "bigrams"],
)
def test_one_title_at_a_time_matches_reference(sample_dir: Path, config: FeatureConfig) -> None:
    """Batches of one take their own path (Python sums); cold, then with the pieces cached."""
    titles, _ = _sample(sample_dir)
    state = fit_feature_state(titles[:300], None, config)
    ref = ReferenceFeaturizer(state)
    new = Featurizer(state)
    for _ in range(2):  # pieces computed, then pieces cached
        for title in [*HARD, *CHUNKY, *titles[300:340]]:
            _assert_same(new.transform([title]), ref.transform([title]))
        new._title_cache.clear()
        _assert_same(new.transform(HARD), ref.transform(HARD))


def test_caches_are_bounded(sample_dir: Path) -> None:
    titles, cats = _sample(sample_dir)
    featurizer = Featurizer(fit_feature_state(titles, cats))
    featurizer._TITLE_CACHE_LIMIT = 10
    featurizer._CACHE_LIMIT = 50
    first = featurizer.transform(titles[:8])
    assert len(featurizer._title_cache) <= 10 and len(featurizer._piece_cache) <= 50
    first = featurizer.transform(titles[:100])  # more new titles than the title cache holds
    assert len(featurizer._title_cache) <= 100 and len(featurizer._piece_cache) <= 50
    featurizer.transform(titles[100:108])
    assert len(featurizer._title_cache) <= 10
    _assert_same(featurizer.transform(titles[:100]), first)
    _assert_same(featurizer.transform(titles[:100]), Featurizer(featurizer.state).transform(titles[:100]))


def test_bigram_cache_entries_survive_eviction(sample_dir: Path) -> None:
    titles, _ = _sample(sample_dir)
    state = fit_feature_state(titles, None, FeatureConfig(word_ngrams=(1, 2), char_ngrams=None))
    featurizer = Featurizer(state)
    featurizer._CACHE_LIMIT = 3  # entries are evicted while a chunk and the batch are assembled
    _assert_same(featurizer.transform(titles[:50]), ReferenceFeaturizer(state).transform(titles[:50]))
    assert len(featurizer._piece_cache) <= 3


def test_clear_caches_keeps_outputs(sample_dir: Path) -> None:
    titles, cats = _sample(sample_dir)
    featurizer = Featurizer(fit_feature_state(titles, cats))
    first = featurizer.transform(titles[:64], cats[:64])
    assert featurizer._title_cache and featurizer._piece_cache
    featurizer.clear_caches()
    assert not (featurizer._title_cache or featurizer._piece_cache)
    _assert_same(featurizer.transform(titles[:64], cats[:64]), first)


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
