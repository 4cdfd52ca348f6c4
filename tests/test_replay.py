"""headline_scorer/replay.py and the stream commands (broker, replay) of the CLI."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from headline_scorer.cli import app
from headline_scorer.replay import (
    INVALID_KINDS,
    OutcomeRow,
    ReplayError,
    ReplayRow,
    event_value,
    invalid_value,
    load_outcomes,
    load_rows,
    outcome_steps,
    outcome_value,
    replay_events,
    replay_outcomes,
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


# --- outcomes ------------------------------------------------------------------------------------


def test_rows_carry_the_ab_group_and_events_send_it(sample_dir: Path) -> None:
    rows = load_rows(sample_dir / "ab_tests.csv", "upworthy")
    assert all(row.group for row in rows)
    _, value = event_value(rows[0], "2026-01-01T00:00:00.000Z")
    assert orjson.loads(value)["group"] == rows[0].group
    assert decode_event(value, MAX_BYTES).id == rows[0].id
    seed = load_rows(sample_dir / "train.csv", "seed")
    assert all(row.group is None for row in seed)
    assert "group" not in orjson.loads(event_value(seed[0], "2026-01-01T00:00:00.000Z")[1])


def test_load_outcomes_from_the_sample_and_upworthy_layouts(sample_dir: Path) -> None:
    seed = load_outcomes(sample_dir / "train.csv", "seed")
    assert len(seed) == 1200
    assert seed[0] == OutcomeRow("16593123", 4227, 407, None)  # Impressions, Url Clicks of the first row
    tests = load_outcomes(sample_dir / "ab_tests.csv", "upworthy")
    assert tests[0].group and all(0 <= r.clicks <= r.impressions for r in tests)
    with pytest.raises(ReplayError, match="no clicks and impressions"):
        load_outcomes(sample_dir / "inference.csv", "seed")


@pytest.mark.shared_data
def test_load_outcomes_from_the_upworthy_packages(shared_data: Path) -> None:
    rows = load_outcomes(shared_data / "upworthy" / "packages.csv", "upworthy")
    assert len(rows) > 10_000
    assert rows[0] == OutcomeRow("0", 3052, 150, "546d88fb84ad38b2ce000024")


@pytest.mark.parametrize("steps", [1, 2, 3, 7])
@pytest.mark.parametrize(("impressions", "clicks"), [(1000, 37), (5, 5), (2, 0), (1, 1), (9999, 1234)])
def test_outcome_steps_grow_and_end_at_the_totals(impressions: int, clicks: int, steps: int) -> None:
    counts = outcome_steps(OutcomeRow("x", impressions, clicks), steps)
    assert counts[-1] == (impressions, clicks)
    assert 1 <= len(counts) <= steps
    assert all(0 <= c <= i and i > 0 for i, c in counts)
    for (i0, c0), (i1, c1) in itertools.pairwise(counts):
        assert i0 <= i1 and c0 <= c1 and (i0, c0) != (i1, c1)
    if steps == 3 and impressions == 1000:
        assert counts == [(333, 12), (666, 24), (1000, 37)]
    with pytest.raises(ReplayError, match="at least 1"):
        outcome_steps(OutcomeRow("x", 1, 0), 0)


def test_outcome_value_is_the_wire_format() -> None:
    value = orjson.loads(outcome_value(OutcomeRow("h1", 10, 2, "t1"), 8, 1, "2026-01-01T00:00:00.000Z"))
    assert value == {
        "id": "h1",
        "impressions": 8,
        "clicks": 1,
        "group": "t1",
        "at": "2026-01-01T00:00:00.000Z",
    }
    assert "group" not in orjson.loads(outcome_value(OutcomeRow("h2", 1, 0), 1, 0, "2026-01-01T00:00:00Z"))


@pytest.mark.kafka
def test_replay_outcomes_in_cumulative_steps_keyed_by_id(
    sample_dir: Path,
    kafka_client_kwargs: dict[str, Any],
    topic_factory: Callable[..., str],
    read_topic: Callable[..., list[Any]],
) -> None:
    """Headline events and their outcomes: same key, so the same partition number on equal-sized topics."""
    rows = load_rows(sample_dir / "ab_tests.csv", "upworthy")[:40]
    outcomes = {row.id: row for row in load_outcomes(sample_dir / "ab_tests.csv", "upworthy")}
    headlines, outcome_topic = topic_factory(partitions=4), topic_factory(partitions=4)
    sent = run_sync(
        replay_events(rows, client_kwargs=kafka_client_kwargs, topic=headlines, rate=0, keep_ids=True)
    )
    only = sent.valid_ids[:30]
    started = time.time()
    report = run_sync(
        replay_outcomes(
            list(outcomes.values()),
            client_kwargs=kafka_client_kwargs,
            topic=outcome_topic,
            rate=0,
            steps=3,
            only_ids=only,
        )
    )
    expected = sum(len(outcome_steps(outcomes[i], 3)) for i in only)
    assert report.valid == expected > 60 and report.failed == 0
    records = read_topic(outcome_topic, expected=expected)
    assert len(records) == expected
    by_id: dict[str, list[dict[str, Any]]] = {}
    partition_of: dict[str, int] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        value = orjson.loads(record.value)
        assert record.key == value["id"].encode()
        assert set(value) == {"id", "impressions", "clicks", "group", "at"}
        assert started - 1 <= datetime.fromisoformat(value["at"]).timestamp() <= time.time() + 1
        by_id.setdefault(value["id"], []).append(value)
        partition_of[value["id"]] = record.partition
    assert sorted(by_id) == sorted(only)
    for id_, updates in by_id.items():
        counts = [(u["impressions"], u["clicks"]) for u in updates]
        assert counts == outcome_steps(outcomes[id_], 3)  # in order within the partition, growing
        assert updates[-1]["group"] == outcomes[id_].group
    # each headline event went to the partition its outcomes went to
    for record in read_topic(headlines, expected=len(rows)):
        event = decode_event(record.value, MAX_BYTES)
        assert event.id == record.key.decode()
        assert orjson.loads(record.value)["group"] == outcomes[event.id].group
        if event.id in partition_of:
            assert record.partition == partition_of[event.id]
    with pytest.raises(ReplayError, match="no outcome rows"):
        run_sync(
            replay_outcomes(
                list(outcomes.values()), client_kwargs=kafka_client_kwargs, topic=outcome_topic, only_ids=[]
            )
        )


@pytest.mark.kafka
def test_outcomes_replay_command(
    sample_dir: Path,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    read_topic: Callable[..., list[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    topic = topic_factory(partitions=2)
    data = sample_dir / "ab_tests.csv"
    args = ["outcomes", "replay", "--data", str(data), "--mapping", "upworthy", "--steps", "2", "--rate", "0"]
    result = CliRunner().invoke(app, [*args, "--topic", topic])
    assert result.exit_code == 0, result.output
    rows = load_outcomes(data, "upworthy")
    expected = sum(len(outcome_steps(row, 2)) for row in rows)
    assert f"sent {expected} records" in result.output
    assert len(read_topic(topic, expected=expected)) == expected
    missing = CliRunner().invoke(app, ["outcomes", "replay", "--data", str(sample_dir / "inference.csv")])
    assert missing.exit_code == 2 and "no clicks and impressions" in missing.output
