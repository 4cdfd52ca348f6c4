"""Soak (a benchmark, not CI): one scorer worker at a steady 1,000 events/s for N minutes.

Run from the project root::

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--rate 1000]

A fresh embedded broker, one ``headline-scorer worker``, and ``replay_events`` in chunks of
``--chunk-seconds`` (new ids every chunk, so the counts are exact at every chunk boundary).
At each boundary: events sent so far, the worker's ``/metrics`` (events consumed, scored,
dead-lettered, ``headline_scorer_consumer_lag_messages`` summed over partitions), the worker's
and the broker's RSS. Checks (issue 6):

* lag does not grow: after the first minute the backlog (sent - consumed) stays below
  ``--max-backlog-seconds`` of traffic at every boundary and its trend (least squares) is below
  0.5 % of the rate. The lag gauge is reported too; on the embedded broker it reads low because
  the broker's high watermark counts record batches, not records (measured: 10 records
  sent one per request give a high watermark of 10, the same 10 in one batch give 1).
* memory: the worker's RSS stays within 10 % of its level after the first minute.
* no ``ERROR`` (or ``CRITICAL``, or a traceback) in the worker log.

The replay producer lingers ``--linger-ms`` (default 50 ms, about 12 records per partition
batch at 1,000/s) instead of the replay's 5 ms: the embedded broker stops answering fetches
once a partition holds some 20,000-40,000 record batches (measured: fetch at the log end 6 ms
at 5,000 single-record batches, 10 ms at 20,000, no answer within 30 s at 40,000), and with
5 ms batches at 1,000/s over 4 partitions a 10-minute soak crosses that after about 4 minutes:
the worker then stalls waiting on the broker. ``--linger-ms 5`` reproduces it.

Writes ``benchmarks/results/soak.json`` (every sample included).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.common import print_targets, verdict
from benchmarks.stream_support import (
    Contender,
    Topics,
    bench_inputs,
    bench_parser,
    client_kwargs,
    memory_mb,
    prefixed,
    save_results,
    scorer_command,
)

RSS_TOLERANCE = 0.10
TREND_TOLERANCE = 0.005
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback \(most recent call last\)")


def _metric_sum(metrics: dict[str, float], name: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(name + "{"))


async def soak(
    worker: Contender, broker_pid: int | None, bootstrap: str, rows: list[Any], args: argparse.Namespace
) -> list[dict[str, float]]:
    from headline_scorer.replay import replay_events

    kwargs = client_kwargs(bootstrap)
    samples: list[dict[str, float]] = []
    start = time.time()
    sent = 0
    chunk = 0
    per_chunk = int(args.rate * args.chunk_seconds)
    while time.time() - start < args.minutes * 60:
        worker.check_alive()
        report = await replay_events(
            prefixed(rows, f"c{chunk}-"),
            client_kwargs=kwargs,
            topic=worker.topics.input,
            rate=args.rate,
            limit=per_chunk,
            linger_ms=args.linger_ms,
        )
        sent += report.valid
        chunk += 1
        metrics = await asyncio.to_thread(worker.metrics)
        rss, _ = memory_mb(worker.pid)
        broker_rss = memory_mb(broker_pid)[0] if broker_pid else float("nan")
        consumed = metrics.get("headline_scorer_events_consumed_total{}", 0.0)
        sample = {
            "t": time.time() - start,
            "sent": float(sent),
            "consumed": consumed,
            "scored": metrics.get("headline_scorer_events_scored_total{}", 0.0),
            "dead_lettered": _metric_sum(metrics, "headline_scorer_events_dead_lettered_total"),
            "backlog": sent - consumed,
            "lag_gauge_sum": _metric_sum(metrics, "headline_scorer_consumer_lag_messages"),
            "worker_rss_mb": rss,
            "broker_rss_mb": broker_rss,
            "delivery_failures": float(report.failed),
        }
        samples.append(sample)
        if chunk % max(1, int(60 / args.chunk_seconds)) == 0:
            print(
                f"  {sample['t']:6.0f} s  sent {sent}  backlog {sample['backlog']:.0f}  "
                f"lag gauge {sample['lag_gauge_sum']:.0f}  worker RSS {rss:.0f} MB  broker RSS {broker_rss:.0f} MB",
                flush=True,
            )
    return samples


def evaluate(samples: list[dict[str, float]], log_text: str, args: argparse.Namespace) -> dict[str, Any]:
    after = [s for s in samples if s["t"] >= 60.0]
    if len(after) < 2:
        after = samples[len(samples) // 2 :]
    t = np.array([s["t"] for s in after])
    backlog = np.array([s["backlog"] for s in after])
    slope = float(np.polyfit(t, backlog, 1)[0]) if len(after) >= 2 else float("nan")
    max_backlog = float(backlog.max())
    backlog_ok = (
        max_backlog <= args.max_backlog_seconds * args.rate and abs(slope) <= TREND_TOLERANCE * args.rate
    )
    rss_ref = after[0]["worker_rss_mb"]
    rss_max = max(s["worker_rss_mb"] for s in after)
    rss_ok = rss_max <= rss_ref * (1 + RSS_TOLERANCE)
    error_lines = [line for line in log_text.splitlines() if ERROR_LINE.search(line)]
    last = samples[-1]
    return {
        "seconds": last["t"],
        "sent": last["sent"],
        "consumed": last["consumed"],
        "scored": last["scored"],
        "achieved_rate": last["sent"] / last["t"],
        "backlog_max_after_first_minute": max_backlog,
        "backlog_trend_events_per_s": slope,
        "backlog_final": last["backlog"],
        "lag_gauge_max": max(s["lag_gauge_sum"] for s in samples),
        "lag_ok": backlog_ok,
        "rss_after_first_minute_mb": rss_ref,
        "rss_max_mb": rss_max,
        "rss_growth": rss_max / rss_ref - 1.0,
        "rss_ok": rss_ok,
        "broker_rss_final_mb": last["broker_rss_mb"],
        "error_lines": error_lines[:20],
        "errors_ok": not error_lines,
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "soak")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--chunk-seconds", type=float, default=10.0)
    parser.add_argument("--max-backlog-seconds", type=float, default=2.0)
    parser.add_argument(
        "--linger-ms",
        type=int,
        default=50,
        help="replay producer linger (fewer, larger record batches: see the module docstring)",
    )
    args = parser.parse_args(argv)

    from headline_scorer.embedded_broker import EmbeddedBroker

    inputs = bench_inputs(fresh_model=args.fresh_model)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, EmbeddedBroker() as broker:
        topics = Topics.created(broker.bootstrap, "soak")
        worker = Contender(
            "scorer", scorer_command(), broker.bootstrap, topics, inputs.registry, Path(tmp) / "worker.log"
        )
        worker.start()
        try:
            ready = worker.wait_ready()
            print(
                f"worker ready in {ready:.1f} s; {args.minutes:g} min at {args.rate:g} events/s ...",
                flush=True,
            )
            samples = asyncio.run(soak(worker, broker.pid, broker.bootstrap, inputs.rows, args))
            time.sleep(2.0)
            final = worker.metrics()
        finally:
            code = worker.stop()  # its exit code is reported
        log_text = worker.log_path.read_text(errors="replace")
    verdicts = evaluate(samples, log_text, args)
    verdicts["ready_seconds"] = ready
    verdicts["worker_exit_code"] = code
    verdicts["final_consumed"] = final.get("headline_scorer_events_consumed_total{}", 0.0)

    targets = [
        {
            "target": "lag does not grow (backlog after 1st minute)",
            "measured": f"max {verdicts['backlog_max_after_first_minute']:.0f} events, trend "
            f"{verdicts['backlog_trend_events_per_s']:+.2f}/s",
            "goal": f"<= {args.max_backlog_seconds:g} s of traffic, trend <= {100 * TREND_TOLERANCE:g} % of rate",
            "verdict": verdict(verdicts["lag_ok"]),
        },
        {
            "target": "worker RSS within 10 % of its level at 1 min",
            "measured": f"{verdicts['rss_after_first_minute_mb']:.0f} -> max {verdicts['rss_max_mb']:.0f} MB "
            f"({100 * verdicts['rss_growth']:+.1f} %)",
            "goal": "<= +10 %",
            "verdict": verdict(verdicts["rss_ok"]),
        },
        {
            "target": "no ERROR in the worker log",
            "measured": f"{len(verdicts['error_lines'])} lines",
            "goal": "0",
            "verdict": verdict(verdicts["errors_ok"]),
        },
    ]
    print()
    print(
        f"soak {verdicts['seconds'] / 60:.1f} min, {verdicts['sent']:.0f} events at {verdicts['achieved_rate']:.0f}/s, "
        f"scored {verdicts['scored']:.0f}; broker RSS at the end {verdicts['broker_rss_final_mb']:.0f} MB; "
        f"lag gauge max {verdicts['lag_gauge_max']:.0f}; worker exit code {code}"
    )
    print_targets(targets)
    for line in verdicts["error_lines"][:5]:
        print("  log:", line[:200])
    save_results(
        args.out,
        "soak",
        inputs,
        minutes=args.minutes,
        rate=args.rate,
        replay_linger_ms=args.linger_ms,
        summary=verdicts,
        targets=targets,
        samples=samples,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
