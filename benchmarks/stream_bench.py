"""Stream throughput: the scorer worker against bare faust and plain aiokafka, in one run.

Run from the project root::

    .venv/bin/python benchmarks/stream_bench.py [--events 100000] [--only scorer,faust-batch] [--profile]

For every contender: a fresh embedded broker (it keeps everything in memory), a 4-partition
input topic pre-loaded with ``--events`` headline events (the Upworthy headlines cycled;
ids of later passes get a ``~N`` suffix), then one contender process started on it. Measured
from the first to the last output record (the output records' Kafka timestamps, set by the
contender's producer): events/s, the process's CPU seconds per 1,000 events over that window
(``/proc/<pid>/stat``, sampled every 50 ms), its peak RSS (``VmHWM``), and for the scorer the
seconds from process start to ``/ready``. Contenders (``benchmarks/baselines.py``):

* ``scorer``: ``headline-scorer worker`` with a model trained on the same data;
* ``faust-single``: stock faust agent, decode + ``await topic.send`` one event at a time;
* ``faust-batch``: stock faust, ``take_events(256, within=0.02)`` + the producer batch API;
* ``faust-batch-tuned``: the same on the scorer's tuned transport (the floor of the scorer's design);
* ``aiokafka-score``: plain aiokafka loop, decode + score in batches + batch produce;
* ``aiokafka-batchscorer``: the same loop with the scorer's ``BatchScorer`` (metrics and drift);
* ``scorer-inline`` (only with ``--only``): the scorer with its batch scored on the event loop thread;

Targets (issue 4): scorer / faust-batch >= 1.0; scorer / aiokafka-score >= 0.5 (stretch);
scorer CPU <= 50 µs per event; start to ready <= 10 s; RSS <= 500 MB.
``--profile`` also records the scorer with py-spy (raw folded stacks) and prints where its CPU goes.
Writes ``benchmarks/results/stream_bench.json``.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, print_table, print_targets, verdict
from benchmarks.stream_support import (
    Contender,
    CpuSampler,
    OutputWindow,
    Topics,
    bench_inputs,
    bench_parser,
    choose,
    client_kwargs,
    contender_command,
    machine,
    memory_mb,
    read_outputs,
    save_results,
)

CONTENDERS = (
    "scorer",
    "faust-single",
    "faust-batch",
    "faust-batch-tuned",
    "aiokafka-score",
    "aiokafka-batchscorer",
)
EXTRA_CONTENDERS = ("scorer-inline",)  # diagnosis only, with --only
RATIO_TARGET = 1.0
STRETCH_TARGET = 0.5
CPU_TARGET_US = 50.0
READY_TARGET_S = 10.0
RSS_TARGET_MB = 500.0
PROFILE_RATE_HZ = 200
PY_SPY = Path(sys.executable).parent / "py-spy"


async def preload(bootstrap: str, topic: str, rows: list[Any], events: int) -> float:
    from headline_scorer.replay import replay_events

    report = await replay_events(
        rows, client_kwargs=client_kwargs(bootstrap), topic=topic, rate=None, limit=events
    )
    if report.failed:
        raise RuntimeError(f"{report.failed} events could not be pre-loaded")
    return report.seconds


def run_contender(
    name: str,
    rows: list[Any],
    events: int,
    registry: Path,
    workdir: Path,
    *,
    profile: bool = False,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    from headline_scorer.embedded_broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        topics = Topics.created(broker.bootstrap, name)
        load_seconds = asyncio.run(preload(broker.bootstrap, topics.input, rows, events))
        contender = Contender(
            name,
            contender_command(name),
            broker.bootstrap,
            topics,
            registry,
            workdir / f"{name}.log",
            dict(extra_env or {}),
        )
        contender.start()
        sampler = CpuSampler(contender.pid).start()
        ready: dict[str, float] = {}
        if name == "scorer":
            threading.Thread(target=lambda: ready.update(s=contender.wait_ready()), daemon=True).start()
        spy = None
        spy_out = workdir / f"{name}.pyspy.txt"
        if profile:
            spy = subprocess.Popen(
                [
                    str(PY_SPY),
                    "record",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--rate",
                    str(PROFILE_RATE_HZ),
                    "-o",
                    str(spy_out),
                    "-p",
                    str(contender.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        try:
            log = asyncio.run(
                read_outputs(
                    broker.bootstrap, topics.output, expected=events, timeout=300, alive=contender.check_alive
                )
            )
            time.sleep(0.3)
            _, peak_rss = memory_mb(contender.pid)
            scraped = contender.metrics() if name.startswith("scorer") else {}
            cpu_total = sampler.cpu_at(time.time())
        finally:
            if spy is not None:
                spy.send_signal(2)
                spy.wait(30)
            sampler.stop()
            contender.stop()
        if len(log) < events:
            raise RuntimeError(f"{name}: only {len(log)} of {events} outputs within the timeout")
    window = OutputWindow.of(log, sampler)
    result: dict[str, Any] = {
        "contender": name,
        "events": events,
        "preload_seconds": load_seconds,
        "seconds": window.seconds,
        "events_per_second": window.events_per_second,
        "cpu_seconds_per_1000": window.cpu_us_per_event / 1000,
        "cpu_us_per_event": window.cpu_us_per_event,
        "cpu_seconds_total": cpu_total,
        "peak_rss_mb": peak_rss,
        "first_output_after_start_seconds": window.first - contender.started_at,
    }
    if "s" in ready:
        result["ready_seconds"] = ready["s"]
    if scraped:
        batches = scraped.get("headline_scorer_batch_size_events_count{}", 0.0)
        result["scorer_metrics"] = {
            "batches": batches,
            "mean_batch_events": scraped.get("headline_scorer_batch_size_events_sum{}", 0.0)
            / max(batches, 1.0),
            "inference_us_per_event": 1e6
            * scraped.get("headline_scorer_inference_seconds_sum{}", 0.0)
            / max(scraped.get("headline_scorer_events_scored_total{}", 0.0), 1.0),
        }
    if profile and spy_out.exists():
        result["profile"] = summarize_profile(spy_out)
        shutil.copy(spy_out, RESULTS_DIR / f"stream_bench_{name}.pyspy.txt")
    return result


GROUPS = (
    ("featurize (artifact.featurizer)", ("artifact/featurizer.py", "artifact/features.py")),
    ("onnxruntime Session.run", ("onnxruntime",)),
    ("runtime post-processing (artifact.runtime/scaling)", ("artifact/runtime.py", "artifact/scaling.py")),
    ("decode (stream.events.decode_event, pydantic)", ("decode_event",)),
    ("encode scores (stream.events.encode_scores)", ("encode_scores",)),
    ("drift window (stream.drift)", ("stream/drift.py",)),
    ("metrics (stream.metrics, prometheus_client)", ("stream/metrics.py", "prometheus_client")),
    ("batch sink (stream.sink)", ("stream/sink.py",)),
    (
        "thread hand-off (executor futures, call_soon_threadsafe)",
        ("call_soon_threadsafe", "concurrent/futures"),
    ),
    ("faust stream/agent/ack/sensor machinery", ("faust/",)),
    ("mode (faust's service library)", ("mode/",)),
    ("aiokafka (fetch, parse, produce, socket writes)", ("aiokafka/",)),
    ("asyncio event loop (tasks, futures, callbacks)", ("asyncio/",)),
)
IDLE_LEAVES = ("EpollSelector.select", "wait (threading.py", "_worker (concurrent/futures/thread.py")
STARTUP = ("_find_and_load", "load_model", "build_app", "ModelHolder.poll", "sha256_file")


def _thread_of(frames: list[str]) -> str:
    if frames[0].startswith("_run_module_as_main"):
        return "event loop (main thread)"
    if any(f.startswith("BatchScorer.process") for f in frames):
        return "scoring thread (BatchScorer.process)"
    if any(f.startswith("WorkerThread.run") for f in frames):
        return "faust consumer thread"
    if frames[0].startswith("Thread._bootstrap"):
        return "other threads"
    return "partial stacks (py-spy could not unwind to a thread root)"


def summarize_profile(path: Path) -> dict[str, Any]:
    """Where the scorer's busy samples go (py-spy raw output), by thread and by component.

    Start-up (imports, model load) and idle samples (epoll, thread waits) are left out. A
    component is the innermost frame matching :data:`GROUPS`. py-spy samples threads that are
    not idle, so a thread blocked on the GIL inside a C call (e.g. a socket write) counts too.
    """
    by_thread: dict[str, int] = {}
    by_group: dict[str, dict[str, int]] = {}
    idle = startup = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames[-1].startswith(IDLE_LEAVES):
            idle += count
            continue
        if any(f.startswith(STARTUP) for f in frames):
            startup += count
            continue
        thread = _thread_of(frames)
        by_thread[thread] = by_thread.get(thread, 0) + count
        group = "other"
        for frame in reversed(frames):
            hit = next((g for g, needles in GROUPS if any(n in frame for n in needles)), None)
            if hit is not None:
                group = hit
                break
        per = by_group.setdefault(thread, {})
        per[group] = per.get(group, 0) + count
    busy = sum(by_thread.values())
    return {
        "rate_hz": PROFILE_RATE_HZ,
        "busy_samples": busy,
        "idle_samples": idle,
        "startup_samples": startup,
        "busy_seconds_by_thread": {k: v / PROFILE_RATE_HZ for k, v in sorted(by_thread.items())},
        "busy_share_by_thread_and_component": {
            thread: {g: round(n / busy, 4) for g, n in sorted(groups.items(), key=lambda kv: -kv[1])}
            for thread, groups in by_group.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "stream_bench")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(CONTENDERS)}")
    parser.add_argument("--profile", action="store_true", help="record the scorer with py-spy")
    parser.add_argument(
        "--scorer-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the scorer contenders (e.g. BATCH_MAX_EVENTS=64); repeatable",
    )
    args = parser.parse_args(argv)
    names = choose(parser, args.only, CONTENDERS, EXTRA_CONTENDERS)
    scorer_env = dict(item.split("=", 1) for item in args.scorer_env)
    inputs = bench_inputs(fresh_model=args.fresh_model)
    source, rows, registry = inputs.source, inputs.rows, inputs.registry
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)  # the profile is copied there
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="stream-bench-") as tmp:
        for name in names:
            print(f"[{name}] {args.events} events from {source.label} ...", flush=True)
            try:
                results[name] = run_contender(
                    name,
                    rows,
                    args.events,
                    registry,
                    Path(tmp),
                    profile=args.profile and name == "scorer",
                    extra_env=scorer_env if name.startswith("scorer") else None,
                )
            except Exception as exc:  # one broken contender must not hide the others' figures
                log = Path(tmp) / f"{name}.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                print(f"[{name}] FAILED: {exc}\n{tail}", flush=True)
                results[name] = {"contender": name, "error": str(exc)}
                continue
            r = results[name]
            print(
                f"[{name}] {r['events_per_second']:.0f} events/s, {r['cpu_us_per_event']:.1f} µs CPU/event, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB",
                flush=True,
            )

    ok = {k: v for k, v in results.items() if "error" not in v}
    rows_out = [
        [
            k,
            f"{v['events_per_second']:.0f}",
            f"{v['cpu_seconds_per_1000']:.3f}",
            f"{v['cpu_us_per_event']:.1f}",
            f"{v['peak_rss_mb']:.0f}",
            f"{v['seconds']:.1f}",
        ]
        for k, v in ok.items()
    ]
    print()
    print(
        f"{args.events} events, {source.label}, one worker, 4 partitions, embedded broker; {machine()['cpus']} cores"
    )
    print_table(["contender", "events/s", "CPU s/1000 ev", "CPU µs/ev", "peak RSS MB", "seconds"], rows_out)

    targets: list[dict[str, Any]] = []
    scorer = ok.get("scorer")
    if scorer is not None:

        def ratio(other: str) -> float | None:
            return scorer["events_per_second"] / ok[other]["events_per_second"] if other in ok else None

        for label, other, goal in (
            ("scorer / faust-batch throughput", "faust-batch", RATIO_TARGET),
            ("scorer / aiokafka-score throughput (stretch)", "aiokafka-score", STRETCH_TARGET),
            ("scorer / faust-single throughput (info)", "faust-single", None),
            ("scorer / faust-batch-tuned throughput (info)", "faust-batch-tuned", None),
            ("scorer / aiokafka-batchscorer throughput (info)", "aiokafka-batchscorer", None),
        ):
            value = ratio(other)
            if value is not None:
                targets.append(
                    {
                        "target": label,
                        "measured": f"{value:.2f}x",
                        "goal": f">= {goal}x" if goal else "info",
                        "verdict": verdict(value >= goal) if goal else "",
                        "value": value,
                    }
                )
        targets.append(
            {
                "target": "scorer CPU per event",
                "measured": f"{scorer['cpu_us_per_event']:.1f} µs",
                "goal": f"<= {CPU_TARGET_US:.0f} µs",
                "verdict": verdict(scorer["cpu_us_per_event"] <= CPU_TARGET_US),
                "value": scorer["cpu_us_per_event"],
            }
        )
        if "ready_seconds" in scorer:
            targets.append(
                {
                    "target": "scorer start to /ready",
                    "measured": f"{scorer['ready_seconds']:.1f} s",
                    "goal": f"<= {READY_TARGET_S:.0f} s",
                    "verdict": verdict(scorer["ready_seconds"] <= READY_TARGET_S),
                    "value": scorer["ready_seconds"],
                }
            )
        targets.append(
            {
                "target": "scorer peak RSS",
                "measured": f"{scorer['peak_rss_mb']:.0f} MB",
                "goal": f"<= {RSS_TARGET_MB:.0f} MB",
                "verdict": verdict(scorer["peak_rss_mb"] <= RSS_TARGET_MB),
                "value": scorer["peak_rss_mb"],
            }
        )
        print()
        print_targets(targets)
        if "profile" in scorer:
            prof = scorer["profile"]
            per_event = 1e6 / scorer["events"] / PROFILE_RATE_HZ
            print(
                f"\nscorer busy samples by thread and component (py-spy {PROFILE_RATE_HZ} Hz; µs per event):"
            )
            for thread, groups in prof["busy_share_by_thread_and_component"].items():
                print(
                    f"  {thread}: {prof['busy_seconds_by_thread'][thread] * 1e6 / scorer['events']:.1f} µs/event"
                )
                for comp, share in groups.items():
                    print(
                        f"    {100 * share:5.1f}%  {share * prof['busy_samples'] * per_event:5.1f} µs  {comp}"
                    )

    save_results(
        args.out,
        "stream_bench",
        inputs,
        events=args.events,
        distinct_headlines=len(rows),
        model_registry=str(registry),
        scorer_env=scorer_env,
        results=results,
        targets=targets,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
