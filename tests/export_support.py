"""Shared, once-per-process fixtures for the artifact tests: a small model trained on the sample."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from headline_scorer import SAMPLE_DATA
from training.data import HeadlineData, load_dataset
from training.mapping import SEED
from training.train import TrainConfig, train

EPOCHS = 2


def _tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


@cache
def sample_data() -> HeadlineData:
    return load_dataset(SAMPLE_DATA / "train.csv", SEED)


@cache
def sample_checkpoint() -> Path:
    """best.pt of a 2-epoch model on the bundled sample (trained once per test process)."""
    out = _tempdir("hs-export-model-")
    return train(sample_data(), out, TrainConfig(epochs=EPOCHS), progress=False).best_checkpoint


@cache
def exported_version() -> Path:
    """A version directory exported from :func:`sample_checkpoint` (do not modify; copy it)."""
    from export.build import export_version

    out = _tempdir("hs-export-version-") / "version"
    export_version(sample_checkpoint(), sample_data(), out)
    return out


def copy_version(dest: Path) -> Path:
    shutil.copytree(exported_version(), dest)
    return dest


def clock_from(start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> Iterator[datetime]:
    """1 minute apart: distinct, sortable version names."""
    step = 0
    while True:
        yield start + timedelta(minutes=step)
        step += 1
