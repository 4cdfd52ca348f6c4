"""Worker CPU per event of the scoring path: before the outcome join and shadow scoring, with them off, and on.

Run from the project root::

    .venv/bin/python benchmarks/loop_cost_bench.py --before a8bd902 [--events 20000] [--repeats 5]
        [--variants before,off,on]

Variants, each a ``headline-scorer worker`` process on the same model registry and the same input:

* ``before``: the worker of the code at ``--before REV`` (checked out into a temporary git
  worktree, removed at the end): the scoring path before outcomes, the join and shadow scoring;
* ``off``: this code with ``JOIN_ENABLED=false`` and ``SHADOW_ENABLED=false`` (the registry marks a
  shadow version all the same; outcomes wait in their topic, unread);
* ``join``: the join on, the shadow off (diagnosis, with ``--variants``);
* ``shadow``: the shadow on, the join off (diagnosis, with ``--variants``);
* ``on``: both on: every event scored by the current and by the shadow version (scores to the
  shadow topic), outcomes consumed and joined (labelled rows, changelog, live quality).

The shadow version is a second export of the benchmark model's checkpoint (same architecture and
vocabulary, so the same scoring cost as the current one), in a copy of the benchmark registry
cached beside it.

Each run: a fresh embedded broker, 4-partition topics, the input topic pre-loaded with ``--events``
headline events (the Upworthy headlines, keyed by id; the default 20,000 stays within the file's
22,000 distinct headlines, so every event is a headline new to the worker, as in a news stream),
the outcomes topic with one cumulative outcome (impressions 100-5,000, clicks up to 5 %) per id,
then the worker started.
Measured: the worker's CPU seconds (``/proc/<pid>/stat``, sampled every 50 ms) from its first
output record to its last one (the records' Kafka timestamps; scores, and for the variants with
the join or the shadow the labelled rows and shadow scores as well, read until 2 s pass without a
new one), divided by the scores produced after the first instant. The variants are interleaved:
repeat ``r`` runs them in an order rotated by ``r``, so drifts in the machine's load spread over
all of them. Printed: per variant the median and the spread (min-max) of µs per event, and the
ratios to ``before`` (median of the per-repeat ratios, all measured in the same run).

Target (issue 15): the scoring path with the join and the shadow off costs at most 10 % more than
before (``off`` / ``before`` <= 1.10). Variants the code does not have yet (no ``stream.join``
or no ``Registry.set_shadow``) run with that part missing, and the results say so.
Writes ``benchmarks/results/loop_cost_bench.json``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_table, print_targets, verdict
from benchmarks.stream_support import (
    ROOT,
    Contender,
    CpuSampler,
    Topics,
    bench_inputs,
    bench_parser,
    choose,
    client_kwargs,
    produce_all,
    read_outputs,
    save_results,
    scorer_command,
)

VARIANTS = ("before", "off", "join", "shadow", "on")
DEFAULT_VARIANTS = "before,off,on"
RATIO_TARGET = 1.10
QUIET_SECONDS = 2.0


@dataclass(frozen=True)
class Variant:
    name: str
    join: bool
    shadow: bool
    before: bool = False

    def env(self) -> dict[str, str]:
        return {"JOIN_ENABLED": str(self.join).lower(), "SHADOW_ENABLED": str(self.shadow).lower()}


SPECS = {
    "before": Variant("before", join=False, shadow=False, before=True),
    "off": Variant("off", join=False, shadow=False),
    "join": Variant("join", join=True, shadow=False),
    "shadow": Variant("shadow", join=False, shadow=True),
    "on": Variant("on", join=True, shadow=True),
}


def has_join() -> bool:
    return importlib.util.find_spec("stream.join") is not None


def shadow_registry(base: Path) -> tuple[Path, str | None]:
    """A copy of ``base`` with a second export of its model marked shadow (cached beside ``base``).

    Returns the registry and the shadow version, or None when the code has no shadow versions.
    """
    from artifact.manifest import CHECKPOINT_FILE
    from artifact.registry import Registry

    root = base.with_name(base.name + "-shadow")
    registry = Registry(root)
    if not hasattr(registry, "set_shadow"):
        return base, None
    current = Registry(base).current_version()
    assert current is not None
    if root.is_dir() and registry.current_version() == current:
        others = [v for v in registry.versions() if v != current]
        if others:
            if registry.shadow_version() != others[-1]:
                registry.set_shadow(others[-1])
            return root, others[-1]
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(base, root)
    import torch

    from export.build import export_to_registry

    torch.set_num_threads(1)
    print("exporting the model a second time as the shadow version ...", flush=True)
    checkpoint = registry.version_dir(current) / CHECKPOINT_FILE
    time.sleep(1.0)  # version names carry the export time to the second
    shadow = export_to_registry(checkpoint, None, registry, make_current=False).version
    registry.set_shadow(shadow)
    return root, shadow


@contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """The project at ``rev`` in a temporary git worktree (removed afterwards)."""
    path = Path(tempfile.mkdtemp(prefix="loop-cost-before-"))
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(path, ignore_errors=True)


def outcome_records(ids: list[str], seed: int = 0) -> list[tuple[bytes, bytes]]:
    """One cumulative outcome per id: impressions 100-5,000, clicks up to 5 % of them."""
    rnd = random.Random(seed)
    out = []
    for event_id in ids:
        impressions = rnd.randint(100, 5000)
        clicks = rnd.randint(0, impressions // 20)
        value = {"id": event_id, "impressions": impressions, "clicks": clicks}
        out.append((event_id.encode(), json.dumps(value).encode()))
    return out


async def preload(bootstrap: str, topics: Topics, rows: list[Any], events: int) -> list[str]:
    """``events`` headline events on the input topic and one outcome per id on the outcomes topic."""
    from headline_scorer.replay import replay_events

    report = await replay_events(
        rows,
        client_kwargs=client_kwargs(bootstrap),
        topic=topics.input,
        rate=None,
        limit=events,
        keep_ids=True,
    )
    if report.failed or report.valid != events:
        raise RuntimeError(f"pre-load: {report.render()}")
    await produce_all(bootstrap, topics.outcomes, outcome_records(report.valid_ids))
    return report.valid_ids


def run_variant(
    variant: Variant,
    rows: list[Any],
    events: int,
    registry: Path,
    code_root: Path,
    log_path: Path,
    *,
    shadow_active: bool,
) -> dict[str, Any]:
    """One worker of ``variant`` on a fresh broker; its CPU per event from its first output to its last."""
    from headline_scorer.embedded_broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        topics = Topics.created(broker.bootstrap, variant.name)
        asyncio.run(preload(broker.bootstrap, topics, rows, events))
        # the shadow scores and labelled rows flow with the scores: read until every score is out
        # and nothing more comes for QUIET_SECONDS (a shadow loaded after the first batches scores fewer)
        read = [topics.output]
        if variant.shadow and shadow_active:
            read.append(topics.shadow)
        if variant.join:
            read.append(topics.labelled)
        worker = Contender(
            variant.name,
            scorer_command(),
            broker.bootstrap,
            topics,
            registry,
            log_path,
            variant.env(),
            root=code_root,
        )
        with worker, CpuSampler(worker.pid) as sampler:
            log = asyncio.run(
                read_outputs(
                    broker.bootstrap,
                    read,
                    expected=events,
                    timeout=600,
                    quiet=QUIET_SECONDS,
                    alive=worker.check_alive,
                )
            )
            scraped = worker.metrics()
    scores = sorted(log.stamps_of(topics.output))
    if len(scores) < events:
        raise RuntimeError(f"{variant.name}: {len(scores)} of {events} scores; log {log_path}")
    first = min(log.timestamps_ms) / 1000
    last = max(log.timestamps_ms) / 1000
    counted = sum(1 for s in scores if s / 1000 > first)
    cpu = sampler.cpu_at(last) - sampler.cpu_at(first)

    def metric(prefix: str) -> dict[str, float]:
        return {k: v for k, v in scraped.items() if k.startswith(prefix) and not k.endswith("_created{}")}

    outcomes = scraped.get("headline_scorer_outcomes_consumed_total{}", 0.0)
    shadow_scores = len(log.stamps_of(topics.shadow))
    if variant.shadow and shadow_active and shadow_scores < events:
        print(f"  WARNING: {shadow_scores} of {events} shadow scores on the shadow topic", flush=True)
    return {
        "variant": variant.name,
        "cpu_us_per_event": cpu / counted * 1e6,
        # per input record: headline events and the outcomes the worker consumed (one per id)
        "cpu_us_per_input_record": cpu / (counted * (1 + outcomes / events)) * 1e6,
        "window_seconds": last - first,
        "events_per_second": counted / max(last - first, 1e-3),
        "scores": len(scores),
        "shadow_scores": shadow_scores,
        "labelled_rows": len(log.stamps_of(topics.labelled)),
        "outcomes": metric("headline_scorer_outcomes_consumed_total")
        | metric("headline_scorer_join_outcomes_total")
        | metric("headline_scorer_join_scores_matched_total"),
        "shadow": metric("headline_scorer_shadow_events_scored_total")
        | metric("headline_scorer_shadow_errors_total"),
    }


def summarize(runs: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, Any]:
    """Per variant: median, min, max of µs/event; ratios to ``before`` paired by repeat."""
    by: dict[str, list[dict[str, Any]]] = {
        n: [r for r in runs if r["variant"] == n and "error" not in r] for n in names
    }
    out: dict[str, Any] = {}
    for name, rs in by.items():
        values = [r["cpu_us_per_event"] for r in rs]
        if not values:
            out[name] = {"runs": 0}
            continue
        out[name] = {
            "runs": len(values),
            "median_us": statistics.median(values),
            "min_us": min(values),
            "max_us": max(values),
            "values_us": [round(v, 2) for v in values],
            "median_events_per_second": statistics.median(r["events_per_second"] for r in rs),
            "median_us_per_input_record": statistics.median(r["cpu_us_per_input_record"] for r in rs),
        }
    base = "before" if "before" in names and out.get("before", {}).get("runs") else "off"
    for name in names:
        paired = [
            r["cpu_us_per_event"] / b["cpu_us_per_event"]
            for r in by.get(name, [])
            for b in by.get(base, [])
            if b["repeat"] == r["repeat"]
        ]
        if name != base and paired:
            out[name]["ratio_to"] = base
            out[name]["ratio_median"] = statistics.median(paired)
            out[name]["ratio_min"] = min(paired)
            out[name]["ratio_max"] = max(paired)
            out[name]["ratio_of_medians"] = out[name]["median_us"] / out[base]["median_us"]
    return out


def base_of(summary: dict[str, Any]) -> str:
    return next((s["ratio_to"] for s in summary.values() if "ratio_to" in s), "before")


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "loop_cost_bench")
    parser.add_argument("--events", type=int, default=20_000, help="headline events per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--variants", default=DEFAULT_VARIANTS, help=f"comma-separated subset of {','.join(VARIANTS)}"
    )
    parser.add_argument("--before", metavar="REV", help="the commit whose worker is the 'before' variant")
    args = parser.parse_args(argv)
    names = choose(parser, args.variants, VARIANTS)
    if "before" in names and not args.before:
        parser.error("the 'before' variant needs --before REV (the commit before the outcome join)")

    inputs = bench_inputs(fresh_model=args.fresh_model)
    registry, shadow_version = shadow_registry(inputs.registry)
    join_available = has_join()
    missing = ([] if join_available else ["join (no stream.join in this code)"]) + (
        [] if shadow_version else ["shadow (no Registry.set_shadow in this code)"]
    )
    for part in missing:
        print(f"not in this code yet: {part}; the variants run without it", flush=True)
    runs: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="loop-cost-") as tmp,
        checkout_or_here(args.before, names) as before_root,
    ):
        for repeat in range(args.repeats):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in order:
                variant = SPECS[name]
                print(f"[repeat {repeat + 1}/{args.repeats}] {name}: {args.events} events ...", flush=True)
                log_path = Path(tmp) / f"{name}-{repeat}.log"
                try:
                    result = run_variant(
                        variant,
                        inputs.rows,
                        args.events,
                        registry,
                        before_root if variant.before else ROOT,
                        log_path,
                        shadow_active=shadow_version is not None,
                    )
                except Exception as exc:  # one failed run must not hide the others' figures
                    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
                    print(f"  FAILED: {exc}\n{tail}", flush=True)
                    runs.append({"variant": name, "repeat": repeat, "error": str(exc)})
                    continue
                result["repeat"] = repeat
                runs.append(result)
                print(
                    f"  {result['cpu_us_per_event']:.1f} µs CPU/event, {result['events_per_second']:.0f} events/s; "
                    f"shadow scores {result['shadow_scores']}, labelled rows {result['labelled_rows']}",
                    flush=True,
                )

    summary = summarize(runs, names)
    print()
    print(
        f"{args.events} events per run, {args.repeats} repeats interleaved, {inputs.source.label}, one worker, "
        "4 partitions, embedded broker"
    )
    table = []
    for name in names:
        s = summary[name]
        if not s["runs"]:
            table.append([name, "-", "-", "-", "-", "-"])
            continue
        ratio = (
            f"{s['ratio_median']:.3f} ({s['ratio_min']:.3f}-{s['ratio_max']:.3f})"
            if "ratio_median" in s
            else ""
        )
        table.append(
            [
                name,
                f"{s['median_us']:.1f}",
                f"{s['min_us']:.1f}-{s['max_us']:.1f}",
                f"{s['median_events_per_second']:.0f}",
                f"{s['median_us_per_input_record']:.1f}",
                ratio,
            ]
        )
    print_table(
        [
            "variant",
            "CPU µs/event (median)",
            "min-max",
            "events/s",
            "µs/input record",
            f"ratio to {base_of(summary)} (min-max)",
        ],
        table,
    )
    targets = []
    off = summary.get("off", {})
    if off.get("ratio_to") == "before":
        targets.append(
            {
                "target": "scoring path with the join and the shadow off / before the issue, CPU per event",
                "measured": f"{off['ratio_median']:.3f}x ({off['median_us']:.1f} / {summary['before']['median_us']:.1f} µs)",
                "goal": f"<= {RATIO_TARGET:.2f}x",
                "verdict": verdict(off["ratio_median"] <= RATIO_TARGET),
                "value": off["ratio_median"],
            }
        )
    if targets:
        print()
        print_targets(targets)
    save_results(
        args.out,
        "loop_cost_bench",
        inputs,
        events=args.events,
        repeats=args.repeats,
        before=args.before,
        variants=list(names),
        shadow_version=shadow_version,
        join_available=join_available,
        missing=missing,
        summary=summary,
        targets=targets,
        runs=runs,
    )
    return 0


@contextmanager
def checkout_or_here(rev: str | None, names: tuple[str, ...]) -> Iterator[Path]:
    """The ``before`` checkout when that variant runs, else this one."""
    if rev and "before" in names:
        with checkout(rev) as path:
            yield path
    else:
        yield ROOT


if __name__ == "__main__":
    sys.exit(main())
