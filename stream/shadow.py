"""Shadow scoring: every batch scored by the registry's shadow version too, after the current one.

The registry's ``SHADOW`` names a candidate version; the :class:`~stream.reload.ModelHolder`
loads it beside the current model (``SHADOW_ENABLED``). :class:`ShadowScorer` scores the
events the current model scored (``BatchResult.scored``) with it and fills
``BatchResult.shadow`` (its :class:`~stream.scoring.ScoredBatch` es, for the join's
role=shadow rows) and ``BatchResult.shadow_scores`` (score records whose
``model_version`` is the shadow's, for ``SHADOW_OUTPUT_TOPIC`` only: consumers of the
main output never see them).

A shadow failure (an exception, a wrong number of scores, a non-finite value) never
costs a main score or a dead letter: the events it failed on get no shadow score, are
counted in ``headline_scorer_shadow_errors_total`` and logged (at most once a minute
per version at warning level). A failing batch is retried one event at a time, like
the current model's, so one poison title costs the shadow one score.

Agreement with the current version over a sliding window (``DRIFT_WINDOW_EVENTS`` /
``DRIFT_WINDOW_SECONDS``), exported as ``headline_scorer_shadow_agreement{model_version,
measure}`` by :meth:`ShadowScorer.publish`:

* ``quality_label``: share of events whose quality labels are equal;
* ``ctr_normalized_mae``: mean absolute difference of the normalized CTR.

NaN when the window is empty. The window restarts when either version changes.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

import numpy as np
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry, Counter, Gauge

from artifact.errors import HeadlineScorerError
from artifact.runtime import ScoringModel
from stream.events import HeadlineEvent
from stream.metrics import PREFIX
from stream.scoring import BatchResult, InRecord, ScoredBatch, scored_batch

logger = logging.getLogger(__name__)

AgreementMeasure = Literal["quality_label", "ctr_normalized_mae"]
AGREEMENT_MEASURES: Final[tuple[AgreementMeasure, ...]] = get_args(AgreementMeasure)
#: At most one warning per shadow version this often (seconds); the rest go to debug.
WARN_EVERY_SECONDS: Final = 60.0


class ShadowError(HeadlineScorerError):
    """The shadow version returned unusable scores (wrong count or non-finite values)."""


class ShadowMetrics:
    """``headline_scorer_shadow_*`` on the worker's registry (names are an interface: deploy/ uses them)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p, r = PREFIX, registry
        self.model_info = Gauge(
            f"{p}_shadow_model_info", "The loaded shadow model version (value 1).", ["version"], registry=r
        )
        self.events_scored = Counter(
            f"{p}_shadow_events_scored", "Events scored by the shadow version.", registry=r
        )
        self.errors = Counter(
            f"{p}_shadow_errors",
            "Events the shadow version failed to score (no shadow score; the main score is unaffected).",
            registry=r,
        )
        self.agreement = Gauge(
            f"{p}_shadow_agreement",
            "Agreement of the shadow with the current version over the window: quality_label = share of "
            "equal labels, ctr_normalized_mae = mean absolute difference of the normalized CTR.",
            ["model_version", "measure"],
            registry=r,
        )
        self._agreement_version: str | None = None

    def set_shadow_model(self, version: str | None) -> None:
        """Exactly one ``shadow_model_info`` series for the loaded shadow version; none without one."""
        self.model_info.clear()
        if version is not None:
            self.model_info.labels(version).set(1)

    def scored(self, count: int) -> None:
        self.events_scored.inc(count)

    def failed(self, count: int) -> None:
        self.errors.inc(count)

    def set_agreement(self, version: str | None, label_share: float, ctr_mae: float) -> None:
        """The agreement gauges of ``version`` (None: no shadow, the series go)."""
        if version != self._agreement_version:
            self.agreement.clear()
            self._agreement_version = version
        if version is None:
            return
        self.agreement.labels(version, "quality_label").set(label_share)
        self.agreement.labels(version, "ctr_normalized_mae").set(ctr_mae)


@dataclass
class _Chunk:
    at: float
    equal: NDArray[np.bool_]
    diff: NDArray[np.float64]


