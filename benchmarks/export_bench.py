"""Artifact targets: export time of an Upworthy-trained model, and runtime-loader cost vs the bare ONNX call.

Run from the project root (one torch thread, one onnxruntime thread)::

    PYTHONPATH=. .venv/bin/python benchmarks/export_bench.py [--epochs 8] [--repeats 30]

1. Train on the whole Upworthy file (``--epochs``, default 8; not part of the timing),
   then time ``export_to_registry`` (ONNX export, parity on the validation rows and the
   hard strings, evaluation, drift reference over the training rows, canaries, hashes,
   publish with full verification). Target: <= 60 s.
2. For batches of 1, 8, 64, 256 held-out headlines: per-event cost of
   ``ScoringModel.score`` (featurize + ONNX + post-processing) against the bare
   ``InferenceSession.run`` on the same, already featurized batch. Three loader figures:
   ``cold`` = headlines never seen by this process (both featurizer caches cleared before
   every call; the honest worst case), ``new titles`` = unseen headlines but the word cache
   warm (the steady state of a stream: new headlines, known words), ``repeat`` = the same
   headlines again (title cache hit). Target at 256: loader <= 2x the ONNX call.

Writes ``benchmarks/results/export_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.common import RESULTS_DIR, load_upworthy, require_data, set_threads

BATCHES = (1, 8, 64, 256)


def _median_seconds(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _time_batches(model: Any, batches: list[list[str]], features: list[Any], reps: int) -> dict[str, float]:
    """Median seconds per call: bare ONNX, and the loader cold / with new titles / repeated."""
    scorer = model.scorer
    featurizer = scorer.featurizer
    cats: list[str | None] = [None] * len(batches[0])
    cursor = {"i": 0}

    def step() -> int:
        cursor["i"] = (cursor["i"] + 1) % len(batches)
        return cursor["i"]

    def onnx_call() -> None:
        scorer.model_outputs(features[step()])

    def cold() -> None:
        featurizer._title_cache.clear()
        featurizer._word_cache.clear()
        model.score(batches[step()], cats)

    def new_titles() -> None:
        featurizer._title_cache.clear()
        model.score(batches[step()], cats)

    def repeat() -> None:
        model.score(batches[0], cats)

    model.score(batches[0], cats)
    return {
        "onnx": _median_seconds(onnx_call, reps),
        "loader_cold": _median_seconds(cold, reps),
        "loader_new_titles": _median_seconds(new_titles, reps),
        "loader_repeat": _median_seconds(repeat, reps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    require_data()
    set_threads(1)

    from export.registry import Registry
    from training.export_model import export_to_registry
    from training.train import TrainConfig, train

    data = load_upworthy()
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        started = time.perf_counter()
        result = train(data, Path(tmp) / "run", TrainConfig(epochs=args.epochs), progress=False)
        train_seconds = time.perf_counter() - started
        registry = Registry(Path(tmp) / "registry")
        exported = export_to_registry(result.best_checkpoint, data, registry)
        export_seconds = exported.seconds
        publish_total = time.perf_counter() - started - train_seconds
        model = registry.load_current(intra_op_threads=1)
        onnx_bytes = (exported.version_dir / "model.onnx").stat().st_size

    manifest = exported.manifest
    featurizer = model.scorer.featurizer
    held_out = data.subset(result.val_index)
    titles = held_out.titles
    rows: list[dict[str, Any]] = []
    for size in BATCHES:
        n_batches = max(1, min(len(titles) // size, 200 if size < 64 else 12))
        batches = [titles[i * size : (i + 1) * size] for i in range(n_batches)]
        cats: list[str | None] = [None] * size
        features = [featurizer.transform(b, cats) for b in batches]
        reps = max(args.repeats, 2 * n_batches) if size < 64 else args.repeats
        timings = _time_batches(model, batches, features, reps)
        row = {"batch": size, **{f"{k}_us_per_event": v / size * 1e6 for k, v in timings.items()}}
        row |= {
            f"ratio_{k}": timings[k] / timings["onnx"]
            for k in ("loader_cold", "loader_new_titles", "loader_repeat")
        }
        row["tokens_width"] = int(np.median([f.token_ids.shape[1] for f in features]))
        rows.append(row)

    at256 = next(r for r in rows if r["batch"] == 256)
    out = {
        "machine": platform.platform(),
        "python": sys.version.split()[0],
        "data": "upworthy/packages.csv",
        "rows": len(data),
        "epochs": args.epochs,
        "train_seconds": train_seconds,
        "model_version": manifest.model_version,
        "onnx_bytes": onnx_bytes,
        "vocabulary": len(featurizer.state.vocabulary),
        "export_seconds": export_seconds,
        "export_and_publish_seconds": publish_total,
        "parity": manifest.parity.model_dump(),
        "validation_metrics": {
            k: manifest.validation_metrics.get(k) for k in ("quality_roc_auc", "ctr_mae_normalized")
        },
        "scoring": rows,
        "targets": {
            "export_within_60s": publish_total <= 60.0,
            "loader_new_titles_at_256_within_2x_onnx": at256["ratio_loader_new_titles"] <= 2.0,
            "loader_cold_at_256_within_2x_onnx": at256["ratio_loader_cold"] <= 2.0,
        },
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "export_bench.json").write_text(json.dumps(out, indent=2), encoding="utf-8")

    print(
        f"train {train_seconds:.1f} s ({args.epochs} epochs, {len(data)} rows); vocabulary {out['vocabulary']}"
    )
    print(
        f"export {export_seconds:.1f} s, export + publish {publish_total:.1f} s "
        f"[{'PASS' if publish_total <= 60 else 'MISS'} <= 60 s]; parity max diff "
        f"{max(manifest.parity.max_abs_diff_ctr_normalized, manifest.parity.max_abs_diff_quality_prob):.2g}"
    )
    print("batch  onnx us/ev  cold us/ev (x)   new-titles us/ev (x)   repeat us/ev (x)   width")
    for r in rows:
        print(
            f"{r['batch']:5d}  {r['onnx_us_per_event']:10.2f}  {r['loader_cold_us_per_event']:7.2f} ({r['ratio_loader_cold']:4.1f})"
            f"   {r['loader_new_titles_us_per_event']:12.2f} ({r['ratio_loader_new_titles']:4.1f})"
            f"   {r['loader_repeat_us_per_event']:10.2f} ({r['ratio_loader_repeat']:4.1f})   {r['tokens_width']}"
        )
    verdict = "PASS" if at256["ratio_loader_new_titles"] <= 2.0 else "MISS"
    print(
        f"loader / ONNX at 256 (new titles, warm words): {at256['ratio_loader_new_titles']:.2f}x [{verdict} <= 2x]"
    )


if __name__ == "__main__":
    main()
