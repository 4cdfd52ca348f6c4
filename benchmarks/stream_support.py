"""Shared machinery of the stream benchmarks: data, model, broker, processes, measurements.

* Events: the Upworthy headlines (``upworthy/packages.csv``, mapping ``upworthy``), or the
  bundled sample (mapping ``seed``) cycled when the real data is absent.
* Model: a few-epoch model trained on the same rows, exported once into a registry cached
  under the system temp directory (reused by the next benchmark; ``--fresh-model`` retrains).
* Processes: every contender runs as its own subprocess configured by the scorer's
  environment variables, so its CPU time and memory are read from ``/proc/<pid>`` alone
  (``utime + stime`` in clock ticks, ``VmRSS`` / ``VmHWM``).
* Output: a consumer in the benchmark process reads the contender's output topic; times
  are taken from the output records' Kafka timestamps (set by the contender's producer when
  it appends the record), so the measuring consumer's own delay does not count.
* Command line and results: :func:`bench_parser` (``--fresh-model``, ``--out``),
  :func:`bench_inputs` (machine, data, rows, model registry) and :func:`save_results`
  (``results/<name>.json`` with the benchmark's name, time, machine and data).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from benchmarks.common import RESULTS_DIR, UPWORTHY_CSV

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODEL_EPOCHS = 3


# -- data and model ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DataSource:
    path: Path
    mapping: str

    @property
    def label(self) -> str:
        return f"{self.path.parent.name}/{self.path.name} ({self.mapping})"


def data_source() -> DataSource:
    """Upworthy when ``../shared/data`` is there, else the bundled sample."""
    if UPWORTHY_CSV.is_file():
        return DataSource(UPWORTHY_CSV, "upworthy")
    from headline_scorer import SAMPLE_DATA

    return DataSource(SAMPLE_DATA / "train.csv", "seed")


def load_rows(source: DataSource) -> list[Any]:
    from headline_scorer.replay import load_rows as replay_rows

    return replay_rows(source.path, source.mapping)


def prefixed(rows: Sequence[Any], prefix: str) -> list[Any]:
    """The same rows with ids ``<prefix><id>`` (tells phases of one run apart)."""
    return [r._replace(id=f"{prefix}{r.id}") for r in rows]


def bench_registry(source: DataSource, *, fresh: bool = False, epochs: int = MODEL_EPOCHS) -> Path:
    """A registry holding a model trained on ``source`` (cached between benchmark runs)."""
    from training.train import TrainConfig

    # the training configuration is part of the key: a model cached under older defaults is retrained
    config = TrainConfig(epochs=epochs).model_dump_json()
    tag = hashlib.sha256(f"{source.path.resolve()}|{source.mapping}|{config}".encode()).hexdigest()[:10]
    root = Path(tempfile.gettempdir()) / f"headline-scorer-bench-registry-{tag}"
    from artifact.registry import Registry

    registry = Registry(root)
    if not fresh and root.is_dir() and registry.current_version() is not None:
        return root
    import shutil

    import torch

    from export.build import export_to_registry
    from training.data import load_dataset
    from training.mapping import resolve_mapping
    from training.train import train

    shutil.rmtree(root, ignore_errors=True)
    torch.set_num_threads(1)
    data = load_dataset(source.path, resolve_mapping(source.mapping))
    print(f"training a {epochs}-epoch model on {source.label} for the stream benchmarks ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        result = train(data, Path(tmp), TrainConfig(epochs=epochs), progress=False)
        export_to_registry(result.best_checkpoint, data, Registry(root))
    return root


# -- /proc ------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of ``pid`` in MB (``VmRSS``, ``VmHWM``)."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, kb, _ = line.split()
            values[name[:-1]] = int(kb) / 1024.0
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


class ProcSampler:
    """Samples ``read(pid)`` every ``interval`` s in a thread until stopped (or the process is gone)."""

    def __init__(self, pid: int, read: Callable[[int], float], interval: float) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._read = read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sample-{pid}", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), self._read(self.pid)))
            except OSError:
                return
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def maximum(self) -> float:
        return max((v for _, v in self.samples), default=0.0)


class CpuSampler(ProcSampler):
    """A process's CPU seconds every ``interval`` s: ``cpu_at(t)`` interpolates."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(pid, cpu_seconds, interval)

    def cpu_at(self, t: float) -> float:
        import numpy as np

        times, cpus = zip(*self.samples, strict=True)
        return float(np.interp(t, times, cpus))


