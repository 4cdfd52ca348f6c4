"""The faust app wiring, without a broker: entry points and settings reach faust."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import faust
import pytest

from stream.app import build_app, faust_kwargs
from stream.faust_adapter import ScorerFaustApp
from stream.quality import LiveQuality
from stream.settings import StreamSettings

ROOT = Path(__file__).resolve().parents[1]


def test_build_app_carries_the_settings_into_faust(tmp_path: Path) -> None:
    settings = StreamSettings.from_env(
        kafka_bootstrap_servers="k1:9092,k2:9093",
        model_registry=tmp_path,
        fetch_max_wait_ms=25,
        commit_interval_seconds=0.5,
        scorer_app_id="scorer-x",
        web_port=7777,
    )
    worker = build_app(settings)
    app = worker.faust_app
    assert isinstance(app, ScorerFaustApp)
    assert app.conf.id == "scorer-x"
    assert [str(url) for url in app.conf.broker] == ["kafka://k1:9092", "kafka://k2:9093"]
    assert app.conf.broker_commit_interval == 0.5
    assert app.conf.web_port == 7777
    assert app.adapter_config.fetch_max_wait_ms == 25
    assert app.adapter_config.batch_topics == (settings.input_topic, settings.outcomes_topic)
    assert app.adapter_config.join_table == "headline-join"
    assert app.join_table is not None and worker.join is not None
    assert isinstance(worker.join.quality, LiveQuality)
    assert app.join_table.changelog_topic.get_topic_name() == "scorer-x-headline-join-changelog"
    assert app.join_table.changelog_topic.partitions in (None, settings.topic_partitions)
    assert (app.join_table.key_serializer, app.join_table.value_serializer) == ("raw", "raw")
    assert app.adapter_config.producer_idempotence is True  # on unless PRODUCER_IDEMPOTENCE=false
    assert app.hooks is worker
    assert worker.holder.model is None  # nothing loaded until the worker starts
    assert worker.health.ready() == (False, "no model loaded")


def test_join_disabled_subscribes_the_input_only_and_registers_no_table(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    settings = StreamSettings.from_env(model_registry=tmp_path, join_enabled=False)
    worker = build_app(settings, registry=registry)
    app = worker.faust_app
    assert app.adapter_config.batch_topics == (settings.input_topic,)
    assert app.adapter_config.join_table is None
    assert app.join_table is None and worker.join is None
    assert list(app.tables) == []
    assert registry.get_sample_value("headline_scorer_join_entries") is None


def test_sasl_settings_become_faust_credentials(tmp_path: Path) -> None:
    settings = StreamSettings.from_env(
        model_registry=tmp_path,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="scorer",
        kafka_sasl_password="s3cret-value",
    )
    creds = faust_kwargs(settings)["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.username == "scorer"
    assert "s3cret-value" not in repr(settings)


@pytest.mark.slow
def test_faust_cli_entry_point_builds_the_app_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_REGISTRY", str(tmp_path))
    monkeypatch.setenv("SCORER_APP_ID", "from-env")
    sys.modules.pop("stream.faust_app", None)
    module = importlib.import_module("stream.faust_app")
    assert module.app.conf.id == "from-env"
    # and faust's own CLI accepts the module (``faust -A stream.faust_app ...``)
    done = subprocess.run(
        [sys.executable, "-m", "faust", "-A", "stream.faust_app", "--help"],
        cwd=ROOT,
        env={"MODEL_REGISTRY": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "worker" in done.stdout


def test_the_dead_letter_topic_fits_an_input_record_at_the_size_limit(tmp_path: Path) -> None:
    from stream.topics import DLQ_MAX_MESSAGE_BYTES, scorer_topics

    settings = StreamSettings.from_env(model_registry=tmp_path)
    specs = {spec.name: spec for spec in scorer_topics(settings)}
    assert int(specs[settings.dlq_topic].config["max.message.bytes"]) == DLQ_MAX_MESSAGE_BYTES
    assert DLQ_MAX_MESSAGE_BYTES >= 2 * 1024 * 1024  # Kafka's default limit (1 MiB) plus headers, with room
    assert faust_kwargs(settings)["producer_max_request_size"] == DLQ_MAX_MESSAGE_BYTES
