"""Deterministic generator of the small English sample data the project ships.

The real data in ``../shared/data`` must never be committed, so the demo and the
tests use generated files with the same layouts:

* :func:`generate_seed_format`: tech/science news headlines with impressions and
  clicks, in exactly the column set and order of the seed ``train.csv``;
* :func:`generate_inference_format`: other headlines without any target-bearing
  column, like the seed ``inference.csv``;
* :func:`generate_ab_tests`: headline A/B tests in the layout of the Upworthy
  archive's ``packages.csv``.

Headlines are built from templates and small vocabularies, kept as package data
in ``training/sample_vocab.json`` (read and validated on first use). Every template
and every vocabulary entry carries an effect on a latent logit of the click-through
rate; questions, numbers, "you" and length add more, the category adds a level,
and substantial Gaussian noise keeps the signal learnable but far from trivial.
Clicks are then drawn as ``Binomial(impressions, ctr)``.

Everything is a pure function of the explicit seed (a numpy ``Generator`` per
call, no global random state), so :func:`write_samples` reproduces the shipped
files in ``headline_scorer/sample_data`` (byte for byte with the same numpy and maths
library; other platforms may differ in the last bit of a float).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib.resources
import logging
import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

logger = logging.getLogger(__name__)

__all__ = [
    "AB_TEST_COLUMNS",
    "INFERENCE_COLUMNS",
    "SAMPLE_FILES",
    "SEED_COLUMNS",
    "TARGET_COLUMNS",
    "VOCABULARY_FILE",
    "SampleVocabulary",
    "generate_ab_tests",
    "generate_inference_format",
    "generate_seed_format",
    "parse_vocabulary",
    "write_samples",
]

SEED_COLUMNS: tuple[str, ...] = (
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
)
"""Columns of the seed ``train.csv``, in file order."""

TARGET_COLUMNS: tuple[str, ...] = (
    "Impressions",
    "Url Clicks",
    "STR_High_Low",
    "CTR_per_cluster_avg",
    "URL CTR",
    "Log URL CTR",
    "Normalized URL CTR",
)
"""Seed columns known only after publication (or computed from the target)."""

INFERENCE_COLUMNS: tuple[str, ...] = tuple(c for c in SEED_COLUMNS if c not in TARGET_COLUMNS)
"""Columns of the seed ``inference.csv``, in file order."""

AB_TEST_COLUMNS: tuple[str, ...] = (
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
)
"""Columns of the Upworthy archive's ``packages.csv``, in file order."""

SAMPLE_FILES: Mapping[str, str] = {
    "train": "train.csv",
    "inference": "inference.csv",
    "ab_tests": "ab_tests.csv",
}
"""Keys returned by :func:`write_samples` and the file names they map to."""

# A vocabulary entry: its text and its effect on the latent CTR logit.
_Word = tuple[str, float]

_TRAIN_ID_RANGE = (14_600_000, 17_000_000)
_INFERENCE_ID_RANGE = (17_000_000, 17_600_000)  # disjoint from training: "later" articles
_BASE_LOGIT = math.log(0.055 / (1 - 0.055))
_NOISE_SD = 0.33
_UNCLUSTERED_SHARE = 0.3
_MAX_ATTEMPTS_PER_ROW = 60
_FORMATTER = string.Formatter()
_PREFIX_RATE = 0.15
_SUFFIX_RATE = 0.12
VOCABULARY_FILE = "sample_vocab.json"
"""The templates and vocabularies, package data beside this module."""


