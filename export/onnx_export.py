"""Stamping the version and the manifest hash into an exported ONNX graph (the ``onnx`` package).

The torch export itself lives in ``export/build.py``. The runtime reads the
stamp back with onnxruntime alone (:func:`artifact.manifest.check_metadata`),
so the serving side needs neither torch nor ``onnx``.
"""

from __future__ import annotations

import onnx

from artifact.errors import ModelLoadError
from artifact.manifest import META_MANIFEST_SHA256, META_VERSION


def stamp_metadata(onnx_bytes: bytes, version: str, manifest_sha256: str) -> bytes:
    """The same graph with ``metadata_props`` naming the version and the manifest hash."""
    try:
        model = onnx.load_from_string(onnx_bytes)
    except Exception as exc:  # onnx raises DecodeError and others: all mean "not a model"
        raise ModelLoadError(f"not a serialized ONNX model ({exc})") from exc
    keep = [p for p in model.metadata_props if p.key not in (META_VERSION, META_MANIFEST_SHA256)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in ((META_VERSION, version), (META_MANIFEST_SHA256, manifest_sha256)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    stamped: bytes = model.SerializeToString()
    return stamped
