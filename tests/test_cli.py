"""The ``headline-scorer`` command (headline_scorer/cli.py): errors, sample, train, evaluate, predict."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import Result

from tests.cli_support import explain, invoke
from training.data import load_dataset
from training.mapping import SEED

ARTIFACTS = {
    "best.pt",
    "last.pt",
    "report.md",
    "metric_curves.png",
    "ctr_scatter.png",
    "predictions.csv",
    "metrics.json",
    "reliability.png",
}
CORE_METRICS = ("ctr_mae_normalized", "ctr_spearman", "quality_roc_auc", "quality_f1", "quality_ece")
PAIRWISE_METRICS = (
    "pairwise_accuracy",
    "pairwise_accuracy_significant",
    "pairs",
    "significant_pairs",
    "pooled_rows",
)
PREDICTION_COLUMNS = ["id", "ctr", "ctr_normalized", "quality_prob", "quality_label"]


def number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --- the console script --------------------------------------------------------------------------


@pytest.mark.slow
def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("headline-scorer")
    assert script.is_file(), f"{script} missing: is the project installed in this environment?"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for command in ("train", "evaluate", "predict", "sample", "demo"):
        assert re.search(rf"^\W*{command}\b", done.stdout, re.MULTILINE), done.stdout


# --- deliberate errors: exit code 2 and one line on stderr ---------------------------------------


def _missing_file(tmp: Path, sample: Path) -> tuple[list[str | Path], str]:
    data = tmp / "missing.csv"
    return ["train", "--data", data, "--out", tmp / "run"], f"{data}: file not found"


def _wrong_encoding(tmp: Path, sample: Path) -> tuple[list[str | Path], str]:
    data = tmp / "latin1.csv"
    data.write_bytes(
        "id,post_title,category_name,Normalized URL CTR\n1,caf\u00e9,News,0.5\n".encode("latin-1")
    )
    byte = data.read_bytes().index(b"\xe9")
    expected = f"{data}: line 2, row 1, column 'post_title', byte {byte}: expected UTF-8"
    return ["train", "--data", data, "--out", tmp / "run"], expected


def _missing_column(tmp: Path, sample: Path) -> tuple[list[str | Path], str]:
    data = tmp / "headline.csv"
    data.write_text("id,headline,category_name,Normalized URL CTR\n1,a,News,0.5\n", encoding="utf-8")
    return (
        ["train", "--data", data, "--out", tmp / "run"],
        "missing column 'post_title' required by mapping 'seed'; the file has 'id', 'headline'",
    )


def _ab_tests_without_mapping(tmp: Path, sample: Path) -> tuple[list[str | Path], str]:
    args: list[str | Path] = ["evaluate", "--model", tmp / "run", "--data", sample / "ab_tests.csv"]
    return args, "missing columns 'post_title', 'id', 'category_name' required by mapping 'seed'"


def _bad_mapping_name(tmp: Path, sample: Path) -> tuple[list[str | Path], str]:
    args: list[str | Path] = [
        "train",
        "--data",
        sample / "train.csv",
        "--mapping",
        "bogus",
        "--out",
        tmp / "r",
    ]
    return args, "mapping bogus: expected one of ['outcomes', 'outcomes-ungrouped', 'seed', 'upworthy']"


def _bad_mapping_file(tmp: Path, sample: Path) -> tuple[list[str | Path], str]:
    mapping = tmp / "m.json"
    mapping.write_text('{"title": "headline", "clicks": "clicks"}', encoding="utf-8")
    args: list[str | Path] = ["predict", "--model", tmp, "--data", sample / "train.csv", "--mapping", mapping]
    return [*args, "--out", tmp / "p.csv"], "clicks and impressions must be mapped together"


def _unparsable_csv(tmp: Path, sample: Path) -> tuple[list[str | Path], str]:
    data = tmp / "ragged.csv"
    data.write_text("id,post_title,category_name\n1,a,News\n2,b,News,extra\n", encoding="utf-8")
    args: list[str | Path] = ["predict", "--model", tmp, "--data", data, "--out", tmp / "p.csv"]
    return args, "cannot parse as CSV"


def _inference_only_without_resume(tmp: Path, sample: Path) -> tuple[list[str | Path], str]:
    args: list[str | Path] = ["train", "--data", sample / "inference.csv", "--out", tmp / "run"]
    return args, "no target column, so nothing to train on; pass --resume CHECKPOINT"


def _out_is_a_file(tmp: Path, sample: Path) -> tuple[list[str | Path], str]:
    out = tmp / "taken"
    out.write_text("not a directory", encoding="utf-8")
    args: list[str | Path] = ["train", "--data", sample / "train.csv", "--out", out]
    return args, f"{out}: exists and is not a directory"


def _predict_out_is_a_directory(tmp: Path, sample: Path) -> tuple[list[str | Path], str]:
    args: list[str | Path] = ["predict", "--model", tmp, "--data", sample / "inference.csv", "--out", tmp]
    return args, f"{tmp}: is a directory; expected a file path"


def _data_is_a_directory(tmp: Path, sample: Path) -> tuple[list[str | Path], str]:
    return ["train", "--data", sample, "--out", tmp / "run"], f"{sample}: is a directory; expected a CSV file"


def _semicolon_separated(tmp: Path, sample: Path) -> tuple[list[str | Path], str]:
    data = tmp / "semicolons.csv"
    data.write_text("id;post_title;category_name;Normalized URL CTR\n1;a;News;0.5\n", encoding="utf-8")
    args: list[str | Path] = ["train", "--data", data, "--out", tmp / "run"]
    return args, "the header looks semicolon-separated (3 semicolons): expected comma-separated values"


def _tab_separated_with_commas_in_titles(tmp: Path, sample: Path) -> tuple[list[str | Path], str]:
    data = tmp / "tabs.csv"
    data.write_text("id\tpost_title\tcategory_name\n1\ta, b\tNews\n2\tc, d, e\tNews\n", encoding="utf-8")
    args: list[str | Path] = ["predict", "--model", tmp, "--data", data, "--out", tmp / "p.csv"]
    return args, "the header looks tab-separated (2 tabs): expected comma-separated values"


ErrorCase = Callable[[Path, Path], tuple[list[str | Path], str]]
ERROR_CASES: list[ErrorCase] = [
    _missing_file,
    _wrong_encoding,
    _missing_column,
    _ab_tests_without_mapping,
    _bad_mapping_name,
    _bad_mapping_file,
    _unparsable_csv,
    _out_is_a_file,
    _predict_out_is_a_directory,
    _data_is_a_directory,
    _semicolon_separated,
    _tab_separated_with_commas_in_titles,
]


def test_version() -> None:
    from importlib.metadata import version

    result = invoke("--version")
    assert result.exit_code == 0, explain(result)
    assert result.stdout == f"headline-scorer {version('headline-scorer')}\n"


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.__name__.strip("_"))
def test_bad_input_exits_2_with_one_error_line(tmp_path: Path, sample_dir: Path, case: ErrorCase) -> None:
    args, expected = case(tmp_path, sample_dir)
    result = invoke(*args)
    assert result.exit_code == 2, explain(result)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, explain(result)
    assert lines[0].startswith("error: "), explain(result)
    assert expected in lines[0], explain(result)
    assert "Traceback" not in result.stderr


def test_training_data_without_a_target_needs_resume(tmp_path: Path, sample_dir: Path) -> None:
    args, expected = _inference_only_without_resume(tmp_path, sample_dir)
    result = invoke(*args)
    assert result.exit_code == 2, explain(result)
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], explain(result)
    assert result.stderr.splitlines()[-1] == errors[0]
    assert not (tmp_path / "run" / "best.pt").exists()


def test_training_data_without_a_target_is_one_line(tmp_path: Path, sample_dir: Path) -> None:
    args, _ = _inference_only_without_resume(tmp_path, sample_dir)
    result = invoke(*args)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1, explain(result)
    assert not (tmp_path / "run").exists(), "nothing is created for rejected input"


# --- sample --------------------------------------------------------------------------------------


def test_sample_writes_the_shipped_files(tmp_path: Path, sample_dir: Path) -> None:
    out = tmp_path / "fresh"
    result = invoke("sample", "--out", out)
    assert result.exit_code == 0, explain(result)
    names = {"train.csv", "inference.csv", "ab_tests.csv"}
    assert {p.name for p in out.iterdir()} == names
    for name in names:
        assert (out / name).read_bytes() == (sample_dir / name).read_bytes(), name
        assert str(out / name) in result.stdout


# --- train / evaluate / predict (one training run per mapping, reused) ----------------------------


@dataclass(frozen=True)
class Run:
    out: Path
    result: Result


def _train(tmp_path_factory: pytest.TempPathFactory, name: str, *args: str | Path) -> Run:
    out = tmp_path_factory.mktemp(name) / "run"
    result = invoke("train", *args, "--out", out)
    assert result.exit_code == 0, explain(result)
    return Run(out, result)


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    from headline_scorer import SAMPLE_DATA

    return _train(tmp_path_factory, "seed", "--data", SAMPLE_DATA / "train.csv", "--epochs", "3")


@pytest.fixture(scope="module")
def ab_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    from headline_scorer import SAMPLE_DATA

    args = ("--data", SAMPLE_DATA / "ab_tests.csv", "--mapping", "upworthy", "--epochs", "2")
    return _train(tmp_path_factory, "ab", *args)


def _section(report: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", report, re.MULTILINE | re.DOTALL)
    assert match, f"no section {title!r} in the report"
    return match.group(1)


@pytest.mark.slow
def test_train_writes_every_artifact(seed_run: Run, sample_dir: Path) -> None:
    assert {p.name for p in seed_run.out.iterdir()} >= ARTIFACTS
    assert "trained: best epoch" in seed_run.result.stdout
    # Figures rounded for people: "validation AUC 0.612 (95 % CI 0.541 to 0.68), MAE 0.0987 (...)".
    outcome = re.search(
        r"validation AUC (\d\.\d{1,3}) \(95 % CI (\d\.\d{1,3}) to (\d\.\d{1,3})\), "
        r"MAE (0\.\d{1,4}) \(95 % CI",
        seed_run.result.stdout,
    )
    assert outcome, seed_run.result.stdout
    low, auc, high = float(outcome[2]), float(outcome[1]), float(outcome[3])
    assert low <= auc <= high
    assert str(seed_run.out) in seed_run.result.stdout
    # The validation summary goes to stderr, keeping stdout for the outcome.
    summary = load_dataset(sample_dir / "train.csv", SEED).summary.render()
    assert summary in seed_run.result.stderr
    for png in ("metric_curves.png", "ctr_scatter.png"):
        assert (seed_run.out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    report = (seed_run.out / "report.md").read_text(encoding="utf-8")
    assert summary in _section(report, "CSV validation summary")
    # epoch | train loss | val loss | train accuracy | val accuracy | train MAE | val MAE | learning rate
    number_cell = r" \| (\d+\.\d+(?:e-?\d+)?)"
    rows = re.findall(
        r"^\| (\d+)(?: \*\*best\*\*)?" + number_cell * 7 + r" \|$", _section(report, "Epochs"), re.MULTILINE
    )
    assert [row[0] for row in rows] == ["1", "2", "3"]
    for row in rows:
        train_acc, val_acc, train_mae, val_mae = (float(x) for x in row[3:7])
        assert 0.0 < train_acc <= 1.0 and 0.0 < val_acc <= 1.0
        assert 0.0 < train_mae < 1.0 and 0.0 < val_mae < 1.0
    metrics = _section(report, "Validation metrics (best checkpoint)")
    for label in (
        "CTR MAE (normalized)",
        "CTR MAE (raw CTR units)",
        "CTR Spearman correlation",
        "Quality ROC AUC",
        "Quality F1 at the chosen threshold",
        "Quality accuracy at the chosen threshold",
        "Quality ECE, calibrated (on the rows the calibrator was fitted on)",
        "Quality ECE, calibrated, cross-fitted (held-out rows)",
        "Quality ECE, uncalibrated",
        "Quality balanced accuracy at the chosen threshold",
        "Majority-class accuracy (always the commoner label)",
        "Label balance (positive share)",
    ):
        assert re.search(rf"^\| {re.escape(label)} \| -?\d+\.\d+ \|[^|]*\|$", metrics, re.MULTILINE), label
    auc_row = re.search(
        r"^\| Quality ROC AUC \| (\d\.\d+) \| (\d\.\d+) to (\d\.\d+) \|$", metrics, re.MULTILINE
    )
    assert auc_row and float(auc_row[2]) <= float(auc_row[1]) <= float(auc_row[3]), metrics
    assert "(metric_curves.png)" in report and "(ctr_scatter.png)" in report
    highlights = _section(report, "Highlights")
    assert "Quality label: normalized CTR above the training median" in highlights, highlights
    assert re.search(r"positive share 0\.(4|5)\d\d", highlights), highlights  # the median rule balances
    assert "Best epoch" in highlights and "better than predicting the training mean" in highlights

    saved = json.loads((seed_run.out / "metrics.json").read_text(encoding="utf-8"))
    assert len(saved["epochs"]) == 3
    assert all(0.0 < e["train_accuracy"] <= 1.0 and 0.0 < e["train_mae"] < 1.0 for e in saved["epochs"])
    assert 0.4 <= saved["validation"]["label_positive_rate"] <= 0.6
    assert number(saved["validation"]["ctr_mae_raw"]) and number(saved["validation"]["quality_accuracy"])
    assert saved["validation"]["mode"] == "evaluate"
    assert all(number(saved["validation"][key]) for key in CORE_METRICS)
    assert saved["data"]["rows_read"] == 1200
    # The baselines are judged on the model's validation rows: the training-mean baseline's MAE is
    # the evaluation's "predicting the training mean" figure, computed separately.
    baselines = {b["name"]: b for b in saved["baselines"]}
    assert set(baselines) == {"training mean", "TF-IDF ridge (CTR)", "TF-IDF logistic (quality)"}
    assert baselines["training mean"]["ctr_mae_normalized"] == pytest.approx(
        saved["validation"]["ctr_mae_baseline_normalized"], abs=1e-12
    )
    assert 0.0 < baselines["TF-IDF logistic (quality)"]["quality_roc_auc"] < 1.0
    assert "## Baselines (same validation rows)" in report
    validation = saved["validation"]
    assert (
        validation["quality_roc_auc_ci_low"]
        <= validation["quality_roc_auc"]
        <= validation["quality_roc_auc_ci_high"]
    )
    low, high = validation["ctr_mae_normalized_ci_low"], validation["ctr_mae_normalized_ci_high"]
    assert low <= validation["ctr_mae_normalized"] <= high
    assert number(saved["calibration"]["ece_after_heldout"])
    assert "cross-fitted" in report and "on the rows it was fitted on" in report
    assert saved["validation"]["warnings"] == []  # the sample's label and prediction are balanced


@pytest.mark.slow
def test_evaluate_json(seed_run: Run, sample_dir: Path) -> None:
    result = invoke("evaluate", "--model", seed_run.out, "--data", sample_dir / "train.csv", "--json")
    assert result.exit_code == 0, explain(result)
    assert result.stdout.count("\n") == 1 and result.stdout.endswith("}\n")
    metrics = json.loads(result.stdout)
    assert isinstance(metrics, dict)
    assert metrics["mode"] == "evaluate"
    assert metrics["rows"] == 1200
    for key in CORE_METRICS:
        assert number(metrics[key]), (key, metrics[key])
    assert 0.5 < metrics["quality_roc_auc"] <= 1.0
    assert 0.0 <= metrics["quality_ece"] <= 1.0
    assert all(metrics[key] is None for key in PAIRWISE_METRICS)  # no group column in the seed layout
    # The training file itself: the checkpoint's fingerprint matches and the output says so.
    warning = "is the file this model was trained on (same sha256)"
    assert any(warning in w for w in metrics["warnings"]), metrics["warnings"]
    assert warning in result.stderr


@pytest.mark.slow
def test_evaluate_warns_about_rows_the_model_trained_on(
    seed_run: Run, sample_dir: Path, tmp_path: Path
) -> None:
    # Another file (a different sha256) that holds the training rows and a few new ones.
    source = pd.read_csv(sample_dir / "train.csv", dtype=str)
    mixed = tmp_path / "mixed.csv"
    source.iloc[:50].to_csv(mixed, index=False)
    result = invoke("evaluate", "--model", seed_run.out, "--data", mixed)
    assert result.exit_code == 0, explain(result)
    trained = int(re.search(r"(\d+) of the 50 rows have a title the model was trained on", result.stderr)[1])  # type: ignore[index]
    assert 0 < trained <= 50
    # Human output: floats rounded to 4 significant digits, intervals as "lo to hi".
    auc = re.search(r"^quality_roc_auc\s+(\S+)$", result.stdout, re.MULTILINE)
    assert auc and len(auc[1].lstrip("0.")) <= 4, result.stdout
    assert re.search(r"^quality_roc_auc_ci_low\s+0\.\d{1,4}$", result.stdout, re.MULTILINE), result.stdout


@pytest.mark.slow
def test_evaluate_json_on_ab_tests_adds_pairwise_metrics(ab_run: Run, sample_dir: Path) -> None:
    assert {p.name for p in ab_run.out.iterdir()} >= ARTIFACTS
    result = invoke(
        "evaluate",
        "--model",
        ab_run.out,
        "--data",
        sample_dir / "ab_tests.csv",
        "--mapping",
        "upworthy",
        "--json",
    )
    assert result.exit_code == 0, explain(result)
    metrics = json.loads(result.stdout)
    assert metrics["rows"] == 654
    for key in (*CORE_METRICS, *PAIRWISE_METRICS):
        assert number(metrics[key]), (key, metrics[key])
    assert 0.0 <= metrics["pairwise_accuracy"] <= 1.0
    assert 0.0 <= metrics["pairwise_accuracy_significant"] <= 1.0
    assert isinstance(metrics["pairs"], int) and isinstance(metrics["significant_pairs"], int)
    assert 0 < metrics["significant_pairs"] <= metrics["pairs"]
    assert "Pairwise accuracy within groups" in (ab_run.out / "report.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_evaluate_json_on_inference_data_has_no_metrics(seed_run: Run, sample_dir: Path) -> None:
    result = invoke("evaluate", "--model", seed_run.out, "--data", sample_dir / "inference.csv", "--json")
    assert result.exit_code == 0, explain(result)
    metrics = json.loads(result.stdout)
    assert metrics["mode"] == "inference"
    assert metrics["rows"] == 200
    assert "inference-only" in metrics["notice"]
    assert set(CORE_METRICS) | set(PAIRWISE_METRICS) <= set(metrics)
    assert (metrics["rows_read"], metrics["rows_dropped"]) == (200, 0)
    counts = {"mode", "rows", "notice", "rows_read", "rows_dropped"}
    assert all(value is None for key, value in metrics.items() if key not in counts)


@pytest.mark.slow
def test_predict_writes_one_row_per_input_row(seed_run: Run, sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores" / "predictions.csv"
    data = sample_dir / "inference.csv"
    result = invoke("predict", "--model", seed_run.out / "best.pt", "--data", data, "--out", out)
    assert result.exit_code == 0, explain(result)
    assert f"wrote 200 predictions to {out}" in result.stdout
    source = pd.read_csv(data, dtype=str)
    scores = pd.read_csv(out, dtype={"id": str})
    assert set(PREDICTION_COLUMNS) <= set(scores.columns)
    assert len(scores) == len(source) == 200
    assert scores["id"].tolist() == source["id"].tolist()
    assert scores["title"].tolist() == source["post_title"].tolist()
    assert np.isfinite(scores["ctr"]).all() and scores["ctr"].between(0, 1).all()
    assert scores["quality_prob"].between(0, 1).all()
    assert set(scores["quality_label"].unique()) <= {0, 1}


@pytest.mark.slow
def test_train_on_inference_data_with_resume_only_predicts(
    seed_run: Run, sample_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scored"
    data = sample_dir / "inference.csv"
    result = invoke("train", "--data", data, "--resume", seed_run.out / "best.pt", "--out", out)
    assert result.exit_code == 0, explain(result)
    assert "inference-only" in result.stdout
    assert {p.name for p in out.iterdir()} == {"predictions.csv", "metrics.json"}
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["mode"] == "inference" and saved["rows"] == 200
    assert set(CORE_METRICS) <= set(saved)
    assert all(value is None for key, value in saved.items() if key not in {"mode", "rows", "notice"})

    scores = pd.read_csv(out / "predictions.csv", dtype={"id": str})
    assert len(scores) == 200 and set(PREDICTION_COLUMNS) <= set(scores.columns)
    assert not {"true_ctr", "true_ctr_normalized"} & set(scores.columns)
    # The same model scores the same rows as `predict` does.
    direct = tmp_path / "direct.csv"
    assert invoke("predict", "--model", seed_run.out, "--data", data, "--out", direct).exit_code == 0
    pd.testing.assert_frame_equal(scores, pd.read_csv(direct, dtype={"id": str}))