class _Link(BaseModel):
    """The dependent slot ``sets`` takes ``values[text of slot]``: e.g. a product's maker, so that
    headlines stay plausible."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    slot: str
    sets: str
    values: dict[str, str]


class _Category(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    relationship: str
    weight: float  # share of rows
    effect: float  # category level on the latent logit
    clusters: tuple[int, ...]  # topical clusters its templates fall into
    templates: tuple[_Word, ...]
    slots: dict[str, tuple[_Word, ...]]  # a category's own slots take priority over the global ones
    links: tuple[_Link, ...] = ()


class _AbVocabulary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    subjects: tuple[_Word, ...]
    actions: tuple[_Word, ...]  # with a {topic} slot
    topics: tuple[_Word, ...]
    framings: tuple[_Word, ...]  # with {subject}, {action}, {topic} and {n} slots
    lede_endings: tuple[str, ...]
    excerpts: tuple[str, ...]
    default_excerpt: str


class SampleVocabulary(BaseModel):
    """The tables of ``sample_vocab.json``; every entry's order matters (draws pick by index)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    global_slots: dict[str, tuple[_Word, ...]]
    categories: tuple[_Category, ...]
    prefixes: tuple[_Word, ...]
    suffixes: tuple[_Word, ...]
    keywords: dict[str, float]  # "hot" keywords of the derived keyword features: word -> strength
    ab_tests: _AbVocabulary

    @model_validator(mode="after")
    def _slots_resolve(self) -> SampleVocabulary:
        for category in self.categories:
            for template, _ in category.templates:
                missing = set(_slot_names(template)) - set(category.slots) - set(self.global_slots)
                if missing:
                    raise ValueError(f"{category.name}: template {template!r} has no slot {sorted(missing)}")
            for link in category.links:
                sources = dict(category.slots.get(link.slot) or self.global_slots.get(link.slot, ()))
                targets = dict(category.slots.get(link.sets) or self.global_slots.get(link.sets, ()))
                unmapped = set(sources) - set(link.values)
                unknown = set(link.values.values()) - set(targets)
                if unmapped or unknown:
                    raise ValueError(
                        f"{category.name}: link {link.slot!r} -> {link.sets!r} misses {sorted(unmapped)} "
                        f"or names values not in {link.sets!r}: {sorted(unknown)}"
                    )
        return self


def parse_vocabulary(text: str, source: str = VOCABULARY_FILE) -> SampleVocabulary:
    """Validate the JSON ``text`` of a vocabulary file; ``ValueError`` naming ``source`` and the fault."""
    try:
        return SampleVocabulary.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(f"invalid sample vocabulary {source}: {exc}") from exc


@functools.cache
def _vocabulary() -> SampleVocabulary:
    """The vocabularies shipped as package data (read once)."""
    resource = importlib.resources.files(__package__ or "training").joinpath(VOCABULARY_FILE)
    return parse_vocabulary(resource.read_text(encoding="utf-8"), str(resource))


_ARTICLE_RE = re.compile(r"\b([Aa]) (?=[AEIOUaeiou])(?!(?:[Oo]n(?:e|ce)|[Uu]ni|[Uu]s[eu]|[Ee]u))")
_WORD_RE = re.compile(r"[A-Za-z0-9']+")
_ORDINARY_PUNCTUATION = frozenset(".,:;?!'\"-")


# ---------------------------------------------------------------------------
# Headline construction
# ---------------------------------------------------------------------------
def _pick(rng: np.random.Generator, items: Sequence[_Word]) -> _Word:
    return items[int(rng.integers(len(items)))]


def _slot_names(template: str) -> list[str]:
    return [name for _, name, _, _ in _FORMATTER.parse(template) if name]


def _sentence_case(text: str) -> str:
    """Capitalize the first letter unless the first word is a brand like ``iPhone``."""
    first = text.split(" ", 1)[0]
    return text[:1].upper() + text[1:] if first.islower() else text


def _text_effect(title: str) -> float:
    """Effects of surface features shared by every format: questions, numbers, "you", length."""
    lower = title.lower()
    effect = 0.0
    if "?" in title:
        effect += 0.2
    if any(ch.isdigit() for ch in title):
        effect += 0.15
    if re.search(r"\byou(r)?\b", lower):
        effect += 0.25
    effect -= 0.012 * (len(title) - 55)
    return effect


def _make_title(rng: np.random.Generator, category: _Category) -> tuple[str, float, int]:
    """One headline of ``category``: its text, its content effect and its template index."""
    index = int(rng.integers(len(category.templates)))
    template, effect = category.templates[index]
    values: dict[str, str] = {}
    names = _slot_names(template)
    vocab = _vocabulary()
    sources = {link.slot for link in category.links}
    # Link sources first, so that their dependent slots are set rather than drawn.
    for name in sorted(set(names), key=lambda n: (n not in sources, names.index(n))):
        if name in values:
            continue
        vocabulary = category.slots.get(name) or vocab.global_slots[name]
        text, slot_effect = _pick(rng, vocabulary)
        values[name] = text
        effect += slot_effect
        for link in category.links:
            if link.slot == name and link.sets in names:
                dependent_vocabulary = dict(category.slots.get(link.sets) or vocab.global_slots[link.sets])
                values[link.sets] = link.values[text]
                effect += dependent_vocabulary[link.values[text]]
    title = _ARTICLE_RE.sub(r"\1n ", template.format(**values))
    plain = ":" not in title and "?" not in title and not title.startswith('"')
    if plain and rng.random() < _PREFIX_RATE:
        text, prefix_effect = _pick(rng, vocab.prefixes)
        title, effect = text + _sentence_case(title), effect + prefix_effect
    elif plain and rng.random() < _SUFFIX_RATE:
        text, suffix_effect = _pick(rng, vocab.suffixes)
        title, effect = title + text, effect + suffix_effect
    title = _sentence_case(title)
    return title, effect + _text_effect(title), index


