"""``manifest.json``: what a model version is, how to score with it, and how to check it.

One manifest per version directory, validated with pydantic on every load.

Hashes and the circularity between the two files: the manifest lists the
sha256 of every file of the version, including ``model.onnx``, and
``model.onnx`` carries the manifest's hash in its ``metadata_props``. The
**manifest hash** (:func:`manifest_digest`) is therefore defined over the
manifest with the ``model.onnx`` entry removed from ``files``: the sha256 of
its canonical JSON (keys sorted, no whitespace). Export computes it, stamps it
into the ONNX file, then records the stamped file's hash. A model paired with
another version's manifest fails either the file hash or the digest check.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from artifact.drift import DriftReference
from artifact.errors import ManifestError, ModelLoadError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
FEATURE_STATE_FILE = "feature_state.json"
CHECKPOINT_FILE = "best.pt"
#: Files the runtime needs (the checkpoint is only for retraining).
RUNTIME_FILES = (MODEL_FILE, FEATURE_STATE_FILE)

VERSION_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
ONNX_INPUTS = ("token_ids", "token_weights", "category_ids", "numeric")
ONNX_OUTPUTS = ("ctr_normalized", "quality_logit")
SCORE_OUTPUTS = ("ctr", "ctr_normalized", "quality_prob", "quality_label")
META_VERSION = "headline_scorer.version"
META_MANIFEST_SHA256 = "headline_scorer.manifest_sha256"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataFingerprint(_Frozen):
    file: str
    sha256: str
    rows: int = Field(ge=0)


class TensorSpec(_Frozen):
    name: str
    dtype: Literal["int64", "float32"]
    shape: list[str | int]


class RawField(_Frozen):
    name: str
    type: str
    description: str


class InputSchema(_Frozen):
    """Raw event fields the runtime takes, and the tensors the ONNX graph takes."""

    raw: list[RawField]
    onnx: list[TensorSpec]


class Scaling(_Frozen):
    """``ctr = expm1(ctr_normalized * (log_max - log_min) + log_min)``."""

    log_min: float
    log_max: float


class Calibration(_Frozen):
    """``quality_prob = sigmoid(a * logit(clip(sigmoid(quality_logit), eps, 1 - eps)) + b)``."""

    method: Literal["platt"] = "platt"
    a: float
    b: float
    eps: float = 1e-7


class ParityResult(_Frozen):
    """Runtime (ONNX + numpy) against the PyTorch model on the same rows."""

    rows: int = Field(ge=0, description="Validation rows compared.")
    hard_rows: int = Field(ge=0, description="Hostile strings compared (empty, huge, emoji, RTL, ...).")
    max_abs_diff_ctr_normalized: float
    max_abs_diff_quality_prob: float
    tolerance: float
    passed: bool


class CanaryRow(_Frozen):
    """A row scored at export; loading a version re-scores it and compares."""

    title: str
    category: str | None
    ctr_normalized: float
    quality_prob: float


class Manifest(_Frozen):
    format_version: Literal[1] = 1
    model_version: str
    created_at: datetime
    weights_sha256: str
    training_data: DataFingerprint
    input_schema: InputSchema
    outputs: list[str] = Field(default_factory=lambda: list(SCORE_OUTPUTS))
    onnx_outputs: list[str] = Field(default_factory=lambda: list(ONNX_OUTPUTS))
    target_scaling: Scaling
    calibration: Calibration
    quality_threshold: float = Field(ge=0.0, le=1.0)
    label_rule: str
    validation_metrics: dict[str, float | int | str | None]
    parity: ParityResult
    drift: DriftReference
    canaries: list[CanaryRow] = Field(min_length=1)
    canary_tolerance: float = Field(gt=0.0)
    training: dict[str, Any] = Field(default_factory=dict, description="Informational: epochs, config.")
    files: dict[str, str] = Field(description="File name -> sha256 of every file of the version.")

    @field_validator("model_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not VERSION_PATTERN.match(value):
            raise ValueError(f"expected a version like 20261124T101500Z-3f2a9c1d, got {value!r}")
        return value

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None or value.utcoffset().total_seconds() != 0:  # type: ignore[union-attr]
            raise ValueError(f"expected a UTC timestamp, got {value.isoformat()}")
        return value

    @field_validator("files")
    @classmethod
    def _files(cls, value: dict[str, str]) -> dict[str, str]:
        for name, digest in value.items():
            if "/" in name or "\\" in name or name in ("", ".", "..") or not _SHA256.match(digest):
                raise ValueError(
                    f"expected plain file names with sha256 hex digests, got {name!r}: {digest!r}"
                )
        return value


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_digest(manifest: Manifest) -> str:
    """sha256 of the canonical JSON of the manifest without the ``model.onnx`` file hash."""
    data = manifest.model_dump(mode="json")
    data["files"] = {k: v for k, v in data["files"].items() if k != MODEL_FILE}
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def parse_manifest(text: str | bytes, source: str = MANIFEST_FILE) -> Manifest:
    """Validate manifest JSON; :class:`ManifestError` lists every problem with its field path."""
    try:
        return Manifest.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'manifest'}: {err['msg']}" for err in exc.errors()[:8]
        )
        raise ManifestError(
            f"{source}: invalid manifest ({exc.error_count()} problem(s)): {problems}"
        ) from exc


def read_manifest(version_dir: Path) -> Manifest:
    path = version_dir / MANIFEST_FILE
    try:
        text = path.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(f"{path}: manifest not found") from exc
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc})") from exc
    return parse_manifest(text, str(path))


def manifest_json(manifest: Manifest) -> bytes:
    return manifest.model_dump_json(indent=2).encode("utf-8")


def check_metadata(metadata: Mapping[str, str], version: str, manifest_sha256: str, source: str) -> None:
    """Raise :class:`ModelLoadError` unless the ONNX metadata names this version and manifest."""
    found_version = metadata.get(META_VERSION)
    found_digest = metadata.get(META_MANIFEST_SHA256)
    if found_version != version:
        raise ModelLoadError(
            f"{source}: ONNX metadata names version {found_version!r}, the manifest {version!r}: "
            "model and manifest belong to different versions"
        )
    if found_digest != manifest_sha256:
        raise ModelLoadError(
            f"{source}: ONNX metadata carries manifest hash {found_digest!r}, the manifest hashes to "
            f"{manifest_sha256!r}: the manifest was changed after export"
        )
