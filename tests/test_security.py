"""Security: no pickled code runs, no path escapes the registry, no headline text or credential leaks.

Already covered elsewhere and not repeated here: ``load_checkpoint`` refusing a
``__reduce__`` payload (``test_checkpoint.py``), ``Registry.version_dir``
refusing traversal names (``test_registry.py``), manifest file names with
separators (``test_export.py``), settings never echoing the password
(``test_stream_settings.py``). This file drives the same defences through the
commands and a live worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import struct
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
from prometheus_client import CollectorRegistry

from artifact.errors import RegistryError
from artifact.manifest import CHECKPOINT_FILE
from artifact.registry import CURRENT_FILE, Registry
from headline_scorer import SAMPLE_DATA
from stream.app import faust_kwargs
from stream.metrics import ScorerMetrics
from stream.reload import ModelHolder
from stream.settings import StreamSettings
from tests.cli_support import explain, invoke
from tests.stream_harness import Topics, WorkerProcess, consume_until, event, produce, template_registry


class _Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format_version": 1, "model_state": {}, "payload": _Payload(marker)}, path)
    return path


@pytest.fixture
def registry_root(tmp_path: Path) -> Path:
    return Path(shutil.copytree(template_registry()[0], tmp_path / "registry"))


# --- pickled code through the commands -----------------------------------------------------------


@pytest.mark.slow
def test_commands_refuse_a_checkpoint_carrying_pickled_code(tmp_path: Path, registry_root: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _evil_checkpoint(tmp_path / "evil" / "best.pt", marker)
    data = SAMPLE_DATA / "train.csv"
    commands: list[list[str | Path]] = [
        ["train", "--data", data, "--out", tmp_path / "run", "--resume", evil, "--epochs", "1"],
        ["export", "--checkpoint", evil, "--registry", registry_root, "--data", data],
        ["evaluate", "--model", evil.parent, "--data", data],
        ["predict", "--model", evil.parent, "--data", data, "--out", tmp_path / "p.csv"],
    ]
    for args in commands:
        result = invoke(*args)
        assert result.exit_code == 2, explain(result)
        assert "refused to load" in result.stderr and "pickled code" in result.stderr, explain(result)
        assert not marker.exists(), f"{args[0]} ran the payload"
    assert not (tmp_path / "run" / "best.pt").exists()


@pytest.mark.slow
def test_retrain_refuses_a_swapped_checkpoint_in_the_current_version(
    tmp_path: Path, registry_root: Path
) -> None:
    marker = tmp_path / "pwned"
    registry = Registry(registry_root)
    current = registry.current_version()
    assert current is not None
    _evil_checkpoint(registry.version_dir(current) / CHECKPOINT_FILE, marker)
    result = invoke(
        "retrain", "--data", SAMPLE_DATA / "train.csv", "--registry", registry_root, "--epochs", "1"
    )
    assert result.exit_code == 2, explain(result)
    assert not marker.exists()
    assert registry.current_version() == current
    assert len(registry.versions()) == 2


# --- registry names ------------------------------------------------------------------------------


TRAVERSALS = [
    "../../etc",
    "../registry-other/20260101T000000Z-0123abcd",
    "/etc/passwd",
    "20260101T000000Z-0123abcd/..",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAVERSALS)
def test_models_commands_refuse_traversal_names(registry_root: Path, name: str) -> None:
    for args in (["models", "show", name], ["models", "promote", name]):
        result = invoke(*args, "--registry", registry_root)
        assert result.exit_code == 2, explain(result)
        assert "expected a version name" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAVERSALS)
def test_a_current_pointer_outside_the_registry_is_not_followed(
    tmp_path: Path, registry_root: Path, name: str
) -> None:
    registry = Registry(registry_root)
    serving = registry.current_version()
    assert serving is not None
    # a loadable version placed where the pointer leads (inside this test's directory) is still not loaded
    target = (registry_root / name).resolve()
    if target.is_relative_to(tmp_path) and not target.exists():
        shutil.copytree(registry.version_dir(serving), target)
    holder = ModelHolder(registry, ScorerMetrics(CollectorRegistry()))
    assert holder.poll() and holder.version == serving
    (registry_root / CURRENT_FILE).write_text(name + "\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="expected a version name"):
        registry.current_version()
    assert not holder.poll()
    assert holder.version == serving  # the worker keeps the model it has


# --- a live worker: no headline text in /metrics, no credentials in the log -----------------------


@pytest.mark.kafka
@pytest.mark.slow
def test_worker_http_pages_and_log_never_show_headline_text(
    kafka_bootstrap: str, registry_root: Path, tmp_path: Path
) -> None:
    marker = f"zq{uuid.uuid4().hex[:10]}"
    titles = [f"Secret {marker} headline number {i}" for i in range(20)]
    valid = [
        (f"id-{marker}-{i}".encode(), event(f"id-{marker}-{i}", t, f"cat{marker}{i}"))
        for i, t in enumerate(titles)
    ]
    invalid = [
        (
            b"bad-long",
            json.dumps({"id": f"long-{marker}", "title": f"{marker} " * 300}).encode(),
        ),  # > 1000 chars
        (b"bad-type", json.dumps({"id": f"type-{marker}", "title": {"nested": marker}}).encode()),
        (b"bad-json", f'{{"id": "x", "title": "{marker}'.encode()),
        (b"bad-time", json.dumps({"id": "t", "title": marker, "published_at": "yesterday"}).encode()),
    ]
    topics = Topics.unique()
    worker = WorkerProcess(
        kafka_bootstrap,
        registry_root,
        topics,
        f"t-{uuid.uuid4().hex[:6]}",
        tmp_path / "worker.log",
        extra_env={"LOG_LEVEL": "DEBUG"},
    ).start()
    try:
        worker.wait_ready()
        asyncio.run(produce(kafka_bootstrap, topics.input, valid + invalid))
        out = asyncio.run(
            consume_until(kafka_bootstrap, [topics.output, topics.dlq], len(valid) + len(invalid))
        )
        assert len(out) == len(valid) + len(invalid)
        time.sleep(1.5)  # housekeeping publishes drift (categories) and lag
        pages = {path: worker.get(path)[1].decode() for path in ("/metrics", "/ready", "/live")}
        assert "headline_scorer_events_scored_total 20.0" in pages["/metrics"]
        for path, body in pages.items():
            assert marker not in body, f"{path} shows event content"
        for _, _, _, headers in out:
            for name, value in headers:
                assert marker.encode() not in value, f"dead-letter header {name} quotes the event"
    finally:
        worker.stop()
    assert marker not in worker.log(), "the worker log (DEBUG) quotes event content"


class FakeSaslBroker:
    """Just enough of a Kafka broker to take a SASL PLAIN login and refuse it.

    It answers ApiVersions, accepts the PLAIN handshake and fails SaslAuthenticate, so a
    client gets as far as sending the password (the embedded broker refuses the mechanism
    before that). Runs its own event loop in a daemon thread.
    """

    def __init__(self) -> None:
        self.port = 0
        self.api_keys: list[int] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from aiokafka.protocol.admin import (
            ApiVersionResponse_v0,
            SaslAuthenticateResponse_v0,
            SaslHandShakeResponse_v1,
        )

        try:
            while True:
                (size,) = struct.unpack(">i", await reader.readexactly(4))
                request = await reader.readexactly(size)
                api_key, _, correlation_id = struct.unpack(">hhi", request[:8])
                self.api_keys.append(api_key)
                if api_key == 18:  # ApiVersions: handshake v1, authenticate v0, metadata
                    versions = [(18, 0, 0), (17, 1, 1), (36, 0, 0), (3, 0, 1)]
                    body = ApiVersionResponse_v0(error_code=0, api_versions=versions).encode()
                elif api_key == 17:
                    body = SaslHandShakeResponse_v1(error_code=0, enabled_mechanisms=["PLAIN"]).encode()
                elif api_key == 36:  # 58 = SaslAuthenticationFailed
                    body = SaslAuthenticateResponse_v0(
                        error_code=58, error_message="Authentication failed", sasl_auth_bytes=b""
                    ).encode()
                else:
                    return
                response = struct.pack(">i", correlation_id) + body
                writer.write(struct.pack(">i", len(response)) + response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    def _run(self) -> None:
        async def main() -> None:
            server = await asyncio.start_server(self._serve_client, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            async with server:
                await server.serve_forever()

        asyncio.set_event_loop(self._loop)
        self._main = self._loop.create_task(main())
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._main)
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        if pending:
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()
        asyncio.set_event_loop(None)

    def __enter__(self) -> FakeSaslBroker:
        self._thread = threading.Thread(target=self._run, name="fake-sasl-broker", daemon=True)
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._main.cancel)
        self._thread.join(5)


# faust's own start-up (app, consumer, producer and web set-up), without the topic check
# that the `worker` command runs first (and that stops at the failed login)
_FAUST_ONLY = (
    "from headline_scorer.logconfig import configure_logging\n"
    "from stream.settings import StreamSettings\n"
    "from stream.app import build_app\n"
    "from stream.worker import make_worker\n"
    "settings = StreamSettings.from_env()\n"
    "configure_logging(settings.log_level)\n"
    "make_worker(build_app(settings), loglevel=settings.log_level).execute_from_commandline()\n"
)  # faust's own start-up (run_worker first creates the topics with the admin client)


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["worker-command", "faust-startup"])
def test_kafka_password_never_appears_in_the_worker_log(
    registry_root: Path, tmp_path: Path, entry: str
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    with FakeSaslBroker() as broker:
        worker = WorkerProcess(
            f"127.0.0.1:{broker.port}",
            registry_root,
            Topics.unique(),
            f"t-{uuid.uuid4().hex[:6]}",
            tmp_path / "worker.log",
            extra_env={
                "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KAFKA_SASL_MECHANISM": "PLAIN",
                "KAFKA_SASL_USERNAME": "scorer",
                "KAFKA_SASL_PASSWORD": password,
                "LOG_LEVEL": "DEBUG",  # the most a deployment could turn on
            },
        )
        if entry == "faust-startup":
            worker.command = (sys.executable, "-c", _FAUST_ONLY)
        worker.start()
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and worker.proc is not None and worker.proc.poll() is None:
                if 36 in broker.api_keys and time.monotonic() > deadline - 12:
                    break  # the password was sent; a few more seconds of logging are enough
                time.sleep(0.25)
        finally:
            worker.stop()
        assert 36 in broker.api_keys, "the client never sent its SASL login"
    log = worker.log()
    assert "SaslAuthenticationFailed" in log or "Authentication failed" in log, log[-3000:]
    if entry == "faust-startup":
        assert "faust" in log, log[-3000:]
    assert password not in log
    # the credentials object faust is configured with does not show it either
    settings = StreamSettings.from_env(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="scorer",
        kafka_sasl_password=password,
    )
    kwargs: dict[str, Any] = faust_kwargs(settings)
    assert password not in repr(kwargs["broker_credentials"])
    assert password not in repr(settings) and password not in settings.model_dump_json()
