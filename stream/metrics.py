"""Prometheus metrics of a scorer worker, registered on an injected ``CollectorRegistry``.

Names and labels are an interface: the deploy/prometheus rules, the Grafana
dashboard and README.md ("The stream") use them, so a rename breaks them.
Labels only take bounded values (dead-letter reasons, drift signals,
topic/partition, the serving model version).
Per-event distributions (latency, predictions) are fed a whole batch at a time
through :class:`ArrayHistogram`, which bins a numpy array in one call instead of
one ``Histogram.observe`` per event.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from artifact.drift import DRIFT_SIGNALS
from stream.dlq import DEAD_LETTER_REASONS, DeadLetterReason

PREFIX: Final = "headline_scorer"
BATCH_SIZE_BUCKETS: Final = tuple(float(2**i) for i in range(11))  # 1, 2, 4, ..., 1024
INFERENCE_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    120.0,
)
CTR_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
PROBABILITY_BUCKETS: Final = tuple(round(0.1 * i, 1) for i in range(1, 11))


class ArrayHistogram(Collector):
    """A histogram observed with whole arrays (non-finite values skipped, negatives clamped to 0)."""

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        bounds = np.asarray(sorted(float(b) for b in buckets if math.isfinite(b)), dtype=np.float64)
        if bounds.size == 0 or np.any(np.diff(bounds) <= 0):
            raise ValueError(f"{name}: expected distinct finite bucket bounds, got {list(buckets)}")
        self.name = name
        self.documentation = documentation
        self._bounds = bounds
        self._counts = np.zeros(bounds.size + 1, dtype=np.int64)  # last = +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe(self, values: ArrayLike) -> None:
        arr = np.asarray(values, dtype=np.float64).ravel()
        arr = np.maximum(arr[np.isfinite(arr)], 0.0)
        if arr.size == 0:
            return
        counts = np.bincount(np.searchsorted(self._bounds, arr, side="left"), minlength=self._counts.size)
        total = float(arr.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        # Bounds written as prometheus_client writes them (repr of the float: "0.005", "1.0").
        les = [*(repr(b) for b in self._bounds.tolist()), "+Inf"]
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=list(zip(les, cumulative, strict=True)), sum_value=total
        )

    def describe(self) -> Iterable[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation)


class ScorerMetrics:
    """Every metric of a worker; the app calls the methods, ``/metrics`` exposes ``registry``."""

    def __init__(self, registry: CollectorRegistry, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self._clock = clock
        self._last_commit = clock()  # until the first commit, the age counts from start-up
        self._version: str | None = None
        p = PREFIX
        r = registry
        self.events_consumed = Counter(
            f"{p}_events_consumed", "Records read from the input topic.", registry=r
        )
        self.events_scored = Counter(f"{p}_events_scored", "Events scored and produced.", registry=r)
        self.events_dead_lettered = Counter(
            f"{p}_events_dead_lettered", "Records sent to the dead-letter topic.", ["reason"], registry=r
        )
        for reason in DEAD_LETTER_REASONS:
            self.events_dead_lettered.labels(reason)
        self.batch_size = Histogram(
            f"{p}_batch_size_events", "Events per scored micro-batch.", buckets=BATCH_SIZE_BUCKETS, registry=r
        )
        self.inference_seconds = Histogram(
            f"{p}_inference_seconds",
            "Featurization and model call per batch.",
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.end_to_end_latency = ArrayHistogram(
            f"{p}_end_to_end_latency_seconds", "From event time to score produced.", LATENCY_BUCKETS, r
        )
        self.consumer_lag = Gauge(
            f"{p}_consumer_lag_messages",
            "Messages behind the end of the partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.model_info = Gauge(
            f"{p}_model_info", "The serving model version (value 1).", ["version"], registry=r
        )
        self.model_reloads = Counter(f"{p}_model_reloads", "Model versions swapped in.", registry=r)
        self.model_reload_failures = Counter(
            f"{p}_model_reload_failures", "Model versions rejected while loading.", registry=r
        )
        self.last_commit_timestamp = Gauge(
            f"{p}_last_commit_timestamp_seconds", "Unix time of the last offset commit.", registry=r
        )
        self.seconds_since_last_commit = Gauge(
            f"{p}_seconds_since_last_commit",
            "Seconds since the last offset commit (or start-up).",
            registry=r,
        )
        self.seconds_since_last_commit.set_function(lambda: self._clock() - self._last_commit)
        self.drift_psi = Gauge(
            f"{p}_drift_psi", "Population stability index of the drift window.", ["signal"], registry=r
        )
        for signal in DRIFT_SIGNALS:
            self.drift_psi.labels(signal).set(math.nan)
        self.unseen_category_share = Gauge(
            f"{p}_unseen_category_share",
            "Share of window events whose category was not seen in training.",
            registry=r,
        )
        self.unseen_category_share.set(math.nan)
        self.prediction_ctr = ArrayHistogram(
            f"{p}_prediction_ctr", "Predicted CTR (raw units).", CTR_BUCKETS, r
        )
        self.prediction_quality_prob = ArrayHistogram(
            f"{p}_prediction_quality_prob", "Predicted quality probability.", PROBABILITY_BUCKETS, r
        )
        self.ready = Gauge(f"{p}_ready", "1 when a model is loaded and partitions are assigned.", registry=r)

    def consumed(self, count: int) -> None:
        """``count`` records read from the input topic (valid or not)."""
        self.events_consumed.inc(count)

    def dead_lettered(self, reason: DeadLetterReason, count: int = 1) -> None:
        if reason not in DEAD_LETTER_REASONS:
            raise ValueError(f"expected a dead-letter reason in {DEAD_LETTER_REASONS}, got {reason!r}")
        self.events_dead_lettered.labels(reason).inc(count)

    def observe_batch(
        self,
        size: int,
        inference_seconds: float,
        latencies: ArrayLike,
        ctr: ArrayLike,
        quality: ArrayLike,
    ) -> None:
        """One scored batch: ``size`` events scored; per-event ``latencies`` (s), ``ctr``, ``quality``."""
        if size <= 0:
            return
        self.events_scored.inc(size)
        self.batch_size.observe(size)
        self.inference_seconds.observe(inference_seconds)
        self.end_to_end_latency.observe(latencies)
        self.prediction_ctr.observe(ctr)
        self.prediction_quality_prob.observe(quality)

    def set_model(self, version: str) -> None:
        """Mark ``version`` as serving: exactly one ``model_info`` series; counts a reload after the first."""
        if version == self._version:
            return
        if self._version is not None:
            self.model_reloads.inc()
        self.model_info.clear()
        self.model_info.labels(version).set(1)
        self._version = version

    def reload_failed(self) -> None:
        self.model_reload_failures.inc()

    def set_lag(self, topic: str, partition: int, lag: int | float) -> None:
        self.consumer_lag.labels(topic, str(int(partition))).set(max(0.0, float(lag)))

    def forget_partitions(self, partitions: Iterable[tuple[str, int]] | None = None) -> None:
        """Drop the lag series of revoked ``(topic, partition)`` pairs (all when None)."""
        if partitions is None:
            self.consumer_lag.clear()
            return
        for topic, partition in partitions:
            with contextlib.suppress(KeyError):  # never set: nothing to forget
                self.consumer_lag.remove(topic, str(int(partition)))

    def set_drift(self, psi_by_signal: Mapping[str, float], unseen_share: float) -> None:
        unknown = set(psi_by_signal) - set(DRIFT_SIGNALS)
        if unknown:
            raise ValueError(f"expected drift signals among {DRIFT_SIGNALS}, got {sorted(unknown)}")
        for signal, value in psi_by_signal.items():
            self.drift_psi.labels(signal).set(value)
        self.unseen_category_share.set(unseen_share)

    def committed(self, now: float | None = None) -> None:
        """Offsets were committed at ``now`` (unix seconds; the injected clock when None)."""
        moment = self._clock() if now is None else now
        self._last_commit = moment
        self.last_commit_timestamp.set(moment)

    def set_ready(self, ready: bool) -> None:
        self.ready.set(1 if ready else 0)


def latencies_seconds(event_times: NDArray[np.float64] | Sequence[float], now: float) -> NDArray[np.float64]:
    """``now - event_time`` per event (unix seconds)."""
    return now - np.asarray(event_times, dtype=np.float64)