class AgreementWindow:
    """Per-event label equality and |ctr_normalized difference| of the latest ``max_events``
    events scored within ``max_seconds`` (kept as one chunk per batch)."""

    def __init__(
        self, *, max_events: int, max_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        if max_events < 1 or not max_seconds > 0:
            raise ValueError(f"expected max_events >= 1 and max_seconds > 0, got {max_events}, {max_seconds}")
        self.max_events = max_events
        self.max_seconds = max_seconds
        self._clock = clock
        self._chunks: deque[_Chunk] = deque()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0

    def add(self, equal: NDArray[np.bool_], diff: NDArray[np.float64], at: float | None = None) -> None:
        if len(equal) != len(diff):
            raise ValueError(
                f"expected as many label comparisons as differences, got {len(equal)}, {len(diff)}"
            )
        if len(equal) == 0:
            return
        self._chunks.append(_Chunk(self._clock() if at is None else at, equal, diff))
        self._size += len(equal)
        self._trim()

    def _trim(self) -> None:
        oldest = self._clock() - self.max_seconds
        while self._chunks and (self._chunks[0].at < oldest):
            self._size -= len(self._chunks.popleft().equal)
        while self._size > self.max_events:
            first = self._chunks[0]
            excess = self._size - self.max_events
            if excess >= len(first.equal):
                self._chunks.popleft()
                self._size -= len(first.equal)
            else:
                first.equal, first.diff = first.equal[excess:], first.diff[excess:]
                self._size -= excess

    def compute(self) -> tuple[float, float]:
        """(share of equal labels, mean absolute ctr_normalized difference); NaN when empty."""
        self._trim()
        if self._size == 0:
            return math.nan, math.nan
        equal = sum(int(np.count_nonzero(c.equal)) for c in self._chunks)
        diff = math.fsum(float(c.diff.sum()) for c in self._chunks)
        return equal / self._size, diff / self._size


ModelSource = Callable[[], ScoringModel | None]


class ShadowScorer:
    """Scores what the current model scored with the shadow model (on the scoring thread)."""

    def __init__(
        self,
        metrics: ShadowMetrics,
        model: ModelSource,
        *,
        window_events: int,
        window_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self._model = model
        self._clock = clock
        self.window = AgreementWindow(max_events=window_events, max_seconds=window_seconds, clock=clock)
        self._versions: tuple[str, str] | None = None  # (current, shadow) the window compares
        self._warned_at: dict[str, float] = {}

    def process(self, out: BatchResult) -> None:
        """Fill ``out.shadow`` and ``out.shadow_scores`` for ``out.scored``; never raises."""
        if not out.scored:
            return
        model = self._model()
        if model is None:
            return
        try:
            self._process(model, out)
        except Exception as exc:  # a bug here must not cost the batch its main scores either
            count = sum(len(s.events) for s in out.scored)
            out.shadow.clear()
            out.shadow_scores.clear()
            self.metrics.failed(count)
            self._warn(model.version, f"shadow scoring of {count} events failed: {exc!r}", exc)

    def _process(self, model: ScoringModel, out: BatchResult) -> None:
        scored_at = self._clock()
        failed = 0
        first_error: BaseException | None = None
        for main in out.scored:
            try:
                pieces = [
                    (
                        list(range(len(main.events))),
                        self._score(model, main, range(len(main.events)), scored_at),
                    )
                ]
            except Exception as exc:  # isolate the events the shadow fails on, as the main path does
                first_error = first_error or exc
                pieces = []
                for i in range(len(main.events)):
                    try:
                        pieces.append(([i], self._score(model, main, [i], scored_at)))
                    except Exception as single_exc:
                        failed += 1
                        first_error = first_error or single_exc
            for indices, shadow in pieces:
                out.shadow.append(shadow)
                out.shadow_scores.extend(shadow.records)
                self._compare(main, indices, shadow)
        self.metrics.scored(len(out.shadow_scores))
        if failed:
            self.metrics.failed(failed)
        if first_error is not None:
            total = sum(len(s.events) for s in out.scored)
            self._warn(
                model.version,
                f"shadow model failed on a batch ({failed} of {total} events left without a shadow score): "
                f"{first_error!r}",
                None,
            )

    def _score(
        self, model: ScoringModel, main: ScoredBatch, indices: Sequence[int], scored_at: float
    ) -> ScoredBatch:
        pairs: list[tuple[InRecord, HeadlineEvent]] = [main.events[i] for i in indices]
        scores = model.score([ev.title for _, ev in pairs], [ev.category for _, ev in pairs])
        if len(scores) != len(pairs):
            raise ShadowError(f"the shadow model returned {len(scores)} scores for {len(pairs)} events")
        if not (
            np.all(np.isfinite(scores.quality_prob))
            and np.all(np.isfinite(scores.ctr))
            and np.all(np.isfinite(scores.ctr_normalized))
        ):
            raise ShadowError("the shadow model returned non-finite scores")
        return scored_batch(model.version, pairs, scores, [main.event_times[i] for i in indices], scored_at)

    def _compare(self, main: ScoredBatch, indices: Sequence[int], shadow: ScoredBatch) -> None:
        versions = (main.model_version, shadow.model_version)
        if versions != self._versions:
            self.window.clear()
            self._versions = versions
        idx = np.asarray(indices, dtype=np.intp)
        equal = np.asarray(main.scores.quality_label)[idx] == np.asarray(shadow.scores.quality_label)
        diff = np.abs(
            np.asarray(main.scores.ctr_normalized, dtype=np.float64)[idx]
            - np.asarray(shadow.scores.ctr_normalized, dtype=np.float64)
        )
        self.window.add(equal, diff, shadow.scored_at)

    def publish(self) -> None:
        """Export the agreement of the window (housekeeping, on the scoring thread that owns it)."""
        model = self._model()
        if model is None:
            self.window.clear()
            self._versions = None
            self.metrics.set_agreement(None, math.nan, math.nan)
            return
        if self._versions is not None and self._versions[1] != model.version:
            self.window.clear()  # a new shadow version: its window starts empty
            self._versions = None
        share, mae = self.window.compute()
        self.metrics.set_agreement(model.version, share, mae)

    def _warn(self, version: str, message: str, exc: BaseException | None) -> None:
        now = self._clock()
        last = self._warned_at.get(version)
        if last is not None and now - last < WARN_EVERY_SECONDS:
            logger.debug("shadow %s: %s", version, message)
            return
        self._warned_at[version] = now
        logger.warning(
            "shadow %s: %s (main scores unaffected; further failures within %.0f s logged at debug)",
            version,
            message,
            WARN_EVERY_SECONDS,
            exc_info=exc,
        )
