"""The ONNX side of an artifact that needs no torch: metadata stamping and reading.

The torch export itself lives in ``training/export_model.py``; this module
only edits and inspects the serialized graph (the ``onnx`` package), so the
runtime and the registry stay free of torch.
"""

from __future__ import annotations

from collections.abc import Mapping

from export.errors import ModelLoadError
from export.manifest import META_MANIFEST_SHA256, META_VERSION


def stamp_metadata(onnx_bytes: bytes, version: str, manifest_sha256: str) -> bytes:
    """The same graph with ``metadata_props`` naming the version and the manifest hash."""
    import onnx  # the `train` extra: only exporting needs it, the serving install has no onnx

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
