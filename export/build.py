"""Export a trained checkpoint to a self-contained model version (the torch side of the artifact).

``export_version(checkpoint, data, out_dir)`` writes into ``out_dir``:

* ``model.onnx``: the dual-head model (opset 17, dynamic batch and token axes),
  its ``metadata_props`` carrying the version and the manifest hash;
* ``feature_state.json``: the fitted featurizer state (the runtime refits nothing);
* ``best.pt``: the checkpoint itself, so ``retrain`` can continue from it
  (the runtime never reads it);
* ``manifest.json``: see :mod:`artifact.manifest`.

The validation rows (parity, canaries, validation metrics) and the training
rows (drift reference) come from the checkpoint, which stores them (see
:mod:`training.export_rows`), or, when ``data`` is given, from the CSV the
checkpoint was trained on (its sha256 must match the checkpoint's data
fingerprint; the drift reference then uses every training row, not a sample);
:mod:`export.inputs` picks them.
The manifest's ``training`` entry says which (``drift_reference_source``,
``drift_reference_rows``).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, Unpack

import numpy as np
import torch

from artifact.drift import DEFAULT_BINS, NUMERIC_SIGNALS, build_drift_reference
from artifact.errors import ExportError
from artifact.manifest import (
    CHECKPOINT_FILE,
    FEATURE_STATE_FILE,
    MODEL_FILE,
    ONNX_INPUTS,
    ONNX_OUTPUTS,
    Calibration,
    CanaryRow,
    InputSchema,
    Manifest,
    RawField,
    Scaling,
    TensorSpec,
    manifest_digest,
    manifest_json,
    sha256_file,
)
from artifact.registry import Registry
from artifact.runtime import OnnxScorer, load_model, make_session
from export.inputs import export_inputs
from export.onnx_export import stamp_metadata
from export.parity import HARD_ROWS, PARITY_TOLERANCE, compare
from training.data import HeadlineData
from training.evaluate import evaluate_predictions
from training.predict import TrainedModel, resolve_checkpoint

logger = logging.getLogger(__name__)

N_CANARY_ROWS = 8
N_CANARY_HARD = 4
SCORE_BATCH = 1024

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ExportResult:
    version: str
    version_dir: Path
    manifest: Manifest
    seconds: float


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over the parameter names and bytes (sorted by name)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def version_name(created_at: datetime, weights_hash: str) -> str:
    return f"{created_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{weights_hash[:8]}"


def onnx_bytes(trained: TrainedModel) -> bytes:
    """The model as ONNX (TorchScript exporter, opset 17, dynamic batch/token axes)."""
    model = trained.model.eval()
    n_numeric = model.config.n_numeric
    example = (
        torch.zeros(2, 3, dtype=torch.int64),
        torch.zeros(2, 3, dtype=torch.float32),
        torch.zeros(2, dtype=torch.int64),
        torch.zeros(2, n_numeric, dtype=torch.float32),
    )
    dynamic = {
        "token_ids": {0: "batch", 1: "tokens"},
        "token_weights": {0: "batch", 1: "tokens"},
        "category_ids": {0: "batch"},
        "numeric": {0: "batch"},
        "ctr_normalized": {0: "batch"},
        "quality_logit": {0: "batch"},
    }
    with tempfile.TemporaryDirectory(prefix="headline-onnx-") as tmp, warnings.catch_warnings():
        path = Path(tmp) / MODEL_FILE
        # torch 2.13 deprecates the TorchScript exporter; the dynamo one needs onnxscript (not a dependency).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            example,
            path,
            input_names=list(ONNX_INPUTS),
            output_names=list(ONNX_OUTPUTS),
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )
        return path.read_bytes()


def _input_schema(n_numeric: int) -> InputSchema:
    return InputSchema(
        raw=[
            RawField(name="title", type="string", description="Headline text, any Unicode, any length."),
            RawField(name="category", type="string | null", description="Category name; null = missing."),
        ],
        onnx=[
            TensorSpec(name="token_ids", dtype="int64", shape=["batch", "tokens"]),
            TensorSpec(name="token_weights", dtype="float32", shape=["batch", "tokens"]),
            TensorSpec(name="category_ids", dtype="int64", shape=["batch"]),
            TensorSpec(name="numeric", dtype="float32", shape=["batch", n_numeric]),
        ],
    )


def _score(scorer: OnnxScorer, titles: list[str], categories: list[str | None]) -> dict[str, Any]:
    parts = [
        scorer.score(titles[i : i + SCORE_BATCH], categories[i : i + SCORE_BATCH])
        for i in range(0, len(titles), SCORE_BATCH)
    ]
    out: dict[str, Any] = {"ctr_normalized": np.concatenate([p.ctr_normalized for p in parts])}
    for signal in NUMERIC_SIGNALS:  # ctr and quality_prob among them
        out[signal] = np.concatenate([p.signals[signal] for p in parts])
    return out


def export_version(
    checkpoint: Path,
    data: HeadlineData | None,
    out_dir: Path,
    *,
    clock: Clock = utc_now,
    tolerance: float = PARITY_TOLERANCE,
    n_bins: int = DEFAULT_BINS,
    trained: TrainedModel | None = None,
) -> ExportResult:
    """Write a complete, verified version directory into ``out_dir`` (empty or absent).

    ``data``: the training CSV of the checkpoint, or ``None`` to use the rows stored in it.
    ``trained``: the checkpoint's model when the caller holds it already (it is not read again).
    """
    started = time.perf_counter()
    checkpoint = resolve_checkpoint(checkpoint)
    if trained is None:
        trained = TrainedModel.from_checkpoint(checkpoint)
    if trained.scaling is None:
        raise ExportError(
            f"{checkpoint}: the model was trained without raw CTR (no target scaling), "
            "so it cannot produce CTR in raw units as the artifact requires"
        )
    inputs = export_inputs(trained.checkpoint, data)
    val_rows = inputs.validation
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise ExportError(f"{out_dir}: expected an empty directory to export into")

    graph = onnx_bytes(trained)
    state = trained.featurizer.state
    scaling = Scaling(**trained.scaling.to_dict())
    calibration = Calibration(a=trained.calibration.a, b=trained.calibration.b)
    scorer = OnnxScorer(make_session(graph), state, scaling, calibration, trained.quality_threshold)

    # Parity: validation rows and the hostile strings, torch vs runtime.
    val_cats = val_rows.categories or [None] * len(val_rows)
    titles = [*val_rows.titles, *(t for t, _ in HARD_ROWS)]
    cats: list[str | None] = [*val_cats, *(c for _, c in HARD_ROWS)]
    torch_pred = trained.predict(titles, cats)
    runtime = _score(scorer, titles, cats)
    parity = compare(
        torch_pred.ctr_normalized,
        torch_pred.quality_prob,
        runtime["ctr_normalized"],
        runtime["quality_prob"],
        rows=len(val_rows),
        hard_rows=len(HARD_ROWS),
        tolerance=tolerance,
    )
    n_val = len(val_rows)
    evaluation = evaluate_predictions(trained, val_rows, trained.predict(val_rows.titles, val_cats))

    # Canaries: evenly spaced validation rows and a few hostile strings, with the torch scores.
    picks = [
        *np.linspace(0, n_val - 1, min(N_CANARY_ROWS, n_val)).astype(int),
        *range(n_val, n_val + N_CANARY_HARD),
    ]
    canaries = [
        CanaryRow(
            title=titles[i],
            category=cats[i] or None,
            ctr_normalized=float(torch_pred.ctr_normalized[i]),
            quality_prob=float(torch_pred.quality_prob[i]),
        )
        for i in dict.fromkeys(int(i) for i in picks)
    ]

    # Drift reference on the training rows (or the checkpoint's sample of them), scored through the runtime.
    drift_scores = _score(scorer, inputs.drift_titles, inputs.drift_categories)
    drift = build_drift_reference(drift_scores, inputs.drift_categories, n_bins)

    weights_hash = weights_sha256(trained.model)
    created_at = clock().astimezone(UTC).replace(microsecond=0)
    version = version_name(created_at, weights_hash)
    (out_dir / FEATURE_STATE_FILE).write_text(state.model_dump_json(), encoding="utf-8")
    shutil.copyfile(checkpoint, out_dir / CHECKPOINT_FILE)
    setup, progress = trained.checkpoint.setup, trained.checkpoint.progress
    if setup.data is None:
        raise ExportError(f"{checkpoint}: the checkpoint holds no fingerprint of its training data")
    rule = trained.label_rule
    manifest = Manifest(
        model_version=version,
        created_at=created_at,
        weights_sha256=weights_hash,
        training_data=setup.data,
        input_schema=_input_schema(trained.model.config.n_numeric),
        target_scaling=scaling,
        calibration=calibration,
        quality_threshold=trained.quality_threshold,
        label_rule=rule.rule if rule.threshold is None else f"{rule.rule} (threshold {rule.threshold!r})",
        validation_metrics=evaluation.model_dump(exclude={"mode", "notice", "warnings"}),
        parity=parity,
        drift=drift,
        canaries=canaries,
        canary_tolerance=tolerance,
        training={
            "epochs_run": len(progress.history),
            "best_epoch": progress.epoch,
            **inputs.manifest_info(),
            "train_config": setup.train_config.model_dump(mode="json"),
        },
        files={
            FEATURE_STATE_FILE: sha256_file(out_dir / FEATURE_STATE_FILE),
            CHECKPOINT_FILE: sha256_file(out_dir / CHECKPOINT_FILE),
        },
    )
    (out_dir / MODEL_FILE).write_bytes(stamp_metadata(graph, version, manifest_digest(manifest)))
    manifest = manifest.model_copy(
        update={"files": {**manifest.files, MODEL_FILE: sha256_file(out_dir / MODEL_FILE)}}
    )
    (out_dir / "manifest.json").write_bytes(manifest_json(manifest))
    load_model(out_dir)  # the finished directory must pass every check the stream will run
    seconds = time.perf_counter() - started
    logger.info("exported %s to %s in %.1f s", version, out_dir, seconds)
    return ExportResult(version=version, version_dir=out_dir, manifest=manifest, seconds=seconds)


class ExportOptions(TypedDict, total=False):
    """The keyword options of :func:`export_version`, passed on unchanged by :func:`export_to_registry`."""

    clock: Clock
    tolerance: float
    n_bins: int
    trained: TrainedModel | None


def export_to_registry(
    checkpoint: Path,
    data: HeadlineData | None,
    registry: Registry,
    *,
    make_current: bool = True,
    **options: Unpack[ExportOptions],
) -> ExportResult:
    """Export into a staging directory of ``registry`` and publish it (``data`` and ``options``: see
    ``export_version``)."""
    staging = registry.new_staging_dir()
    try:
        result = export_version(checkpoint, data, staging, **options)
        version = registry.publish(staging, make_current=make_current)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(
        version=version,
        version_dir=registry.version_dir(version),
        manifest=result.manifest,
        seconds=result.seconds,
    )
