"""Live evidence for ``models promote``: the workers' /metrics pages, read and aggregated.

Each worker exports the live quality of the versions it serves (``stream/quality.py``,
``headline_scorer_live_*{model_version,role}``, role ``current`` or ``shadow``) over its
own partitions, and the shadow's agreement with the current version
(``headline_scorer_shadow_agreement{model_version,measure}``, ``stream/shadow.py``).
Across workers:

* ``labelled events`` and ``pairs`` are summed (the workers' windows hold disjoint ids);
* the CTR MAEs and the calibration error are means weighted by each worker's labelled
  events, the pairwise accuracy by its pairs (a worker without labels does not count);
* the agreement measures are the mean over the workers that report a value.

A value no worker can compute is NaN (printed ``n/a``).
"""

from __future__ import annotations

import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

from artifact.errors import HeadlineScorerError

LIVE_CTR_MAE: Final = "headline_scorer_live_ctr_mae"
LIVE_CALIBRATION_ERROR: Final = "headline_scorer_live_calibration_error"
LIVE_PAIRWISE_ACCURACY: Final = "headline_scorer_live_pairwise_accuracy"
LIVE_PAIRS: Final = "headline_scorer_live_pairs"
LIVE_LABELLED_EVENTS: Final = "headline_scorer_live_labelled_events"
SHADOW_AGREEMENT: Final = "headline_scorer_shadow_agreement"
AGREEMENT_MEASURES: Final = ("quality_label", "ctr_normalized_mae")
DEFAULT_TIMEOUT_SECONDS: Final = 5.0

#: (sample name, labels) -> value, of one worker's page
Page = dict[tuple[str, frozenset[tuple[str, str]]], float]
Fetch = Callable[[str, float], str]


class EvidenceError(HeadlineScorerError):
    """A /metrics page could not be read or parsed."""


@dataclass(frozen=True)
class LiveQuality:
    """One version's live quality, aggregated over the workers."""

    version: str
    role: str
    ctr_mae_raw: float
    ctr_mae_normalized: float
    pairwise_accuracy: float
    pairs: float
    calibration_error: float
    labelled_events: float


@dataclass(frozen=True)
class Evidence:
    urls: list[str]
    current: LiveQuality | None
    candidate: LiveQuality
    agreement: dict[str, float]  # measure -> value (the candidate as shadow)
    failures: dict[str, str] = field(default_factory=dict)  # url -> why it could not be read


def metrics_url(url: str) -> str:
    """``host:port``, ``http://host:port`` or a full URL -> the URL of the /metrics page."""
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EvidenceError(f"expected an http(s) URL of a worker's /metrics page, got {url!r}")
    if parts.path in ("", "/"):
        parts = parts._replace(path="/metrics")
    return urllib.parse.urlunsplit(parts)


def fetch_page(url: str, timeout: float) -> str:
    """The text of ``url`` (status 200), or :class:`EvidenceError` with the reason on one line."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return str(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise EvidenceError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, UnicodeDecodeError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise EvidenceError(f"{url}: cannot read ({reason})") from None


def parse_page(text: str, source: str = "/metrics") -> Page:
    try:
        return {
            (sample.name, frozenset(sample.labels.items())): float(sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
    except ValueError as exc:
        raise EvidenceError(f"{source}: not a Prometheus metrics page ({exc})") from None


def _value(page: Page, name: str, **labels: str) -> float:
    return page.get((name, frozenset(labels.items())), math.nan)


def _weighted(pairs: Sequence[tuple[float, float]]) -> float:
    """Mean of the finite values weighted by their finite, positive weights; NaN without any."""
    usable = [(v, w) for v, w in pairs if math.isfinite(v) and math.isfinite(w) and w > 0]
    total = sum(w for _, w in usable)
    return math.nan if total <= 0 else sum(v * w for v, w in usable) / total


def _sum(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(sum(finite)) if finite else math.nan


def live_quality(pages: Sequence[Page], version: str, role: str) -> LiveQuality:
    """``version``'s live quality as ``role`` over ``pages`` (one per worker)."""
    labels = {"model_version": version, "role": role}
    labelled = [_value(p, LIVE_LABELLED_EVENTS, **labels) for p in pages]
    pairs = [_value(p, LIVE_PAIRS, **labels) for p in pages]

    def by_labelled(name: str, **extra: str) -> float:
        return _weighted(
            [(_value(p, name, **labels, **extra), n) for p, n in zip(pages, labelled, strict=True)]
        )

    return LiveQuality(
        version=version,
        role=role,
        ctr_mae_raw=by_labelled(LIVE_CTR_MAE, scale="raw"),
        ctr_mae_normalized=by_labelled(LIVE_CTR_MAE, scale="normalized"),
        pairwise_accuracy=_weighted(
            [(_value(p, LIVE_PAIRWISE_ACCURACY, **labels), n) for p, n in zip(pages, pairs, strict=True)]
        ),
        pairs=_sum(pairs),
        calibration_error=by_labelled(LIVE_CALIBRATION_ERROR),
        labelled_events=_sum(labelled),
    )


