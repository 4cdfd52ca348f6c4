"""Applying a fitted :class:`~artifact.features.FeatureState` to raw titles, fast (numpy and stdlib).

The features themselves are defined (and fitted) in :mod:`artifact.features`; the
:class:`Featurizer` here computes exactly the same outputs as a straightforward
implementation (kept in the tests as the reference) with as little Python work
per new title as it could be given: see its docstring.
"""

from __future__ import annotations

import itertools
import operator
import struct
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import TypeVar, cast

import numpy as np
from numpy.typing import NDArray

from artifact.features import (
    _DIGIT,
    _QUOTE,
    _TOKEN,
    NO_CUT,
    NUMERIC_FEATURES,
    FeatureBatch,
    FeatureState,
    _is_word,
    normalized_chunks,
)

_IDS = np.dtype("<i4")  # feature ids and statistics inside the caches: 4-byte little-endian
#: Per piece of a title (a token, or a whitespace chunk of tokens): feature ids, word tokens,
#: words outside the vocabulary, and how many of its words hold a digit, how many ``?`` and ``!``.
_PIECE_STATS = struct.Struct("<6i")
_N_PIECE_STATS = 6
#: Per title: the piece statistics summed, then the normalized length and whether it has a quote.
_TITLE_STATS = struct.Struct("<8i")
_N_TITLE_STATS = 8
#: Per raw chunk (a run of non-whitespace in the raw title): the piece statistics of the normalized
#: chunks it becomes summed, then how many normalized chunks, their characters, and whether it has a quote.
_RAW_STATS = struct.Struct("<9i")
_N_RAW_STATS = 9
#: Starts the cache key of a title's bigrams (never inside a chunk: control characters become spaces).
_BIGRAMS = "\x00"
_first = itemgetter(0)
_second = itemgetter(1)
_pair = " ".join
#: A cached piece or title: packed feature ids and packed statistics.
_Entry = tuple[bytes, bytes]


