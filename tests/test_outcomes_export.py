"""``headline-scorer outcomes export`` (stream/labelled.py): the labelled topic on a real broker to a CSV."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from headline_scorer.cli import app
from headline_scorer.cli_outcomes import TOO_FEW_ROWS_EXIT
from stream.asyncio_util import run_sync
from stream.labelled import LABELLED_COLUMNS, LabelledExportError, decode_row, export_labelled
from training.data import load_dataset
from training.mapping import OUTCOMES, OUTCOMES_UNGROUPED, resolve_mapping


def labelled(
    id_: str,
    impressions: int,
    clicks: int,
    *,
    group: str | None = "g1",
    title: str | None = None,
    outcome_at: str = "2026-03-01T12:00:00.000Z",
    **extra: object,
) -> dict[str, object]:
    return {
        "id": id_,
        "title": title or f"Headline number {id_}",
        "category": "tech",
        "group": group,
        "impressions": impressions,
        "clicks": clicks,
        "model_version": "20260301T000000Z-abc123",
        "score_ctr": 0.0123,
        "score_ctr_normalized": 0.25,
        "score_quality_prob": 0.6,
        "scored_at": "2026-03-01T11:00:00.000Z",
        "outcome_at": outcome_at,
        **extra,
    }


async def produce(
    client_kwargs: dict[str, Any], topic: str, records: list[tuple[bytes, bytes | None, int | None]]
) -> list[tuple[int, int]]:
    """Send (key, value, partition) one by one (in order); return (partition, offset) of each."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**client_kwargs, linger_ms=2)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=key, value=value, partition=partition)
            for key, value, partition in records
        ]
        sent = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(meta.partition, meta.offset) for meta in sent]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        assert tuple(reader.fieldnames or ()) == LABELLED_COLUMNS
        return list(reader)


def test_decode_row_accepts_the_wire_format_and_names_what_is_wrong() -> None:
    row = decode_row(orjson.dumps(labelled("a", 100, 7, unknown_field=1)))
    assert (row.id, row.impressions, row.clicks, row.group) == ("a", 100, 7, "g1")
    assert row.csv_row()[LABELLED_COLUMNS.index("outcome_at")] == "2026-03-01T12:00:00.000Z"
    with pytest.raises(ValueError, match="not JSON"):
        decode_row(b"{nope")
    with pytest.raises(ValueError, match="expected a JSON object"):
        decode_row(b"[1]")
    with pytest.raises(ValueError, match="clicks <= impressions"):
        decode_row(orjson.dumps(labelled("a", 5, 6)))
    with pytest.raises(ValueError, match="impressions"):
        decode_row(orjson.dumps(labelled("a", -1, 0)))
    missing = labelled("a", 5, 1)
    del missing["model_version"]
    with pytest.raises(ValueError, match="model_version"):
        decode_row(orjson.dumps(missing))


def test_outcomes_mappings_read_the_export_columns() -> None:
    assert resolve_mapping("outcomes") is OUTCOMES
    assert resolve_mapping("outcomes-ungrouped") is OUTCOMES_UNGROUPED
    used = {OUTCOMES.id, OUTCOMES.title, OUTCOMES.category, OUTCOMES.group, OUTCOMES.clicks}
    assert used | {OUTCOMES.impressions} <= set(LABELLED_COLUMNS)
    assert OUTCOMES_UNGROUPED.group is None and OUTCOMES_UNGROUPED.title == OUTCOMES.title
    # what only exists after publication is documented as leaky, never a model input
    assert {"model_version", "score_ctr", "score_ctr_normalized", "score_quality_prob"} <= set(OUTCOMES.leaky)
    assert {"impressions", "clicks"} <= set(OUTCOMES.leaky)


