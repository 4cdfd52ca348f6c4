"""Compare TrainConfig variants on the trainer's target protocol, over several fold seeds.

Run from the project root (one torch thread; one training at a time)::

    PYTHONPATH=. .venv/bin/python benchmarks/model_sweep.py \\
        --run 'default={}' --run 'wide={"wide": true}' [--fold-seeds 0,1,2,3] [--upworthy] \\
        [--out benchmarks/results/model_sweep_session3.json]

Each ``--run NAME=JSON`` is a set of ``TrainConfig`` overrides on the project's defaults. Per
fold seed: the seed ``train.csv`` K-fold CV of ``train_targets.py`` (quality AUC of the raw quality
head, CTR MAE gain vs the training-fold mean); with ``--upworthy`` also the fixed test-id split
(pairwise accuracy of the CTR output, ties 0.5, and the same for the quality head). Results are
merged into ``--out`` by name (an existing name is replaced), so a sweep can be run in parts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    RESULTS_DIR,
    evaluate_seed,
    evaluate_upworthy,
    kfold,
    load_seed,
    load_upworthy,
    require_data,
    set_threads,
    upworthy_split,
)


def _parse_run(raw: str) -> tuple[str, dict[str, Any]]:
    name, _, body = raw.partition("={")
    body = "{" + body
    if not name or body == "{":
        raise SystemExit(f"--run expects NAME=JSON, got {raw!r}")
    overrides = json.loads(body)
    if not isinstance(overrides, dict):
        raise SystemExit(f"--run {name}: expected a JSON object")
    return name, overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="append", required=True, help="NAME=JSON TrainConfig overrides")
    parser.add_argument("--fold-seeds", default="0,1,2,3")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--upworthy", action="store_true", help="also the Upworthy test-id split")
    parser.add_argument("--no-seed", action="store_true", help="skip the seed CV")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "model_sweep_session3.json")
    args = parser.parse_args(argv)

    require_data()
    set_threads(1)
    from benchmarks.project_model import project_fit
    from training.train import TrainConfig

    fold_seeds = [int(s) for s in args.fold_seeds.split(",") if s.strip()]
    seed = load_seed()
    upworthy = load_upworthy() if args.upworthy else None
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    runs = results.setdefault("runs", {})
    for name, overrides in map(_parse_run, args.run):
        config = TrainConfig.model_validate({**TrainConfig().model_dump(), **overrides})
        entry: dict[str, Any] = {"overrides": overrides}
        start = time.perf_counter()
        if not args.no_seed:
            aucs, gains, best = [], [], []
            for fold_seed in fold_seeds:
                log: list[dict[str, object]] = []
                score = evaluate_seed(seed, kfold(seed, args.folds, fold_seed), project_fit(config, log))
                aucs.append(round(score.auc, 4))
                gains.append(round(100 * score.mae_gain, 2))
                best.append([r["best_epoch"] for r in log])
            entry["seed"] = {
                "fold_seeds": fold_seeds,
                "auc": aucs,
                "auc_mean": round(sum(aucs) / len(aucs), 4),
                "mae_gain_pct": gains,
                "mae_gain_pct_mean": round(sum(gains) / len(gains), 2),
                "best_epochs": best,
            }
        if upworthy is not None:
            log = []
            pairs, _ = evaluate_upworthy(upworthy, upworthy_split(upworthy), project_fit(config, log))
            entry["upworthy"] = {
                k: (round(v, 4) if isinstance(v, float) else v) for k, v in pairs.as_dict().items()
            } | {"best_epoch": log[0]["best_epoch"], "epochs_run": log[0]["epochs_run"]}
        entry["seconds"] = round(time.perf_counter() - start, 1)
        runs[name] = entry
        print(name, json.dumps({k: v for k, v in entry.items() if k != "overrides"}), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
