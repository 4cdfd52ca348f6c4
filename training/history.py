"""One line of the epoch table: what each training epoch measured (stored in the checkpoint)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    val_mae: float
    learning_rate: float
    # Running over the epoch's batches (the weights change as it goes, dropout on), like the train
    # loss; None in checkpoints written before they were recorded.
    train_accuracy: float | None = None
    train_mae: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {k: None if v is None else float(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, record: Mapping[str, float | None]) -> EpochRecord:
        return cls(**record)  # type: ignore[arg-type]


__all__ = ["EpochRecord"]