@dataclass(frozen=True)
class _Headlines:
    titles: list[str]
    categories: list[_Category]
    effects: NDArray[np.float64]
    clusters: NDArray[np.int64]


def _partition(title: str) -> int:
    """0 or 1 from a stable hash of the title: training titles come from partition 0 and
    inference titles from partition 1, so the two samples never share a headline whatever
    their seeds."""
    return hashlib.blake2b(title.encode("utf-8"), digest_size=1).digest()[0] % 2


def _headlines(rng: np.random.Generator, n_rows: int, partition: int) -> _Headlines:
    """``n_rows`` distinct headlines of one title partition with their category, content
    effect and topical cluster."""
    all_categories = _vocabulary().categories
    weights = np.array([c.weight for c in all_categories])
    weights = weights / weights.sum()
    seen: set[str] = set()
    titles: list[str] = []
    categories: list[_Category] = []
    effects: list[float] = []
    clusters: list[int] = []
    attempts = 0
    while len(titles) < n_rows:
        attempts += 1
        if attempts > _MAX_ATTEMPTS_PER_ROW * n_rows:
            raise ValueError(f"cannot generate {n_rows} distinct headlines from the vocabularies")
        category = all_categories[int(rng.choice(len(all_categories), p=weights))]
        title, effect, template_index = _make_title(rng, category)
        if title in seen or _partition(title) != partition:
            continue
        seen.add(title)
        titles.append(title)
        categories.append(category)
        effects.append(effect + category.effect)
        topical = category.clusters[template_index % len(category.clusters)]
        clusters.append(-1 if rng.random() < _UNCLUSTERED_SHARE else topical)
    return _Headlines(
        titles=titles,
        categories=categories,
        effects=np.asarray(effects, dtype=np.float64),
        clusters=np.asarray(clusters, dtype=np.int64),
    )


# ---------------------------------------------------------------------------
# Derived (publication-time) columns
# ---------------------------------------------------------------------------
def _keyword_hits(title: str) -> list[float]:
    keywords = _vocabulary().keywords
    return [keywords[w] for w in (m.group(0).lower() for m in _WORD_RE.finditer(title)) if w in keywords]


def _special_char_count(title: str) -> int:
    """Characters that are not letters, digits, spaces or ordinary punctuation (``$ % & ( ) [ ]`` ...)."""
    return sum(1 for ch in title if not (ch.isalnum() or ch.isspace() or ch in _ORDINARY_PUNCTUATION))


def _derived_columns(titles: Sequence[str], clusters: NDArray[np.int64]) -> dict[str, pd.Series]:
    hits = [_keyword_hits(t) for t in titles]
    question = [int("?" in t) for t in titles]
    return {
        "word_count": pd.Series([len(t.split()) for t in titles], dtype="int64"),
        "character_count": pd.Series([len(t) for t in titles], dtype="int64"),
        "contains_number": pd.Series([int(any(ch.isdigit() for ch in t)) for t in titles], dtype="int64"),
        "contains_question": pd.Series(question, dtype="int64"),
        "contains_quote": pd.Series([int('"' in t) for t in titles], dtype="int64"),
        "special_char_count": pd.Series([_special_char_count(t) for t in titles], dtype="int64"),
        "cluster": pd.Series(clusters, dtype="int64"),
        # 1 - prod(1 - strength): in [0, 1), 0 without any keyword.
        "keyword_strength": pd.Series(
            [1.0 - math.prod(1.0 - 0.8 * s for s in h) for h in hits], dtype="float64"
        ),
        "is_question": pd.Series(question, dtype="int64"),
        "contains_keywords_score": pd.Series([len(h) for h in hits], dtype="int64"),
    }


