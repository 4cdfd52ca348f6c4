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

This module defines the features and fits their state; :mod:`artifact.featurizer`
applies a fitted state fast (and is checked against a straightforward
implementation in the tests).
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
from pydantic import BaseModel, ConfigDict, Field, field_validator

from artifact.errors import FeatureStateError

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
    # [B] features per row: the rest of the row is padding (None: not known, the whole row counts)
    token_counts: NDArray[np.int32] | None = None

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


#: A ``max_chars`` that never cuts: normalize a title or a piece of one in full.
NO_CUT = 1 << 40

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


def normalized_chunks(title: str, max_chars: int) -> tuple[list[str], int]:
    """``normalize_title(title, max_chars).split()`` and the normalized length, computed faster.

    The steps are those of :func:`normalize_title`, except that an ASCII title skips NFKC
    (the identity on ASCII) and uses ``lower()`` (equal to ``casefold()`` on ASCII), and the
    whitespace-collapsed string is only built when it has to be cut.
    """
    text = title[: max_chars * 2]
    if text.isascii():
        if not text.isprintable():
            text = text.translate(_CONTROL)
        text = text.lower()
    else:
        text = unicodedata.normalize("NFKC", text)
        if not text.isprintable():
            text = text.translate(_CONTROL)
        text = text.casefold()
    chunks = text.split()
    length = sum(map(len, chunks)) + len(chunks) - 1 if chunks else 0
    if length <= max_chars:
        return chunks, length
    return " ".join(chunks)[:max_chars].split(), max_chars
