"""Hostile input against a real worker: memory on long unique tokens, throughput under large rejects.

Run from the project root::

    .venv/bin/python benchmarks/hostile_bench.py [--memory-events 90000] [--valid 4000] [--only memory,rejects]

One embedded broker; every phase gets fresh 4-partition topics, its input produced in full
before its own ``headline-scorer worker`` process starts (the stream benchmarks' model and
process machinery, ``benchmarks/stream_support.py``):

* ``memory``: ``--memory-events`` valid events whose title is one unique token of 100-1,000
  letters and digits (every chunk, token and title a cache miss, each with thousands of
  character n-grams). Prints the worker's RSS at ``/ready`` and its peak RSS (``VmHWM``) after
  the last score, against the 500 MB target.
* ``rejects``: valid-event throughput with 0 % and with 50 % large rejects, in one run: phase
  ``0%`` is ``--valid`` valid headline events; phase ``50%`` the same number of valid events
  interleaved one to one with large events of 58-70 KB (half of them under
  ``MAX_EVENT_BYTES``, 64 KiB: JSON whose title is too long, rejected as ``schema``; half over
  it, ``too_large``). Valid events per second from the first to the last score (the scores'
  Kafka timestamps), and the ratio 50 % / 0 %. Dead letters are checked on ``/metrics``.

Writes ``benchmarks/results/hostile_bench.json``.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_table, print_targets, verdict
from benchmarks.stream_support import (
    Contender,
    CpuSampler,
    OutputWindow,
    RssSampler,
    Topics,
    bench_inputs,
    bench_parser,
    choose,
    memory_mb,
    produce_all,
    read_outputs,
    save_results,
    scorer_command,
)

RSS_TARGET_MB = 500.0
RATIO_TARGET = 0.5
LARGE_MIN_BYTES = 58_000
LARGE_MAX_BYTES = 70_000
PARTS = ("memory", "rejects")


def long_token_events(count: int, seed: int = 0) -> list[tuple[bytes, bytes]]:
    """Valid events whose title is one unique token of 100-1,000 letters and digits."""
    rnd = random.Random(seed)
    alphabet = string.ascii_lowercase + string.digits
    out = []
    for i in range(count):
        title = f"{i}" + "".join(rnd.choices(alphabet, k=rnd.randint(100, 1000)))
        key = f"long-{i}".encode()
        out.append(
            (key, json.dumps({"id": key.decode(), "title": title[:1000], "category": "tech"}).encode())
        )
    return out


def valid_events(titles: list[str], count: int, prefix: str) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(count):
        key = f"{prefix}{i}".encode()
        value = {"id": key.decode(), "title": titles[i % len(titles)], "category": "news"}
        out.append((key, json.dumps(value).encode()))
    return out


def large_event(i: int, size: int) -> tuple[bytes, bytes]:
    """A JSON headline event of exactly ``size`` bytes whose title is far too long."""
    key = f"large-{i}".encode()
    head = b'{"id": "' + key + b'", "title": "'
    tail = b'"}'
    return key, head + b"x" * (size - len(head) - len(tail)) + tail


def mixed_events(valid: list[tuple[bytes, bytes]], seed: int = 1) -> list[tuple[bytes, bytes]]:
    """``valid`` interleaved one to one with large events of 58-70 KB."""
    rnd = random.Random(seed)
    out = []
    for i, record in enumerate(valid):
        out.append(record)
        out.append(large_event(i, rnd.randint(LARGE_MIN_BYTES, LARGE_MAX_BYTES)))
    return out


def run_phase(
    bootstrap: str,
    registry: Path,
    workdir: Path,
    name: str,
    records: list[tuple[bytes, bytes]],
    expected_scores: int,
) -> dict[str, Any]:
    """Pre-load ``records``, start one worker on them, read ``expected_scores`` scores."""
    topics = Topics.created(bootstrap, name)
    started = time.time()
    asyncio.run(produce_all(bootstrap, topics.input, records))
    load_seconds = time.time() - started
    with Contender(name, scorer_command(), bootstrap, topics, registry, workdir / f"{name}.log") as contender:
        ready_s = contender.wait_ready()
        rss_ready, _ = memory_mb(contender.pid)
        with CpuSampler(contender.pid) as cpu, RssSampler(contender.pid) as sampler:
            log = asyncio.run(
                read_outputs(
                    bootstrap,
                    topics.output,
                    expected=expected_scores,
                    timeout=600,
                    alive=contender.check_alive,
                )
            )
        time.sleep(1.5)  # one housekeeping tick, then the counters
        rss_now, rss_peak = memory_mb(contender.pid)
        scraped = contender.metrics()
    if len(log) < expected_scores:
        raise RuntimeError(f"{name}: only {len(log)} of {expected_scores} scores; log {contender.log_path}")
    window = OutputWindow.of(log, cpu)
    dead = {
        k.split("reason=")[1].rstrip("}"): v
        for k, v in scraped.items()
        if k.startswith("headline_scorer_events_dead_lettered_total{") and v
    }
    return {
        "phase": name,
        "records": len(records),
        "input_mb": round(sum(len(v) for _, v in records) / 1e6, 1),
        "scores": len(log),
        "dead_lettered": dead,
        "load_seconds": round(load_seconds, 2),
        "ready_seconds": round(ready_s, 2),
        "valid_per_second": round(window.events_per_second, 1),
        "window_seconds": round(window.seconds, 3),
        "worker_cpu_us_per_valid": round(window.cpu_us_per_event, 1),
        "rss_ready_mb": round(rss_ready, 1),
        "rss_end_mb": round(rss_now, 1),
        "rss_peak_mb": round(rss_peak, 1),
        "rss_max_sampled_mb": round(sampler.maximum(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "hostile_bench")
    parser.add_argument("--memory-events", type=int, default=90_000)
    parser.add_argument("--valid", type=int, default=4_000, help="valid events per rejects phase")
    parser.add_argument("--only", default="memory,rejects")
    args = parser.parse_args(argv)
    parts = choose(parser, args.only, PARTS)
    from headline_scorer.embedded_broker import EmbeddedBroker

    inputs = bench_inputs(fresh_model=args.fresh_model)
    registry = inputs.registry
    titles = [row.title for row in inputs.rows]
    results: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="hostile-bench-"))
    targets: list[tuple[str, str, str, bool]] = []
    with EmbeddedBroker() as broker:
        if "memory" in parts:
            memory = run_phase(
                broker.bootstrap,
                registry,
                workdir,
                "memory",
                long_token_events(args.memory_events),
                args.memory_events,
            )
            results["memory"] = memory
            targets.append(
                (
                    f"worker peak RSS, {args.memory_events} one-token titles of 100-1,000 characters",
                    f"{memory['rss_peak_mb']:.0f} MB (at ready {memory['rss_ready_mb']:.0f})",
                    f"<= {RSS_TARGET_MB:.0f} MB",
                    memory["rss_peak_mb"] <= RSS_TARGET_MB,
                )
            )
        if "rejects" in parts:
            valid = valid_events(titles, args.valid, "v0-")
            clean = run_phase(broker.bootstrap, registry, workdir, "rejects-0", valid, args.valid)
            mixed = mixed_events(valid_events(titles, args.valid, "v50-"))
            half = run_phase(broker.bootstrap, registry, workdir, "rejects-50", mixed, args.valid)
            ratio = half["valid_per_second"] / clean["valid_per_second"]
            results["rejects"] = {"clean": clean, "half_large": half, "ratio": round(ratio, 3)}
            targets.append(
                (
                    "valid events/s with 50 % large (58-70 KB) rejects / with none",
                    f"{half['valid_per_second']:.0f} / {clean['valid_per_second']:.0f} = {ratio:.2f}x",
                    f">= {RATIO_TARGET}x",
                    ratio >= RATIO_TARGET,
                )
            )
    phases = [
        p
        for p in (
            results.get("memory"),
            *(results.get("rejects", {}).get(k) for k in ("clean", "half_large")),
        )
        if p
    ]
    print_table(
        [
            "phase",
            "records",
            "input MB",
            "valid/s",
            "window s",
            "CPU µs/valid",
            "RSS ready",
            "RSS peak",
            "dead letters",
        ],
        [
            [
                str(p["phase"]),
                str(p["records"]),
                str(p["input_mb"]),
                str(p["valid_per_second"]),
                str(p["window_seconds"]),
                str(p["worker_cpu_us_per_valid"]),
                str(p["rss_ready_mb"]),
                str(p["rss_peak_mb"]),
                ", ".join(f"{k} {int(v)}" for k, v in sorted(p["dead_lettered"].items())) or "-",
            ]
            for p in phases
        ],
    )
    print()
    print_targets(
        [
            {"target": what, "measured": measured, "goal": goal, "verdict": verdict(ok)}
            for what, measured, goal, ok in targets
        ]
    )
    save_results(args.out, "hostile_bench", inputs, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
