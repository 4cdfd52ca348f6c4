"""Settings of a scorer process: one frozen object read from the environment.

Every knob of the streaming side is an environment variable named after its
field in upper case (``KAFKA_BOOTSTRAP_SERVERS``, ``INPUT_TOPIC``, ...). Build
the object once at the entry point with :meth:`StreamSettings.from_env` and pass
it down. Credentials are :class:`~pydantic.SecretStr`: they never appear in
``repr``, ``str`` or a JSON dump of the settings, only in the keyword arguments
handed to the Kafka client (:meth:`StreamSettings.kafka_security_kwargs`).
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from artifact.errors import HeadlineScorerError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class SettingsError(HeadlineScorerError):
    """The environment does not describe a usable scorer configuration."""


class StreamSettings(BaseSettings):
    """Configuration of the streaming scorer (environment variables = field names in upper case)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", min_length=1)
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    scorer_app_id: str = Field(default="headline-scorer", min_length=1)
    input_topic: str = Field(default="headlines", min_length=1, max_length=249)
    output_topic: str = Field(default="headline-scores", min_length=1, max_length=249)
    dlq_topic: str = Field(default="headlines-dlq", min_length=1, max_length=249)
    # realized impressions and clicks per headline id (stream/outcomes.py), keyed by id like the input
    outcomes_topic: str = Field(default="headline-outcomes", min_length=1, max_length=249)
    # joined rows (score + latest outcome, compacted by id): what `headline-scorer outcomes export` reads
    labelled_topic: str = Field(default="headline-labelled", min_length=1, max_length=249)
    # scores of the registry's shadow version; never written to OUTPUT_TOPIC
    shadow_output_topic: str = Field(default="headline-scores-shadow", min_length=1, max_length=249)
    # join scores with outcomes in a changelog-backed table (stream/join.py); false: outcomes are not read
    join_enabled: bool = True
    # a score (or an outcome still waiting for its score) is kept this long after it was last updated
    join_retention_seconds: float = Field(default=7 * 86400.0, gt=0)
    # live quality (stream/quality.py): the latest joined outcomes of at most this many headlines ...
    quality_window_events: int = Field(default=20_000, ge=1)
    # ... whose outcome arrived within this many seconds
    quality_window_seconds: float = Field(default=86400.0, gt=0)
    # an outcome counts as a label once it has this many impressions (pairs: both headlines)
    quality_min_impressions: int = Field(default=100, ge=1)
    # score every event with the registry's shadow version too, when one is marked (stream/shadow.py)
    shadow_enabled: bool = True
    topic_partitions: int = Field(default=4, ge=1)
    topic_replication: int = Field(default=1, ge=1)
    # False: never create topics (needs no Create ACL; a Job creates them); the worker then refuses
    # to start while one is missing
    create_topics: bool = True
    model_registry: Path = Path("registry")
    # faust's local state directory; None: <system temp dir>/headline-scorer-<SCORER_APP_ID>
    scorer_data_dir: Path | None = None
    batch_max_events: int = Field(default=256, ge=1, le=100_000)
    batch_max_wait_seconds: float = Field(default=0.02, gt=0, le=60)
    fetch_max_wait_ms: int = Field(default=10, ge=0, le=60_000)
    max_event_bytes: int = Field(default=65536, ge=64)
    # largest dead letter (key + value + headers); beyond it the original is cut (stream/dlq.py)
    dlq_max_record_bytes: int = Field(default=4 * 1024 * 1024, ge=4096, le=4 * 1024 * 1024)
    web_host: str = "0.0.0.0"
    web_port: int = Field(default=6066, ge=0, le=65535)
    onnx_intra_op_threads: int = Field(default=1, ge=1, le=256)
    # artifact.runtime.ROWS_PER_CALL (not imported: settings load without onnxruntime)
    onnx_rows_per_call: int = Field(default=64, ge=1, le=100_000)
    reload_poll_seconds: float = Field(default=2.0, gt=0)
    drift_window_events: int = Field(default=5000, ge=1)
    drift_window_seconds: float = Field(default=900.0, gt=0)
    commit_interval_seconds: float = Field(default=1.0, gt=0)
    broker_session_timeout_seconds: float = Field(default=10.0, gt=0)
    # aiokafka's idempotent producer (acks=all always); the embedded broker cannot do it: set false there
    producer_idempotence: bool = True
    # /ready turns false when the broker has not answered, or processed events have waited for their
    # commit, for longer than this
    ready_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    log_level: LogLevel = "INFO"

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", "log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator(
        "kafka_sasl_mechanism", "kafka_sasl_username", "kafka_ssl_cafile", "scorer_data_dir", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        topics = [
            self.input_topic,
            self.output_topic,
            self.dlq_topic,
            self.outcomes_topic,
            self.labelled_topic,
            self.shadow_output_topic,
        ]
        if len(set(topics)) != len(topics):
            raise ValueError(
                "expected INPUT_TOPIC, OUTPUT_TOPIC, DLQ_TOPIC, OUTCOMES_TOPIC, LABELLED_TOPIC and "
                f"SHADOW_OUTPUT_TOPIC to be six different topics, got {topics}"
            )
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl:
            missing = [
                name
                for name, value in (
                    ("KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism),
                    ("KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                    ("KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
                )
                if value is None
            ]
            if missing:
                raise ValueError(
                    f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} expects "
                    f"{', '.join(missing)} to be set"
                )
        elif self.kafka_sasl_username is not None or self.kafka_sasl_password is not None:
            raise ValueError(
                "KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL is "
                f"{self.kafka_security_protocol}; expected SASL_PLAINTEXT or SASL_SSL"
            )
        if self.kafka_ssl_cafile is not None:
            if not self.kafka_security_protocol.endswith("SSL"):
                raise ValueError(
                    f"KAFKA_SSL_CAFILE is set but KAFKA_SECURITY_PROTOCOL is "
                    f"{self.kafka_security_protocol}; expected SSL or SASL_SSL"
                )
            if not self.kafka_ssl_cafile.is_file():
                raise ValueError(f"KAFKA_SSL_CAFILE: expected a readable file, got {self.kafka_ssl_cafile}")
        return self

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """Read the environment (``overrides`` win); :class:`SettingsError` lists every problem."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None

    def as_env(self) -> dict[str, str]:
        """The environment that :meth:`from_env` reads back into equal settings (for a child process).

        Unset optional fields are left out; the SASL password is in clear text, as the child needs it.
        """
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[name.upper()] = str(value)
        return env

    @property
    def data_dir(self) -> Path:
        """Where the faust app keeps its local state (``SCORER_DATA_DIR`` or a per-app temp directory)."""
        if self.scorer_data_dir is not None:
            return self.scorer_data_dir
        return Path(tempfile.gettempdir()) / f"headline-scorer-{self.scorer_app_id}"

    @property
    def uses_ssl(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context trusting ``KAFKA_SSL_CAFILE`` (or the system CAs); None without TLS."""
        if not self.uses_ssl:
            return None
        cafile = None if self.kafka_ssl_cafile is None else str(self.kafka_ssl_cafile)
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)

    def kafka_security_kwargs(self) -> dict[str, Any]:
        """Security keyword arguments for aiokafka clients (producer, consumer, admin).

        The result holds the password in clear text: pass it to the client, never log it.
        """
        kwargs: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        context = self.ssl_context()
        if context is not None:
            kwargs["ssl_context"] = context
        if self.kafka_security_protocol.startswith("SASL_"):
            assert self.kafka_sasl_password is not None  # checked by the validator
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            kwargs["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return kwargs

    def broker_urls(self) -> list[str]:
        """``KAFKA_BOOTSTRAP_SERVERS`` as faust broker URLs (``["kafka://host:port", ...]``)."""
        hosts = [h.strip() for h in self.kafka_bootstrap_servers.split(",") if h.strip()]
        return [h if "://" in h else f"kafka://{h}" for h in hosts]

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """``bootstrap_servers`` plus :meth:`kafka_security_kwargs`: enough to build any aiokafka client."""
        return {"bootstrap_servers": self.kafka_bootstrap_servers, **self.kafka_security_kwargs()}


def _describe(exc: ValidationError) -> str:
    """One line per error, naming the environment variable; input values are left out (secrets)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in error["loc"]).upper() or "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(message if not error["loc"] else f"{where}: {message}")
    return "invalid scorer settings: " + "; ".join(lines)
