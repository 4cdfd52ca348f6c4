"""The shared featurizer: fitted once, applied identically, robust to hostile titles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifact.errors import FeatureStateError
from artifact.features import (
    NUMERIC_FEATURES,
    FeatureConfig,
    FeatureState,
    fit_feature_state,
    normalize_title,
    title_features,
    tokenize,
)
from artifact.featurizer import Featurizer

TITLES = [
    "Why the new phone battery lasts 3 days",
    "Why the new laptop battery fails",
    "Scientists find water on Mars",
    "Scientists find ice on the Moon?",
    "מדענים מצאו מים על מאדים",
    "מדענים מצאו קרח על הירח",
]
CATEGORIES = ["Tech", "Tech", "Space", "Space", "חלל", None]


@pytest.fixture(scope="module")
def state() -> FeatureState:
    return fit_feature_state(TITLES, CATEGORIES, FeatureConfig(min_df=2))


def test_vocabulary_keeps_only_features_seen_in_min_df_titles(state: FeatureState) -> None:
    assert "w:why" in state.vocabulary and "w:battery" in state.vocabulary
    assert "w:mars" not in state.vocabulary  # one title only
    assert "w:מדענים" in state.vocabulary  # Hebrew words are tokens
    assert "b:scientists find" in state.vocabulary
    assert state.categories == ["Space", "Tech", "חלל"]
    assert len(state.idf) == len(state.vocabulary)


def test_tokenizer_is_unicode_aware_and_keeps_punctuation() -> None:
    assert tokenize(normalize_title("Hello, WORLD?! 😀 שלום", 100)) == [
        "hello",
        ",",
        "world",
        "?",
        "!",
        "😀",
        "שלום",
    ]
    assert normalize_title("a\x00b\x1fc\td", 100) == "a b c d"
    assert normalize_title("ＡＢＣ", 100) == "abc"  # NFKC folds full-width forms
    assert len(normalize_title("x" * 5000, 300)) == 300


def test_title_features_are_char_wb_style() -> None:
    feats = title_features(["cat"], FeatureConfig(char_ngrams=(3, 3), word_ngrams=(1, 1)))
    assert feats == ["w:cat", "c: ca", "c:cat", "c:at "]


def test_transform_shapes_weights_and_signals(state: FeatureState) -> None:
    featurizer = Featurizer(state)
    batch = featurizer.transform(TITLES[:3], CATEGORIES[:3])
    assert batch.token_ids.shape == batch.token_weights.shape
    assert batch.token_ids.dtype == np.int64 and batch.token_weights.dtype == np.float32
    norms = np.sqrt((batch.token_weights.astype(np.float64) ** 2).sum(axis=1))
    np.testing.assert_allclose(norms, 1.0, rtol=1e-6)
    assert np.all(batch.token_weights[batch.token_ids == 0] == 0)
    assert batch.numeric.shape == (3, len(NUMERIC_FEATURES))
    assert list(batch.category_ids) == [state.categories.index("Tech") + 1] * 2 + [
        state.categories.index("Space") + 1
    ]
    assert list(batch.n_words) == [8, 6, 5]
    assert batch.n_chars[0] == len(TITLES[0])
    assert batch.unknown_share[2] == pytest.approx(2 / 5)  # "water" and "mars" are unseen words


def test_unknown_category_and_unseen_text_map_to_zero(state: FeatureState) -> None:
    batch = Featurizer(state).transform(["zzzz qqqq"], ["Never seen"])
    assert batch.category_ids.tolist() == [0]
    assert not batch.category_known[0]
    assert batch.unknown_share[0] == 1.0
    assert np.all(batch.token_ids == 0)


def test_empty_batch_and_hostile_titles(state: FeatureState) -> None:
    featurizer = Featurizer(state)
    empty = featurizer.transform([], [])
    assert len(empty) == 0 and empty.token_ids.shape == (0, 1)
    hostile = ["", "x" * 5000, "😀" * 50, "\x00\x07\x1b[31m", "مرحبا שלום hello 你好", "\u202eevil\u202c"]
    batch = featurizer.transform(hostile, [None] * len(hostile))
    assert len(batch) == len(hostile)
    assert np.all(np.isfinite(batch.token_weights)) and np.all(np.isfinite(batch.numeric))
    assert batch.token_ids.shape[1] <= state.config.max_features_per_title


def test_transform_is_independent_of_batch_composition(state: FeatureState) -> None:
    featurizer = Featurizer(state)
    together = featurizer.transform(TITLES, CATEGORIES)
    for i, (title, cat) in enumerate(zip(TITLES, CATEGORIES, strict=True)):
        alone = Featurizer(state).transform([title], [cat])
        width = alone.token_ids.shape[1]
        np.testing.assert_array_equal(together.token_ids[i, :width], alone.token_ids[0])
        np.testing.assert_array_equal(together.token_weights[i, :width], alone.token_weights[0])
        np.testing.assert_array_equal(together.numeric[i], alone.numeric[0])


def test_state_round_trips_through_json_and_rejects_inconsistency(state: FeatureState) -> None:
    again = FeatureState.model_validate_json(state.model_dump_json())
    a = Featurizer(state).transform(TITLES, CATEGORIES)
    b = Featurizer(again).transform(TITLES, CATEGORIES)
    np.testing.assert_array_equal(a.token_ids, b.token_ids)
    np.testing.assert_array_equal(a.token_weights, b.token_weights)
    broken = state.model_dump()
    broken["idf"] = broken["idf"][:-1]
    with pytest.raises(FeatureStateError, match="idf"):
        FeatureState.model_validate(broken)
    with pytest.raises(FeatureStateError, match="zero titles"):
        fit_feature_state([], None)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(max_size=400), min_size=1, max_size=8))
def test_any_unicode_text_featurizes_finitely(state: FeatureState, titles: list[str]) -> None:
    batch = Featurizer(state).transform(titles)
    assert len(batch) == len(titles)
    assert np.all(np.isfinite(batch.token_weights))
    assert np.all((batch.token_ids >= 0) & (batch.token_ids < state.n_features))
    assert np.all((batch.unknown_share >= 0) & (batch.unknown_share <= 1))