def _unique_ids(rng: np.random.Generator, n_rows: int, bounds: tuple[int, int]) -> NDArray[np.int64]:
    low, high = bounds
    if n_rows > high - low:
        raise ValueError(f"n_rows={n_rows} exceeds the id range of {high - low} ids")
    return low + rng.choice(high - low, size=n_rows, replace=False).astype(np.int64)


def _check_rows(n_rows: int, name: str) -> None:
    if n_rows < 1:
        raise ValueError(f"{name} must be at least 1, got {n_rows}")


# ---------------------------------------------------------------------------
# Public generators
# ---------------------------------------------------------------------------
def _portable_floats(frame: pd.DataFrame) -> pd.DataFrame:
    """Float columns rounded to 12 significant digits.

    Vectorised ``log``/``exp`` may differ in the last bit between instruction sets, so unrounded
    values would make the generated files differ from machine to machine.
    """
    for column in frame.columns:
        if pd.api.types.is_float_dtype(frame[column]):
            frame[column] = [float(f"{value:.12g}") for value in frame[column]]
    return frame


def generate_seed_format(n_rows: int = 1200, seed: int = 7) -> pd.DataFrame:
    """Headlines with impressions and clicks, in the seed ``train.csv`` layout (:data:`SEED_COLUMNS`).

    ``Normalized URL CTR`` is ``log1p(URL CTR)`` min-max scaled over the frame,
    ``STR_High_Low`` flags a CTR above the median, and ``CTR_per_cluster_avg``
    is the mean ``Normalized URL CTR`` of the row's cluster (0.0 for the
    unclustered ``-1``, as in the real file): a leaky column on purpose.
    """
    _check_rows(n_rows, "n_rows")
    rng = np.random.default_rng(seed)
    heads = _headlines(rng, n_rows, partition=0)
    ids = _unique_ids(rng, n_rows, _TRAIN_ID_RANGE)
    logits = _BASE_LOGIT + heads.effects + rng.normal(0.0, _NOISE_SD, size=n_rows)
    ctr_true = 1.0 / (1.0 + np.exp(-logits))
    impressions = np.clip(np.rint(rng.lognormal(math.log(14_000), 0.85, size=n_rows)), 2_000, 80_000)
    impressions = impressions.astype(np.int64)
    clicks = rng.binomial(impressions, ctr_true).astype(np.int64)

    url_ctr = clicks / impressions
    log_ctr = np.log1p(url_ctr)
    spread = float(log_ctr.max() - log_ctr.min())
    normalized = (log_ctr - log_ctr.min()) / spread if spread > 0 else np.zeros(n_rows)
    high_low = (url_ctr > np.median(url_ctr)).astype(np.int64)
    cluster_mean = pd.Series(normalized).groupby(heads.clusters).transform("mean").to_numpy()
    cluster_avg = np.where(heads.clusters == -1, 0.0, cluster_mean)

    derived = _derived_columns(heads.titles, heads.clusters)
    frame = pd.DataFrame(
        {
            "id": pd.Series(ids, dtype="int64"),
            "post_title": heads.titles,
            "category_name": [c.name for c in heads.categories],
            "relationship": [c.relationship for c in heads.categories],
            "Impressions": pd.Series(impressions, dtype="int64"),
            "Url Clicks": pd.Series(clicks, dtype="int64"),
            **derived,
            "STR_High_Low": pd.Series(high_low, dtype="int64"),
            "CTR_per_cluster_avg": pd.Series(cluster_avg, dtype="float64"),
            "URL CTR": pd.Series(url_ctr, dtype="float64"),
            "Log URL CTR": pd.Series(log_ctr, dtype="float64"),
            "Normalized URL CTR": pd.Series(normalized, dtype="float64"),
        }
    )
    logger.debug("generated %d seed-format rows (seed %d)", n_rows, seed)
    return _portable_floats(frame.loc[:, list(SEED_COLUMNS)].copy())


def generate_inference_format(n_rows: int = 200, seed: int = 11) -> pd.DataFrame:
    """Headlines without any target-bearing column, in the seed ``inference.csv`` layout.

    Ids come from a range disjoint from :func:`generate_seed_format`'s, and titles
    from a disjoint hash partition, so neither ever collides with a training sample's.
    """
    _check_rows(n_rows, "n_rows")
    rng = np.random.default_rng(seed)
    heads = _headlines(rng, n_rows, partition=1)
    ids = _unique_ids(rng, n_rows, _INFERENCE_ID_RANGE)
    derived = _derived_columns(heads.titles, heads.clusters)
    frame = pd.DataFrame(
        {
            "id": pd.Series(ids, dtype="int64"),
            "post_title": heads.titles,
            "category_name": [c.name for c in heads.categories],
            "relationship": [c.relationship for c in heads.categories],
            **derived,
        }
    )
    logger.debug("generated %d inference-format rows (seed %d)", n_rows, seed)
    return _portable_floats(frame.loc[:, list(INFERENCE_COLUMNS)].copy())


