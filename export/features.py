"""Turning raw headline fields into model inputs, with state fitted once on training rows.

The same code runs in the trainer and in the runtime loader (numpy and the
standard library only), so a model scores a headline the same way offline and
in the stream, and nothing is refit at inference.

A title becomes a bag of sparse features, each with a TF-IDF weight:

* ``w:`` word unigrams and ``b:`` word bigrams (a token is a run of word
  characters in any script, or a single other non-space character, so ``?``,
  ``!``, quotes and emoji are tokens too);
* ``c:`` character n-grams inside each word padded with spaces (like
  scikit-learn's ``char_wb``), which carry morphology in Hebrew and English.

Only features seen in at least ``min_df`` training titles get an index; the
bag is L2-normalised per title. The category becomes an index (0 = unknown)
and the title's length a few standardised numbers. The featurizer also yields
the signals the stream monitors for drift: length in characters and words,
and the share of word tokens never seen in training.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator

from export.errors import FeatureStateError

_TOKEN = re.compile(r"\w+|[^\w\s]")
# Control and format characters become spaces; NFKC folds compatibility forms.
_CONTROL = {c: " " for c in range(0x20)} | {0x7F: " "}

NUMERIC_FEATURES = ("log_chars", "log_words", "has_digit", "has_question", "has_exclaim", "has_quote")


class FeatureConfig(BaseModel):
    """Hyper-parameters of the featurizer (stored with the fitted state)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_title_chars: int = Field(default=300, ge=1, description="Titles are cut here before featurizing.")
    word_ngrams: tuple[int, int] | None = Field(
        default=(1, 2), description="Word n-gram sizes (only 1 and 2 are used); None turns them off."
    )
    char_ngrams: tuple[int, int] | None = Field(
        default=(3, 5), description="Character n-gram sizes inside words; None turns them off."
    )
    min_df: int = Field(default=2, ge=1)
    max_features: int = Field(default=50_000, ge=1)
    max_features_per_title: int = Field(default=400, ge=1)

    @field_validator("word_ngrams", "char_ngrams")
    @classmethod
    def _ngram_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1 <= value[0] <= value[1]:
            raise ValueError(
                f"expected an n-gram range (lo, hi) with 1 <= lo <= hi, or None (off), got {value}"
            )
        return value


def normalize_title(title: str, max_chars: int) -> str:
    """NFKC, control characters to spaces, case-folded, whitespace collapsed, cut to ``max_chars``."""
    text = unicodedata.normalize("NFKC", title[: max_chars * 2])
    if not text.isprintable():  # control characters are never printable: skip the slow translate
        text = text.translate(_CONTROL)
    text = text.casefold()
    return " ".join(text.split())[:max_chars]


def tokenize(normalized: str) -> list[str]:
    return _TOKEN.findall(normalized)


def title_features(tokens: Sequence[str], config: FeatureConfig) -> list[str]:
    """Feature strings of one tokenized title (with repeats; order of first appearance)."""
    out: list[str] = []
    w_lo, w_hi = config.word_ngrams or (0, -1)
    if w_lo <= 1 <= w_hi:
        out.extend("w:" + t for t in tokens)
    if w_lo <= 2 <= w_hi:
        out.extend(f"b:{a} {b}" for a, b in itertools.pairwise(tokens))
    if config.char_ngrams is None:
        return out
    c_lo, c_hi = config.char_ngrams
    for tok in tokens:
        padded = f" {tok} "
        size = len(padded)
        for n in range(c_lo, min(c_hi, size) + 1):
            out.extend("c:" + padded[i : i + n] for i in range(size - n + 1))
    return out


@dataclass(frozen=True)
class FeatureBatch:
    """Model inputs and monitored signals for a batch of headlines."""

    token_ids: NDArray[np.int64]  # [B, T], 0 = padding
    token_weights: NDArray[np.float32]  # [B, T]
    category_ids: NDArray[np.int64]  # [B], 0 = unknown or missing
    numeric: NDArray[np.float32]  # [B, len(NUMERIC_FEATURES)], standardised
    n_chars: NDArray[np.float64]  # [B] raw title length in characters
    n_words: NDArray[np.float64]  # [B] word tokens
    unknown_share: NDArray[np.float64]  # [B] share of word tokens not in the vocabulary
    category_known: NDArray[np.bool_]  # [B] category present and seen in training

    def __len__(self) -> int:
        return int(self.category_ids.shape[0])