class Featurizer:
    """Applies a fitted :class:`FeatureState`; never refits.

    Tokens never cross whitespace and character n-grams stay inside a token, so
    a title's features are its whitespace chunks' features in order. Normalisation
    acts per character and never joins across whitespace, so that holds for the
    raw title's chunks too: per new title the work is a C-level ``str.split`` of
    the raw title and one cache lookup per raw chunk, whose entry holds the
    feature ids and counts of the normalized chunks it becomes (titles that need
    the length cut, and configurations with word bigrams, normalise the whole
    title first, as the reference does). Normalized chunks and tokens are cached
    too (one cache: a one-token chunk is its token), as packed bytes; the
    normalisation, the regex tokenizer and the vocabulary lookups run only on a
    cache miss. The chunks of all new titles of a batch are assembled together (one
    ``bytes.join``, counts summed per title in numpy), and each new title's
    packed ids and statistics are cached (bounded), so a repeated headline
    costs one dictionary lookup. TF-IDF weighting, the L2 norm and padding are
    vectorised over the whole batch.
    """

    _CACHE_LIMIT = 200_000
    _TITLE_CACHE_LIMIT = 20_000

    def __init__(self, state: FeatureState) -> None:
        self.state = state
        self._config = state.config
        # vocabulary ids by kind, keyed without the "w:" / "c:" prefix
        self._unigram_ids = {f[2:]: i + 1 for i, f in enumerate(state.vocabulary) if f.startswith("w:")}
        self._char_ids = {f[2:]: i + 1 for i, f in enumerate(state.vocabulary) if f.startswith("c:")}
        self._idf = np.concatenate([[0.0], np.asarray(state.idf, dtype=np.float64)])
        self._categories = {c: i + 1 for i, c in enumerate(state.categories)}
        self._mean = np.asarray(state.numeric_mean, dtype=np.float64)
        self._std = np.asarray(state.numeric_std, dtype=np.float64)
        cap = state.config.max_features_per_title
        self._prefixes = np.arange(cap) < np.arange(cap + 1)[:, None]  # [cap + 1, cap]
        self._piece_cache: dict[str, _Entry] = {}
        self._raw_cache: dict[str, _Entry] = {}
        self._title_cache: dict[str, _Entry] = {}
        self._slices: dict[int, list[slice]] = {}
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

    def clear_caches(self) -> None:
        """Forget every cached title, chunk and token (the outputs do not change)."""
        self._title_cache.clear()
        self._piece_cache.clear()
        self._raw_cache.clear()

    def _gram_slices(self, size: int) -> list[slice]:
        """Where the character n-grams of a padded token of ``size`` characters are, by n then start."""
        found = self._slices.get(size)
        if found is None:
            c_lo, c_hi = self._config.char_ngrams or (1, 0)
            found = [slice(i, i + n) for n in range(c_lo, min(c_hi, size) + 1) for i in range(size - n + 1)]
            self._slices[size] = found
        return found

    def _store(self, key: str, entry: _Entry, cache: dict[str, _Entry] | None = None) -> _Entry:
        """Cache ``entry`` in ``cache`` (default: the chunk cache), emptying it first when full."""
        cache = self._piece_cache if cache is None else cache
        if len(cache) >= self._CACHE_LIMIT:
            cache.clear()
        cache[key] = entry
        return entry

    def _token(self, token: str) -> _Entry:
        """One token: its unigram and character n-gram ids (cached)."""
        unigram = self._unigram_ids.get(token)
        ids = [unigram] if unigram and self._unigrams else []
        if self._config.char_ngrams is not None:
            padded = f" {token} "
            grams = map(padded.__getitem__, self._gram_slices(len(padded)))
            ids.extend(filter(None, map(self._char_ids.get, grams)))
        is_word = _is_word(token)
        stats = _PIECE_STATS.pack(
            len(ids),
            is_word,
            is_word and unigram is None,
            _DIGIT.search(token) is not None,
            token == "?",
            token == "!",
        )
        return self._store(token, (struct.pack(f"<{len(ids)}i", *ids), stats))

    def _piece(self, key: str) -> _Entry:
        """A whitespace chunk not in the cache, or a title's bigrams (``_BIGRAMS`` + the normalized
        title); cached."""
        if key[0] == _BIGRAMS:
            keys = map(_pair, itertools.pairwise(_TOKEN.findall(key[1:])))
            blob = b"".join(map(self._bigram_ids.get, keys, itertools.repeat(b"")))
            return self._store(key, (blob, _PIECE_STATS.pack(len(blob) // _IDS.itemsize, 0, 0, 0, 0, 0)))
        tokens = [key] if key.isalnum() else _TOKEN.findall(key)
        if len(tokens) == 1:  # the chunk is one token
            return self._token(key)
        cache = self._piece_cache
        parts = [cache.get(t) or self._token(t) for t in tokens]
        totals = map(sum, zip(*map(_PIECE_STATS.unpack, map(_second, parts)), strict=True))
        return self._store(key, (b"".join(map(_first, parts)), _PIECE_STATS.pack(*totals)))

    def _raw_piece(self, raw: str) -> _Entry:
        """A raw chunk not in the raw-chunk cache: the normalized chunks it becomes, joined (cached)."""
        chunks, _ = normalized_chunks(raw, NO_CUT)
        cache = self._piece_cache
        parts = [cache.get(c) or self._piece(c) for c in chunks]
        totals = map(sum, zip(*map(_PIECE_STATS.unpack, map(_second, parts)), strict=True))
        stats = _RAW_STATS.pack(
            *(list(totals) or [0] * _N_PIECE_STATS),
            len(chunks),
            sum(map(len, chunks)),
            _QUOTE.search(raw) is not None,
        )
        return self._store(raw, (b"".join(map(_first, parts)), stats), self._raw_cache)

    def _raw_titles(self, titles: list[str]) -> tuple[bytes, NDArray[np.int32]] | None:
        """The joined ids and the per-title statistics of new titles, from their raw chunks.

        Normalisation (NFKC, control characters to spaces, case folding) acts per character, never
        joins characters across whitespace and only ever splits a raw chunk further, so a title's
        normalized chunks are its raw chunks' normalized chunks in order: cached per raw chunk, a
        known word costs no normalisation at all. None when a title needs the cut at
        ``max_title_chars`` (or the pre-cut of the raw title), which only the normalized path does.
        """
        max_chars = self._config.max_title_chars
        if max(map(len, titles), default=0) > 2 * max_chars:
            return None
        keys = list(map(str.split, titles))
        all_keys = list(itertools.chain.from_iterable(keys))
        cache = self._raw_cache
        pieces = _fill_misses(list(map(cache.get, all_keys)), all_keys, cache, self._raw_piece)
        raw_stats = np.frombuffer(b"".join(map(_second, pieces)), dtype=_IDS).reshape(-1, _N_RAW_STATS)
        sums = _segment_sums(raw_stats, np.fromiter(map(len, keys), np.int32, len(keys)))
        stats = np.empty((len(titles), _N_TITLE_STATS), dtype=_IDS)
        stats[:, :_N_PIECE_STATS] = sums[:, :_N_PIECE_STATS]
        stats[:, _N_PIECE_STATS] = sums[:, _N_PIECE_STATS + 1] + np.maximum(sums[:, _N_PIECE_STATS] - 1, 0)
        if np.any(stats[:, _N_PIECE_STATS] > max_chars):
            return None
        stats[:, _N_PIECE_STATS + 1] = sums[:, _N_PIECE_STATS + 2] > 0
        return b"".join(map(_first, pieces)), stats

    def _raw_title(self, title: str) -> _Entry | None:
        """:meth:`_raw_titles` for one title, in plain Python (numpy calls cost more on one row)."""
        max_chars = self._config.max_title_chars
        if len(title) > 2 * max_chars:
            return None
        cache = self._raw_cache
        pieces = [cache.get(k) or self._raw_piece(k) for k in title.split()]
        totals = list(map(sum, zip(*map(_RAW_STATS.unpack, map(_second, pieces)), strict=True)))
        totals = totals or [0] * _N_RAW_STATS
        length = totals[_N_PIECE_STATS + 1] + max(totals[_N_PIECE_STATS] - 1, 0)
        if length > max_chars:
            return None
        row = _TITLE_STATS.pack(*totals[:_N_PIECE_STATS], length, totals[_N_PIECE_STATS + 2] > 0)
        return b"".join(map(_first, pieces)), row

    def _titles(self, titles: list[str]) -> tuple[list[_Entry], bytes, NDArray[np.int32]]:
        """Titles not in the cache, computed together (one join over all their chunks, counts
        summed per title in numpy) and cached: their entries, and their ids and statistics joined."""
        size = len(titles)
        if not self._bigrams:
            if size == 1:
                entry = self._raw_title(titles[0])
                if entry is not None:
                    self._cache_titles(titles, [entry])
                    return [entry], entry[0], np.frombuffer(entry[1], dtype=_IDS).reshape(1, _N_TITLE_STATS)
            else:
                found = self._raw_titles(titles)
                if found is not None:
                    return self._split_titles(titles, *found)
        max_chars = self._config.max_title_chars
        keys: list[list[str]] = []
        lengths: list[int] = []
        quotes: list[bool] = []
        for title in titles:
            chunks, length = normalized_chunks(title, max_chars)
            if self._bigrams and chunks:
                chunks.append(_BIGRAMS + " ".join(chunks))
            keys.append(chunks)
            lengths.append(length)
            quotes.append(
                ('"' in title or "'" in title) if title.isascii() else _QUOTE.search(title) is not None
            )
        all_keys = list(itertools.chain.from_iterable(keys))
        cache = self._piece_cache
        pieces = _fill_misses(list(map(cache.get, all_keys)), all_keys, cache, self._piece)
        blob = b"".join(map(_first, pieces))
        if size == 1:  # one event: Python sums cost less than the numpy calls
            totals = list(map(sum, zip(*map(_PIECE_STATS.unpack, map(_second, pieces)), strict=True)))
            row = _TITLE_STATS.pack(*(totals or [0] * _N_PIECE_STATS), lengths[0], quotes[0])
            self._cache_titles(titles, [(blob, row)])
            return [(blob, row)], blob, np.frombuffer(row, dtype=_IDS).reshape(1, _N_TITLE_STATS)
        piece_stats = np.frombuffer(b"".join(map(_second, pieces)), dtype=_IDS).reshape(-1, _N_PIECE_STATS)
        stats = np.empty((size, _N_TITLE_STATS), dtype=_IDS)
        stats[:, :_N_PIECE_STATS] = _segment_sums(piece_stats, np.fromiter(map(len, keys), np.int32, size))
        stats[:, _N_PIECE_STATS] = lengths
        stats[:, _N_PIECE_STATS + 1] = quotes
        return self._split_titles(titles, blob, stats)

    def _split_titles(
        self, titles: list[str], blob: bytes, stats: NDArray[np.int32]
    ) -> tuple[list[_Entry], bytes, NDArray[np.int32]]:
        """Cut the joined ids and statistics of new titles back into one entry per title (C-level
        slicing) and cache them."""
        size = len(titles)
        ends = stats[:, 0].cumsum() * _IDS.itemsize
        blobs = map(
            blob.__getitem__, map(slice, (ends - stats[:, 0] * _IDS.itemsize).tolist(), ends.tolist())
        )
        width = _N_TITLE_STATS * _IDS.itemsize
        packed = stats.tobytes()
        rows = map(
            packed.__getitem__,
            map(slice, range(0, size * width, width), range(width, size * width + 1, width)),
        )
        entries = list(zip(blobs, rows, strict=True))
        self._cache_titles(titles, entries)
        return entries, blob, stats

    def _cache_titles(self, titles: list[str], entries: list[_Entry]) -> None:
        if len(self._title_cache) + len(titles) > self._TITLE_CACHE_LIMIT:
            self._title_cache.clear()
        self._title_cache.update(zip(titles, entries, strict=True))

    def transform(
        self, titles: Sequence[str], categories: Sequence[str | None] | None = None
    ) -> FeatureBatch:
        """Featurize a batch (any size, including 0)."""
        size = len(titles)
        if categories is not None and len(categories) != size:
            raise ValueError(f"expected {size} categories, got {len(categories)}")
        found = list(map(self._title_cache.get, titles))
        missing = list(itertools.compress(range(size), map(operator.is_, found, itertools.repeat(None))))
        if len(missing) == size and size > 0:  # all new: the batch is already assembled
            _, blob, stats = self._titles(list(titles))
        else:
            if missing:
                for row, entry in zip(missing, self._titles([titles[i] for i in missing])[0], strict=True):
                    found[row] = entry
            entries = cast("list[_Entry]", found)  # no None left
            blob = b"".join(map(_first, entries))
            stats = np.frombuffer(b"".join(map(_second, entries)), dtype=_IDS).reshape(size, _N_TITLE_STATS)
        n_words = stats[:, 1].astype(np.float64)
        numeric = np.empty((size, len(NUMERIC_FEATURES)), dtype=np.float64)
        numeric[:, 0] = np.log1p(stats[:, 6])
        numeric[:, 1] = np.log1p(n_words)
        numeric[:, 2:5] = stats[:, 3:6] > 0
        numeric[:, 5] = stats[:, 7]
        unknown = np.zeros(size)
        np.divide(stats[:, 2], n_words, out=unknown, where=n_words > 0)
        token_counts = np.minimum(stats[:, 0], self._config.max_features_per_title)
        token_ids, token_weights = self._bags(np.frombuffer(blob, dtype=_IDS), stats[:, 0])
        if categories is None:
            category_ids = np.zeros(size, dtype=np.int64)
        else:
            category_ids = np.fromiter(
                (self._categories.get(c, 0) if c else 0 for c in categories), dtype=np.int64, count=size
            )
        numeric -= self._mean
        numeric /= self._std
        return FeatureBatch(
            token_ids=token_ids,
            token_weights=token_weights,
            category_ids=category_ids,
            numeric=numeric.astype(np.float32),
            n_chars=np.fromiter(map(len, titles), dtype=np.float64, count=size),
            n_words=n_words,
            unknown_share=unknown,
            category_known=category_ids > 0,
            token_counts=token_counts,
        )

    def _bags(
        self, ids: NDArray[np.int32], lengths: NDArray[np.int32]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Weight each feature occurrence by its IDF, L2-normalise per row, pad.

        A feature that occurs twice in a title appears twice in the bag, which
        the model sums: term frequency times IDF without sorting or counting.
        Only the first ``max_features_per_title`` features of a title are kept.
        """
        size = lengths.shape[0]
        if ids.shape[0] == 0:
            return np.zeros((size, 1), dtype=np.int64), np.zeros((size, 1), dtype=np.float32)
        cap = self._config.max_features_per_title
        width = int(lengths.max())
        if width > cap:  # drop the features beyond the cap (usually in few rows: slice around them)
            over = np.flatnonzero(lengths > cap)
            ends = lengths.cumsum()
            pieces, done = [], 0
            for row in over.tolist():
                pieces.append(ids[done : ends[row] - lengths[row] + cap])
                done = ends[row]
            pieces.append(ids[done:])
            ids = np.concatenate(pieces)
            lengths = np.minimum(lengths, cap)
            width = cap
        # Row-major boolean mask of occupied cells (row n of the prefix table is n Trues): assigning
        # the concatenated values through it puts each title's features, in order, at the start of its row.
        mask = self._prefixes[lengths, :width]
        token_ids = np.zeros(mask.shape, dtype=np.int64)
        token_ids[mask] = ids
        weights = np.take(self._idf, ids)
        norm = np.sqrt(_segment_sums(weights * weights, lengths))
        weights /= np.repeat(norm, lengths)
        token_weights = np.zeros(mask.shape, dtype=np.float32)
        token_weights[mask] = weights
        return token_ids, token_weights


_Summable = TypeVar("_Summable", np.int32, np.float64)
_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


def _fill_misses(
    found: list[_Value | None],
    keys: Sequence[_Key],
    cache: Mapping[_Key, _Value],
    compute: Callable[[_Key], _Value],
) -> list[_Value]:
    """Replace, in place, each ``None`` in ``found`` (an earlier lookup of ``keys`` in ``cache``)
    by the cached value, now that an earlier miss may have filled it, or else ``compute(key)``.

    The scan for ``None`` runs in C, so a batch that is mostly cached costs Python work only
    for its misses, and a key missing several times in a batch is computed once.
    """
    missing = itertools.compress(range(len(found)), map(operator.is_, found, itertools.repeat(None)))
    for at in missing:
        key = keys[at]
        found[at] = cache.get(key) or compute(key)
    return found  # type: ignore[return-value]  # no None left


def _segment_sums(values: NDArray[_Summable], lengths: NDArray[np.int32]) -> NDArray[_Summable]:
    """Sums (along the first axis, in ``values``' dtype) of consecutive segments of ``values``
    of the given lengths (an empty segment sums to 0)."""
    starts = lengths.cumsum() - lengths
    if values.shape[0] > 0 and np.minimum.reduce(lengths) > 0:
        sums: NDArray[_Summable] = np.add.reduceat(values, starts, axis=0, dtype=values.dtype)
        return sums
    out = np.zeros((lengths.shape[0], *values.shape[1:]), dtype=values.dtype)
    filled = lengths > 0
    if values.shape[0] > 0:
        out[filled] = np.add.reduceat(values, starts[filled], axis=0, dtype=values.dtype)
    return out
