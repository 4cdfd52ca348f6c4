"""Helpers for tests that run real scorer workers against a real broker.

A worker is a subprocess (``python -m headline_scorer.cli worker``) configured
only through its environment, as in production; tests talk to it over Kafka
and HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from artifact.registry import Registry
from stream.asyncio_util import free_port, run_sync
from stream.settings import StreamSettings
from tests.export_support import _tempdir, sample_checkpoint, sample_data

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Topics:
    input: str
    output: str
    dlq: str

    @classmethod
    def unique(cls) -> Topics:
        tag = uuid.uuid4().hex[:8]
        return cls(f"headlines-{tag}", f"scores-{tag}", f"dlq-{tag}")


@cache
def supports_idempotence(bootstrap: str) -> bool:
    """Whether the broker grants a producer id (Apache Kafka does; the embedded broker does not)."""

    async def probe() -> bool:
        from aiokafka.errors import KafkaError

        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=True, request_timeout_ms=5000
        )
        try:
            await asyncio.wait_for(producer.start(), 15)
            return True
        except (KafkaError, TimeoutError):
            return False
        finally:
            await producer.stop()

    return run_sync(probe())


@dataclass
class WorkerProcess:
    bootstrap: str
    registry: Path
    topics: Topics
    app_id: str
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    # the process to run; default: the ``worker`` command
    command: Sequence[str] = (sys.executable, "-m", "headline_scorer.cli", "worker")

    def env(self) -> dict[str, str]:
        settings = StreamSettings.from_env(
            kafka_bootstrap_servers=self.bootstrap,
            input_topic=self.topics.input,
            output_topic=self.topics.output,
            dlq_topic=self.topics.dlq,
            topic_partitions=4,
            model_registry=self.registry,
            scorer_app_id=self.app_id,
            scorer_data_dir=self.log_path.parent / f"faust-{self.app_id}",
            web_host="127.0.0.1",
            web_port=self.port,
            reload_poll_seconds=0.5,
            commit_interval_seconds=0.5,
            log_level="INFO",
            producer_idempotence=supports_idempotence(self.bootstrap),
        )
        return {**os.environ, **settings.as_env(), "PYTHONPATH": str(ROOT), **self.extra_env}

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                list(self.command),
                env=self.env(),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def wait_ready(self, timeout: float = 60.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _ = self.get("/ready")
                if status == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"worker not ready within {timeout} s:\n{self.log()[-4000:]}")

    def metrics(self) -> dict[str, float]:
        """Every sample of ``/metrics`` as ``name{labels}`` -> value."""
        status, body = self.get("/metrics")
        assert status == 200
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}"] = sample.value
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def event(id_: str, title: str, category: str | None = "tech") -> bytes:
    return json.dumps({"id": id_, "title": title, "category": category}).encode()


async def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None]],
    *,
    timestamps: Sequence[int | None] | None = None,
    **producer_kwargs: Any,
) -> int:
    """Send ``(key, value)`` records; ``timestamps`` (ms, per record) and producer settings optional."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **{"linger_ms": 5, **producer_kwargs})
    await producer.start()
    n = 0
    try:
        futures = []
        for key, value in records:
            ts = timestamps[n] if timestamps is not None else None
            futures.append(await producer.send(topic, value=value, key=key, timestamp_ms=ts))
            n += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return n


Record = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]


def distinct_ids(records: Sequence[Record]) -> set[str]:
    return {json.loads(v)["id"] for _, _, v, _ in records if v is not None}


async def consume_until(
    bootstrap: str,
    topics: Sequence[str],
    expected: int,
    timeout: float = 60.0,
    *,
    distinct: bool = False,
) -> list[Record]:
    """Read ``topics`` from the beginning until ``expected`` records (``distinct`` ids) arrived."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    out: list[Record] = []
    ids: set[str] = set()  # distinct ids so far (kept up to date, not recounted per poll)
    deadline = time.monotonic() + timeout

    def count() -> int:
        return len(ids) if distinct else len(out)

    try:
        while count() < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                new = [(tp.topic, r.key, r.value, list(r.headers)) for r in records]
                out.extend(new)
                if distinct:
                    ids.update(distinct_ids(new))
        # a short grace period shows whether more than expected arrive
        extra = await consumer.getmany(timeout_ms=300)
        for tp, records in extra.items():
            out.extend((tp.topic, r.key, r.value, list(r.headers)) for r in records)
    finally:
        await consumer.stop()
    return out


@cache
def template_registry() -> tuple[Path, str, str]:
    """A registry with two good versions (the first current) exported from the sample model."""
    from export.build import export_to_registry

    root = _tempdir("hs-stream-registry-") / "registry"
    registry = Registry(root)
    first = export_to_registry(sample_checkpoint(), sample_data(), registry).version
    time.sleep(1.1)  # version names carry the time in seconds
    second = export_to_registry(sample_checkpoint(), sample_data(), registry, make_current=False).version
    return root, first, second


class BackgroundReplay:
    """``replay_events`` on its own thread and event loop, so a test can kill things meanwhile."""

    def __init__(self, bootstrap: str, topic: str, *, limit: int, rate: float, **kwargs: Any) -> None:
        from headline_scorer import SAMPLE_DATA
        from headline_scorer.replay import load_rows

        self._rows = load_rows(SAMPLE_DATA / "train.csv")
        self._args = {
            "client_kwargs": {"bootstrap_servers": bootstrap},
            "topic": topic,
            "limit": limit,
            "rate": rate,
            "keep_ids": True,
            **kwargs,
        }
        self.report: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="replay", daemon=True)

    def _run(self) -> None:
        from headline_scorer.replay import replay_events

        try:
            self.report = asyncio.run(replay_events(self._rows, **self._args))
        except BaseException as exc:  # handed to the test by join()
            self.error = exc

    def start(self) -> BackgroundReplay:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float = 120.0) -> Any:
        """The :class:`~headline_scorer.replay.ReplayReport` (raises what the replay raised)."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "replay did not finish"
        if self.error is not None:
            raise self.error
        return self.report