class RssSampler(ProcSampler):
    """A process's RSS in MB every ``interval`` s (the peak is ``VmHWM`` anyway)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(pid, lambda p: memory_mb(p)[0], interval)


# -- broker, topics, processes ---------------------------------------------------------------
def client_kwargs(bootstrap: str) -> dict[str, Any]:
    from stream.settings import StreamSettings

    return StreamSettings.from_env(kafka_bootstrap_servers=bootstrap).kafka_client_kwargs()


@dataclass
class Topics:
    """The topics of one contender: the input, its outputs, and the outcomes side of the scorer."""

    input: str
    output: str
    dlq: str
    outcomes: str
    labelled: str
    shadow: str

    @classmethod
    def unique(cls, tag: str) -> Topics:
        suffix = f"{tag}-{uuid.uuid4().hex[:6]}"
        return cls(*(f"{kind}-{suffix}" for kind in ("in", "out", "dlq", "outcomes", "labelled", "shadow")))

    @classmethod
    def created(cls, bootstrap: str, tag: str, partitions: int = 4) -> Topics:
        """Fresh topics for ``tag``, created on the broker."""
        topics = cls.unique(tag)
        topics.create(bootstrap, partitions)
        return topics

    def create(self, bootstrap: str, partitions: int = 4) -> None:
        from stream.asyncio_util import run_sync
        from stream.topics import TopicSpec, create_topics

        names = (self.input, self.output, self.dlq, self.outcomes, self.shadow)
        specs = [TopicSpec(name, partitions) for name in names]
        specs.append(TopicSpec(self.labelled, partitions, config={"cleanup.policy": "compact"}))
        run_sync(create_topics(client_kwargs(bootstrap), specs))


def free_port() -> int:
    from stream.asyncio_util import free_port as _free_port

    return _free_port()


async def produce_all(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]], *, max_request_bytes: int = 8 << 20
) -> None:
    """Send ``(key, value)`` records to ``topic`` and wait until every one is acknowledged."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        **client_kwargs(bootstrap), linger_ms=5, max_batch_size=1 << 20, max_request_size=max_request_bytes
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        await producer.flush()
        for fut in futures:
            await fut
    finally:
        await producer.stop()


