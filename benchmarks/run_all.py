"""Run the project's benchmarks one after another and write one Markdown summary.

Run from the project root (``make bench`` does the default)::

    .venv/bin/python benchmarks/run_all.py [--skip stream,latency] [--soak-minutes 10] [--train-targets]
    .venv/bin/python benchmarks/run_all.py --summary-only [--update-readme]

Default: ``stream_bench.py`` (~2 min), ``latency_bench.py`` (~3.5 min), ``scoring_cost_bench.py``
(~0.5 min), ``export_bench.py`` (~1 min). ``--train-targets`` adds ``train_targets.py`` (training
time and peak memory on the Upworthy file, with the seed cross-validation; ~2-3 min);
``--soak-minutes N`` adds ``soak.py --minutes N``. Without them their figures come from the last
saved results. Each benchmark runs in its own process, alone on the machine.

Writes ``benchmarks/results/summary.md`` (every figure from ``results/*.json`` with the run's
time, PASS/MISS against the issue targets); ``--update-readme`` also puts it into
``benchmarks/README.md`` between the ``bench-summary`` markers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, verdict
from benchmarks.stream_support import ROOT, machine

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
START_MARK = "<!-- bench-summary:start -->"
END_MARK = "<!-- bench-summary:end -->"
STEPS = {
    "stream": ["stream_bench.py"],
    "latency": ["latency_bench.py"],
    "scoring": ["scoring_cost_bench.py"],
    "export": ["export_bench.py"],
}


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / name
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault(
        "time",
        time.strftime("%Y-%m-%d %H:%M", time.gmtime(path.stat().st_mtime))
        + " (file date; the run time is not recorded)",
    )
    return data


def _stream_rows(data: dict[str, Any]) -> list[list[str]]:
    res = {k: v for k, v in data["results"].items() if "error" not in v}
    rows: list[list[str]] = []
    for name, r in res.items():
        rows.append(
            [
                f"throughput: {name}",
                f"{r['events_per_second']:,.0f} events/s, {r['cpu_us_per_event']:.1f} µs CPU/event "
                f"({r['cpu_seconds_per_1000']:.3f} CPU s/1000), peak RSS {r['peak_rss_mb']:.0f} MB",
                "",
                "",
            ]
        )
    for t in data.get("targets", []):
        rows.append([t["target"], t["measured"], t["goal"], t["verdict"]])
    return rows


def _latency_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, r in data["results"].items():
        for rate, ph in r["phases"].items():
            p = ph["produced"]
            rows.append(
                [
                    f"latency {name} @ {int(rate):,}/s",
                    f"p50 {p['p50_ms']:.0f} / p95 {p['p95_ms']:.0f} / p99 {p['p99_ms']:.0f} ms "
                    f"({ph['outputs']:,}/{ph['sent']:,} out)",
                    "",
                    "",
                ]
            )
    for t in data.get("targets", []):
        rows.append([t["target"], t["measured"], t["goal"], t["verdict"]])
    return rows


def _scoring_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in data["scoring"]:
        rows.append(
            [
                f"scoring cost, batch {r['batch']}",
                f"ONNX {r['onnx_us_per_event']:.1f}, loader {r['loader_new_titles_us_per_event']:.1f} "
                f"({r['ratio_loader_new_titles']:.1f}x; cold {r['loader_cold_us_per_event']:.0f}, repeat "
                f"{r['loader_repeat_us_per_event']:.1f}), stream batch {r['stream_batch_us_per_event']:.1f} µs/event",
                "",
                "",
            ]
        )
    for t in data.get("targets", []):
        rows.append([t["target"], t["measured"], t["goal"], t["verdict"]])
    return rows


def _training_rows(train: dict[str, Any] | None, export: dict[str, Any] | None) -> list[list[str]]:
    rows = []
    full = (train or {}).get("full_training") or {}
    if full:
        rows.append(
            [
                "training time, whole Upworthy file (train_targets.py)",
                f"{full['seconds']:.0f} s ({full['epochs']} epochs, 1 thread)",
                "<= 600 s",
                verdict(full["seconds"] <= 600),
            ]
        )
        rows.append(
            [
                "training peak RSS",
                f"{full['peak_rss_mb']:.0f} MB",
                "< 4,096 MB",
                verdict(full["peak_rss_mb"] < 4096),
            ]
        )
    if export:
        rows.append(
            [
                "export + publish (export_bench.py)",
                f"{export['export_and_publish_seconds']:.1f} s (training before it: {export['train_seconds']:.0f} s, "
                f"{export['epochs']} epochs)",
                "<= 60 s",
                verdict(export["export_and_publish_seconds"] <= 60),
            ]
        )
    return rows


def _soak_rows(data: dict[str, Any]) -> list[list[str]]:
    s = data["summary"]
    rows = [
        [
            f"soak: {s['seconds'] / 60:.1f} min at {data['rate']:,.0f}/s",
            f"{s['sent']:,.0f} sent, {s['scored']:,.0f} scored, broker RSS {s['broker_rss_final_mb']:.0f} MB at the end",
            "",
            "",
        ]
    ]
    rows += [[t["target"], t["measured"], t["goal"], t["verdict"]] for t in data["targets"]]
    return rows


def build_summary() -> str:
    """The Markdown summary of every saved result."""
    sections: list[tuple[str, dict[str, Any] | None, Any]] = [
        ("stream_bench.json", _load("stream_bench.json"), _stream_rows),
        ("latency_bench.json", _load("latency_bench.json"), _latency_rows),
        ("scoring_cost_bench.json", _load("scoring_cost_bench.json"), _scoring_rows),
        ("soak.json", _load("soak.json"), _soak_rows),
    ]
    stream = sections[0][1]
    m = (stream or {}).get("machine") or machine()  # where the stream figures were measured
    lines = [
        f"Machine: {m['cpus']} cores ({m['cpu_model']}), {m['platform']}, Python {m['python']}; "
        "embedded broker (Tansu), one worker, 4 partitions.",
        "",
        "| figure | measured | target | |",
        "| --- | --- | --- | --- |",
    ]
    sources = []
    for name, data, fn in sections:
        if data is None:
            continue
        sources.append(f"`{name}` {data['time']}")
        for row in fn(data):
            lines.append("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
    train, export = _load("train_targets.json"), _load("export_bench.json")
    for row in _training_rows(train, export):
        lines.append("| " + " | ".join(row) + " |")
    if train:
        sources.append(f"`train_targets.json` {train['time']}")
    if export:
        sources.append(f"`export_bench.json` {export['time']}")
    lines += ["", "Runs: " + "; ".join(sources) + "."]
    return "\n".join(lines) + "\n"


def update_readme(summary: str) -> bool:
    text = README.read_text(encoding="utf-8")
    if START_MARK not in text or END_MARK not in text:
        return False
    head, rest = text.split(START_MARK, 1)
    _, tail = rest.split(END_MARK, 1)
    README.write_text(head + START_MARK + "\n" + summary + END_MARK + tail, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip", default="", help=f"comma-separated steps to skip: {','.join(STEPS)}")
    parser.add_argument("--soak-minutes", type=float, default=0.0, help="also run the soak (minutes)")
    parser.add_argument("--train-targets", action="store_true", help="also run train_targets.py")
    parser.add_argument(
        "--summary-only", action="store_true", help="only rebuild the summary from saved results"
    )
    parser.add_argument(
        "--update-readme", action="store_true", help="write the summary into benchmarks/README.md"
    )
    args = parser.parse_args(argv)

    failed = []
    if not args.summary_only:
        skip = {s.strip() for s in args.skip.split(",") if s.strip()}
        plan = [(name, cmd) for name, cmd in STEPS.items() if name not in skip]
        if args.train_targets:
            plan.append(("train_targets", ["train_targets.py"]))
        if args.soak_minutes > 0:
            plan.append(("soak", ["soak.py", "--minutes", str(args.soak_minutes)]))
        for name, cmd in plan:
            print(f"=== {name}: {' '.join(cmd)}", flush=True)
            started = time.perf_counter()
            code = subprocess.call([sys.executable, str(HERE / cmd[0]), *cmd[1:]], cwd=ROOT)
            print(f"=== {name}: exit {code} after {time.perf_counter() - started:.0f} s\n", flush=True)
            if code != 0:
                failed.append(name)
    summary = build_summary()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "summary.md").write_text(summary, encoding="utf-8")
    print(summary)
    print(f"saved {RESULTS_DIR / 'summary.md'}")
    if args.update_readme:
        print("README updated" if update_readme(summary) else f"no {START_MARK} marker in {README}")
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
