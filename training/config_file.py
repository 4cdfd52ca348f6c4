"""The training configuration from the command line: a JSON/TOML file, ``--set KEY=VALUE``, flags.

Every knob of :class:`training.train.TrainConfig` (loss weights, positive-class weight,
learning rate, features, ...) can be set without code::

    headline-scorer train --data CSV --out DIR --config train.toml --set quality_weight=0.5 \\
        --set features.char_ngrams=[2,4]

Later sources win: the file, then each ``--set`` in order, then ``--epochs``/``--seed``.
A ``--set`` value is read as JSON when it parses (numbers, booleans, null, lists, objects),
otherwise as a plain string (``--set ctr_loss=huber``). Dotted keys reach nested settings.
With ``--resume`` the checkpoint's configuration is kept and only the epochs and the seed
apply, so anything else is refused rather than silently ignored.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from artifact.errors import TrainConfigError
from training.train import TrainConfig

#: What a resumed run may still change (the rest comes from the checkpoint).
RESUMABLE = frozenset({"epochs", "seed"})


def read_config_file(path: Path) -> dict[str, Any]:
    """A JSON or TOML (by the ``.toml`` suffix) object of TrainConfig fields."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainConfigError(f"{path}: cannot read the training configuration: {exc}") from None
    try:
        loaded = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise TrainConfigError(f"{path}: not valid {kind}: {exc}") from None
    if not isinstance(loaded, dict):
        got = type(loaded).__name__
        raise TrainConfigError(f"{path}: expected an object of training settings, got {got}")
    return loaded


def parse_set(item: str) -> tuple[list[str], Any]:
    """``KEY=VALUE`` (``KEY`` may be dotted) into the key path and the value."""
    key, sep, raw = item.partition("=")
    path = key.strip().split(".")
    if not sep or not all(path):
        raise TrainConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. quality_weight=0.5")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return path, value


def _put(target: dict[str, Any], path: Sequence[str], value: Any, item: str) -> None:
    for part in path[:-1]:
        nested = target.setdefault(part, {})
        if not isinstance(nested, dict):
            raise TrainConfigError(f"--set {item!r}: {part} is not a group of settings")
        target = nested
    target[path[-1]] = value


def build_train_config(
    file: Path | None = None,
    sets: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
    *,
    resuming: bool = False,
) -> TrainConfig:
    """The validated configuration; :class:`TrainConfigError` names the file or setting at fault."""
    values: dict[str, Any] = read_config_file(file) if file is not None else {}
    for item in sets:
        path, value = parse_set(item)
        _put(values, path, value, item)
    values |= {k: v for k, v in (flags or {}).items() if v is not None}
    if isinstance(values.get("features"), dict):  # a partial feature group keeps the trainer's other defaults
        values["features"] = TrainConfig().features.model_dump() | values["features"]
    if resuming:
        kept = sorted(set(values) - RESUMABLE)
        if kept:
            raise TrainConfigError(
                f"with --resume the checkpoint's training configuration is kept and only epochs and seed "
                f"apply; remove {', '.join(kept)}"
            )
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        source = f"{file}: " if file is not None else ""
        raise TrainConfigError(f"{source}invalid training configuration: {problems}") from None
