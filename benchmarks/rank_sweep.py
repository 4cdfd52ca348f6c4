"""Sweep of the within-group ranking loss (``TrainConfig.rank_weight``, ``rank_pairs``) on Upworthy.

Run from the project root::

    PYTHONPATH=. .venv/bin/python benchmarks/rank_sweep.py [--weights 0,0.1,0.3] [--pairs all,z] [--seeds 42,1,2]

Each configuration is the default ``TrainConfig`` with the ranking fields set, trained
on the Upworthy training tests of ``benchmarks.common.upworthy_split`` and scored on the
held-out tests (target 2 of ``train_targets.py``: headline pairs, significant and all;
per-package figures for information). ``--seeds`` repeats every configuration with other
training seeds (same split) to show the run-to-run noise. Writes
``benchmarks/results/rank_sweep_session4.json``.
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

from benchmarks.common import (
    RESULTS_DIR,
    evaluate_upworthy,
    fmt,
    load_upworthy,
    print_table,
    require_data,
    set_threads,
    upworthy_split,
)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=_floats, default=[0.0, 0.03, 0.1, 0.3, 1.0, 3.0])
    parser.add_argument("--pairs", default="all,significant,z", help="rank_pairs values, comma-separated")
    parser.add_argument("--seeds", default="42", help="TrainConfig seeds, comma-separated")
    parser.add_argument("--config", help="base TrainConfig as JSON (default: the project's defaults)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "rank_sweep_session4.json")
    args = parser.parse_args(argv)

    require_data()
    set_threads(1)
    from benchmarks.project_model import project_fit
    from training.train import TrainConfig

    base = TrainConfig() if not args.config else TrainConfig.model_validate_json(args.config)
    data = load_upworthy()
    split = upworthy_split(data)
    pair_modes = [p for p in args.pairs.split(",") if p]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        for weight in args.weights:
            for mode in pair_modes if weight > 0 else ["all"]:
                config = base.model_copy(update={"rank_weight": weight, "rank_pairs": mode, "seed": seed})
                log: list[dict[str, object]] = []
                start = time.perf_counter()
                pairs, _ = evaluate_upworthy(data, split, project_fit(config, log))
                seconds = time.perf_counter() - start
                run = {
                    "seed": seed,
                    "rank_weight": weight,
                    "rank_pairs": mode,
                    **pairs.as_dict(),
                    "best_epoch": log[0]["best_epoch"],
                    "epochs_run": log[0]["epochs_run"],
                    "seconds": round(seconds, 1),
                }
                runs.append(run)
                print(
                    f"seed {seed} weight {weight:g} pairs {mode}: headline sig {fmt(pairs.significant)} "
                    f"all {fmt(pairs.all)}; package sig {fmt(pairs.package_significant)} "
                    f"all {fmt(pairs.package_all)}; best epoch {run['best_epoch']} ({seconds:.0f} s)",
                    flush=True,
                )
    print()
    print_table(
        [
            "seed",
            "rank_weight",
            "rank_pairs",
            "headline sig",
            "headline all",
            "package sig",
            "package all",
            "epochs",
        ],
        [
            [
                str(r["seed"]),
                f"{r['rank_weight']:g}",
                r["rank_pairs"],
                fmt(r["significant"]),
                fmt(r["all"]),
                fmt(r["package_significant"]),
                fmt(r["package_all"]),
                f"{r['best_epoch']}/{r['epochs_run']}",
            ]
            for r in runs
        ],
    )
    payload = {
        "base_config": json.loads(base.model_dump_json()),
        "protocol": "Upworthy split by test id (benchmarks.common.upworthy_split, seed 0); headline pairs",
        "runs": runs,
        "threads": 1,
        "machine": platform.platform(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nsaved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
