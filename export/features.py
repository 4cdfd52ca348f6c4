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

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from export.errors import FeatureStateError

_TOKEN = re.compile(r"\w+|[^\w\s]")
# Control and format characters become spaces; NFKC folds compatibility forms.
_CONTROL = {c: " " for c in range(0x20)} | {0x7F: " "}

NUMERIC_FEATURES = ("log_chars", "log_words", "has_digit", "has_question", "has_exclaim", "has_quote")


class FeatureConfig(BaseModel):
    """Hyper-parameters of the featurizer (stored with the fitted state)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_title_chars: int = Field(default=300, ge=1, description="Titles are cut here before featurizing.")
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (3, 5)
    min_df: int = Field(default=2, ge=1)
    max_features: int = Field(default=50_000, ge=1)
    max_features_per_title: int = Field(default=400, ge=1)


def normalize_title(title: str, max_chars: int) -> str:
    """NFKC, control characters to spaces, case-folded, whitespace collapsed, cut to ``max_chars``."""
    text = unicodedata.normalize("NFKC", title[: max_chars * 2]).translate(_CONTROL).casefold()
    return " ".join(text.split())[:max_chars]


def tokenize(normalized: str) -> list[str]:
    return _TOKEN.findall(normalized)


def title_features(tokens: Sequence[str], config: FeatureConfig) -> list[str]:
    """Feature strings of one tokenized title (with repeats; order of first appearance)."""
    out: list[str] = []
    w_lo, w_hi = config.word_ngrams
    if w_lo <= 1 <= w_hi:
        out.extend("w:" + t for t in tokens)
    if w_lo <= 2 <= w_hi:
        out.extend(f"b:{a} {b}" for a, b in itertools.pairwise(tokens))
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


class Featurizer:
    """Applies a fitted :class:`FeatureState`; never refits.

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
        w_lo, w_hi = state.config.word_ngrams
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
        c_lo, c_hi = self._config.char_ngrams
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
            normalized = normalize_title(title, cfg.max_title_chars)
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
