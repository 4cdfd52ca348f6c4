"""The featurizer's caches are bounded by bytes, whatever the titles (long unique tokens included).

Deterministic: the caches' own byte accounting, checked against the objects they hold
(``sys.getsizeof``) and against tracemalloc, never the process RSS (that is
``benchmarks/hostile_bench.py``'s job).
"""

from __future__ import annotations

import gc
import random
import string
import sys
import tracemalloc
from pathlib import Path

import pytest

from artifact.features import FeatureConfig, FeatureState, fit_feature_state
from artifact.featurizer import _SLICES_MAX_SIZE, Featurizer
from tests.test_export_features import ReferenceFeaturizer, _assert_same, _sample

MB = 1 << 20


def long_token_titles(count: int, seed: int = 0, low: int = 100, high: int = 1000) -> list[str]:
    """Titles that are one unique token of ``low``-``high`` letters and digits."""
    rnd = random.Random(seed)
    alphabet = string.ascii_lowercase + string.digits
    return [f"{i}" + "".join(rnd.choices(alphabet, k=rnd.randint(low, high))) for i in range(count)]


@pytest.fixture(scope="module")
def state(sample_dir: Path) -> FeatureState:
    titles, cats = _sample(sample_dir)
    # the serving default: unigrams and character 1-4-grams (no bigrams, so the raw-chunk path runs)
    return fit_feature_state(titles, cats, FeatureConfig(word_ngrams=(1, 1), char_ngrams=(1, 4)))


def _small(state: FeatureState) -> Featurizer:
    featurizer = Featurizer(state)
    featurizer.CHUNK_CACHE_BYTES = 512 * 1024
    featurizer.RAW_CACHE_BYTES = 512 * 1024
    featurizer.TITLE_CACHE_BYTES = 256 * 1024
    return featurizer


def _caps(featurizer: Featurizer) -> dict[str, int]:
    return {
        "chunks": featurizer.CHUNK_CACHE_BYTES,
        "raw_chunks": featurizer.RAW_CACHE_BYTES,
        "titles": featurizer.TITLE_CACHE_BYTES,
    }


def _held(cache: dict[str, tuple[bytes, bytes]]) -> int:
    """What the entries of ``cache`` hold, object by object (without the dict's own table)."""
    return sum(
        sys.getsizeof(k) + sys.getsizeof(v) + sys.getsizeof(v[0]) + sys.getsizeof(v[1])
        for k, v in cache.items()
    )


def test_long_unique_tokens_stay_under_the_byte_caps(state: FeatureState) -> None:
    featurizer = _small(state)
    # up to 250 characters the raw-chunk path takes them; longer ones go through the normalized path
    titles = [*long_token_titles(1500, low=40, high=250), *long_token_titles(1500, seed=9)]
    caps = _caps(featurizer)
    last = dict.fromkeys(caps, 0)
    emptied = dict.fromkeys(caps, 0)
    for start in range(0, len(titles), 64):
        featurizer.transform(titles[start : start + 64])
        for name, used in featurizer.cache_bytes().items():
            assert used <= caps[name], (name, used, caps[name])
            emptied[name] += used < last[name]
            last[name] = used
    # the input was far larger than the caps: they were reached and the caches emptied
    assert min(emptied.values()) >= 2, emptied
    assert max(featurizer._slices, default=0) <= _SLICES_MAX_SIZE  # no slice lists per long length


def test_the_accounting_is_an_upper_bound(state: FeatureState) -> None:
    featurizer = _small(state)
    featurizer.transform(long_token_titles(200, seed=1))
    featurizer.transform([f"short words {i} and more" for i in range(200)])
    featurizer.transform(["A raw path title, with several chunks: 12 words long and a quote 'x'"] * 3)
    counted = featurizer.cache_bytes()
    assert _held(featurizer._piece_cache) <= counted["chunks"]
    assert _held(featurizer._raw_cache) <= counted["raw_chunks"]
    assert _held(featurizer._title_cache) <= counted["titles"]


@pytest.mark.slow
def test_traced_memory_stays_within_the_caps(state: FeatureState) -> None:
    featurizer = _small(state)
    titles = long_token_titles(1000, seed=2)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for start in range(0, len(titles), 64):
            featurizer.transform(titles[start : start + 64])
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # the caches (bounded at 1.25 MB in all) plus a little working state
    assert grown <= sum(_caps(featurizer).values()) + 1 * MB, grown


def test_outputs_are_unchanged_while_the_caps_evict(state: FeatureState) -> None:
    featurizer = _small(state)
    featurizer.CHUNK_CACHE_BYTES = featurizer.RAW_CACHE_BYTES = featurizer.TITLE_CACHE_BYTES = 64 * 1024
    reference = ReferenceFeaturizer(state)
    titles = [
        *long_token_titles(40, seed=3, high=400),
        *(f"Mixed {t[:20]} title {t[20:30]}" for t in long_token_titles(40)),
    ]
    for start in range(0, len(titles), 16):
        batch = titles[start : start + 16]
        _assert_same(featurizer.transform(batch), reference.transform(batch))
    _assert_same(
        featurizer.transform(titles[:16]), reference.transform(titles[:16])
    )  # again, after evictions


def test_the_default_caps_leave_a_worker_room_under_500_mb() -> None:
    # a worker is ~230 MB before its caches fill (benchmarks/README.md); the caps are the rest's budget
    total = Featurizer.CHUNK_CACHE_BYTES + Featurizer.RAW_CACHE_BYTES + Featurizer.TITLE_CACHE_BYTES
    assert total <= 160 * MB
