"""Round 2 of the Upworthy ranking sweep (session 4): named ``TrainConfig`` variants over training seeds.

Run from the project root::

    PYTHONPATH=. .venv/bin/python benchmarks/rank_sweep2.py [--variants a,b] [--seeds 42,1,2,3,4]

Each variant is the default ``TrainConfig`` with the overrides in ``VARIANTS``, trained
on the Upworthy training tests of ``benchmarks.common.upworthy_split`` and scored on the
held-out tests (target 2 of ``train_targets.py``: headline pairs, significant and all;
per package for information) plus the CTR MAE (normalized) on the held-out rows. The
same split for every seed; the training seed also draws the trainer's validation tests.
Runs are appended to ``--out`` (``benchmarks/results/rank_sweep2_session4.json``), so
variants can be measured in several invocations; a variant/seed already there is skipped.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.common import (
    RESULTS_DIR,
    evaluate_pairs,
    fmt,
    load_upworthy,
    print_table,
    require_data,
    set_threads,
    upworthy_split,
    upworthy_target,
)

#: Overrides of the default TrainConfig, by name (see benchmarks/README.md, "Session 4: ranking, round 2").
VARIANTS: dict[str, dict[str, Any]] = {
    "session4_default": {"ridge_within": 0.0},  # the defaults before this round (plain ridge start)
    "within_0.8": {"ridge_within": 0.8},
    "within_1": {"ridge_within": 1.0},
    "within_0.5": {"ridge_within": 0.5},
    "within_0.8_z": {"ridge_within": 0.8, "rank_pairs": "z"},
    "within_0.8_w3_z": {"ridge_within": 0.8, "rank_weight": 3.0, "rank_pairs": "z"},
    "within_0.8_alpha8": {"ridge_within": 0.8, "ridge_alpha": 8.0},
    "pool": {"rank_pool_headlines": True},
    "within_auto": {"ridge_within": "auto"},
    "within_auto_pool": {"ridge_within": "auto", "rank_pool_headlines": True},
    "auto_rank0.3": {"ridge_within": "auto", "rank_weight": 0.3},
    "auto_rank3": {"ridge_within": "auto", "rank_weight": 3.0},
    "auto_quality0.5": {"ridge_within": "auto", "quality_weight": 0.5},
    "auto_quality1": {"ridge_within": "auto", "quality_weight": 1.0},
    "auto_lr1e-4": {"ridge_within": "auto", "learning_rate": 1e-4},
    "auto_lr5e-4": {"ridge_within": "auto", "learning_rate": 5e-4},
    "within_0.8_pool": {"ridge_within": 0.8, "rank_pool_headlines": True},
    "within_0.8_pool_z": {"ridge_within": 0.8, "rank_pool_headlines": True, "rank_pairs": "z"},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="names from VARIANTS, comma-separated")
    parser.add_argument("--seeds", default="42,1,2,3,4", help="TrainConfig seeds, comma-separated")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the Upworthy test-id split")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "rank_sweep2_session4.json")
    args = parser.parse_args(argv)

    require_data()
    set_threads(1)
    from benchmarks.project_model import project_fit
    from training.train import TrainConfig

    data = load_upworthy()
    split = upworthy_split(data, args.split_seed)
    train_idx, test_idx = split
    train_rows, test_rows = data.subset(train_idx), data.subset(test_idx)
    truth = upworthy_target(test_rows, train_rows)
    train_truth = upworthy_target(train_rows)
    mae_of_mean = float(np.mean(np.abs(truth - train_truth.mean())))
    if args.split_seed != 0 and args.out == RESULTS_DIR / "rank_sweep2_session4.json":
        args.out = RESULTS_DIR / f"rank_sweep2_session4_split{args.split_seed}.json"
    seeds = [int(s) for s in args.seeds.split(",") if s]
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    payload: dict[str, Any] = {"runs": []}
    if args.out.exists():
        payload = json.loads(args.out.read_text(encoding="utf-8"))
    done = {(r["variant"], r["seed"], r.get("split_seed", 0)) for r in payload["runs"]}
    for name in names:
        for seed in seeds:
            if (name, seed, args.split_seed) in done:
                continue
            config = TrainConfig().model_copy(update={**VARIANTS[name], "seed": seed})
            log: list[dict[str, object]] = []
            start = time.perf_counter()
            ctr, _ = project_fit(config, log)(train_rows, test_rows)
            seconds = time.perf_counter() - start
            pairs = evaluate_pairs(test_rows, ctr)
            run = {
                "variant": name,
                "overrides": VARIANTS[name],
                "seed": seed,
                "split_seed": args.split_seed,
                **pairs.as_dict(),
                "ctr_mae_normalized": float(np.mean(np.abs(ctr - truth))),
                "best_epoch": log[0]["best_epoch"],
                "epochs_run": log[0]["epochs_run"],
                "seconds": round(seconds, 1),
            }
            payload["runs"].append(run)
            print(
                f"{name} seed {seed}: headline sig {fmt(pairs.significant)} all {fmt(pairs.all)}; "
                f"MAE {run['ctr_mae_normalized']:.4f}; best epoch {run['best_epoch']} ({seconds:.0f} s)",
                flush=True,
            )
            payload.update(
                {
                    "protocol": "Upworthy split by test id (benchmarks.common.upworthy_split, seed 0); "
                    "headline pairs; ctr_mae_normalized on the held-out rows",
                    "base_config": json.loads(TrainConfig().model_dump_json()),
                    "ctr_mae_normalized_of_training_mean": mae_of_mean,
                    "split_seed": args.split_seed,
                    "threads": 1,
                    "machine": platform.platform(),
                }
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    rows = []
    for name, split_seed in dict.fromkeys((r["variant"], r.get("split_seed", 0)) for r in payload["runs"]):
        runs = [r for r in payload["runs"] if (r["variant"], r.get("split_seed", 0)) == (name, split_seed)]
        sig = [r["significant"] for r in runs]
        every = [r["all"] for r in runs]
        mae = [r["ctr_mae_normalized"] for r in runs]
        rows.append(
            [
                f"{name} (split {split_seed})",
                " ".join(f"{r['seed']}:{fmt(r['significant'])}/{fmt(r['all'])}" for r in runs),
                f"{fmt(float(np.mean(sig)))} / {fmt(float(np.mean(every)))}",
                f"{np.mean(mae):.4f}",
            ]
        )
    print()
    print_table(["variant", "seed: sig/all", "mean sig / all", "mean MAE"], rows)
    print(f"\nsaved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
