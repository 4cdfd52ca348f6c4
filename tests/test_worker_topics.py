"""CREATE_TOPICS: the topics a worker creates when it may, and a worker that must not create any.

On Kubernetes the worker runs with ``CREATE_TOPICS=false`` (its Kafka user needs no Create ACL) and the
topics Job (deploy/k8s/base/topics-job.yaml) creates every topic the worker uses. These tests measure, on a
real broker, which topics a worker creates by itself (so the Job's list can be checked against them) and
that with ``CREATE_TOPICS=false`` a worker scores from topics created beforehand and creates none.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from deploy_contract import faust_leader_topic as leader_topic

from stream.asyncio_util import run_sync
from stream.topics import TopicSpec, create_topics
from tests.stream_harness import Topics, WorkerProcess, consume_until, event, produce, template_registry

pytestmark = [pytest.mark.slow, pytest.mark.kafka]


def topic_env(app_id: str) -> dict[str, str]:
    """Unique outcomes, labelled and shadow topics for the worker of ``app_id``."""
    return {
        "OUTCOMES_TOPIC": f"{app_id}-outcomes",
        "LABELLED_TOPIC": f"{app_id}-labelled",
        "SHADOW_OUTPUT_TOPIC": f"{app_id}-shadow",
    }


def job_topics(topics: Topics, app_id: str) -> set[str]:
    """What deploy/k8s/base/topics-job.yaml creates (tests/test_deploy_k8s.py checks the script)."""
    return {
        topics.input,
        topics.output,
        topics.dlq,
        *topic_env(app_id).values(),
        f"{app_id}-headline-join-changelog",
        leader_topic(app_id),
    }


def broker_topics(client_kwargs: dict[str, Any]) -> set[str]:
    async def list_topics() -> set[str]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(**client_kwargs)
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    return run_sync(list_topics())


def start_worker(bootstrap: str, tmp_path: Path, topics: Topics, app_id: str, **env: str) -> WorkerProcess:
    root, _, _ = template_registry()
    env = {**topic_env(app_id), **env}
    return WorkerProcess(bootstrap, root, topics, app_id, tmp_path / "worker.log", extra_env=env).start()


def test_worker_creates_exactly_the_topics_the_job_creates(
    kafka_bootstrap: str, kafka_client_kwargs: dict[str, Any], tmp_path: Path
) -> None:
    topics, app_id = Topics.unique(), f"topics-{uuid.uuid4().hex[:8]}"
    before = broker_topics(kafka_client_kwargs)
    worker = start_worker(kafka_bootstrap, tmp_path, topics, app_id)
    try:
        worker.wait_ready(timeout=90)
        created = broker_topics(kafka_client_kwargs) - before
    finally:
        worker.stop()
    assert created == job_topics(topics, app_id)


def test_worker_with_create_topics_false_scores_and_creates_nothing(
    kafka_bootstrap: str, kafka_client_kwargs: dict[str, Any], tmp_path: Path
) -> None:
    topics, app_id = Topics.unique(), f"nocreate-{uuid.uuid4().hex[:8]}"
    specs = [TopicSpec(name, 1 if name == leader_topic(app_id) else 4) for name in job_topics(topics, app_id)]
    run_sync(create_topics(kafka_client_kwargs, specs))  # the topics Job
    before = broker_topics(kafka_client_kwargs)
    worker = start_worker(kafka_bootstrap, tmp_path, topics, app_id, CREATE_TOPICS="false")
    try:
        worker.wait_ready(timeout=90)
        records = [(f"n-{i}".encode(), event(f"n-{i}", f"Headline number {i} of the day")) for i in range(3)]
        records.append((b"bad", b"{not json"))
        asyncio.run(produce(kafka_bootstrap, topics.input, records))
        out = asyncio.run(consume_until(kafka_bootstrap, [topics.output, topics.dlq], 4, timeout=60))
        after = broker_topics(kafka_client_kwargs)
    finally:
        assert worker.stop() == 0, worker.log()[-4000:]
    scored = {json.loads(v)["id"] for topic, _, v, _ in out if topic == topics.output and v is not None}
    assert scored == {"n-0", "n-1", "n-2"}
    assert [key for topic, key, _, _ in out if topic == topics.dlq] == [b"bad"]
    assert after == before, f"created with CREATE_TOPICS=false: {after - before}"


def test_worker_with_create_topics_false_does_not_create_missing_topics(
    kafka_bootstrap: str, kafka_client_kwargs: dict[str, Any], tmp_path: Path
) -> None:
    topics, app_id = Topics.unique(), f"missing-{uuid.uuid4().hex[:8]}"
    run_sync(create_topics(kafka_client_kwargs, [TopicSpec(topics.input, 4)]))
    worker = start_worker(kafka_bootstrap, tmp_path, topics, app_id, CREATE_TOPICS="false")
    try:  # it refuses to start without the topics it writes to (and says which)
        assert worker.proc is not None and worker.proc.wait(90) != 0
        assert "CREATE_TOPICS is false" in worker.log() and topics.output in worker.log()
        present = broker_topics(kafka_client_kwargs)
    finally:
        worker.stop()
    assert topics.input in present
    assert not {topics.output, topics.dlq} & present


@pytest.mark.parametrize("create", [True, False])
def test_create_topics_setting_reaches_faust(create: bool, tmp_path: Path) -> None:
    from stream.app import build_app
    from stream.settings import StreamSettings

    settings = StreamSettings.from_env(
        model_registry=tmp_path, scorer_data_dir=tmp_path / "faust", create_topics=create
    )
    assert build_app(settings).app.conf.topic_allow_declare is create
