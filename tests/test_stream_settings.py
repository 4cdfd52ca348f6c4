"""stream/settings.py: environment parsing, validation messages, security kwargs, no leaked secrets."""

from __future__ import annotations

import logging
import ssl
import tempfile
from pathlib import Path

import pytest

from artifact.runtime import ROWS_PER_CALL
from stream.settings import SettingsError, StreamSettings

ENV_VARS = [
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "SCORER_APP_ID",
    "INPUT_TOPIC",
    "OUTPUT_TOPIC",
    "DLQ_TOPIC",
    "TOPIC_PARTITIONS",
    "TOPIC_REPLICATION",
    "CREATE_TOPICS",
    "MODEL_REGISTRY",
    "SCORER_DATA_DIR",
    "BATCH_MAX_EVENTS",
    "BATCH_MAX_WAIT_SECONDS",
    "FETCH_MAX_WAIT_MS",
    "MAX_EVENT_BYTES",
    "WEB_HOST",
    "WEB_PORT",
    "ONNX_INTRA_OP_THREADS",
    "ONNX_ROWS_PER_CALL",
    "RELOAD_POLL_SECONDS",
    "DRIFT_WINDOW_EVENTS",
    "DRIFT_WINDOW_SECONDS",
    "COMMIT_INTERVAL_SECONDS",
    "BROKER_SESSION_TIMEOUT_SECONDS",
    "PRODUCER_IDEMPOTENCE",
    "READY_TIMEOUT_SECONDS",
    "LOG_LEVEL",
    "DLQ_MAX_RECORD_BYTES",
    "OUTCOMES_TOPIC",
    "LABELLED_TOPIC",
    "SHADOW_OUTPUT_TOPIC",
    "JOIN_ENABLED",
    "JOIN_RETENTION_SECONDS",
    "QUALITY_WINDOW_EVENTS",
    "QUALITY_WINDOW_SECONDS",
    "QUALITY_MIN_IMPRESSIONS",
    "SHADOW_ENABLED",
]
PASSWORD = "pa55-w0rd-that-must-not-leak"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_every_contract_variable_is_a_field() -> None:
    assert sorted(name.lower() for name in ENV_VARS) == sorted(StreamSettings.model_fields)


def test_defaults_match_the_contract() -> None:
    s = StreamSettings.from_env()
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert (s.scorer_app_id, s.input_topic, s.output_topic, s.dlq_topic) == (
        "headline-scorer",
        "headlines",
        "headline-scores",
        "headlines-dlq",
    )
    assert (s.topic_partitions, s.topic_replication) == (4, 1)
    assert (s.batch_max_events, s.batch_max_wait_seconds, s.fetch_max_wait_ms) == (256, 0.02, 10)
    assert (s.max_event_bytes, s.web_host, s.web_port) == (65536, "0.0.0.0", 6066)
    assert (s.onnx_intra_op_threads, s.onnx_rows_per_call, s.reload_poll_seconds) == (1, ROWS_PER_CALL, 2.0)
    assert (s.drift_window_events, s.drift_window_seconds) == (5000, 900)
    assert (s.commit_interval_seconds, s.broker_session_timeout_seconds, s.log_level) == (1.0, 10, "INFO")
    assert (s.producer_idempotence, s.create_topics, s.ready_timeout_seconds) == (True, True, 10.0)
    assert s.kafka_security_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert s.ssl_context() is None
    assert s.scorer_data_dir is None
    assert s.data_dir == Path(tempfile.gettempdir()) / "headline-scorer-headline-scorer"


def test_data_dir_follows_the_app_id_or_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert StreamSettings.from_env(scorer_app_id="blue").data_dir.name == "headline-scorer-blue"
    monkeypatch.setenv("SCORER_DATA_DIR", "  ")  # blank is unset, as in the compose file's ${VAR:-}
    assert StreamSettings.from_env(scorer_app_id="blue").scorer_data_dir is None
    monkeypatch.setenv("SCORER_DATA_DIR", str(tmp_path / "state"))
    assert StreamSettings.from_env(scorer_app_id="blue").data_dir == tmp_path / "state"


