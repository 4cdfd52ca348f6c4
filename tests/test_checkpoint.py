"""Checkpoints: atomic writes, safe loads, clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from artifact.errors import CheckpointError, ExportError
from headline_scorer import SAMPLE_DATA
from headline_scorer.cli import app
from tests.export_support import sample_checkpoint
from training.calibration import PlattCalibrator
from training.checkpoint import Checkpoint, Progress, load_checkpoint, save_checkpoint
from training.export_rows import CHECKPOINT_KEY as EXPORT_ROWS_KEY
from training.model import DualHeadModel, ModelConfig
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


def _raw_sample() -> tuple[Path, dict[str, object]]:
    path = sample_checkpoint()
    payload = load_checkpoint(path)
    payload.pop("format_version")
    return path, payload


@pytest.mark.slow
def test_the_typed_checkpoint_writes_the_bytes_it_read(tmp_path: Path) -> None:
    path, raw = _raw_sample()
    checkpoint = Checkpoint.load(path.parent)  # a run directory means its best.pt
    assert list(checkpoint.to_payload()) == list(raw)
    assert checkpoint.calibration is not None and checkpoint.val_ids is not None
    assert checkpoint.stored_rows is not None
    assert set(checkpoint.val_ids) == set(checkpoint.stored_rows.validation.ids)
    checkpoint.save(tmp_path / "again.pt")
    assert (tmp_path / "again.pt").read_bytes() == path.read_bytes()


@pytest.mark.slow
def test_checkpoints_from_older_versions_load_as_they_trained() -> None:
    _, payload = _raw_sample()
    config = json.loads(str(payload["train_config"]))
    for name in ("rank_weight", "ridge_within", "wide"):
        del config[name]
    payload["train_config"] = json.dumps(config)
    payload["history"] = json.dumps(
        [{k: v for k, v in r.items() if not k.startswith("train_") or k == "train_loss"}
         for r in json.loads(str(payload["history"]))]
    )  # fmt: skip
    for key in ("calibration", "quality_threshold", "calibration_report", "split", EXPORT_ROWS_KEY):
        del payload[key]
    old = Checkpoint.from_payload(payload, "old.pt")
    train_config = old.setup.train_config
    assert (train_config.rank_weight, train_config.ridge_within) == (0.0, 0.0)  # trained without them
    assert train_config.wide == old.setup.model_config.wide  # the model's own architecture
    assert old.progress.history and all(r.train_accuracy is None for r in old.progress.history)
    assert (old.calibration, old.val_ids, old.stored_rows) == (None, None, None)
    model = TrainedModel.from_state(old)
    assert model.quality_threshold == 0.5 and model.calibration == PlattCalibrator.identity()


@pytest.mark.slow
def test_unreadable_stored_rows_fail_only_where_they_are_read() -> None:
    _, payload = _raw_sample()
    payload[EXPORT_ROWS_KEY] = '{"validation": "not rows"}'
    checkpoint = Checkpoint.from_payload(payload)
    model = TrainedModel.from_state(checkpoint)  # loading and predicting do not read them
    assert len(model.predict(["a headline"])) == 1
    with pytest.raises(ExportError, match="stored export rows are unreadable"):
        _ = checkpoint.stored_rows


@pytest.mark.slow
def test_inconsistent_checkpoints_name_their_source(tmp_path: Path) -> None:
    _, payload = _raw_sample()
    payload["train_config"] = json.dumps({"epochs": 0})
    save_checkpoint(tmp_path / "bad.pt", payload)
    with pytest.raises(CheckpointError, match=r"bad\.pt: incomplete or inconsistent checkpoint"):
        Checkpoint.load(tmp_path / "bad.pt")


@pytest.mark.slow
def test_a_progress_snapshot_stays_put_and_saves_like_the_live_state(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = DualHeadModel(ModelConfig(n_features=5, n_categories=2, n_numeric=1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)

    def step() -> None:
        optimizer.zero_grad()
        ids, weights = torch.tensor([[1, 2]]), torch.tensor([[0.5, 0.5]])
        ctr, logit = model(ids, weights, torch.tensor([1]), torch.zeros(1, 1))
        (ctr.sum() + logit.sum()).backward()
        optimizer.step()
        scheduler.step(1.0)

    def progress() -> Progress:
        return Progress(model.state_dict(), optimizer.state_dict(), scheduler.state_dict(), 1, 0.5, ())

    step()
    snapshot = progress().snapshot()
    save_checkpoint(tmp_path / "live.pt", progress().payload)
    save_checkpoint(tmp_path / "snapshot.pt", snapshot.payload)
    assert (tmp_path / "live.pt").read_bytes() == (tmp_path / "snapshot.pt").read_bytes()
    step()
    live = progress()
    changed = [k for k in live.model_state if not torch.equal(live.model_state[k], snapshot.model_state[k])]
    assert changed, "training moved the live weights"
    assert snapshot.scheduler_state["last_epoch"] == 1 and live.scheduler_state["last_epoch"] == 2
    save_checkpoint(tmp_path / "snapshot2.pt", snapshot.payload)
    assert (tmp_path / "snapshot2.pt").read_bytes() == (tmp_path / "snapshot.pt").read_bytes()
