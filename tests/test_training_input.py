"""Bad training input through the commands that write artifacts: ``train``, ``export`` and ``retrain``.

Each bad file stops the command with exit code 2 and one ``error:`` line, and
leaves an existing run directory (``best.pt`` ...) and an existing model
registry (``CURRENT`` and every version directory) byte for byte and mtime for
mtime as they were. The loader's messages themselves are covered in depth by
``test_data.py`` and ``test_cli.py``; this file checks what the commands leave behind.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from artifact.registry import Registry
from tests.cli_support import explain, invoke
from tests.export_support import sample_checkpoint
from tests.stream_harness import template_registry

ROOT = Path(__file__).resolve().parents[1]
HEADER = "id,post_title,category_name,Normalized URL CTR\n"
ROWS = "".join(f"{i},Headline number {i},News,0.{i}\n" for i in range(1, 6))


def _write(tmp: Path, content: str | bytes) -> Path:
    path = tmp / "bad.csv"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


BadInput = Callable[[Path], tuple[Path, str]]


def _wrong_encoding(tmp: Path) -> tuple[Path, str]:
    return _write(tmp, (HEADER + "9,Caf\u00e9 culture,News,0.5\n" + ROWS).encode("latin-1")), "expected UTF-8"


def _missing_column(tmp: Path) -> tuple[Path, str]:
    return _write(tmp, "id,category_name,Normalized URL CTR\n1,News,0.5\n"), "missing column 'post_title'"


def _nan_ctr(tmp: Path) -> tuple[Path, str]:
    return _write(tmp, HEADER + ROWS + "9,A headline,News,nan\n"), "expected a finite number"


def _negative_ctr(tmp: Path) -> tuple[Path, str]:
    return _write(tmp, HEADER + ROWS + "9,A headline,News,-0.2\n"), "-0.2"


def _ctr_above_one(tmp: Path) -> tuple[Path, str]:
    csv = "id,post_title,category_name,URL CTR\n1,A headline,News,0.1\n2,Another,News,1.5\n"
    return _write(tmp, csv), "1.5"


def _duplicate_ids(tmp: Path) -> tuple[Path, str]:
    return _write(tmp, HEADER + ROWS + "3,Same id again,News,0.3\n"), "duplicate"


def _empty_file(tmp: Path) -> tuple[Path, str]:
    return _write(tmp, b""), "the file is empty"


def _no_rows_left(tmp: Path) -> tuple[Path, str]:
    return _write(tmp, HEADER + "1,,News,0.1\n2,   ,News,0.2\n"), "no rows left after validation"


BAD_INPUTS: list[BadInput] = [
    _wrong_encoding,
    _missing_column,
    _nan_ctr,
    _negative_ctr,
    _ctr_above_one,
    _duplicate_ids,
    _empty_file,
    _no_rows_left,
]


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """relative path -> (sha256, mtime_ns) of every file under ``root`` (the registry's lock file aside)."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A finished training run (best.pt, last.pt, report, ...) to train into again."""
    return Path(shutil.copytree(sample_checkpoint().parent, tmp_path / "run"))


@pytest.fixture
def registry_root(tmp_path: Path) -> Path:
    """A registry with two versions of the sample model, the first current."""
    return Path(shutil.copytree(template_registry()[0], tmp_path / "registry"))


def _one_error_line(result: Result, expected: str) -> None:
    assert result.exit_code == 2, explain(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), explain(result)
    assert expected in lines[0], explain(result)


@pytest.mark.slow
@pytest.mark.parametrize("bad", BAD_INPUTS, ids=lambda f: f.__name__.strip("_"))
def test_bad_training_input_overwrites_nothing(
    tmp_path: Path, run_dir: Path, registry_root: Path, bad: BadInput
) -> None:
    data, expected = bad(tmp_path)
    assert (run_dir / "best.pt").is_file()
    run_before, registry_before = _snapshot(run_dir), _snapshot(registry_root)
    current = Registry(registry_root).current_version()
    assert current is not None

    _one_error_line(invoke("train", "--data", data, "--out", run_dir, "--epochs", "1"), expected)
    _one_error_line(invoke("train", "--data", data, "--out", run_dir, "--resume", run_dir), expected)
    checkpoint = registry_root / current / "best.pt"
    _one_error_line(
        invoke("export", "--checkpoint", checkpoint, "--registry", registry_root, "--data", data), expected
    )
    _one_error_line(invoke("retrain", "--data", data, "--registry", registry_root, "--epochs", "1"), expected)

    assert _snapshot(run_dir) == run_before
    assert _snapshot(registry_root) == registry_before
    assert Registry(registry_root).current_version() == current
    # no staging directory or retrain report left behind either
    assert {p.name for p in registry_root.iterdir() if p.name != ".lock"} == {
        name.split("/")[0] for name in registry_before
    }


@pytest.mark.slow
def test_train_command_in_a_subprocess_exits_2_with_one_line(tmp_path: Path, run_dir: Path) -> None:
    data, expected = _nan_ctr(tmp_path)
    before = _snapshot(run_dir)
    done = subprocess.run(
        [sys.executable, "-m", "headline_scorer.cli", "train", "--data", str(data), "--out", str(run_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr
    assert str(data) in lines[0]
    assert _snapshot(run_dir) == before
