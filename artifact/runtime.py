"""Loading a model version and scoring raw events with it: numpy + onnxruntime, never torch.

``load_model(version_dir)`` verifies, in this order, and raises the first
problem as a typed error:

1. ``manifest.json`` parses and validates (:class:`ManifestError`);
2. every file the manifest lists exists with its recorded sha256 (:class:`ModelLoadError`);
3. the ONNX file's ``metadata_props`` name this version and this manifest's hash (:class:`ModelLoadError`);
4. the feature state parses, one ``InferenceSession`` is built with the requested
   intra-op threads and its inputs/outputs are the expected ones (:class:`ModelLoadError`);
5. the canary rows score as recorded at export (:class:`CanaryError`).

Scoring: title + category -> featurizer (state from the artifact, nothing
refit) -> ONNX graph (normalized CTR, quality logit) -> numpy post-processing
(inverse target scaling, sigmoid + Platt calibration, threshold).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from pydantic import ValidationError

from artifact.errors import CanaryError, FeatureStateError, ModelLoadError, ScoringError
from artifact.features import FeatureBatch, FeatureState
from artifact.featurizer import Featurizer
from artifact.manifest import (
    FEATURE_STATE_FILE,
    MODEL_FILE,
    ONNX_INPUTS,
    ONNX_OUTPUTS,
    Calibration,
    Manifest,
    Scaling,
    check_metadata,
    manifest_digest,
    read_manifest,
    sha256_file,
)

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ScoreBatch:
    """Scores of a batch of events, aligned with the input order."""

    ctr: FloatArray  # raw CTR units (calibrated)
    ctr_normalized: FloatArray
    quality_prob: FloatArray  # calibrated
    quality_label: NDArray[np.bool_]  # quality_prob >= stored threshold
    signals: dict[str, FloatArray]  # drift inputs, keys = artifact.drift.NUMERIC_SIGNALS
    categories: list[str | None]  # category as the model sees it (None = missing)
    category_known: NDArray[np.bool_]  # category was seen in training

    def __len__(self) -> int:
        return int(self.ctr.shape[0])


def _sigmoid(z: FloatArray) -> FloatArray:
    e = np.exp(-np.abs(z))
    out: FloatArray = np.where(z >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))
    return out


def make_session(model: bytes | Path, intra_op_threads: int = 1) -> ort.InferenceSession:
    """One CPU session, ``intra_op_threads`` threads, sequential execution."""
    if intra_op_threads < 1:
        raise ModelLoadError(f"expected intra_op_threads >= 1, got {intra_op_threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    source = str(model) if isinstance(model, Path) else model
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped exceptions for bad models
        raise ModelLoadError(f"onnxruntime cannot load the model: {exc}") from exc
    inputs = tuple(i.name for i in session.get_inputs())
    outputs = tuple(o.name for o in session.get_outputs())
    if inputs != ONNX_INPUTS or outputs != ONNX_OUTPUTS:
        raise ModelLoadError(
            f"expected ONNX inputs {list(ONNX_INPUTS)} and outputs {list(ONNX_OUTPUTS)}, "
            f"got {list(inputs)} and {list(outputs)}"
        )
    return session


#: Rows per ONNX call when scoring a batch. The bag materialises [rows, features, embedding] floats:
#: at 256 rows that is ~26 MB, which evicts the featurizer's caches between batches; 64-row calls
#: (each trimmed to its longest row) cost less in the call and in the featurizer after it
#: (benchmarks/README.md, "What was tried").
ROWS_PER_CALL = 64


class OnnxScorer:
    """Featurizer + ONNX session + numpy post-processing (no manifest, no verification)."""

    def __init__(
        self,
        session: ort.InferenceSession,
        state: FeatureState,
        scaling: Scaling,
        calibration: Calibration,
        quality_threshold: float,
        *,
        rows_per_call: int = ROWS_PER_CALL,
    ) -> None:
        if rows_per_call < 1:
            raise ValueError(f"rows_per_call: expected >= 1, got {rows_per_call}")
        self.session = session
        self._rows_per_call = rows_per_call
        self.featurizer = Featurizer(state)
        self._log_min = scaling.log_min
        self._span = scaling.log_max - scaling.log_min
        self._a, self._b, self._eps = calibration.a, calibration.b, calibration.eps
        self._threshold = quality_threshold

    @property
    def rows_per_call(self) -> int:
        """Rows per ONNX call when scoring (:meth:`chunked_outputs`)."""
        return self._rows_per_call

    def model_outputs(self, batch: FeatureBatch) -> tuple[FloatArray, FloatArray]:
        """The bare ONNX call on the whole batch: (normalized CTR, quality logit) as float64."""
        if len(batch) == 0:
            return np.zeros(0), np.zeros(0)
        return self._run(batch, slice(None), batch.token_ids.shape[1])

    def chunked_outputs(self, batch: FeatureBatch) -> tuple[FloatArray, FloatArray]:
        """:meth:`model_outputs` in calls of at most ``rows_per_call`` rows, each call's token axis
        cut to its longest row (the cut columns are padding: weight 0, so the outputs are equal)."""
        size = len(batch)
        step = self._rows_per_call
        counts = batch.token_counts
        if size <= step and counts is None:
            return self.model_outputs(batch)
        ctr, logit = np.empty(size), np.empty(size)
        for start in range(0, size, step):
            rows = slice(start, min(start + step, size))
            width = batch.token_ids.shape[1] if counts is None else max(int(counts[rows].max()), 1)
            ctr[rows], logit[rows] = self._run(batch, rows, width)
        return ctr, logit

    def _run(self, batch: FeatureBatch, rows: slice, width: int) -> tuple[FloatArray, FloatArray]:
        ctr, logit = self.session.run(
            None,
            {
                "token_ids": np.ascontiguousarray(batch.token_ids[rows, :width]),
                "token_weights": np.ascontiguousarray(batch.token_weights[rows, :width]),
                "category_ids": batch.category_ids[rows],
                "numeric": batch.numeric[rows],
            },
        )
        return np.asarray(ctr, dtype=np.float64), np.asarray(logit, dtype=np.float64)

    def score(self, titles: Sequence[str], categories: Sequence[str | None]) -> ScoreBatch:
        if len(titles) != len(categories):
            raise ScoringError(f"expected one category per title, got {len(categories)} for {len(titles)}")
        seen = [c if c else None for c in categories]
        batch = self.featurizer.transform(titles, seen)
        ctr_norm, logit = self.chunked_outputs(batch)
        p = np.clip(_sigmoid(logit), self._eps, 1.0 - self._eps)
        prob = _sigmoid(self._a * (np.log(p) - np.log1p(-p)) + self._b)
        ctr = np.expm1(ctr_norm * self._span + self._log_min)
        return ScoreBatch(
            ctr=ctr,
            ctr_normalized=ctr_norm,
            quality_prob=prob,
            quality_label=prob >= self._threshold,
            signals={
                "ctr": ctr,
                "quality_prob": prob,
                "title_chars": batch.n_chars,
                "title_words": batch.n_words,
                "unknown_token_share": batch.unknown_share,
            },
            categories=seen,
            category_known=batch.category_known,
        )


class ScoringModel:
    """A verified model version. One caller at a time (the featurizer's caches are not locked)."""

    def __init__(self, version: str, manifest: Manifest, scorer: OnnxScorer) -> None:
        self.version = version
        self.manifest = manifest
        self.scorer = scorer

    def score(self, titles: Sequence[str], categories: Sequence[str | None]) -> ScoreBatch:
        """Score a batch of raw events (any size, including 0)."""
        return self.scorer.score(titles, categories)

    def __repr__(self) -> str:
        return f"ScoringModel(version={self.version!r})"


def load_feature_state(path: Path) -> FeatureState:
    try:
        return FeatureState.model_validate_json(path.read_bytes())
    except (OSError, ValidationError, FeatureStateError) as exc:
        raise ModelLoadError(f"{path}: unusable feature state ({exc})") from exc


def verify_files(version_dir: Path, manifest: Manifest) -> None:
    """Every listed file exists with its recorded sha256; the runtime files are listed."""
    missing = [name for name in (MODEL_FILE, FEATURE_STATE_FILE) if name not in manifest.files]
    if missing:
        raise ModelLoadError(f"{version_dir}: manifest lists no hash for {missing}")
    for name, expected in sorted(manifest.files.items()):
        path = version_dir / name
        if not path.is_file():
            raise ModelLoadError(f"{path}: file listed in the manifest is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ModelLoadError(
                f"{path}: sha256 {actual[:16]}... differs from the manifest's {expected[:16]}... "
                "(file corrupt or replaced)"
            )


def check_canaries(scorer: OnnxScorer, manifest: Manifest, source: str) -> float:
    """Re-score the canary rows; return the largest difference or raise :class:`CanaryError`."""
    rows = manifest.canaries
    scores = scorer.score([r.title for r in rows], [r.category for r in rows])
    expected_ctr = np.array([r.ctr_normalized for r in rows])
    expected_prob = np.array([r.quality_prob for r in rows])
    diff = max(
        float(np.max(np.abs(scores.ctr_normalized - expected_ctr))),
        float(np.max(np.abs(scores.quality_prob - expected_prob))),
    )
    if not diff <= manifest.canary_tolerance:
        raise CanaryError(
            f"{source}: canary rows score differently than at export: max difference {diff:.3g} > "
            f"tolerance {manifest.canary_tolerance:.3g}"
        )
    return diff


def load_model(
    version_dir: Path, *, intra_op_threads: int = 1, rows_per_call: int = ROWS_PER_CALL
) -> ScoringModel:
    """Verify a version directory and build its scorer (see the module docstring)."""
    version_dir = Path(version_dir)
    manifest = read_manifest(version_dir)
    verify_files(version_dir, manifest)
    session = make_session(version_dir / MODEL_FILE, intra_op_threads)
    check_metadata(
        session.get_modelmeta().custom_metadata_map,
        manifest.model_version,
        manifest_digest(manifest),
        str(version_dir / MODEL_FILE),
    )
    state = load_feature_state(version_dir / FEATURE_STATE_FILE)
    scorer = OnnxScorer(
        session,
        state,
        manifest.target_scaling,
        manifest.calibration,
        manifest.quality_threshold,
        rows_per_call=rows_per_call,
    )
    diff = check_canaries(scorer, manifest, str(version_dir))
    logger.info(
        "loaded model %s from %s (%d canaries, max diff %.2g, %d intra-op thread(s))",
        manifest.model_version, version_dir, len(manifest.canaries), diff, intra_op_threads,
    )  # fmt: skip
    return ScoringModel(manifest.model_version, manifest, scorer)
