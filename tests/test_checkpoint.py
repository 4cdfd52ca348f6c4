"""Checkpoints: atomic writes, safe loads, clear errors."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from artifact.errors import CheckpointError
from headline_scorer import SAMPLE_DATA
from headline_scorer.cli import app
from training.checkpoint import load_checkpoint, save_checkpoint
from training.predict import TrainedModel


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch /tmp/headline-scorer-pwned",))


def test_round_trip_keeps_tensors_and_plain_data(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model_state": {"w": torch.arange(3.0)}, "epoch": 4, "meta": '{"a": 1}'})
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 4 and loaded["meta"] == '{"a": 1}'
    assert torch.equal(loaded["model_state"]["w"], torch.arange(3.0))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"], "no temporary file is left behind"


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "payload": _Exploit()}, path)
    marker = Path("/tmp/headline-scorer-pwned")
    marker.unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    assert not marker.exists()
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint at all", os.urandom(4096)],
    ids=["empty", "text", "random"],
)
def test_corrupt_files_raise_checkpoint_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_missing_and_foreign_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(tmp_path / "future.pt")
    save_checkpoint(tmp_path / "partial.pt", {"epoch": 1})
    with pytest.raises(CheckpointError, match="incomplete"):
        TrainedModel.from_checkpoint(tmp_path / "partial.pt")


def test_a_failed_write_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"epoch": 1})
    before = path.read_bytes()

    def disk_full(self: Path, target: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", disk_full)
    with pytest.raises(CheckpointError, match="No space left"):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


@pytest.mark.slow
def test_bad_training_input_overwrites_no_checkpoint(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    ok = runner.invoke(
        app, ["train", "--data", str(SAMPLE_DATA / "train.csv"), "--out", str(out), "--epochs", "1"]
    )
    assert ok.exit_code == 0, ok.output
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
    frame = pd.read_csv(SAMPLE_DATA / "train.csv")
    frame.loc[3, "URL CTR"] = 1.5
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("id,post_title,Normalized URL CTR\n1,caf\u00e9,0.5\n".encode("latin-1"))
    for data in (bad, latin1, tmp_path / "missing.csv"):
        result = runner.invoke(app, ["train", "--data", str(data), "--out", str(out), "--epochs", "1"])
        assert result.exit_code == 2
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()} == digests