# ---------------------------------------------------------------------------
# Upworthy-style A/B tests
# ---------------------------------------------------------------------------
_AB_PACKAGE_COUNTS = np.array([2, 3, 4, 5, 6])
_AB_PACKAGE_WEIGHTS = np.array([0.06, 0.08, 0.46, 0.2, 0.2])
_AB_IMAGE_ONLY_SHARE = 0.15  # tests that vary only the image
_AB_BASE_LOGIT = math.log(0.015 / (1 - 0.015))
_AB_START = dt.datetime(2013, 1, 14, tzinfo=dt.UTC)
_AB_END = dt.datetime(2015, 4, 26, tzinfo=dt.UTC)


def _title_case(text: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


def _object_id(when: dt.datetime, machine: str, counter: int) -> str:
    """A MongoDB-ObjectId-like 24-char hex id: timestamp, machine/process, counter."""
    return f"{int(when.timestamp()):08x}{machine}{counter & 0xFFFFFF:06x}"


def _p_value(clicks_a: int, imps_a: int, clicks_b: int, imps_b: int) -> float:
    """Two-sided p-value of a two-proportion z-test."""
    pooled = (clicks_a + clicks_b) / (imps_a + imps_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / imps_a + 1 / imps_b))
    if se == 0:
        return 1.0
    z = (clicks_a / imps_a - clicks_b / imps_b) / se
    return math.erfc(abs(z) / math.sqrt(2))


def _ab_story(rng: np.random.Generator) -> tuple[dict[str, str], float]:
    vocab = _vocabulary()
    subject, s_eff = _pick(rng, vocab.ab_tests.subjects)
    topic, t_eff = _pick(rng, vocab.ab_tests.topics)
    action_template, a_eff = _pick(rng, vocab.ab_tests.actions)
    action = action_template.format(topic=topic)
    n = _pick(rng, vocab.global_slots["n"])[0]
    return {"subject": subject, "action": action, "topic": topic, "n": n}, s_eff + t_eff + a_eff


