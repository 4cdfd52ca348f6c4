"""Scoring cost per event at batch sizes 1, 8, 64, 256: runtime loader vs the bare ONNX call, and the stream's batch step.

Run from the project root::

    .venv/bin/python benchmarks/scoring_cost_bench.py [--repeats 30]

Uses the stream benchmarks' model (a few epochs on the same data, ``benchmarks/stream_support.py``;
no training when it is cached) and the timing protocol of ``benchmarks/export_bench.py``
(``_time_batches``: median of ``--repeats`` calls, one onnxruntime thread):

* ``onnx``: ``OnnxScorer.model_outputs`` on an already featurized batch (the bare ``InferenceSession.run``
  on the whole batch: the target's reference);
* ``onnx chunked``: ``OnnxScorer.chunked_outputs``, the same model calls as the loader makes (rows of
  ``runtime.ROWS_PER_CALL``, each cut to its longest row): loader / this is the featurization overhead alone;
* ``loader cold`` / ``new titles`` / ``repeat``: ``ScoringModel.score`` with both featurizer caches
  cleared, with only the title cache cleared (new headlines, known words: a stream's steady state),
  and on the same headlines again;
* ``stream batch``: ``stream.scoring.BatchScorer.process`` on raw JSON records (decode + validate,
  score, encode the score records, metrics, drift window), title cache cleared before each call:
  what the scorer's scoring thread does per event.

Writes ``benchmarks/results/scoring_cost_bench.json``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_table, print_targets, verdict
from benchmarks.export_bench import BATCHES, _time_batches, warm_caches
from benchmarks.stream_support import bench_inputs, bench_parser, save_results

LOADER_TARGET = 2.0  # the artifact issue's target: loader <= 2x the ONNX call at batch 256


def _stream_batch_seconds(model: Any, payloads: list[list[bytes]], reps: int) -> float:
    """Median seconds per ``BatchScorer.process`` call on new headlines (title cache cleared)."""
    from prometheus_client import CollectorRegistry

    from stream.drift import SlidingWindowDrift
    from stream.metrics import ScorerMetrics
    from stream.scoring import BatchScorer, InRecord

    scorer = BatchScorer(
        ScorerMetrics(CollectorRegistry()),
        max_event_bytes=65536,
        drift_factory=lambda m: SlidingWindowDrift.from_mapping(
            m.manifest.drift, max_events=5000, max_seconds=900
        ),
    )
    batches = [
        [InRecord(f"k{i}".encode(), value, "headlines", 0, i, None) for i, value in enumerate(values)]
        for values in payloads
    ]
    featurizer = model.scorer.featurizer
    cursor = {"i": 0}

    def call() -> None:
        cursor["i"] = (cursor["i"] + 1) % len(batches)
        featurizer._title_cache.clear()
        scorer.process(model, batches[cursor["i"]])

    call()
    return _median_seconds(call, reps)


def _median_seconds(call: Any, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "scoring_cost_bench")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)

    from artifact.registry import Registry
    from headline_scorer.replay import event_value
    from stream.dlq import rfc3339_utc

    inputs = bench_inputs(fresh_model=args.fresh_model)
    source, rows = inputs.source, inputs.rows
    registry = Registry(inputs.registry)
    model = registry.load_current(intra_op_threads=1)
    featurizer = model.scorer.featurizer
    featurizer.clear_caches()
    featurizer.transform([r.title for r in rows])  # the stream has seen these words before
    warm = warm_caches(featurizer)
    published = rfc3339_utc(time.time())
    table: list[dict[str, Any]] = []
    for size in BATCHES:
        n_batches = max(1, min(len(rows) // size, 200 if size < 64 else 12))
        chunks = [rows[i * size : (i + 1) * size] for i in range(n_batches)]
        batches = [[r.title for r in chunk] for chunk in chunks]
        cats: list[str | None] = [None] * size
        features = [featurizer.transform(b, cats) for b in batches]
        reps = max(args.repeats, 2 * n_batches) if size < 64 else args.repeats
        timings = _time_batches(model, batches, features, reps, warm)
        payloads = [[event_value(r, published)[1] for r in chunk] for chunk in chunks]
        timings["stream_batch"] = _stream_batch_seconds(model, payloads, reps)
        row: dict[str, Any] = {"batch": size}
        row |= {f"{k}_us_per_event": v / size * 1e6 for k, v in timings.items()}
        row |= {f"ratio_{k}": timings[k] / timings["onnx"] for k in timings if k != "onnx"}
        table.append(row)

    print(f"{source.label}, model {model.version}, 1 onnxruntime thread, median of {args.repeats}+ calls")
    print_table(
        [
            "batch",
            "ONNX µs/ev",
            "ONNX chunked",
            "loader cold",
            "loader new titles",
            "loader repeat",
            "stream batch",
        ],
        [
            [
                str(r["batch"]),
                f"{r['onnx_us_per_event']:.1f}",
                f"{r['onnx_chunked_us_per_event']:.1f}",
                f"{r['loader_cold_us_per_event']:.1f} ({r['ratio_loader_cold']:.1f}x)",
                f"{r['loader_new_titles_us_per_event']:.1f} ({r['ratio_loader_new_titles']:.1f}x)",
                f"{r['loader_repeat_us_per_event']:.1f} ({r['ratio_loader_repeat']:.1f}x)",
                f"{r['stream_batch_us_per_event']:.1f} ({r['ratio_stream_batch']:.1f}x)",
            ]
            for r in table
        ],
    )
    at256 = next(r for r in table if r["batch"] == 256)
    ok = at256["ratio_loader_new_titles"] <= LOADER_TARGET
    targets = [
        {
            "target": "loader / ONNX at batch 256, new titles (artifact issue)",
            "measured": f"{at256['ratio_loader_new_titles']:.2f}x",
            "goal": f"<= {LOADER_TARGET:g}x",
            "verdict": verdict(ok),
            "value": at256["ratio_loader_new_titles"],
        },
        {
            "target": "for information: loader / ONNX in the loader's row chunks, 256 new titles",
            "measured": f"{at256['ratio_loader_new_titles'] / at256['ratio_onnx_chunked']:.2f}x",
            "goal": "",
            "verdict": "",
            "value": at256["ratio_loader_new_titles"] / at256["ratio_onnx_chunked"],
        },
    ]
    print()
    print_targets(targets)
    save_results(
        args.out, "scoring_cost_bench", inputs, model_version=model.version, scoring=table, targets=targets
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
