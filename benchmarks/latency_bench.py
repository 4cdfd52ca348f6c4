"""Latency from event time to score at a steady offered rate: the scorer against a plain aiokafka forwarder.

Run from the project root::

    .venv/bin/python benchmarks/latency_bench.py [--rates 500,1000,2000] [--seconds 25]

For each contender and rate (``scorer`` = ``headline-scorer worker``; ``aiokafka-forward`` = a plain
aiokafka loop that decodes and forwards in batches, ``benchmarks/baselines.py``), both with
the same fetch wait (``FETCH_MAX_WAIT_MS``, default 10 ms): a fresh embedded broker (its
fetch cost grows with the number of record batches it holds, so phases must not share one), the
contender started and warmed up (a few hundred events), then
``headline_scorer.replay.replay_events`` at the rate for ``--seconds`` (``published_at`` = the
time of sending, millisecond precision). The first ``--skip`` seconds of every phase are left
out. Latency per event, from its ``published_at`` to:

* **produced** (the primary figure): the Kafka timestamp of its output record, set by the
  contender's producer when it appends the record (the same clock and the same definition
  for both contenders; the measuring consumer's delay does not count);
* received: the time the measuring consumer (fetch wait 10 ms) got it (information);
* scored_at (scorer only): the ``scored_at`` field of the score record (information).

Target (issue 4): scorer p99 at 1,000 events/s <= 2x the forwarder's p99 at the same rate.
Writes ``benchmarks/results/latency_bench.json``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import orjson

from benchmarks.common import print_table, print_targets, verdict
from benchmarks.stream_support import (
    Contender,
    OutputLog,
    Topics,
    bench_inputs,
    bench_parser,
    client_kwargs,
    contender_command,
    machine,
    prefixed,
    read_outputs,
    save_results,
)

CONTENDERS = ("scorer", "aiokafka-forward")
P99_RATIO_TARGET = 2.0
WARMUP_EVENTS = 400


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {
            "p50_ms": float("nan"),
            "p95_ms": float("nan"),
            "p99_ms": float("nan"),
            "max_ms": float("nan"),
        }
    arr = np.asarray(values) * 1000.0
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "max_ms": float(arr.max())}


async def drive(
    contender: Contender, bootstrap: str, rows: list[Any], rates: list[int], seconds: float
) -> tuple[OutputLog, dict[str, dict[str, float]]]:
    """Warm up, then one phase per rate; returns everything read from the output topic and the phases."""
    from headline_scorer.replay import replay_events

    kwargs = client_kwargs(bootstrap)
    done = asyncio.Event()
    total = WARMUP_EVENTS + sum(int(r * seconds) for r in rates)
    reader = asyncio.create_task(
        read_outputs(
            bootstrap,
            contender.topics.output,
            expected=total,
            timeout=600,
            keep_values=True,
            stop=done.is_set,
            alive=contender.check_alive,
        )
    )
    phases: dict[str, dict[str, float]] = {}
    warm = prefixed(rows, "warm-")
    await replay_events(
        warm, client_kwargs=kwargs, topic=contender.topics.input, rate=200, limit=WARMUP_EVENTS
    )
    await asyncio.sleep(2.0)
    for rate in rates:
        start = time.time()
        report = await replay_events(
            prefixed(rows, f"r{rate}-"),
            client_kwargs=kwargs,
            topic=contender.topics.input,
            rate=rate,
            limit=int(rate * seconds),
        )
        phases[str(rate)] = {"start": start, "sent": report.valid, "offered_rate": report.rate}
        await asyncio.sleep(1.0)
    await asyncio.sleep(2.0)
    done.set()
    return await reader, phases


def analyse(log: OutputLog, phases: dict[str, dict[str, float]], skip: float) -> dict[str, Any]:
    by_phase: dict[str, dict[str, list[float]]] = {
        p: {"produced": [], "received": [], "scored_at": []} for p in phases
    }
    counts = dict.fromkeys(phases, 0)
    for value, ts_ms, received in zip(log.values, log.timestamps_ms, log.received, strict=True):
        record = orjson.loads(value)
        phase = str(record["id"]).split("-", 1)[0][1:]
        if phase not in phases:
            continue
        counts[phase] += 1
        published = _seconds(record.get("event_time") or record["published_at"])
        if published < phases[phase]["start"] + skip:
            continue
        lat = by_phase[phase]
        lat["produced"].append(ts_ms / 1000.0 - published)
        lat["received"].append(received - published)
        if "scored_at" in record:
            lat["scored_at"].append(_seconds(record["scored_at"]) - published)
    out: dict[str, Any] = {}
    for phase, lat in by_phase.items():
        out[phase] = {
            "offered_rate": phases[phase]["offered_rate"],
            "sent": phases[phase]["sent"],
            "outputs": counts[phase],
            "measured_events": len(lat["produced"]),
            "produced": percentiles(lat["produced"]),
            "received": percentiles(lat["received"]),
        }
        if lat["scored_at"]:
            out[phase]["scored_at"] = percentiles(lat["scored_at"])
    return out


def run_contender(
    name: str,
    rows: list[Any],
    rates: list[int],
    seconds: float,
    skip: float,
    registry: Path,
    workdir: Path,
    fetch_wait_ms: int,
) -> dict[str, Any]:
    from headline_scorer.embedded_broker import EmbeddedBroker

    result: dict[str, Any] = {"contender": name, "ready_seconds": [], "phases": {}}
    for rate in rates:  # a fresh broker per rate: its fetch cost grows with the record batches it holds
        with (
            EmbeddedBroker() as broker,
            Contender(
                name,
                contender_command(name),
                broker.bootstrap,
                Topics.created(broker.bootstrap, name),
                registry,
                workdir / f"{name}-{rate}.log",
                extra_env={"FETCH_MAX_WAIT_MS": str(fetch_wait_ms)},
            ) as contender,
        ):
            if name == "scorer":
                result["ready_seconds"].append(contender.wait_ready())
            log, phases = asyncio.run(drive(contender, broker.bootstrap, rows, [rate], seconds))
        result["phases"] |= analyse(log, phases, skip)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "latency_bench")
    parser.add_argument("--rates", default="500,1000,2000")
    parser.add_argument("--seconds", type=float, default=25.0, help="length of each rate's phase")
    parser.add_argument("--skip", type=float, default=3.0, help="seconds left out at the start of each phase")
    parser.add_argument("--fetch-wait-ms", type=int, default=10, help="FETCH_MAX_WAIT_MS of both contenders")
    args = parser.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",")]
    inputs = bench_inputs(fresh_model=args.fresh_model)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="latency-bench-") as tmp:
        for name in CONTENDERS:
            print(f"[{name}] rates {rates} events/s, {args.seconds:g} s each ...", flush=True)
            results[name] = run_contender(
                name,
                inputs.rows,
                rates,
                args.seconds,
                args.skip,
                inputs.registry,
                Path(tmp),
                args.fetch_wait_ms,
            )

    table = []
    for name, res in results.items():
        for rate, ph in res["phases"].items():
            p = ph["produced"]
            table.append(
                [
                    name,
                    rate,
                    f"{ph['offered_rate']:.0f}",
                    f"{ph['outputs']}/{ph['sent']}",
                    f"{p['p50_ms']:.1f}",
                    f"{p['p95_ms']:.1f}",
                    f"{p['p99_ms']:.1f}",
                    f"{p['max_ms']:.0f}",
                    f"{ph['received']['p99_ms']:.1f}",
                ]
            )
    print()
    print(
        f"event time -> output record produced, ms; fetch wait {args.fetch_wait_ms} ms; {machine()['cpus']} cores"
    )
    print_table(
        ["contender", "rate", "offered/s", "out/sent", "p50", "p95", "p99", "max", "p99 received"], table
    )
    targets = []
    scorer_p99 = results["scorer"]["phases"].get("1000", {}).get("produced", {}).get("p99_ms")
    fwd_p99 = results["aiokafka-forward"]["phases"].get("1000", {}).get("produced", {}).get("p99_ms")
    if scorer_p99 is not None and fwd_p99:
        ratio = scorer_p99 / fwd_p99
        ok = ratio <= P99_RATIO_TARGET
        targets.append(
            {
                "target": "scorer p99 / forwarder p99 at 1,000/s",
                "measured": f"{ratio:.2f}x ({scorer_p99:.1f} / {fwd_p99:.1f} ms)",
                "goal": f"<= {P99_RATIO_TARGET:g}x",
                "verdict": verdict(ok),
                "value": ratio,
            }
        )
        print()
        print_targets(targets)
    save_results(
        args.out,
        "latency_bench",
        inputs,
        seconds_per_rate=args.seconds,
        skip_seconds=args.skip,
        fetch_max_wait_ms=args.fetch_wait_ms,
        latency_definition="output record Kafka timestamp (producer append time) - published_at",
        results=results,
        targets=targets,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