@dataclass
class Contender:
    """A process under test: the scorer worker or one of :mod:`benchmarks.baselines`.

    ``root``: the checkout whose code the process runs (another one measures older code).
    """

    name: str
    command: list[str]
    bootstrap: str
    topics: Topics
    registry: Path
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    root: Path = ROOT

    def env(self) -> dict[str, str]:
        from stream.settings import StreamSettings

        app_id = f"bench-{self.name}-{uuid.uuid4().hex[:6]}"
        settings = StreamSettings.from_env(
            kafka_bootstrap_servers=self.bootstrap,
            input_topic=self.topics.input,
            output_topic=self.topics.output,
            dlq_topic=self.topics.dlq,
            outcomes_topic=self.topics.outcomes,
            labelled_topic=self.topics.labelled,
            shadow_output_topic=self.topics.shadow,
            topic_partitions=4,
            model_registry=self.registry,
            scorer_app_id=app_id,
            scorer_data_dir=self.log_path.parent / f"faust-{app_id}",
            web_host="127.0.0.1",
            web_port=self.port,
            log_level="INFO",
            producer_idempotence=False,  # the benchmarks run on the embedded broker, which cannot do it
        )
        return {**os.environ, **settings.as_env(), "PYTHONPATH": str(self.root), **self.extra_env}

    def start(self) -> Contender:
        with self.log_path.open("ab") as log:
            self.started_at = time.time()
            self.proc = subprocess.Popen(
                self.command, env=self.env(), cwd=self.root, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Seconds from process start to ``/ready`` answering 200 (scorer worker only)."""
        while time.time() - self.started_at < timeout:
            self.check_alive()
            try:
                if self.get("/ready")[0] == 200:
                    return time.time() - self.started_at
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready within {timeout} s; log {self.log_path}")

    def metrics(self) -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families

        status, body = self.get("/metrics")
        if status != 200:
            return {}
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}"] = sample.value
        return out

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return 0 if self.proc is None else int(self.proc.returncode)
        self.proc.terminate()
        try:
            return int(self.proc.wait(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return int(self.proc.wait())

    def __enter__(self) -> Contender:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def scorer_command() -> list[str]:
    return [sys.executable, "-m", "headline_scorer.cli", "worker"]


def baseline_command(kind: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.baselines", kind]


def contender_command(name: str) -> list[str]:
    """``headline-scorer worker`` for ``scorer``, else the baseline of that name."""
    return scorer_command() if name == "scorer" else baseline_command(name)


# -- output ------------------------------------------------------------------------------------
@dataclass
class OutputLog:
    """What the measuring consumer saw: per record (Kafka timestamp, receive time, topic, value)."""

    timestamps_ms: list[int] = field(default_factory=list)
    received: list[float] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)

    def stamps_of(self, topic: str) -> list[int]:
        """The Kafka timestamps (ms) of ``topic``'s records."""
        return [ts for ts, t in zip(self.timestamps_ms, self.topics, strict=True) if t == topic]

    def __len__(self) -> int:
        return len(self.timestamps_ms)


async def read_outputs(
    bootstrap: str,
    topic: str | Sequence[str],
    *,
    expected: int,
    timeout: float,
    keep_values: bool = False,
    fetch_max_wait_ms: int = 10,
    stop: Callable[[], bool] | None = None,
    alive: Callable[[], None] | None = None,
    quiet: float = 0.0,
) -> OutputLog:
    """Read ``topic`` (or several) from the beginning until ``expected`` records in all and then
    ``quiet`` s without a new one, ``timeout`` s or ``stop()``."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *([topic] if isinstance(topic, str) else topic),
        **client_kwargs(bootstrap),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=fetch_max_wait_ms,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=32 << 20,
    )
    await consumer.start()
    out = OutputLog()
    deadline = time.time() + timeout
    last_new = time.time()
    try:
        while time.time() < deadline and not (stop and stop()):
            if len(out) >= expected and time.time() - last_new >= quiet:
                break
            if alive is not None:
                alive()
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time()
            if batch:
                last_new = now
            for records in batch.values():
                for r in records:
                    out.timestamps_ms.append(r.timestamp)
                    out.received.append(now)
                    out.topics.append(r.topic)
                    if keep_values:
                        out.values.append(r.value)
    finally:
        await consumer.stop()
    return out


@dataclass(frozen=True)
class OutputWindow:
    """From the first to the last output record (their Kafka timestamps) and the CPU spent within."""

    first: float
    last: float
    events: int  # records produced after the first instant (those the window's time accounts for)
    cpu_seconds: float

    @classmethod
    def of(cls, log: OutputLog, sampler: CpuSampler) -> OutputWindow:
        stamps = sorted(log.timestamps_ms)
        first, last = stamps[0] / 1000, stamps[-1] / 1000
        events = sum(1 for s in stamps if s > stamps[0])
        return cls(first, last, events, sampler.cpu_at(last) - sampler.cpu_at(first))

    @property
    def seconds(self) -> float:
        return max(self.last - self.first, 1e-3)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds / max(self.events, 1) * 1e6


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- command line and results ------------------------------------------------------------------
def bench_parser(doc: str | None, results_name: str) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc``, with ``--fresh-model`` and ``--out``."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("--fresh-model", action="store_true", help="retrain the benchmark model")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / f"{results_name}.json")
    return parser


def choose(
    parser: argparse.ArgumentParser, only: str | None, known: Sequence[str], extra: Iterable[str] = ()
) -> tuple[str, ...]:
    """The comma-separated subset ``only`` of ``known`` (all of them when empty), or a usage error."""
    names = tuple(known) if not only else tuple(n.strip() for n in only.split(",") if n.strip())
    unknown = set(names) - set(known) - set(extra)
    if unknown:
        parser.error(f"unknown names {sorted(unknown)}; expected some of {','.join(known)}")
    return names


@dataclass(frozen=True)
class BenchInputs:
    """What every stream benchmark starts from."""

    machine: dict[str, Any]  # taken before the benchmark adds its own load
    source: DataSource
    rows: list[Any]
    registry: Path


def bench_inputs(*, fresh_model: bool = False) -> BenchInputs:
    machine_at_start = machine()
    source = data_source()
    return BenchInputs(machine_at_start, source, load_rows(source), bench_registry(source, fresh=fresh_model))


def save_results(path: Path, benchmark: str, inputs: BenchInputs, **fields: Any) -> None:
    """``path`` as JSON: the benchmark's name, the time, the machine at start, the data, ``fields``."""
    payload = {
        "benchmark": benchmark,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": inputs.machine,
        "data": inputs.source.label,
        **fields,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nsaved {path}")
