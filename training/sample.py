"""Deterministic generator of the small English sample data the project ships.

The real data in ``../shared/data`` must never be committed, so the demo and the
tests use generated files with the same layouts:

* :func:`generate_seed_format`: tech/science news headlines with impressions and
  clicks, in exactly the column set and order of the seed ``train.csv``;
* :func:`generate_inference_format`: other headlines without any target-bearing
  column, like the seed ``inference.csv``;
* :func:`generate_ab_tests`: headline A/B tests in the layout of the Upworthy
  archive's ``packages.csv``.

Headlines are built from templates and small vocabularies. Every template and
every vocabulary entry carries an effect on a latent logit of the click-through
rate; questions, numbers, "you" and length add more, the category adds a level,
and substantial Gaussian noise keeps the signal learnable but far from trivial.
Clicks are then drawn as ``Binomial(impressions, ctr)``.

Everything is a pure function of the explicit seed (a numpy ``Generator`` per
call, no global random state), so :func:`write_samples` reproduces the shipped
files in ``headline_scorer/sample_data`` byte for byte.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

__all__ = [
    "AB_TEST_COLUMNS",
    "INFERENCE_COLUMNS",
    "SAMPLE_FILES",
    "SEED_COLUMNS",
    "TARGET_COLUMNS",
    "generate_ab_tests",
    "generate_inference_format",
    "generate_seed_format",
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


@dataclass(frozen=True)
class _Category:
    name: str
    relationship: str
    weight: float  # share of rows
    effect: float  # category level on the latent logit
    clusters: tuple[int, ...]  # topical clusters its templates fall into
    templates: tuple[_Word, ...]
    slots: Mapping[str, tuple[_Word, ...]]
    # (slot, dependent slot) -> value of the dependent slot given the slot's text,
    # e.g. a product's maker, so that headlines stay plausible.
    links: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Vocabularies shared by all categories (a category's own slots take priority).
# ---------------------------------------------------------------------------
_GLOBAL_SLOTS: Mapping[str, tuple[_Word, ...]] = {
    "n": tuple((str(v), e) for v, e in ((3, 0.05), (5, 0.1), (7, 0.1), (10, 0.05), (12, 0.0), (15, 0.0))),
    "year": (("2025", 0.0), ("2026", 0.05), ("2027", 0.0), ("2030", 0.1)),
    "pct": (("4%", -0.1), ("9%", 0.0), ("12%", 0.0), ("18%", 0.05), ("27%", 0.1), ("40%", 0.15)),
    "money": (("$200 million", 0.0), ("$1.2 billion", 0.1), ("$4 billion", 0.1), ("$35 million", -0.05)),
    "price": (("$499", 0.0), ("$799", 0.05), ("$999", 0.1), ("$1,299", 0.1), ("$1,799", 0.15)),
    "market": (("Europe", 0.0), ("the US", 0.05), ("India", 0.0), ("Japan", 0.0), ("Israel", 0.05)),
    "quote": (
        ("This changes everything", 0.25),
        ("We made a mistake", 0.35),
        ("Nobody saw this coming", 0.3),
        ("It is not a bug, it is a feature", 0.15),
        ("The numbers speak for themselves", -0.15),
        ("We are cautiously optimistic", -0.3),
        ("We remain committed to our roadmap", -0.45),
        ("I was wrong", 0.3),
    ),
    "users": (
        ("millions of users", 0.1),
        ("iPhone owners", 0.15),
        ("Android users", 0.05),
        ("Windows users", -0.05),
        ("gamers", 0.05),
        ("enterprise customers", -0.35),
        ("parents", 0.15),
    ),
}

_TECH_NEWS = _Category(
    name="Tech News",
    relationship="Child Category",
    weight=0.34,
    effect=0.0,
    clusters=(0, 1),
    templates=(
        ("{company} {verb} {feature} in {product}", 0.0),
        ("{product} gets {feature}", -0.05),
        ("Using {product}? {company} has news for you", 0.25),
        ("{product} users: here is {feature} you should turn on now", 0.3),
        ("{company} reports quarterly results: revenue up {pct}", -0.55),
        ("Why did {company} remove {feature} from {product}?", 0.2),
        ("{company} confirms {product} update for {users}", -0.3),
        ("Official: {product} will cost {price} in {market}", 0.05),
        ("{n} {product} settings you should change right now", 0.35),
        ("{company} fined {money} over {product} privacy practices", -0.05),
        ("Report: {company} is working on {feature} for {product}", -0.15),
        ('"{quote}": {company} CEO on the future of {product}', 0.05),
        ("Goodbye {product}? {company} {verb} {feature}", 0.15),
        ("{company} {verb} {feature} for {users}", -0.05),
        ("The end of an era: {company} {verb} {feature}", 0.2),
    ),
    slots={
        "company": (
            ("Apple", 0.15),
            ("Samsung", 0.05),
            ("Google", 0.0),
            ("Microsoft", -0.05),
            ("Meta", 0.0),
            ("Amazon", -0.05),
            ("Xiaomi", 0.0),
            ("Intel", -0.2),
            ("Nvidia", 0.1),
            ("Sony", 0.0),
            ("OnePlus", -0.05),
            ("Netflix", 0.1),
        ),
        "product": (
            ("iPhone 16", 0.2),
            ("Galaxy S25", 0.05),
            ("Pixel 9", 0.0),
            ("Windows 11", -0.1),
            ("WhatsApp", 0.25),
            ("Chrome", -0.05),
            ("Gmail", 0.0),
            ("Instagram", 0.15),
            ("YouTube", 0.05),
            ("Apple Watch", 0.05),
            ("AirPods", 0.05),
            ("Android 15", -0.05),
            ("Outlook", -0.25),
            ("Alexa", 0.0),
            ("Prime Video", 0.05),
            ("HyperOS", -0.1),
            ("GeForce Now", -0.2),
            ("PlayStation Plus", 0.1),
            ("OxygenOS", -0.1),
            ("Arc Control", -0.15),
            ("the Netflix app", 0.1),
        ),
        "feature": (
            ("a hidden feature", 0.35),
            ("a new privacy setting", 0.0),
            ("end-to-end encryption", -0.1),
            ("a long-awaited dark mode", 0.1),
            ("satellite messaging", 0.1),
            ("an ad-free subscription", -0.05),
            ("a battery-saving mode", 0.15),
            ("a security patch", -0.35),
            ("a firmware update", -0.4),
            ("a redesigned home screen", 0.05),
            ("a secret menu", 0.4),
            ("a paid tier", -0.1),
        ),
        "verb": (
            ("launches", 0.0),
            ("quietly removes", 0.3),
            ("finally adds", 0.35),
            ("is testing", -0.05),
            ("announces", -0.2),
            ("delays", 0.0),
            ("rolls out", -0.15),
            ("kills", 0.3),
            ("brings back", 0.2),
        ),
    },
    links={
        ("product", "company"): {
            "iPhone 16": "Apple",
            "Galaxy S25": "Samsung",
            "Pixel 9": "Google",
            "Windows 11": "Microsoft",
            "WhatsApp": "Meta",
            "Chrome": "Google",
            "Gmail": "Google",
            "Instagram": "Meta",
            "YouTube": "Google",
            "Apple Watch": "Apple",
            "AirPods": "Apple",
            "Android 15": "Google",
            "Outlook": "Microsoft",
            "Alexa": "Amazon",
            "Prime Video": "Amazon",
            "HyperOS": "Xiaomi",
            "GeForce Now": "Nvidia",
            "PlayStation Plus": "Sony",
            "OxygenOS": "OnePlus",
            "Arc Control": "Intel",
            "the Netflix app": "Netflix",
        }
    },
)

_SPACE = _Category(
    name="Space & Science",
    relationship="Child Category",
    weight=0.14,
    effect=0.15,
    clusters=(2,),
    templates=(
        ("{agency} detects {finding} on {body}", 0.0),
        ("{agency} spots {finding} near {body}: what does it mean?", 0.2),
        ("Scientists are baffled: {finding} on {body}", 0.25),
        ("{launcher} postpones the launch of its {world} mission", -0.3),
        ("A once-in-{n}-years event: how to see {event} tonight", 0.3),
        ("Watch: {launcher} rocket {outcome}", 0.15),
        ("{body} is stranger than we thought, says {agency}", 0.1),
        ("Will humans ever live on {world}?", 0.2),
        ("{agency} publishes updated orbital data for {body}", -0.5),
        ("New images from {agency} show {finding} on {body}", 0.1),
        ("{agency} confirms {finding} on {body} in {year}", -0.05),
        ("You can see {event} this week without a telescope", 0.35),
    ),
    slots={
        "agency": (
            ("NASA", 0.1),
            ("SpaceX", 0.15),
            ("ESA", -0.1),
            ("the James Webb telescope", 0.2),
            ("China's space agency", 0.0),
            ("Blue Origin", -0.05),
            ("ISRO", 0.0),
            ("the Hubble telescope", 0.1),
        ),
        "body": (
            ("Mars", 0.1),
            ("the Moon", 0.05),
            ("Jupiter's moon Europa", 0.05),
            ("Saturn's rings", 0.0),
            ("a distant exoplanet", 0.05),
            ("Venus", 0.0),
            ("asteroid Bennu", -0.05),
            ("an interstellar comet", 0.1),
            ("Titan", -0.05),
        ),
        "launcher": (
            ("NASA", 0.1),
            ("SpaceX", 0.15),
            ("ESA", -0.1),
            ("ISRO", 0.0),
            ("Blue Origin", -0.05),
            ("Rocket Lab", 0.0),
        ),
        "world": (
            ("Mars", 0.1),
            ("the Moon", 0.05),
            ("Venus", 0.0),
            ("Titan", 0.0),
            ("Europa", 0.05),
        ),
        "finding": (
            ("something strange", 0.4),
            ("water ice", 0.1),
            ("a mysterious signal", 0.4),
            ("organic molecules", 0.0),
            ("a giant storm", 0.1),
            ("unexpected radiation", 0.0),
            ("a hidden ocean", 0.3),
            ("signs of ancient rivers", 0.1),
            ("methane traces", -0.15),
        ),
        "event": (
            ("a rare planetary alignment", 0.15),
            ("a meteor shower", 0.1),
            ("a green comet", 0.2),
            ("a total solar eclipse", 0.15),
            ("the northern lights", 0.2),
            ("a supermoon", 0.05),
        ),
        "outcome": (
            ("explodes after launch", 0.35),
            ("lands on a drone ship", 0.05),
            ("reaches orbit for the first time", 0.1),
            ("is scrubbed minutes before launch", 0.0),
            ("returns astronauts home", 0.05),
        ),
    },
)

_RESEARCH = _Category(
    name="Research",
    relationship="Child Category",
    weight=0.1,
    effect=0.05,
    clusters=(3,),
    templates=(
        ("{who} link {subject} to {outcome}", 0.0),
        ("Does {subject} really cause {outcome}? A new study answers", 0.25),
        ("{who} found that {subject} may protect against {outcome}", 0.05),
        ("The surprising connection between {subject} and {outcome}", 0.3),
        ("Study of {n},000 people: {subject} and {outcome} are connected", 0.05),
        ("Preliminary findings on {subject} and {outcome} published in a journal", -0.45),
        ("This is what {subject} does to your brain", 0.4),
        ("{who} release a dataset on {subject}", -0.5),
        ("Is {subject} good or bad for you? The answer is complicated", 0.3),
        ("{who} followed {n},000 volunteers: {subject} predicts {outcome}", 0.0),
    ),
    slots={
        "who": (
            ("Researchers", 0.0),
            ("Scientists at MIT", 0.05),
            ("Harvard researchers", 0.05),
            ("Israeli scientists", 0.0),
            ("Japanese researchers", 0.0),
            ("Oxford scientists", 0.0),
            ("A consortium of universities", -0.25),
        ),
        "subject": (
            ("coffee", 0.2),
            ("sleep", 0.2),
            ("chocolate", 0.3),
            ("social media", 0.1),
            ("remote work", 0.0),
            ("microplastics", 0.05),
            ("loneliness", 0.1),
            ("owning a dog", 0.25),
            ("video games", 0.1),
            ("intermittent fasting", 0.1),
            ("walking", 0.05),
            ("gut bacteria", -0.05),
            ("protein folding", -0.35),
            ("soil fungi", -0.3),
        ),
        "outcome": (
            ("a longer life", 0.2),
            ("memory loss", 0.1),
            ("better sleep", 0.1),
            ("heart disease", 0.0),
            ("depression", 0.0),
            ("weight gain", 0.1),
            ("lower productivity", -0.1),
            ("enzyme activity", -0.45),
            ("dementia", 0.05),
        ),
    },
)

_GAMING = _Category(
    name="Gaming",
    relationship="Child Category",
    weight=0.08,
    effect=0.1,
    clusters=(4,),
    templates=(
        ("{game} {news}", 0.0),
        ("{game} on {platform}: everything you need to know", 0.2),
        ("Is {platform} worth it for {game}?", 0.1),
        ("{n} hidden details in {game} you probably missed", 0.35),
        ("Trailer: {game} {news}", -0.1),
        ("Official: {game} is coming to {platform}", 0.05),
        ("{game} patch {version} changelog", -0.55),
        ("We played {game} on {platform} for {n} hours", 0.15),
        ("Rumor: {game} {news}", 0.1),
    ),
    slots={
        "game": (
            ("GTA 6", 0.35),
            ("The Legend of Zelda", 0.15),
            ("Elden Ring", 0.1),
            ("Minecraft", 0.1),
            ("Fortnite", 0.05),
            ("Call of Duty", 0.0),
            ("Cyberpunk 2077", 0.05),
            ("Hollow Knight: Silksong", 0.1),
            ("The Sims 5", 0.05),
            ("EA Sports FC", -0.05),
            ("Starfield", -0.1),
            ("Baldur's Gate 3", 0.05),
        ),
        "platform": (
            ("PS5 Pro", 0.1),
            ("Nintendo Switch 2", 0.25),
            ("Xbox Series X", -0.05),
            ("Steam Deck", 0.05),
            ("PC", -0.05),
        ),
        "news": (
            ("gets a release date", 0.3),
            ("is delayed again", 0.1),
            ("leaks online", 0.35),
            ("receives a free update", 0.0),
            ("patch notes are out", -0.35),
            ("breaks sales records", 0.1),
            ("gets a price cut", 0.15),
            ("drops support for older consoles", -0.1),
        ),
        "version": (("1.0.4", 0.0), ("2.1", 0.0), ("1.12", 0.0), ("3.0.2", 0.0)),
    },
)

_REVIEWS = _Category(
    name="Reviews",
    relationship="Child Category",
    weight=0.06,
    effect=-0.2,
    clusters=(5,),
    templates=(
        ("{device} review: {verdict}", -0.2),
        ("We tested the {device} for {n} weeks: {verdict}", 0.15),
        ("Is the {device} worth the price?", 0.1),
        ("{device} vs {device2}: which one should you buy?", 0.25),
        ("Hands-on with the {device}: first impressions", -0.15),
        ("{device} long-term review", -0.35),
        ("{device} review: {verdict} at {price}", -0.1),
    ),
    slots={
        "device": (
            ("Galaxy Z Fold 6", 0.1),
            ("iPhone 16 Pro", 0.2),
            ("Pixel 9 Pro", 0.0),
            ("MacBook Air M3", 0.1),
            ("Sony WH-1000XM5", 0.0),
            ("Kindle Scribe", -0.1),
            ("Dell XPS 14", -0.1),
            ("Xiaomi 14T", 0.0),
            ("OnePlus 12", -0.05),
            ("Apple Vision Pro", 0.2),
            ("Garmin Fenix 8", -0.1),
            ("Roborock S8", 0.0),
        ),
        "device2": (
            ("Galaxy S25 Ultra", 0.05),
            ("iPhone 15", 0.1),
            ("Pixel 8a", 0.0),
            ("Surface Laptop 7", -0.05),
            ("Meta Quest 3", 0.05),
        ),
        "verdict": (
            ("the best one yet", 0.1),
            ("almost perfect", 0.15),
            ("a disappointing upgrade", 0.25),
            ("expensive but worth it", 0.05),
            ("not for everyone", 0.0),
            ("the one to beat", 0.0),
            ("a solid choice", -0.25),
            ("incremental improvements", -0.35),
        ),
    },
)

_ARCHAEOLOGY = _Category(
    name="Archaeology",
    relationship="Child Category",
    weight=0.07,
    effect=0.2,
    clusters=(6,),
    templates=(
        ("Archaeologists uncover a {age} {find} in {place}", 0.0),
        ("A {age} {find} found in {place} rewrites history", 0.3),
        ("Hiker stumbles upon a {age} {find} in {place}", 0.35),
        ("Excavation report: {age} {find} documented in {place}", -0.5),
        ("What was this {age} {find} from {place} used for?", 0.2),
        ("Divers discover a {age} {find} off the coast of {place}", 0.15),
        ("A {age} {find} in {place} is finally explained", 0.1),
    ),
    slots={
        "age": (
            ("2,000-year-old", 0.0),
            ("3,500-year-old", 0.05),
            ("Bronze Age", 0.0),
            ("Roman-era", 0.05),
            ("medieval", 0.0),
            ("Stone Age", 0.05),
            ("Viking", 0.15),
            ("ancient Egyptian", 0.15),
            ("Mayan", 0.1),
        ),
        "find": (
            ("tomb", 0.15),
            ("shipwreck", 0.2),
            ("hoard of gold coins", 0.25),
            ("sword", 0.1),
            ("skeleton", 0.15),
            ("mosaic", -0.1),
            ("set of pottery fragments", -0.35),
            ("temple", 0.05),
            ("burial site", 0.05),
            ("inscription", -0.05),
            ("board game", 0.2),
            ("sarcophagus", 0.15),
        ),
        "place": (
            ("Egypt", 0.05),
            ("Israel", 0.05),
            ("Peru", 0.0),
            ("Scotland", 0.0),
            ("Turkey", 0.0),
            ("Mexico", 0.0),
            ("Denmark", 0.0),
            ("Greece", 0.0),
            ("Italy", 0.0),
            ("Jordan", 0.0),
            ("a farmer's field", 0.2),
        ),
    },
)

_AI = _Category(
    name="AI",
    relationship="Child Category",
    weight=0.11,
    effect=0.1,
    clusters=(7, 8),
    templates=(
        ("We asked {ai} to {task}. The results surprised us", 0.35),
        ("{ai} can now {task}", 0.05),
        ("Can {ai} really {task}?", 0.15),
        ("{ai} update adds the ability to {task}", -0.2),
        ("Experts warn: {ai} could soon {task}", 0.15),
        ("{ai} API pricing changes for developers in {year}", -0.55),
        ("How to use {ai} to {task}", 0.1),
        ('"{quote}": the team behind {ai} on the next model', 0.0),
        ("{n} ways {ai} will help you {task}", 0.25),
        ("{ai} failed to {task}, and the reason is fascinating", 0.3),
    ),
    slots={
        "ai": (
            ("ChatGPT", 0.2),
            ("OpenAI", 0.1),
            ("Google Gemini", 0.0),
            ("Claude", 0.0),
            ("Meta's Llama", -0.05),
            ("Microsoft Copilot", -0.05),
            ("Midjourney", 0.05),
            ("an AI chatbot", 0.05),
            ("Grok", 0.0),
            ("DeepSeek", 0.1),
        ),
        "task": (
            ("write code", 0.0),
            ("pass the bar exam", 0.2),
            ("diagnose diseases", 0.15),
            ("create videos", 0.1),
            ("replace programmers", 0.3),
            ("plan a vacation", 0.15),
            ("summarize meetings", -0.2),
            ("fill out spreadsheets", -0.3),
            ("predict the weather", 0.0),
            ("talk to animals", 0.3),
            ("read handwriting", -0.05),
        ),
    },
)

_TECH_SCIENCE = _Category(
    name="Technology & Science",
    relationship="Direct Category",
    weight=0.1,
    effect=0.0,
    clusters=(9,),
    templates=(
        ("Inspired by {nature}: scientists develop {tech}", 0.1),
        ("The future of {tech} is already here", 0.1),
        ("How {tech} will change your life", 0.3),
        ("A startup from {market} unveils a breakthrough in {tech}", 0.0),
        ("The race for {tech}: who is winning?", 0.15),
        ("New standards for {tech} take effect in {year}", -0.45),
        ("Why {tech} could fail", 0.1),
        ("{n} things you did not know about {tech}", 0.3),
        ("Engineers test {tech} in {market}", -0.15),
    ),
    slots={
        "tech": (
            ("solid-state batteries", 0.1),
            ("quantum computers", 0.1),
            ("humanoid robots", 0.15),
            ("electric cars", 0.05),
            ("nuclear fusion", 0.1),
            ("lab-grown meat", 0.1),
            ("smart glasses", 0.0),
            ("delivery drones", 0.0),
            ("brain implants", 0.2),
            ("5G networks", -0.2),
            ("hydrogen planes", 0.0),
            ("smart meters", -0.3),
        ),
        "nature": (
            ("sea sponges", 0.1),
            ("spider silk", 0.1),
            ("gecko feet", 0.1),
            ("bird wings", 0.0),
            ("octopus skin", 0.15),
        ),
    },
)

_CATEGORIES: tuple[_Category, ...] = (
    _TECH_NEWS,
    _SPACE,
    _RESEARCH,
    _GAMING,
    _REVIEWS,
    _ARCHAEOLOGY,
    _AI,
    _TECH_SCIENCE,
)

_PREFIXES: tuple[_Word, ...] = (
    ("Breaking: ", 0.05),
    ("Watch: ", 0.1),
    ("Exclusive: ", 0.15),
    ("Update: ", -0.2),
    ("Analysis: ", -0.25),
)
_SUFFIXES: tuple[_Word, ...] = (
    (" (video)", 0.1),
    (", and it is not what you think", 0.25),
    (": here is why it matters", 0.05),
    (" [updated]", -0.2),
    (" - details inside", -0.05),
)
_PREFIX_RATE = 0.15
_SUFFIX_RATE = 0.12

# "Hot" keywords of the derived keyword features: word -> strength.
_KEYWORDS: Mapping[str, float] = {
    "ai": 1.0,
    "chatgpt": 0.9,
    "openai": 0.7,
    "iphone": 0.8,
    "apple": 0.6,
    "samsung": 0.5,
    "galaxy": 0.4,
    "google": 0.5,
    "nasa": 0.7,
    "spacex": 0.6,
    "mars": 0.6,
    "nvidia": 0.5,
    "whatsapp": 0.6,
    "study": 0.3,
    "new": 0.2,
    "gta": 0.7,
    "nintendo": 0.5,
    "robots": 0.4,
    "ancient": 0.4,
    "secret": 0.5,
}
# "a ancient" -> "an ancient" (but "a once-in-...", "a unique", "a European" keep "a")
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
    sources = {source for source, _ in category.links}
    # Link sources first, so that their dependent slots are set rather than drawn.
    for name in sorted(set(names), key=lambda n: (n not in sources, names.index(n))):
        if name in values:
            continue
        vocabulary = category.slots.get(name) or _GLOBAL_SLOTS[name]
        text, slot_effect = _pick(rng, vocabulary)
        values[name] = text
        effect += slot_effect
        for (source, dependent), table in category.links.items():
            if source == name and dependent in names:
                dependent_vocabulary = dict(category.slots.get(dependent) or _GLOBAL_SLOTS[dependent])
                values[dependent] = table[text]
                effect += dependent_vocabulary[table[text]]
    title = _ARTICLE_RE.sub(r"\1n ", template.format(**values))
    plain = ":" not in title and "?" not in title and not title.startswith('"')
    if plain and rng.random() < _PREFIX_RATE:
        text, prefix_effect = _pick(rng, _PREFIXES)
        title, effect = text + _sentence_case(title), effect + prefix_effect
    elif plain and rng.random() < _SUFFIX_RATE:
        text, suffix_effect = _pick(rng, _SUFFIXES)
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
    weights = np.array([c.weight for c in _CATEGORIES])
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
        category = _CATEGORIES[int(rng.choice(len(_CATEGORIES), p=weights))]
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
    return [_KEYWORDS[w] for w in (m.group(0).lower() for m in _WORD_RE.finditer(title)) if w in _KEYWORDS]


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
    return frame.loc[:, list(SEED_COLUMNS)]


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
    return frame.loc[:, list(INFERENCE_COLUMNS)]


# ---------------------------------------------------------------------------
# Upworthy-style A/B tests
# ---------------------------------------------------------------------------
_AB_SUBJECTS: tuple[_Word, ...] = (
    ("a 12-year-old girl", 0.15),
    ("this teacher", 0.05),
    ("a retired firefighter", 0.05),
    ("one grandmother", 0.15),
    ("these high school students", 0.05),
    ("a young scientist", 0.0),
    ("a small-town mayor", -0.05),
    ("a single dad", 0.1),
    ("a nurse", 0.05),
    ("a stand-up comedian", 0.1),
    ("a former senator", -0.15),
    ("a group of veterans", 0.0),
)
_AB_ACTIONS: tuple[_Word, ...] = (
    ("explained {topic} in under 3 minutes", 0.15),
    ("gave a speech about {topic}", -0.1),
    ("asked one simple question about {topic}", 0.15),
    ("made a short film about {topic}", 0.0),
    ("started a movement to fight {topic}", 0.05),
    ("raised $50,000 to tackle {topic}", 0.05),
    ("wrote an open letter about {topic}", -0.1),
    ("drew a comic about {topic}", 0.1),
    ("told Congress the truth about {topic}", 0.2),
)
_AB_TOPICS: tuple[_Word, ...] = (
    ("climate change", 0.0),
    ("student debt", 0.05),
    ("homelessness", 0.0),
    ("the gender pay gap", 0.05),
    ("food waste", -0.05),
    ("bullying", 0.1),
    ("loneliness", 0.1),
    ("child poverty", 0.0),
    ("racism", 0.05),
    ("plastic pollution", -0.05),
    ("mental illness stigma", 0.05),
    ("animal cruelty", 0.1),
)
_AB_FRAMINGS: tuple[_Word, ...] = (
    ("{subject} {action}", 0.0),
    ("{subject} {action}. What happened next is amazing.", 0.25),
    ("You won't believe what {subject} did about {topic}", 0.35),
    ("Watch {subject} take on {topic}", 0.1),
    ("Here's what happened when {subject} {action}", 0.2),
    ("Why is nobody talking about {topic}?", 0.15),
    ("The truth about {topic} is not what you think", 0.2),
    ("{n} facts about {topic} that will change how you see it", 0.25),
    ("A report on {topic} and what it means", -0.3),
    ("New data on {topic} released", -0.4),
    ("{subject} has something to say about {topic}", 0.0),
    ("If you care about {topic}, you need to see this", 0.3),
    ("Meet {subject} who {action}", 0.1),
    ("{topic}: an overview", -0.45),
)
_AB_LEDE_ENDINGS: tuple[str, ...] = (
    "It took only a few minutes to change how I think about it.",
    "I did not expect to be this moved.",
    "Some things are worth sharing.",
    "The last part is the one everyone should hear.",
    "It is simpler than it sounds, and it matters.",
)
_AB_EXCERPTS: tuple[str, ...] = (
    "Watch it before you scroll on.",
    "This one is worth your time.",
    "Things that matter. Pass 'em on. #PromotedPost",
)
_AB_DEFAULT_EXCERPT = "Things that matter. Pass 'em on."
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
    subject, s_eff = _pick(rng, _AB_SUBJECTS)
    topic, t_eff = _pick(rng, _AB_TOPICS)
    action_template, a_eff = _pick(rng, _AB_ACTIONS)
    action = action_template.format(topic=topic)
    n = _pick(rng, _GLOBAL_SLOTS["n"])[0]
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
        framing_idx = rng.choice(len(_AB_FRAMINGS), size=1 if image_only else k, replace=False)
        variants: list[tuple[str, float]] = []
        for i in framing_idx:
            template, effect = _AB_FRAMINGS[int(i)]
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
            f"{_AB_LEDE_ENDINGS[int(rng.integers(len(_AB_LEDE_ENDINGS)))]}</p>"
        )
        roll = rng.random()
        excerpt: str | float = (
            _AB_DEFAULT_EXCERPT
            if roll < 0.78
            else np.nan
            if roll < 0.9
            else _AB_EXCERPTS[int(rng.integers(len(_AB_EXCERPTS)))]
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
    return frame.loc[:, list(AB_TEST_COLUMNS)]


def write_samples(directory: Path) -> dict[str, Path]:
    """Write ``train.csv``, ``inference.csv`` and ``ab_tests.csv`` (default sizes and seeds).

    Files are UTF-8 with ``\\n`` line ends; floats are written with the
    shortest representation that round-trips. Returns the paths by key of
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