def test_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-1:9093,broker-2:9093")
    monkeypatch.setenv("INPUT_TOPIC", "in")
    monkeypatch.setenv("TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("MODEL_REGISTRY", str(tmp_path))
    monkeypatch.setenv("BATCH_MAX_WAIT_SECONDS", "0.5")
    monkeypatch.setenv("log_level", "debug")
    s = StreamSettings.from_env(output_topic="out")
    assert s.kafka_bootstrap_servers == "broker-1:9093,broker-2:9093"
    assert (s.input_topic, s.output_topic, s.topic_partitions) == ("in", "out", 12)
    assert s.model_registry == tmp_path
    assert s.batch_max_wait_seconds == 0.5
    assert s.log_level == "DEBUG"
    assert s.kafka_client_kwargs()["bootstrap_servers"] == "broker-1:9093,broker-2:9093"
    assert s.broker_urls() == ["kafka://broker-1:9093", "kafka://broker-2:9093"]


def test_frozen() -> None:
    s = StreamSettings.from_env()
    with pytest.raises(ValueError, match="frozen"):
        s.input_topic = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, r"KAFKA_SECURITY_PROTOCOL: Input should be 'PLAINTEXT'"),
        ({"TOPIC_PARTITIONS": "0"}, r"TOPIC_PARTITIONS: Input should be greater than or equal to 1"),
        ({"WEB_PORT": "eighty"}, r"WEB_PORT: Input should be a valid integer"),
        ({"BATCH_MAX_WAIT_SECONDS": "0"}, r"BATCH_MAX_WAIT_SECONDS: Input should be greater than 0"),
        ({"LOG_LEVEL": "loud"}, r"LOG_LEVEL: Input should be 'DEBUG'"),
        ({"OUTPUT_TOPIC": "headlines"}, r"six different topics"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"},
            r"expects KAFKA_SASL_MECHANISM, KAFKA_SASL_PASSWORD to be set",
        ),
        ({"KAFKA_SASL_USERNAME": "u"}, r"expected SASL_PLAINTEXT or SASL_SSL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, r"readable file"),
        ({"KAFKA_SSL_CAFILE": "/etc/hostname"}, r"expected SSL or SASL_SSL"),
    ],
)
def test_invalid_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=expected):
        StreamSettings.from_env()


def test_sasl_ssl_kwargs_and_no_leak(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import certifi  # any PEM bundle works; certifi's is at hand (dev extra)

    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "scorer")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("KAFKA_SSL_CAFILE", certifi.where())
    s = StreamSettings.from_env()
    kwargs = s.kafka_security_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "scorer"
    assert kwargs["sasl_plain_password"] == PASSWORD
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.get_ca_certs()  # the CA file was loaded

    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings %s %r", s, s)
    for text in (repr(s), str(s), s.model_dump_json(), str(s.model_dump()), caplog.text):
        assert PASSWORD not in text
    assert "**********" in repr(s)


def test_validation_error_does_not_echo_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)  # set while the protocol is PLAINTEXT: invalid
    with pytest.raises(SettingsError) as info:
        StreamSettings.from_env()
    assert PASSWORD not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_ssl_without_cafile_uses_system_cas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    kwargs = StreamSettings.from_env().kafka_security_kwargs()
    assert set(kwargs) == {"security_protocol", "ssl_context"}
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("secure", [False, True], ids=["plaintext", "sasl-ssl"])
def test_as_env_reads_back_into_equal_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secure: bool
) -> None:
    import certifi

    overrides: dict[str, object] = {
        "kafka_bootstrap_servers": "broker-1:9093,broker-2:9093",
        "input_topic": "in-x",
        "output_topic": "out-x",
        "dlq_topic": "dlq-x",
        "model_registry": tmp_path / "registry",
        "scorer_data_dir": tmp_path / "state",
        "batch_max_wait_seconds": 0.125,
        "web_port": 0,
        "log_level": "debug",
    }
    if secure:
        overrides |= {
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "PLAIN",
            "kafka_sasl_username": "scorer",
            "kafka_sasl_password": PASSWORD,
            "kafka_ssl_cafile": Path(certifi.where()),
        }
    settings = StreamSettings.from_env(**overrides)
    env = settings.as_env()
    assert ("KAFKA_SASL_PASSWORD" in env) is secure  # unset optional fields are left out
    if secure:
        assert env["KAFKA_SASL_PASSWORD"] == PASSWORD  # the child process needs it in clear
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert StreamSettings.from_env() == settings