def generate_ab_tests(n_tests: int = 150, seed: int = 13) -> pd.DataFrame:
    """Headline A/B tests in the Upworthy ``packages.csv`` layout (:data:`AB_TEST_COLUMNS`).

    Each test is one story with 2-6 packages: headline variants of the story
    (or, for a share of tests, one headline with different images). A test's
    CTR level comes from the story; within a test the headline's wording
    shifts it. ``first_place`` and ``winner`` mark the package with the best
    observed CTR; ``significance`` is 100 for it and otherwise the two-sided
    p-value (in percent) against it.
    """
    _check_rows(n_tests, "n_tests")
    rng = np.random.default_rng(seed)
    vocab = _vocabulary().ab_tests
    machines = [f"{int(v):010x}" for v in rng.integers(0, 2**40, size=4)]
    span = (_AB_END - _AB_START).total_seconds()
    created = sorted(_AB_START + dt.timedelta(seconds=float(s)) for s in rng.uniform(0.0, span, size=n_tests))
    columns: dict[str, list[object]] = {name: [] for name in AB_TEST_COLUMNS}
    row_id = 0
    test_counter = int(rng.integers(0, 2**20))
    image_counter = int(rng.integers(0, 2**20))
    for when in created:
        test_counter += 1
        test_id = _object_id(when, machines[int(rng.integers(len(machines)))], test_counter)
        iso = when.isocalendar()
        test_week = iso.year * 100 + iso.week
        story, story_effect = _ab_story(rng)
        k = int(rng.choice(_AB_PACKAGE_COUNTS, p=_AB_PACKAGE_WEIGHTS))
        image_only = rng.random() < _AB_IMAGE_ONLY_SHARE
        framing_idx = rng.choice(len(vocab.framings), size=1 if image_only else k, replace=False)
        variants: list[tuple[str, float]] = []
        for i in framing_idx:
            template, effect = vocab.framings[int(i)]
            headline = _title_case(_sentence_case(template.format(**story)))
            noise = float(rng.normal(0.0, 0.12))
            variants.append((headline, effect + _text_effect(headline) * 0.8 + noise))
        if image_only:
            variants = variants * k
        shared_image = not image_only and rng.random() < 0.7

        def image_id(ts: dt.datetime) -> str:
            nonlocal image_counter
            image_counter += 1
            machine = machines[int(rng.integers(len(machines)))]
            return _object_id(ts - dt.timedelta(hours=1), machine, image_counter)

        images = [image_id(when)] * k if shared_image else [image_id(when) for _ in range(k)]
        lede = (
            f"<p>{_sentence_case(story['subject'])} {story['action']}. "
            f"{vocab.lede_endings[int(rng.integers(len(vocab.lede_endings)))]}</p>"
        )
        roll = rng.random()
        excerpt: str | float = (
            vocab.default_excerpt
            if roll < 0.78
            else np.nan
            if roll < 0.9
            else vocab.excerpts[int(rng.integers(len(vocab.excerpts)))]
        )
        level = _AB_BASE_LOGIT + 0.6 * story_effect + float(rng.normal(0.0, 0.45))
        test_imps = float(rng.uniform(2_000, 10_000))
        imps: list[int] = []
        clicks: list[int] = []
        for headline_effect in (v[1] for v in variants):
            image_effect = float(rng.normal(0.0, 0.08))
            ctr = 1.0 / (1.0 + math.exp(-(level + headline_effect + image_effect)))
            n_imps = int(np.clip(round(test_imps * float(rng.normal(1.0, 0.04))), 2_000, 10_000))
            imps.append(n_imps)
            clicks.append(int(rng.binomial(n_imps, ctr)))
        rates = [c / i for c, i in zip(clicks, imps, strict=True)]
        best = int(np.argmax(rates))
        for j in range(k):
            significance = (
                100.0 if j == best else round(100 * _p_value(clicks[best], imps[best], clicks[j], imps[j]), 1)
            )
            row_id += int(rng.integers(1, 16))
            columns["row_id"].append(row_id)
            columns["clickability_test_id"].append(test_id)
            columns["headline"].append(variants[j][0])
            columns["lede"].append(lede)
            columns["excerpt"].append(excerpt)
            columns["impressions"].append(imps[j])
            columns["clicks"].append(clicks[j])
            columns["significance"].append(significance)
            columns["winner"].append(j == best)
            columns["first_place"].append(j == best)
            columns["test_week"].append(test_week)
            columns["eyecatcher_id"].append(images[j])
    frame = pd.DataFrame(
        {
            "row_id": pd.Series(columns["row_id"], dtype="int64"),
            "clickability_test_id": pd.Series(columns["clickability_test_id"], dtype="str"),
            "headline": pd.Series(columns["headline"], dtype="str"),
            "lede": pd.Series(columns["lede"], dtype="str"),
            "excerpt": pd.Series(columns["excerpt"], dtype="str"),
            "impressions": pd.Series(columns["impressions"], dtype="int64"),
            "clicks": pd.Series(columns["clicks"], dtype="int64"),
            "significance": pd.Series(columns["significance"], dtype="float64"),
            "winner": pd.Series(columns["winner"], dtype="bool"),
            "first_place": pd.Series(columns["first_place"], dtype="bool"),
            "test_week": pd.Series(columns["test_week"], dtype="int64"),
            "eyecatcher_id": pd.Series(columns["eyecatcher_id"], dtype="str"),
        }
    )
    logger.debug("generated %d A/B tests with %d packages (seed %d)", n_tests, len(frame), seed)
    return _portable_floats(frame.loc[:, list(AB_TEST_COLUMNS)].copy())


def write_samples(directory: Path) -> dict[str, Path]:
    """Write ``train.csv``, ``inference.csv`` and ``ab_tests.csv`` (default sizes and seeds).

    Files are UTF-8 with ``\\n`` line ends; floats (rounded to 12
    significant digits by the generators) are written with the shortest representation that
    round-trips. Returns the paths by key of
    :data:`SAMPLE_FILES`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    frames = {
        "train": generate_seed_format(),
        "inference": generate_inference_format(),
        "ab_tests": generate_ab_tests(),
    }
    written: dict[str, Path] = {}
    for key, frame in frames.items():
        path = directory / SAMPLE_FILES[key]
        frame.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")
        written[key] = path
        logger.info("wrote %s (%d rows)", path, len(frame))
    return written