class FeatureState(BaseModel):
    """Everything fitted on training rows that featurizing needs: JSON-serialisable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = 1
    config: FeatureConfig
    vocabulary: list[str] = Field(description="Feature strings; index i+1 in the model (0 = padding).")
    idf: list[float]
    categories: list[str] = Field(description="Known categories; index i+1 (0 = unknown).")
    numeric_mean: list[float]
    numeric_std: list[float]
    n_train_rows: int

    def model_post_init(self, _context: object) -> None:
        if len(self.vocabulary) != len(self.idf):
            raise FeatureStateError(
                f"feature state: expected one idf weight per vocabulary entry, "
                f"got {len(self.idf)} for {len(self.vocabulary)}"
            )
        if len(self.numeric_mean) != len(NUMERIC_FEATURES) or len(self.numeric_std) != len(NUMERIC_FEATURES):
            raise FeatureStateError(
                f"feature state: expected {len(NUMERIC_FEATURES)} numeric means and stds, "
                f"got {len(self.numeric_mean)} and {len(self.numeric_std)}"
            )

    @property
    def n_features(self) -> int:
        """Embedding rows the model needs (vocabulary + padding)."""
        return len(self.vocabulary) + 1

    @property
    def n_categories(self) -> int:
        return len(self.categories) + 1


_DIGIT = re.compile(r"\d")
_QUOTE = re.compile("[\"'“”‘’״׳]")


def _is_word(token: str) -> bool:
    return token[0].isalnum() or token[0] == "_"


def _raw_numeric(title: str, normalized: str, n_words: int) -> list[float]:
    return [
        math.log1p(len(normalized)),
        math.log1p(n_words),
        float(_DIGIT.search(normalized) is not None),
        float("?" in normalized),
        float("!" in normalized),
        float(_QUOTE.search(title) is not None),
    ]


def fit_feature_state(
    titles: Sequence[str], categories: Iterable[str | None] | None, config: FeatureConfig | None = None
) -> FeatureState:
    """Fit the vocabulary, IDF weights, category index and numeric scaling on training titles."""
    config = config or FeatureConfig()
    if len(titles) == 0:
        raise FeatureStateError("cannot fit features on zero titles")
    df: Counter[str] = Counter()
    numeric = np.empty((len(titles), len(NUMERIC_FEATURES)), dtype=np.float64)
    for row, title in enumerate(titles):
        normalized = normalize_title(title, config.max_title_chars)
        tokens = tokenize(normalized)
        df.update(set(title_features(tokens, config)))
        numeric[row] = _raw_numeric(title, normalized, sum(1 for t in tokens if _is_word(t)))
    frequent = [(f, n) for f, n in df.items() if n >= config.min_df]
    frequent.sort(key=lambda item: (-item[1], item[0]))
    frequent = frequent[: config.max_features]
    n = len(titles)
    vocabulary = [f for f, _ in frequent]
    idf = [math.log((1 + n) / (1 + c)) + 1.0 for _, c in frequent]
    cats = sorted({c for c in (categories or []) if c})
    std = numeric.std(axis=0)
    return FeatureState(
        config=config,
        vocabulary=vocabulary,
        idf=idf,
        categories=cats,
        numeric_mean=numeric.mean(axis=0).tolist(),
        numeric_std=np.where(std > 1e-9, std, 1.0).tolist(),
        n_train_rows=n,
    )


_IDS = np.dtype("<i4")  # feature ids inside the caches: 4-byte little-endian
_first = itemgetter(0)
_second = itemgetter(1)
_third = itemgetter(2)
_pair = " ".join
#: Per title: packed feature ids and (words, unseen words, normalized length, digit, ?, !, quote).
_TitleEntry = tuple[bytes, tuple[int, int, int, bool, bool, bool, bool]]


class Featurizer:
    """Applies a fitted :class:`FeatureState`; never refits.

    Per title the work is one normalisation, one regex split and C-level
    ``map`` lookups: every token's feature ids (unigram and character n-grams)
    are cached as packed bytes, bigram ids come from a prebuilt table, and a
    title's ids are one ``bytes.join``. Whole titles are cached too (bounded),
    so a repeated headline costs one dictionary lookup. Counting, TF-IDF
    weighting, the L2 norm and padding are vectorised over the whole batch.
    """

    _CACHE_LIMIT = 200_000
    _TITLE_CACHE_LIMIT = 20_000

    def __init__(self, state: FeatureState) -> None:
        self.state = state
        self._config = state.config
        self._index = {f: i + 1 for i, f in enumerate(state.vocabulary)}
        self._idf = np.concatenate([[0.0], np.asarray(state.idf, dtype=np.float64)])
        self._categories = {c: i + 1 for i, c in enumerate(state.categories)}
        self._mean = np.asarray(state.numeric_mean, dtype=np.float64)
        self._std = np.asarray(state.numeric_std, dtype=np.float64)
        self._word_cache: dict[str, tuple[bytes, int, int]] = {}
        self._title_cache: dict[str, _TitleEntry] = {}
        w_lo, w_hi = state.config.word_ngrams or (0, -1)
        self._unigrams = w_lo <= 1 <= w_hi
        self._bigrams = w_lo <= 2 <= w_hi
        self._bigram_ids: dict[str, bytes] = (
            {
                f[2:]: np.array([i + 1], dtype=_IDS).tobytes()
                for i, f in enumerate(state.vocabulary)
                if f.startswith("b:")
            }
            if self._bigrams
            else {}
        )

    def _word(self, token: str) -> tuple[bytes, int, int]:
        """Packed feature ids of one token (unigram + character n-grams), 1 if it is a word,
        1 if it is a word outside the vocabulary."""
        index = self._index
        unigram = index.get("w:" + token)
        ids = [unigram] if unigram and self._unigrams else []
        if self._config.char_ngrams is not None:
            padded = f" {token} "
            size = len(padded)
            c_lo, c_hi = self._config.char_ngrams
            for n in range(c_lo, min(c_hi, size) + 1):
                for i in range(size - n + 1):
                    found = index.get("c:" + padded[i : i + n])
                    if found:
                        ids.append(found)
        is_word = int(_is_word(token))
        entry = (np.asarray(ids, dtype=_IDS).tobytes(), is_word, int(is_word and unigram is None))
        if len(self._word_cache) >= self._CACHE_LIMIT:
            self._word_cache.clear()
        self._word_cache[token] = entry
        return entry

    def _title(self, title: str) -> _TitleEntry:
        normalized = normalize_title(title, self._config.max_title_chars)
        tokens = _TOKEN.findall(normalized)
        words = list(map(self._word_cache.get, tokens))
        try:
            parts: list[bytes] = list(map(_first, words))  # type: ignore[arg-type]
        except TypeError:  # a token not in the cache yet (cheaper than scanning for None)
            words = [w if w is not None else self._word(t) for w, t in zip(words, tokens, strict=True)]
            parts = list(map(_first, words))  # type: ignore[arg-type]
        if self._bigrams and len(tokens) > 1:
            keys = map(_pair, itertools.pairwise(tokens))
            parts.extend(map(self._bigram_ids.get, keys, itertools.repeat(b"")))
        n_words = sum(map(_second, words))  # type: ignore[arg-type]
        entry: _TitleEntry = (
            b"".join(parts),
            (
                n_words,
                sum(map(_third, words)),  # type: ignore[arg-type]
                len(normalized),
                _DIGIT.search(normalized) is not None,
                "?" in normalized,
                "!" in normalized,
                _QUOTE.search(title) is not None,
            ),
        )
        if len(self._title_cache) >= self._TITLE_CACHE_LIMIT:
            self._title_cache.clear()
        self._title_cache[title] = entry
        return entry

    def transform(
        self, titles: Sequence[str], categories: Sequence[str | None] | None = None
    ) -> FeatureBatch:
        """Featurize a batch (any size, including 0)."""
        size = len(titles)
        if categories is not None and len(categories) != size:
            raise ValueError(f"expected {size} categories, got {len(categories)}")
        entries = list(map(self._title_cache.get, titles))
        try:
            blobs: list[bytes] = list(map(_first, entries))  # type: ignore[arg-type]
        except TypeError:  # some titles not cached yet
            entries = [e if e is not None else self._title(t) for e, t in zip(entries, titles, strict=True)]
            blobs = list(map(_first, entries))  # type: ignore[arg-type]
        lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=size) // _IDS.itemsize
        flat = np.frombuffer(b"".join(blobs), dtype=_IDS).astype(np.int64)
        stats = np.array(list(map(_second, entries)), dtype=np.float64).reshape(size, 7)  # type: ignore[arg-type]
        n_words = stats[:, 0]
        numeric = np.empty((size, len(NUMERIC_FEATURES)), dtype=np.float64)
        numeric[:, 0] = np.log1p(stats[:, 2])
        numeric[:, 1] = np.log1p(n_words)
        numeric[:, 2:] = stats[:, 3:]
        unknown = np.zeros(size)
        np.divide(stats[:, 1], n_words, out=unknown, where=n_words > 0)
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
            n_chars=np.fromiter(map(len, titles), dtype=np.float64, count=size),
            n_words=n_words.copy(),
            unknown_share=unknown,
            category_known=category_ids > 0,
        )

    def _bags(
        self, ids: NDArray[np.int64], lengths: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Weight each feature occurrence by its IDF, L2-normalise per row, pad.

        A feature that occurs twice in a title appears twice in the bag, which
        the model sums: term frequency times IDF without sorting or counting.
        """
        size = lengths.shape[0]
        if ids.shape[0] == 0:
            return np.zeros((size, 1), dtype=np.int64), np.zeros((size, 1), dtype=np.float32)
        # Row-major boolean mask of occupied cells: assigning the concatenated ids through it
        # puts each title's features, in order, at the start of its row.
        mask = np.arange(int(lengths.max())) < lengths[:, None]
        padded = np.zeros(mask.shape, dtype=np.int64)
        padded[mask] = ids
        cap = self._config.max_features_per_title
        if int(mask.shape[-1]) > cap:
            padded, mask = padded[:, :cap], mask[:, :cap]
        weights = self._idf[padded]
        norm = np.sqrt(np.einsum("ij,ij->i", weights, weights))
        np.divide(weights, norm[:, None], out=weights, where=mask)
        return padded, weights.astype(np.float32)
