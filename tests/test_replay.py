"""headline_scorer/replay.py and the stream commands (broker, replay) of the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from headline_scorer.cli import app
from headline_scorer.replay import (
    INVALID_KINDS,
    ReplayError,
    ReplayRow,
    event_value,
    invalid_value,
    load_rows,
    replay_events,
)
from stream.asyncio_util import answers_metadata, run_sync
from stream.events import EventRejected, decode_event

MAX_BYTES = 65536


def classify(value: bytes | None) -> str:
    try:
        decode_event(value, MAX_BYTES)
    except EventRejected as exc:
        return exc.reason
    return "valid"


def test_load_rows_from_the_sample(sample_dir: Path) -> None:
    rows = load_rows(sample_dir / "inference.csv", "seed")
    assert len(rows) == 200
    assert rows[0] == ReplayRow(
        "17305415", '"The numbers speak for themselves": Apple CEO on the future of AirPods', "Tech News"
    )
    assert all(isinstance(r.id, str) and r.title for r in rows)


def test_torch_free() -> None:
    """The load generator (and the stream package) must run where torch is not installed."""
    modules = ", ".join(
        [
            "headline_scorer.replay",
            "stream.events",
            "stream.drift",
            "stream.metrics",
            "stream.asyncio_util",
            "stream.topics",
        ]
    )
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "False"


def test_event_and_invalid_values_decode_as_intended() -> None:
    event_id, value = event_value(ReplayRow("7", " A title ", None), "2026-01-01T00:00:00.000Z", round_no=2)
    event = decode_event(value, MAX_BYTES)
    assert event_id == event.id == "7~2"
    assert event.title == "A title" and event.category is None and event.published_at is not None
    for n, kind in enumerate(INVALID_KINDS):
        assert classify(invalid_value(kind, n, MAX_BYTES)) == kind


@pytest.mark.kafka
def test_replay_sends_valid_and_invalid_events(
    sample_dir: Path,
    kafka_client_kwargs: dict[str, Any],
    topic_factory: Callable[..., str],
    read_topic: Callable[..., list[Any]],
) -> None:
    rows = load_rows(sample_dir / "inference.csv", "seed")
    topic = topic_factory(partitions=2)
    started = time.monotonic()
    report = run_sync(
        replay_events(
            rows,
            client_kwargs=kafka_client_kwargs,
            topic=topic,
            rate=1000,
            limit=300,  # more than the 200 rows: ids of the second round get a suffix
            invalid_share=0.2,
            seed=3,
            keep_ids=True,
        )
    )
    took = time.monotonic() - started
    assert report.sent == 300 and report.failed == 0
    assert 30 < sum(report.invalid.values()) < 90
    assert set(report.invalid) == set(INVALID_KINDS)
    assert took >= 0.29  # 300 events at 1000/s cannot take less
    records = read_topic(topic, expected=300)
    assert len(records) == 300
    verdicts = Counter(classify(r.value) for r in records)
    assert verdicts == Counter({"valid": report.valid, **report.invalid})
    valid = [decode_event(r.value, MAX_BYTES) for r in records if classify(r.value) == "valid"]
    assert sorted(e.id for e in valid) == sorted(report.valid_ids)
    assert len(set(report.valid_ids)) == report.valid
    valid_records = [r for r in records if classify(r.value) == "valid"]
    assert all(r.key == e.id.encode() for r, e in zip(valid_records, valid, strict=True))
    assert any(i.endswith("~1") for i in report.valid_ids)


@pytest.mark.kafka
def test_replay_rejects_bad_arguments(kafka_client_kwargs: dict[str, Any]) -> None:
    rows = [ReplayRow("1", "t", None)]
    with pytest.raises(ReplayError, match="invalid share"):
        run_sync(replay_events(rows, client_kwargs=kafka_client_kwargs, topic="x", invalid_share=2.0))
    with pytest.raises(ReplayError, match="no rows"):
        run_sync(replay_events([], client_kwargs=kafka_client_kwargs, topic="x"))


@pytest.mark.kafka
def test_replay_command(
    sample_dir: Path,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    read_topic: Callable[..., list[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    topic = topic_factory()
    args = [
        "replay",
        "--data",
        str(sample_dir / "inference.csv"),
        "--rate",
        "0",
        "--topic",
        topic,
        "--limit",
        "50",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "sent 50 records" in result.output and "50 valid" in result.output
    assert len(read_topic(topic, expected=50)) == 50


def test_replay_command_bad_csv(tmp_path: Path) -> None:
    bad = tmp_path / "empty.csv"
    bad.write_text("")
    result = CliRunner().invoke(app, ["replay", "--data", str(bad)])
    assert result.exit_code == 2
    assert "error:" in result.output and "empty" in result.output


@pytest.mark.kafka
def test_broker_command_prints_its_address_and_stops_on_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "headline_scorer.cli", "broker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:")
        bootstrap = line.split("=", 1)[1]
        assert run_sync(answers_metadata(bootstrap))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        assert not run_sync(answers_metadata(bootstrap, timeout=0.5))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reaps the process and closes the pipes