@pytest.mark.kafka
def test_export_keeps_the_latest_row_per_id_and_reports_malformed_rows(
    kafka_bootstrap: str,
    kafka_client_kwargs: dict[str, Any],
    topic_factory: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = topic_factory(partitions=2)

    def rec(row: dict[str, object], partition: int) -> tuple[bytes, bytes, int]:
        return str(row["id"]).encode(), orjson.dumps(row), partition

    records: list[tuple[bytes, bytes | None, int | None]] = [
        rec(labelled("a", 120, 6), 0),
        rec(labelled("b", 300, 30, group=None), 1),
        rec(labelled("c", 50, 1), 0),  # below --min-impressions 100
        (b"bad-json", b'{"id": "x", "title": ', 1),
        rec(labelled("a", 400, 20, outcome_at="2026-03-01T13:00:00.000Z"), 0),  # the update of a
        rec(labelled("d", 500, 40), 1),
        (b"d", None, 1),  # tombstone: d is gone, as compaction would make it
        (b"bad-row", orjson.dumps(labelled("z", 10, 11)), 0),  # clicks above impressions
        rec(labelled("e", 1000, 90, category=None, title='Comma, "quotes" and\na newline'), 1),
    ]
    sent = run_sync(produce(kafka_client_kwargs, topic, records))
    out = tmp_path / "exports" / "outcomes.csv"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    result = CliRunner().invoke(
        app, ["outcomes", "export", "--topic", topic, "--out", str(out), "--min-impressions", "100"]
    )
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    assert [r["id"] for r in rows] == ["b", "e", "a"]  # ordered by outcome time, then id
    by_id = {r["id"]: r for r in rows}
    assert (by_id["a"]["impressions"], by_id["a"]["clicks"]) == ("400", "20")
    assert by_id["a"]["outcome_at"] == "2026-03-01T13:00:00.000Z"
    assert by_id["e"]["title"] == 'Comma, "quotes" and\na newline'
    assert by_id["b"]["group"] == "" and by_id["a"]["group"] == "g1"
    assert by_id["e"]["category"] == ""
    assert by_id["e"]["model_version"] == "20260301T000000Z-abc123"
    assert float(by_id["e"]["score_quality_prob"]) == 0.6
    # each malformed record is named with its topic, partition and offset
    bad_json, bad_row = sent[3], sent[7]
    assert f"{topic}[{bad_json[0]}]@{bad_json[1]}: not JSON" in result.output
    assert (
        f"{topic}[{bad_row[0]}]@{bad_row[1]}: " in result.output and "clicks <= impressions" in result.output
    )
    summary = [line for line in result.output.splitlines() if line.startswith("wrote ")]
    assert summary == [
        f"wrote 3 labelled rows (2 with an A/B group) to {out} from 9 records of {topic} in "
        + summary[0].split(" in ", 1)[1].split(";")[0]
        + "; skipped: 2 malformed, 1 below the minimum impressions, 1 tombstones"
    ]
    assert sorted(p.name for p in out.parent.iterdir()) == ["outcomes.csv"]  # no partial file left

    # --min-rows: the outcomes mapping drops the row without a group; outcomes-ungrouped keeps it
    too_few = CliRunner().invoke(
        app,
        [
            "outcomes",
            "export",
            "--topic",
            topic,
            "--out",
            str(out),
            "--min-impressions",
            "100",
            "--min-rows",
            "3",
        ],
    )
    assert too_few.exit_code == TOO_FEW_ROWS_EXIT, too_few.output
    assert "mapping outcomes keeps 2 of 3, fewer than --min-rows 3" in too_few.output
    enough = CliRunner().invoke(
        app,
        [
            "outcomes", "export", "--topic", topic, "--out", str(out), "--min-impressions", "100",
            "--min-rows", "3", "--mapping", "outcomes-ungrouped",
        ],
    )  # fmt: skip
    assert enough.exit_code == 0, enough.output
    assert "mapping outcomes-ungrouped keeps 3 rows" in enough.output
    data = load_dataset(out, OUTCOMES_UNGROUPED)
    assert sorted(data.ids.tolist()) == ["a", "b", "e"]


@pytest.mark.kafka
def test_export_of_an_empty_or_missing_topic(
    kafka_client_kwargs: dict[str, Any], topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory(partitions=3)
    out = tmp_path / "empty.csv"
    report = run_sync(export_labelled(kafka_client_kwargs, topic, out, min_impressions=1))
    assert (report.records, report.rows) == (0, 0)
    assert out.read_text(encoding="utf-8").splitlines() == [",".join(LABELLED_COLUMNS)]
    with pytest.raises(LabelledExportError, match="does not exist"):
        run_sync(export_labelled(kafka_client_kwargs, f"{topic}-missing", tmp_path / "x.csv"))
    assert not (tmp_path / "x.csv").exists()
    with pytest.raises(LabelledExportError, match="minimum of impressions"):
        run_sync(export_labelled(kafka_client_kwargs, topic, out, min_impressions=0))


@pytest.mark.kafka
@pytest.mark.slow
def test_train_reads_an_exported_csv_with_the_outcomes_mapping(
    sample_dir: Path,
    kafka_bootstrap: str,
    kafka_client_kwargs: dict[str, Any],
    topic_factory: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Joined rows of the sample A/B tests, exported, then `train --mapping outcomes` on the CSV."""
    source = load_dataset(sample_dir / "ab_tests.csv", resolve_mapping("upworthy"))
    assert source.groups is not None and source.clicks is not None and source.impressions is not None
    rows = [
        labelled(str(i), int(imp), int(clk), group=str(g), title=t)
        for i, t, g, imp, clk in zip(
            source.ids, source.titles, source.groups, source.impressions, source.clicks, strict=True
        )
    ]
    topic = topic_factory(partitions=2)
    run_sync(
        produce(kafka_client_kwargs, topic, [(str(r["id"]).encode(), orjson.dumps(r), None) for r in rows])
    )
    out = tmp_path / "outcomes.csv"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    exported = CliRunner().invoke(
        app, ["outcomes", "export", "--topic", topic, "--out", str(out), "--min-impressions", "1"]
    )
    assert exported.exit_code == 0, exported.output
    assert f"wrote {len(rows)} labelled rows ({len(rows)} with an A/B group)" in exported.output
    trained = CliRunner().invoke(
        app,
        [
            "train",
            "--data",
            str(out),
            "--mapping",
            "outcomes",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert trained.exit_code == 0, trained.output
    assert "trained: best epoch 1" in trained.output
    metrics = orjson.loads((tmp_path / "run" / "metrics.json").read_bytes())
    assert metrics["validation"]["pairs"] > 0  # the group column was read: A/B pairs were scored
    data = load_dataset(out, OUTCOMES)
    assert len(data) == len(rows) and data.groups is not None


@pytest.mark.kafka
@pytest.mark.slow
def test_export_of_what_a_live_worker_joined(
    sample_dir: Path, kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headline events and their outcomes through a real worker, then the export of its labelled rows."""
    import time
    import uuid

    from headline_scorer.replay import load_outcomes, load_rows, replay_events, replay_outcomes
    from tests.stream_harness import Topics, WorkerProcess, consume_until, template_registry

    root, current, _ = template_registry()
    topics, tag = Topics.unique(), uuid.uuid4().hex[:8]
    env = {
        "OUTCOMES_TOPIC": f"outcomes-{tag}",
        "LABELLED_TOPIC": f"labelled-{tag}",
        "SHADOW_OUTPUT_TOPIC": f"shadow-{tag}",
    }
    worker = WorkerProcess(
        kafka_bootstrap, root, topics, f"export-{tag}", tmp_path / "worker.log", extra_env=env
    )
    rows = load_rows(sample_dir / "ab_tests.csv", "upworthy")[:40]
    outcomes = {row.id: row for row in load_outcomes(sample_dir / "ab_tests.csv", "upworthy")}
    client = {"bootstrap_servers": kafka_bootstrap}
    worker.start()
    try:
        worker.wait_ready(timeout=90)
        sent = run_sync(replay_events(rows, client_kwargs=client, topic=topics.input, rate=0, keep_ids=True))
        run_sync(consume_until(kafka_bootstrap, [topics.output], len(rows), timeout=60))
        run_sync(
            replay_outcomes(
                list(outcomes.values()),
                client_kwargs=client,
                topic=env["OUTCOMES_TOPIC"],
                rate=0,
                steps=2,
                only_ids=sent.valid_ids,
            )
        )
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
        out = tmp_path / "outcomes.csv"
        args = [
            "outcomes",
            "export",
            "--topic",
            env["LABELLED_TOPIC"],
            "--out",
            str(out),
            "--min-impressions",
            "1",
        ]
        deadline = time.monotonic() + 60
        while True:
            result = CliRunner().invoke(app, args)
            exported = read_csv(out) if result.exit_code == 0 else []
            done = {r["id"]: r for r in exported}
            if all(
                done.get(i, {}).get("impressions") == str(outcomes[i].impressions) for i in sent.valid_ids
            ):
                break
            assert time.monotonic() < deadline, (result.output, len(exported))
            time.sleep(1.0)
    finally:
        worker.stop()
    assert sorted(done) == sorted(sent.valid_ids)
    titles = {row.id: row.title for row in rows}
    for id_, row in done.items():
        final = outcomes[id_]
        assert (row["impressions"], row["clicks"], row["group"]) == (
            str(final.impressions),
            str(final.clicks),
            final.group,
        )
        assert row["title"] == titles[id_] and row["model_version"] == current
        assert 0.0 <= float(row["score_quality_prob"]) <= 1.0
    assert len(load_dataset(out, OUTCOMES)) == len(done)
