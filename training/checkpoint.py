"""Checkpoints: written atomically, loaded without unpickling code.

A checkpoint is a ``torch.save`` dictionary holding only tensors, numbers,
strings, lists and dicts; the fitted feature state, target scaling and
configuration travel as JSON strings inside it. ``torch.load(weights_only=True)``
refuses anything else, so a checkpoint cannot carry pickled code.
"""

from __future__ import annotations

import io
import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from artifact.errors import CheckpointError
from artifact.registry import atomic_write_bytes

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialise ``payload`` (plus the format version) and write it atomically."""
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **payload}, buffer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write checkpoint ({exc})") from exc
    logger.debug("checkpoint written to %s", path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); raise :class:`CheckpointError` otherwise."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a checkpoint (expected the zip-based torch.save format)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than weights and plain data "
            f"(possibly pickled code): {str(exc).splitlines()[0]}"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        version = payload.get("format_version") if isinstance(payload, dict) else None
        raise CheckpointError(
            f"{path}: expected a headline-scorer checkpoint of format {FORMAT_VERSION}, "
            f"got format {version!r}"
        )
    return payload
