"""Tests of the deterministic sample-data generator (training/sample.py) and the shipped files."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from training.sample import (
    AB_TEST_COLUMNS,
    INFERENCE_COLUMNS,
    SAMPLE_FILES,
    SEED_COLUMNS,
    TARGET_COLUMNS,
    VOCABULARY_FILE,
    generate_ab_tests,
    generate_inference_format,
    generate_seed_format,
    parse_vocabulary,
    write_samples,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "headline_scorer" / "sample_data"
SHARED_DATA = REPO.parent / "shared" / "data"

EXPECTED_SEED_COLUMNS = [
    "id",
    "post_title",
    "category_name",
    "relationship",
    "Impressions",
    "Url Clicks",
    "word_count",
    "character_count",
    "contains_number",
    "contains_question",
    "contains_quote",
    "special_char_count",
    "cluster",
    "STR_High_Low",
    "CTR_per_cluster_avg",
    "keyword_strength",
    "is_question",
    "contains_keywords_score",
    "URL CTR",
    "Log URL CTR",
    "Normalized URL CTR",
]
EXPECTED_TARGET_COLUMNS = {
    "Impressions",
    "Url Clicks",
    "STR_High_Low",
    "CTR_per_cluster_avg",
    "URL CTR",
    "Log URL CTR",
    "Normalized URL CTR",
}
EXPECTED_INFERENCE_COLUMNS = [c for c in EXPECTED_SEED_COLUMNS if c not in EXPECTED_TARGET_COLUMNS]
EXPECTED_AB_COLUMNS = [
    "row_id",
    "clickability_test_id",
    "headline",
    "lede",
    "excerpt",
    "impressions",
    "clicks",
    "significance",
    "winner",
    "first_place",
    "test_week",
    "eyecatcher_id",
]
HEX24 = re.compile(r"[0-9a-f]{24}")


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return generate_seed_format()


@pytest.fixture(scope="module")
def inference() -> pd.DataFrame:
    return generate_inference_format()


@pytest.fixture(scope="module")
def ab_tests() -> pd.DataFrame:
    return generate_ab_tests()


# --- column sets -----------------------------------------------------------------------------
def test_column_constants() -> None:
    assert list(SEED_COLUMNS) == EXPECTED_SEED_COLUMNS
    assert set(TARGET_COLUMNS) == EXPECTED_TARGET_COLUMNS
    assert list(INFERENCE_COLUMNS) == EXPECTED_INFERENCE_COLUMNS
    assert list(AB_TEST_COLUMNS) == EXPECTED_AB_COLUMNS
    assert dict(SAMPLE_FILES) == {
        "train": "train.csv",
        "inference": "inference.csv",
        "ab_tests": "ab_tests.csv",
    }


def test_frames_have_exact_columns(
    train: pd.DataFrame, inference: pd.DataFrame, ab_tests: pd.DataFrame
) -> None:
    assert list(train.columns) == EXPECTED_SEED_COLUMNS
    assert list(inference.columns) == EXPECTED_INFERENCE_COLUMNS
    assert not EXPECTED_TARGET_COLUMNS & set(inference.columns)
    assert list(ab_tests.columns) == EXPECTED_AB_COLUMNS


def test_default_sizes(train: pd.DataFrame, inference: pd.DataFrame, ab_tests: pd.DataFrame) -> None:
    assert len(train) == 1200
    assert len(inference) == 200
    assert ab_tests["clickability_test_id"].nunique() == 150


# --- determinism -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("generate", "size"),
    [(generate_seed_format, 150), (generate_inference_format, 80), (generate_ab_tests, 20)],
    ids=["seed", "inference", "ab_tests"],
)
def test_deterministic_per_seed(generate: Callable[..., pd.DataFrame], size: int) -> None:
    first = generate(size, seed=3)
    assert_frame_equal(first, generate(size, seed=3), check_exact=True)
    assert not first.equals(generate(size, seed=4))


def test_rejects_empty_request() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        generate_seed_format(0)
    with pytest.raises(ValueError, match="at least 1"):
        generate_ab_tests(0)


# --- shipped files ---------------------------------------------------------------------------
def test_sample_dir_holds_only_the_three_csvs() -> None:
    assert sorted(p.name for p in SAMPLE_DIR.iterdir()) == sorted(SAMPLE_FILES.values())


def test_shipped_files_match_the_generator(
    train: pd.DataFrame, inference: pd.DataFrame, ab_tests: pd.DataFrame
) -> None:
    fresh = {"train": train, "inference": inference, "ab_tests": ab_tests}
    for key, name in SAMPLE_FILES.items():
        shipped = pd.read_csv(SAMPLE_DIR / name, encoding="utf-8")
        # Tight float tolerance: only last-bit libm differences across platforms may pass.
        assert_frame_equal(shipped, fresh[key], check_exact=False, rtol=1e-12, atol=0.0, obj=name)


def test_write_samples_round_trips(tmp_path: Path, train: pd.DataFrame, ab_tests: pd.DataFrame) -> None:
    written = write_samples(tmp_path / "out")
    assert set(written) == set(SAMPLE_FILES)
    for key, path in written.items():
        assert path == tmp_path / "out" / SAMPLE_FILES[key]
        assert path.read_bytes().decode("utf-8")
        assert b"\r\n" not in path.read_bytes()
    assert_frame_equal(pd.read_csv(written["train"]), train, check_exact=True)
    assert_frame_equal(pd.read_csv(written["ab_tests"]), ab_tests, check_exact=True)


# --- the vocabulary data file --------------------------------------------------------------
VOCABULARY_PATH = REPO / "training" / VOCABULARY_FILE


def test_vocabulary_file_is_package_data() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert VOCABULARY_FILE in pyproject["tool"]["setuptools"]["package-data"]["training"]
    vocabulary = parse_vocabulary(VOCABULARY_PATH.read_text(encoding="utf-8"))
    assert len(vocabulary.categories) == 8
    assert {c.name for c in vocabulary.categories} >= {"Tech News", "AI", "Technology & Science"}


def _vocabulary_json() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VOCABULARY_PATH.read_text(encoding="utf-8"))
    return data


def test_vocabulary_rejects_a_template_slot_without_words() -> None:
    data = _vocabulary_json()
    data["categories"][0]["templates"].append(["{gadget} is here", 0.1])
    with pytest.raises(ValueError, match=r"(?s)sample_vocab.json.*Tech News: .* no slot \['gadget'\]"):
        parse_vocabulary(json.dumps(data))


def test_vocabulary_rejects_a_link_that_misses_a_word() -> None:
    data = _vocabulary_json()
    del data["categories"][0]["links"][0]["values"]["Chrome"]
    with pytest.raises(ValueError, match=r"Tech News: link 'product' -> 'company' misses \['Chrome'\]"):
        parse_vocabulary(json.dumps(data))


def test_vocabulary_rejects_a_malformed_entry() -> None:
    data = _vocabulary_json()
    data["prefixes"] = [["Breaking: "]]
    with pytest.raises(ValueError, match=r"(?s)invalid sample vocabulary broken.json.*prefixes"):
        parse_vocabulary(json.dumps(data), "broken.json")


# --- seed format -----------------------------------------------------------------------------
def test_ids_unique_and_disjoint(train: pd.DataFrame, inference: pd.DataFrame) -> None:
    assert train["id"].is_unique
    assert inference["id"].is_unique
    assert not set(train["id"]) & set(inference["id"])
    assert not set(train["post_title"]) & set(inference["post_title"])
    assert train["post_title"].is_unique
    assert inference["post_title"].is_unique


def test_target_columns_are_consistent(train: pd.DataFrame) -> None:
    imps, clicks = train["Impressions"], train["Url Clicks"]
    assert imps.between(2_000, 80_000).all()
    assert ((clicks >= 0) & (clicks <= imps)).all()
    ctr = train["URL CTR"]
    # the generator rounds floats to 12 significant digits (portable files): allow that much
    np.testing.assert_allclose(ctr, clicks / imps, rtol=1e-11)
    np.testing.assert_allclose(train["Log URL CTR"], np.log1p(ctr), rtol=1e-11)
    norm = train["Normalized URL CTR"]
    assert norm.between(0.0, 1.0).all()
    assert norm.min() == 0.0
    assert norm.max() == 1.0
    log_ctr = np.log1p(ctr)
    np.testing.assert_allclose(norm, (log_ctr - log_ctr.min()) / (log_ctr.max() - log_ctr.min()), atol=1e-11)
    assert (train["STR_High_Low"] == (ctr > ctr.median()).astype("int64")).all()


def test_cluster_average_is_the_leaky_cluster_mean(train: pd.DataFrame) -> None:
    assert train["cluster"].between(-1, 9).all()
    assert set(train["cluster"]) >= {-1, 0, 5, 9}
    means = train.groupby("cluster")["Normalized URL CTR"].transform("mean")
    expected = means.where(train["cluster"] != -1, 0.0)
    np.testing.assert_allclose(train["CTR_per_cluster_avg"], expected, atol=1e-12)


def test_derived_columns_follow_the_title(train: pd.DataFrame, inference: pd.DataFrame) -> None:
    for frame in (train, inference):
        titles = frame["post_title"]
        assert (frame["word_count"] == titles.map(lambda t: len(t.split()))).all()
        assert (frame["character_count"] == titles.str.len()).all()
        assert (frame["contains_number"] == titles.str.contains(r"\d").astype("int64")).all()
        assert (frame["contains_question"] == titles.str.contains("?", regex=False).astype("int64")).all()
        assert (frame["contains_quote"] == titles.str.contains('"', regex=False).astype("int64")).all()
        assert (frame["is_question"] == frame["contains_question"]).all()
        assert frame["keyword_strength"].between(0.0, 1.0).all()
        assert frame["contains_keywords_score"].between(0, 10).all()
        assert (frame["special_char_count"] >= 0).all()
        assert set(frame["relationship"]) == {"Child Category", "Direct Category"}
        assert 6 <= frame["category_name"].nunique() <= 8


def test_signal_is_learnable_but_not_trivial(train: pd.DataFrame) -> None:
    y = (train["URL CTR"] > train["URL CTR"].median()).astype(int).to_numpy()
    x_fit, x_held, y_fit, y_held = train_test_split(
        train["post_title"].tolist(), y, test_size=0.3, random_state=0, stratify=y
    )
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
    model = LogisticRegression(C=4.0, max_iter=2000)
    model.fit(vectorizer.fit_transform(x_fit), y_fit)
    auc = roc_auc_score(y_held, model.predict_proba(vectorizer.transform(x_held))[:, 1])
    assert 0.7 < auc < 0.97, auc


# --- A/B tests -------------------------------------------------------------------------------
def test_ab_tests_structure(ab_tests: pd.DataFrame) -> None:
    sizes = ab_tests.groupby("clickability_test_id").size()
    assert sizes.between(2, 6).all()
    assert ab_tests["row_id"].is_unique
    assert ab_tests["clickability_test_id"].map(lambda s: bool(HEX24.fullmatch(s))).all()
    assert ab_tests["eyecatcher_id"].map(lambda s: bool(HEX24.fullmatch(s))).all()
    weeks = ab_tests["test_week"]
    assert weeks.between(201301, 201553).all()
    assert (weeks % 100).between(1, 53).all()
    assert ab_tests["impressions"].between(2_000, 10_000).all()
    assert ((ab_tests["clicks"] >= 0) & (ab_tests["clicks"] <= ab_tests["impressions"])).all()
    assert ab_tests["significance"].between(0.0, 100.0).all()


def test_ab_winner_is_the_best_package(ab_tests: pd.DataFrame) -> None:
    frame = ab_tests.assign(ctr=ab_tests["clicks"] / ab_tests["impressions"])
    for _, test in frame.groupby("clickability_test_id"):
        assert test["winner"].sum() == 1
        assert test["first_place"].sum() == 1
        assert test.loc[test["winner"], "ctr"].iloc[0] == test["ctr"].max()
        assert test["test_week"].nunique() == 1


def test_ab_tests_vary_headlines_and_images(ab_tests: pd.DataFrame) -> None:
    per_test = ab_tests.groupby("clickability_test_id").agg(
        headlines=("headline", "nunique"), images=("eyecatcher_id", "nunique"), size=("headline", "size")
    )
    image_only = per_test[per_test["headlines"] == 1]
    assert len(image_only) >= 5
    assert (image_only["images"] == image_only["size"]).all()
    assert (per_test["headlines"] > 1).mean() > 0.7


# --- against the real data (never committed; skipped when absent) ----------------------------
@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("seed/train.csv", EXPECTED_SEED_COLUMNS),
        ("seed/inference.csv", EXPECTED_INFERENCE_COLUMNS),
        ("upworthy/packages.csv", EXPECTED_AB_COLUMNS),
    ],
)
def test_columns_match_the_real_files(relative: str, expected: list[str]) -> None:
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    assert list(pd.read_csv(path, nrows=0).columns) == expected
