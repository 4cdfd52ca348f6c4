"""Typed errors of headline-scorer.

Every error the project raises on purpose derives from one root, so a caller
(the CLI, the stream worker) can catch the whole family in one place::

    HeadlineScorerError
    ├── DataError                 bad input data (training side)
    │   ├── CsvReadError          missing file, wrong encoding, empty file, unparsable CSV
    │   ├── CsvValidationError    missing columns, wrong types, out-of-range values, duplicate ids
    │   └── MappingError          an unknown or malformed column mapping
    ├── CheckpointError           a checkpoint that cannot be written, read or trusted
    ├── FeatureStateError         fitted text/category state that is missing or inconsistent
    └── ArtifactError             a model artifact (export/registry/runtime) that cannot be used

This module lives in ``export`` because ``training`` and ``stream`` both depend
on ``export`` and never on each other.
"""

from __future__ import annotations


class HeadlineScorerError(Exception):
    """Root of every error headline-scorer raises deliberately."""


class DataError(HeadlineScorerError):
    """Input data that cannot be used as it is."""


class CsvReadError(DataError):
    """The CSV file cannot be read: missing, wrong encoding, empty or unparsable."""


class CsvValidationError(DataError):
    """The CSV was read but violates the expected schema or value rules."""


class MappingError(DataError):
    """A column mapping that is unknown or malformed."""


class CheckpointError(HeadlineScorerError):
    """A checkpoint that cannot be written, read or trusted."""


class FeatureStateError(HeadlineScorerError):
    """Fitted feature state that is missing or inconsistent."""


class ArtifactError(HeadlineScorerError):
    """A model artifact that cannot be used."""