def shadow_agreement(pages: Sequence[Page], version: str) -> dict[str, float]:
    out = {}
    for measure in AGREEMENT_MEASURES:
        values = [_value(p, SHADOW_AGREEMENT, model_version=version, measure=measure) for p in pages]
        out[measure] = _weighted([(v, 1.0) for v in values])
    return out


def read_evidence(
    urls: Sequence[str],
    current: str | None,
    candidate: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    fetch: Fetch = fetch_page,
) -> Evidence:
    """Read every worker's page (the unreadable ones in ``failures``) and aggregate the evidence."""
    pages: list[Page] = []
    failures: dict[str, str] = {}
    resolved = [metrics_url(u) for u in urls]
    for url in resolved:
        try:
            pages.append(parse_page(fetch(url, timeout), url))
        except EvidenceError as exc:
            failures[url] = str(exc)
    return Evidence(
        urls=resolved,
        current=None if current is None else live_quality(pages, current, "current"),
        candidate=live_quality(pages, candidate, "shadow"),
        agreement=shadow_agreement(pages, candidate),
        failures=failures,
    )


def _fmt(value: float, digits: int = 4) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.0f}" if digits == 0 else f"{value:.{digits}f}"


def format_evidence(evidence: Evidence) -> str:
    """A small table: one row per measure, one column each for the current and the candidate."""
    read = len(evidence.urls) - len(evidence.failures)
    columns = [q for q in (evidence.current, evidence.candidate) if q is not None]
    heads = [f"{q.role if q is evidence.current else 'candidate'} {q.version}" for q in columns]
    rows: list[tuple[str, list[str]]] = [
        ("live ctr MAE (raw)", [_fmt(q.ctr_mae_raw) for q in columns]),
        ("live ctr MAE (normalized)", [_fmt(q.ctr_mae_normalized) for q in columns]),
        ("live pairwise accuracy", [_fmt(q.pairwise_accuracy) for q in columns]),
        ("live pairs", [_fmt(q.pairs, 0) for q in columns]),
        ("live calibration error", [_fmt(q.calibration_error) for q in columns]),
        ("labelled events", [_fmt(q.labelled_events, 0) for q in columns]),
    ]
    width = max(len(name) for name, _ in rows) + 2
    col = max(len(h) for h in heads) + 2
    lines = [f"live evidence from {read} of {len(evidence.urls)} worker(s):"]
    lines.append(" " * width + "".join(h.ljust(col) for h in heads).rstrip())
    lines.extend(name.ljust(width) + "".join(v.ljust(col) for v in values).rstrip() for name, values in rows)
    agreement = ", ".join(f"{m} {_fmt(v)}" for m, v in evidence.agreement.items())
    lines.append(f"shadow agreement of {evidence.candidate.version} with the current version: {agreement}")
    candidate = evidence.candidate
    if not math.isfinite(candidate.labelled_events) and not any(
        math.isfinite(v) for v in evidence.agreement.values()
    ):
        lines.append(
            f"no worker reports {candidate.version} as shadow: mark it with `models shadow` for evidence"
        )
    return "\n".join(lines)
