"""Kubernetes manifests (kustomize): Kubernetes JSON schemas (kubernetes-validate), the KEDA schema, and what
the system needs from them. The overlays are also built with the real kustomize (``kubectl kustomize``, no
cluster needed) when kubectl is installed, and the built objects are validated too.
"""

from __future__ import annotations

import copy
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from deploy_contract import DEPLOY, ENV_VARS, JOB, ROOT, WEB_PORT, faust_leader_topic

kubernetes_validate = pytest.importorskip("kubernetes_validate")

K8S = DEPLOY / "k8s"
BASE = K8S / "base"
OPERATOR = K8S / "prometheus-operator"
KEDA_COMPONENT = K8S / "components" / "keda"
KEDA = K8S / "keda"
KEDA_SCHEMA = KEDA_COMPONENT / "schema" / "keda.sh_v1alpha1.schema.json"
OVERLAYS = (BASE, OPERATOR, KEDA)
# Schemas of the oldest and newest Kubernetes versions the manifests are meant for.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CRD_GROUPS = ("monitoring.coreos.com/", "keda.sh/")
LOCAL_CONFIG = "config.kubernetes.io/local-config"
CA_DIR = "/etc/headline-scorer/kafka-ca"


def documents(directory: Path) -> list[dict[str, Any]]:
    """Every object in the kustomization's resources (files only, not nested kustomizations)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_file():
            found.extend(doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc)
    return found


@cache
def built(directory: Path) -> tuple[dict[str, Any], ...]:
    """``kubectl kustomize DIRECTORY``: the objects kustomize would apply (skips without kubectl)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def built_one(directory: Path, kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in built(directory) if doc["kind"] == kind]
    return found


def keda_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(KEDA_SCHEMA.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(document)]


def by_kind(kind: str, directory: Path = BASE) -> list[dict[str, Any]]:
    return [doc for doc in documents(directory) if doc["kind"] == kind]


def one(kind: str, directory: Path = BASE) -> dict[str, Any]:
    (found,) = by_kind(kind, directory)
    return found


def pod_specs() -> dict[str, dict[str, Any]]:
    """The pod template spec of every workload, by kind/name."""
    specs: dict[str, dict[str, Any]] = {}
    for doc in documents(BASE):
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in {"Deployment", "Job"}:
            specs[name] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            specs[name] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return specs


def named(kind: str, name: str, directory: Path = BASE) -> dict[str, Any]:
    (found,) = [doc for doc in by_kind(kind, directory) if doc["metadata"]["name"] == name]
    return found


def settings() -> dict[str, str]:
    """The worker settings (the ConfigMap every worker container reads)."""
    data: dict[str, str] = named("ConfigMap", "headline-scorer-settings")["data"]
    return data


def worker_container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = one("Deployment")["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    checked = 0
    for directory in (BASE, OPERATOR):
        for doc in documents(directory):
            if doc["apiVersion"].startswith(CRD_GROUPS):
                continue  # custom resources: checked structurally below
            kubernetes_validate.validate(doc, version, strict=True)
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("Deployment", ("spec", "replicas"), "two"),
        (
            "Deployment",
            ("spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet", "pth"),
            "/x",
        ),
        ("CronJob", ("spec", "concurrencyPolicy"), 3),
        ("PersistentVolumeClaim", ("spec", "accessModes"), "ReadWriteMany"),
    ],
)
def test_schemas_reject_broken_manifests(kind: str, path: tuple[str | int, ...], value: object) -> None:
    doc = copy.deepcopy(by_kind(kind)[0])
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomizations_list_every_manifest_and_set_the_namespace() -> None:
    component = yaml.safe_load((KEDA_COMPONENT / "kustomization.yaml").read_text(encoding="utf-8"))
    assert component["kind"] == "Component" and set(component["resources"]) == {
        path.name for path in KEDA_COMPONENT.glob("*.yaml")
    } - {"kustomization.yaml"}
    for directory in (*OVERLAYS, KEDA_COMPONENT):
        for reference in yaml.safe_load((directory / "kustomization.yaml").read_text()).get("components", []):
            assert (directory / reference / "kustomization.yaml").is_file(), reference
    for directory in OVERLAYS:
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
        assert kustomization["kind"] == "Kustomization" and kustomization["namespace"] == "headline-scorer"
        listed = set(kustomization["resources"])
        for resource in listed:
            assert (directory / resource).exists(), resource
        files = {path.name for path in directory.glob("*.yaml")} - {"kustomization.yaml"}
        assert files <= listed, files - listed
    assert one("Namespace")["metadata"]["name"] == "headline-scorer"
    for doc in documents(BASE):
        assert doc["metadata"].get("namespace", "headline-scorer") == "headline-scorer"
    images = {image["name"] for image in yaml.safe_load((BASE / "kustomization.yaml").read_text())["images"]}
    used = {c["image"] for spec in pod_specs().values() for c in spec["containers"]}
    assert {"headline-scorer", "headline-scorer-train"} <= used and images <= used


def test_settings_are_contract_variables_and_consistent() -> None:
    data = settings()
    assert set(data) <= ENV_VARS, set(data) - ENV_VARS
    secret = one("Secret")["stringData"]
    assert set(secret) == {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"}
    # the worker refuses SASL credentials without a SASL protocol (and the reverse)
    assert data["KAFKA_SECURITY_PROTOCOL"] in {"SASL_PLAINTEXT", "SASL_SSL"}
    assert data["KAFKA_SASL_MECHANISM"] in {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
    topics = (
        "INPUT_TOPIC",
        "OUTPUT_TOPIC",
        "DLQ_TOPIC",
        "OUTCOMES_TOPIC",
        "LABELLED_TOPIC",
        "SHADOW_OUTPUT_TOPIC",
    )
    assert len({data[name] for name in topics}) == len(topics)
    for name, spec in pod_specs().items():
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in {
                        "headline-scorer-settings",
                        "headline-scorer-training-data",
                    }, name
                    if container["name"] in {"scorer", "create-topics"}:
                        assert source["configMapRef"]["name"] == "headline-scorer-settings", name
                if "secretRef" in source:
                    assert source["secretRef"]["name"] == one("Secret")["metadata"]["name"], name


def test_worker_replicas_do_not_exceed_partitions() -> None:
    deployment = one("Deployment")
    replicas = deployment["spec"]["replicas"]
    partitions = int(settings()["TOPIC_PARTITIONS"])
    assert 1 <= replicas <= partitions
    # during a rollout surge pods count too: one without a partition never becomes ready
    surge = deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    assert surge == 0 or replicas + int(surge) <= partitions
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_worker_probes_use_the_real_endpoints_on_web_port() -> None:
    container = worker_container()
    (port,) = container["ports"]
    assert port["containerPort"] == int(settings()["WEB_PORT"]) == WEB_PORT
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/live", "port": port["name"]}
    assert container["startupProbe"]["httpGet"]["path"] == "/live"
    assert container["args"] == ["worker"]


def test_every_container_has_requests_limits_and_runs_as_non_root() -> None:
    for name, spec in pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"].get("runAsUser", 1) != 0, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(
                resources["limits"]
            ), name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name


def test_registry_volume_is_shared_read_write_many() -> None:
    claims = {pvc["metadata"]["name"]: pvc for pvc in by_kind("PersistentVolumeClaim")}
    models = claims["headline-scorer-models"]
    assert models["spec"]["accessModes"] == ["ReadWriteMany"]
    registry = settings()["MODEL_REGISTRY"]
    mounts: dict[str, tuple[str, bool]] = {}
    for name, spec in pod_specs().items():
        volumes = {
            v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in spec.get("volumes", [])
        }
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                if volumes.get(mount["name"]) == "headline-scorer-models":
                    mounts[name] = (mount["mountPath"], mount.get("readOnly", False))
    assert mounts == {
        "Deployment/headline-scorer": (registry, True),
        "CronJob/headline-scorer-retrain": (registry, False),
    }


def retrain_container() -> dict[str, Any]:
    (container,) = one("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return container


def test_retrain_cronjob_exports_outcomes_then_retrains_one_shot() -> None:
    cronjob = one("CronJob")
    assert len(cronjob["spec"]["schedule"].split()) == 5
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    container = retrain_container()
    assert container["command"] == ["/bin/bash", "-c"]
    (script,) = container["args"]
    assert "--every" not in script  # one-shot: the CronJob is the schedule
    assert f"--registry {settings()['MODEL_REGISTRY']}" in script
    assert script.index("headline-scorer outcomes export") < script.index("exec headline-scorer retrain")
    assert "$(" not in script  # Kubernetes would expand $(NAME) in args before the shell sees them
    assert container["image"] == "headline-scorer-train"
    # the export reads Kafka like the workers: their settings, credentials and CA
    sources = container["envFrom"]
    assert {"configMapRef": {"name": "headline-scorer-settings"}} in sources
    assert {"secretRef": {"name": one("Secret")["metadata"]["name"]}} in sources
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert (mounts["kafka-ca"]["mountPath"], mounts["kafka-ca"]["readOnly"]) == (CA_DIR, True)
    assert "LABELLED_TOPIC" in settings() and "QUALITY_MIN_IMPRESSIONS" in settings()


def run_retrain_round(tmp_path: Path, script: str, export_exit: int) -> tuple[int, list[list[str]], str]:
    """The retrain round with ``headline-scorer`` replaced by a stub that logs its arguments.

    The stub's ``outcomes export`` exits with ``export_exit``; ``retrain`` exits 0.
    """
    stubs = tmp_path / f"bin-{export_exit}"
    stubs.mkdir()
    calls = tmp_path / f"calls-{export_exit}.jsonl"
    stub = stubs / "headline-scorer"
    python = shutil.which("python3") or sys.executable
    stub.write_text(
        "#!/bin/sh\n"
        f'{python} -c "import json, sys; print(json.dumps(sys.argv[1:]))" "$@" >> {calls}\n'
        f'if [ "$1" = outcomes ]; then exit {export_exit}; fi\n',
        encoding="utf-8",
    )
    stub.chmod(0o755)
    training = named("ConfigMap", "headline-scorer-training-data")["data"]
    result = subprocess.run(
        ["/bin/bash", "-c", script],
        env={"PATH": f"{stubs}:{os.environ['PATH']}", **settings(), **training},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = calls.read_text(encoding="utf-8").splitlines() if calls.exists() else []
    return result.returncode, [json.loads(line) for line in lines], result.stdout + result.stderr


def test_retrain_round_trains_on_outcomes_or_falls_back_to_the_seed_data(tmp_path: Path) -> None:
    (script,) = retrain_container()["args"]
    training = named("ConfigMap", "headline-scorer-training-data")["data"]
    assert training["OUTCOMES_MAPPING"] == "outcomes" and int(training["OUTCOMES_MIN_ROWS"]) == 1000
    export = [
        "outcomes", "export", "--out", "/tmp/outcomes.csv", "--mapping", "outcomes", "--min-rows", "1000"
    ]  # fmt: skip
    # enough trainable outcome rows: retrain on the export with the outcomes mapping
    code, calls, _ = run_retrain_round(tmp_path, script, 0)
    assert code == 0
    assert calls == [
        export,
        ["retrain", "--data", "/tmp/outcomes.csv", "--mapping", "outcomes", "--registry", "/models"],
    ]
    # too few (exit 3): the seed data of training-data.yaml, with its mapping
    code, calls, output = run_retrain_round(tmp_path, script, 3)
    assert code == 0
    assert calls[-1] == [
        "retrain", "--data", f"/data/{training['TRAINING_DATA_FILE']}", "--mapping",
        training["TRAINING_DATA_MAPPING"], "--registry", "/models",
    ]  # fmt: skip
    assert "fewer than 1000 trainable outcome rows" in output
    # the export failed (broker unreachable, exit 2): no retrain, the Job fails
    code, calls, output = run_retrain_round(tmp_path, script, 2)
    assert code == 2 and calls == [export]
    assert "the outcomes export failed (exit 2)" in output


def test_topic_job_creates_the_configured_topics() -> None:
    job = one("Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("apache/kafka:")
    script = container["args"][0]
    assert "--create --if-not-exists" in script
    for variable in (
        "INPUT_TOPIC",
        "OUTPUT_TOPIC",
        "DLQ_TOPIC",
        "OUTCOMES_TOPIC",
        "LABELLED_TOPIC",
        "SHADOW_OUTPUT_TOPIC",
        "TOPIC_PARTITIONS",
        "TOPIC_REPLICATION",
    ):
        assert f'"${variable}"' in script and variable in settings(), variable
    assert "--command-config" in script and "sasl.jaas.config" in script


def test_workers_are_scraped_as_job_headline_scorer() -> None:
    template = one("Deployment")["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(WEB_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    monitor = one("PodMonitor", OPERATOR)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    labels = template["metadata"]["labels"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert labels[monitor["spec"]["jobLabel"]] == JOB
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {port["name"] for port in worker_container()["ports"]}
    assert endpoint["path"] == "/metrics" and re.fullmatch(r"\d+[smh]", endpoint["interval"])


def test_prometheus_rule_is_generated_from_the_rules_file() -> None:
    spec = importlib.util.spec_from_file_location("headline_scorer_prometheusrule", OPERATOR / "generate.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    committed = (OPERATOR / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert committed == generator.render(), "stale: run python deploy/k8s/prometheus-operator/generate.py"
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "headline-scorer.rules.yml").read_text())
    prometheus_rule = one("PrometheusRule", OPERATOR)
    assert prometheus_rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert prometheus_rule["spec"]["groups"] == rules["groups"]


# --- the overlays as kustomize builds them ---


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda path: path.name)
def test_built_overlays_match_the_kubernetes_schemas(overlay: Path, version: str) -> None:
    objects = built(overlay)
    assert not [doc for doc in objects if LOCAL_CONFIG in doc["metadata"].get("annotations", {})]
    for doc in objects:
        assert doc["metadata"].get("namespace", "headline-scorer") == "headline-scorer"
        if not doc["apiVersion"].startswith(CRD_GROUPS):
            kubernetes_validate.validate(doc, version, strict=True)
    kinds = {doc["kind"] for doc in objects}
    assert {"Deployment", "CronJob", "Job", "PersistentVolumeClaim"} <= kinds


def test_storage_classes_come_from_the_deploy_values() -> None:
    values = [doc for doc in documents(BASE) if LOCAL_CONFIG in doc["metadata"].get("annotations", {})]
    (deploy_values,) = values
    assert deploy_values["metadata"]["annotations"][LOCAL_CONFIG] == "true"
    classes = {
        pvc["metadata"]["name"]: pvc["spec"]["storageClassName"]
        for pvc in built(BASE)
        if pvc["kind"] == "PersistentVolumeClaim"
    }
    assert classes == {
        "headline-scorer-models": deploy_values["data"]["MODELS_STORAGE_CLASS"],
        "headline-scorer-training-data": deploy_values["data"]["TRAINING_DATA_STORAGE_CLASS"],
    }
    for name in classes.values():  # StorageClass names are DNS subdomains
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", name), name
    # the same values reach the overlays built on the base
    for overlay in (OPERATOR, KEDA):
        assert {
            pvc["metadata"]["name"]: pvc["spec"]["storageClassName"]
            for pvc in built(overlay)
            if pvc["kind"] == "PersistentVolumeClaim"
        } == classes


def test_podmonitor_and_rules_carry_the_release_label() -> None:
    (values,) = [doc for doc in documents(OPERATOR) if doc["kind"] == "ConfigMap"]
    assert values["metadata"]["annotations"][LOCAL_CONFIG] == "true"
    release = values["data"]["PROMETHEUS_RELEASE"]
    for kind in ("PodMonitor", "PrometheusRule"):
        labels = built_one(OPERATOR, kind)["metadata"]["labels"]
        assert labels["release"] == release and labels["app.kubernetes.io/name"] == JOB, kind


# --- KEDA ---


def test_keda_objects_match_the_keda_schema() -> None:
    for kind in ("ScaledObject", "TriggerAuthentication"):
        assert keda_errors(built_one(KEDA, kind)) == [], kind
    for doc in documents(KEDA_COMPONENT):  # as written, before the replacements
        assert keda_errors(doc) == [], doc["kind"]


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("ScaledObject", ("spec", "maxReplicaCount"), "four"),
        ("ScaledObject", ("spec", "triggers", 0, "metadata", "lagThreshold"), 5000),
        ("ScaledObject", ("spec", "triggers", 0, "authRef"), {"name": "x"}),
        ("ScaledObject", ("spec", "scaleTargetRef", "deployment"), "headline-scorer"),
        ("ScaledObject", ("spec", "fallback"), {"replicas": 1}),
        ("ScaledObject", ("spec", "advanced", "horizontalPodAutoscalerConfig", "behavior", "scaleUp"), []),
        ("TriggerAuthentication", ("spec", "secretTargetRef", 0, "secret"), "x"),
        ("TriggerAuthentication", ("apiVersion",), "keda.sh/v1"),
    ],
)
def test_keda_schema_rejects_broken_objects(kind: str, path: tuple[str | int, ...], value: object) -> None:
    doc = copy.deepcopy(built_one(KEDA, kind))
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert keda_errors(doc) != []


def test_keda_schema_requires_triggers_and_a_target() -> None:
    for field in ("triggers", "scaleTargetRef"):
        doc = copy.deepcopy(built_one(KEDA, "ScaledObject"))
        del doc["spec"][field]
        assert keda_errors(doc) != [], field


def test_keda_trigger_watches_what_the_workers_consume() -> None:
    from stream.app import faust_kwargs
    from stream.settings import StreamSettings

    (data,) = [
        doc["data"]
        for doc in built(KEDA)
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "headline-scorer-settings"
    ]
    scaled = built_one(KEDA, "ScaledObject")
    deployment = built_one(KEDA, "Deployment")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        deployment["kind"],
        deployment["metadata"]["name"],
    )
    (trigger,) = scaled["spec"]["triggers"]
    metadata = trigger["metadata"]
    assert trigger["type"] == "kafka"
    # faust's consumer group is the app id; the lag that matters is on the input topic
    assert metadata["bootstrapServers"] == data["KAFKA_BOOTSTRAP_SERVERS"]
    assert metadata["consumerGroup"] == data["SCORER_APP_ID"]
    assert metadata["topic"] == data["INPUT_TOPIC"]
    assert int(metadata["lagThreshold"]) > 0
    settings = StreamSettings.from_env(**{key.lower(): value for key, value in data.items()}, **credentials())
    assert metadata["offsetResetPolicy"] == faust_kwargs(settings)["consumer_auto_offset_reset"]
    # never more workers than partitions
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] <= settings.topic_partitions
    # the same security as the workers, with the workers' credentials
    protocol = settings.kafka_security_protocol
    assert metadata.get("tls", "disable") == ("enable" if protocol.endswith("SSL") else "disable")
    mechanism = settings.kafka_sasl_mechanism
    keda_sasl = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
    assert metadata.get("sasl") == (keda_sasl[mechanism] if mechanism else None)
    auth = built_one(KEDA, "TriggerAuthentication")
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    secret = built_one(KEDA, "Secret")
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert set(refs) == {"username", "password"}
    for parameter, key in (("username", "KAFKA_SASL_USERNAME"), ("password", "KAFKA_SASL_PASSWORD")):
        assert refs[parameter]["name"] == secret["metadata"]["name"] and refs[parameter]["key"] == key
        assert key in secret["stringData"]


def test_keda_overlay_leaves_the_replica_count_to_the_autoscaler() -> None:
    assert "replicas" in built_one(BASE, "Deployment")["spec"]
    assert "replicas" not in built_one(KEDA, "Deployment")["spec"]


def credentials() -> dict[str, str]:
    secret: dict[str, str] = one("Secret")["stringData"]
    return {key.lower(): value for key, value in secret.items()}


# --- topics: created by the Job, not by the workers ---


def test_workers_create_no_topics() -> None:
    from stream.settings import StreamSettings

    data = settings()
    assert data["CREATE_TOPICS"] == "false"
    parsed = StreamSettings.from_env(**{key.lower(): value for key, value in data.items()}, **credentials())
    assert parsed.create_topics is False


def _run_topic_job(tmp_path: Path, env: dict[str, str]) -> tuple[list[list[str]], str]:
    """The topics Job's script with kafka-topics.sh and kafka-configs.sh replaced by stubs logging calls."""
    script = one("Job")["spec"]["template"]["spec"]["containers"][0]["args"][0]
    stubs = tmp_path / "bin"
    stubs.mkdir()
    calls = tmp_path / "calls.jsonl"
    for name in ("kafka-topics.sh", "kafka-configs.sh"):
        stub = stubs / name
        stub.write_text(
            "#!/bin/sh\n"
            f'{shutil.which("python3") or sys.executable} -c "import json, sys; '
            f'print(json.dumps(sys.argv[1:]))" {name} "$@" >> {calls}\n',
            encoding="utf-8",
        )
        stub.chmod(0o755)
    props = tmp_path / "client.properties"
    assert "/opt/kafka/bin/" in script and "/tmp/client.properties" in script
    script = script.replace("/opt/kafka/bin/", f"{stubs}/").replace("/tmp/client.properties", str(props))
    result = subprocess.run(
        ["/bin/bash", "-c", script],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = calls.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines], props.read_text(encoding="utf-8")


def test_topic_job_creates_every_topic_the_workers_use_with_the_truststore(tmp_path: Path) -> None:
    data = settings()
    env = {**data, **one("Secret")["stringData"], "KAFKA_SSL_CAFILE": f"{CA_DIR}/ca.crt"}
    calls, props = _run_topic_job(tmp_path, env)
    created = {
        call[call.index("--topic") + 1]: int(call[call.index("--partitions") + 1])
        for call in calls
        if call[0] == "kafka-topics.sh"
    }
    partitions = int(data["TOPIC_PARTITIONS"])
    changelog = f"{data['SCORER_APP_ID']}-headline-join-changelog"  # faust: <app id>-<table>-changelog
    assert created == {
        data["INPUT_TOPIC"]: partitions,
        data["OUTPUT_TOPIC"]: partitions,
        data["DLQ_TOPIC"]: partitions,
        data["OUTCOMES_TOPIC"]: partitions,  # keyed by id like the input: an id meets its outcomes
        data["LABELLED_TOPIC"]: partitions,
        data["SHADOW_OUTPUT_TOPIC"]: partitions,
        changelog: partitions,
        faust_leader_topic(data["SCORER_APP_ID"]): 1,
    }
    compacted = {
        call[call.index("--topic") + 1]
        for call in calls
        if call[0] == "kafka-topics.sh" and "cleanup.policy=compact" in call
    }
    assert compacted == {data["LABELLED_TOPIC"], changelog}
    for call in calls:
        assert call[call.index("--bootstrap-server") + 1] == data["KAFKA_BOOTSTRAP_SERVERS"]
        if call[0] == "kafka-topics.sh":
            assert "--if-not-exists" in call
            assert call[call.index("--replication-factor") + 1] == data["TOPIC_REPLICATION"]
    lines = dict(line.split("=", 1) for line in props.splitlines())
    assert lines["security.protocol"] == "SASL_SSL"
    assert (lines["ssl.truststore.type"], lines["ssl.truststore.location"]) == ("PEM", f"{CA_DIR}/ca.crt")
    assert lines["sasl.mechanism"] == data["KAFKA_SASL_MECHANISM"]
    assert "ScramLoginModule required" in lines["sasl.jaas.config"]
    assert 'username="CHANGE_ME"' in lines["sasl.jaas.config"]


def test_topic_job_without_tls_or_sasl_writes_only_the_protocol(tmp_path: Path) -> None:
    env = {**settings(), "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "KAFKA_SASL_MECHANISM": ""}
    _, props = _run_topic_job(tmp_path, env)
    assert props.splitlines() == ["security.protocol=PLAINTEXT"]


def test_truststore_secret_is_mounted_where_kafka_ssl_cafile_points() -> None:
    text = (BASE / "configmap.yaml").read_text(encoding="utf-8")
    assert f"# KAFKA_SSL_CAFILE: {CA_DIR}/ca.crt" in text  # documented, off by default
    for name in ("Deployment/headline-scorer", "Job/headline-scorer-create-topics"):
        spec = pod_specs()[name]
        (volume,) = [v for v in spec["volumes"] if "secret" in v]
        assert volume["secret"] == {"secretName": "headline-scorer-kafka-ca", "optional": True}, name
        (container,) = spec["containers"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert (mount["mountPath"], mount["readOnly"]) == (CA_DIR, True), name


# --- training data ---


def _seed_container() -> dict[str, Any]:
    (init,) = pod_specs()["CronJob/headline-scorer-retrain"]["initContainers"]
    return init


def test_retrain_reads_what_the_init_container_seeds() -> None:
    spec = pod_specs()["CronJob/headline-scorer-retrain"]
    init = _seed_container()
    (retrain,) = spec["containers"]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    }
    data_claim = "headline-scorer-training-data"
    init_mount = next(m for m in init["volumeMounts"] if claims.get(m["name"]) == data_claim)
    retrain_mount = next(m for m in retrain["volumeMounts"] if claims.get(m["name"]) == data_claim)
    assert not init_mount.get("readOnly", False) and retrain_mount["readOnly"] is True
    assert init_mount["mountPath"] == retrain_mount["mountPath"] == init["args"][1]
    (script,) = retrain["args"]
    assert f'data="{retrain_mount["mountPath"]}/${{TRAINING_DATA_FILE}}"' in script
    assert 'mapping="${TRAINING_DATA_MAPPING}"' in script
    training = named("ConfigMap", "headline-scorer-training-data")
    assert {
        "TRAINING_DATA_URL",
        "TRAINING_DATA_SOURCE_DIR",
        "TRAINING_DATA_FILE",
        "TRAINING_DATA_MAPPING",
        "OUTCOMES_MAPPING",
        "OUTCOMES_MIN_ROWS",
    } == set(training["data"])
    for container in (init, retrain):  # the scripts read the variables from the container's environment
        assert {"configMapRef": {"name": "headline-scorer-training-data"}} in container["envFrom"]
    assert {"secretRef": {"name": "headline-scorer-training-data-source", "optional": True}} in init[
        "envFrom"
    ]
    assert init["image"] == retrain["image"] == "headline-scorer-train"  # the image bundles the sample


def _seed(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    init = _seed_container()
    assert init["command"] == ["python", "-c"]
    training = next(
        doc for doc in documents(BASE) if doc["metadata"]["name"] == "headline-scorer-training-data"
    )
    return subprocess.run(
        [sys.executable, "-c", init["args"][0], str(data_dir)],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **training["data"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def data_server(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on loopback serving ``tmp_path/served``."""
    served = tmp_path / "served"
    served.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_seeding_falls_back_to_the_bundled_sample_then_keeps_what_is_there(tmp_path: Path) -> None:
    from headline_scorer import SAMPLE_DATA

    volume = tmp_path / "data"
    volume.mkdir()
    first = _seed(volume)
    assert first.returncode == 0, first.stderr
    assert (volume / "train.csv").read_bytes() == (SAMPLE_DATA / "train.csv").read_bytes()
    assert "bundled sample" in first.stdout
    (volume / "train.csv").write_text("title\ncopied with kubectl cp\n", encoding="utf-8")
    second = _seed(volume)
    assert second.returncode == 0 and "keeping" in second.stdout
    assert (volume / "train.csv").read_text(encoding="utf-8") == "title\ncopied with kubectl cp\n"
    assert sorted(p.name for p in volume.iterdir()) == ["train.csv"]


def test_seeding_downloads_from_a_url_or_copies_from_a_mounted_directory(
    tmp_path: Path, data_server: str
) -> None:
    volume = tmp_path / "data"
    volume.mkdir()
    (volume / "fresh.csv").write_text("old\n", encoding="utf-8")
    (tmp_path / "served" / "fresh.csv").write_text("title\nfrom the object store\n", encoding="utf-8")
    fetched = _seed(
        volume, TRAINING_DATA_URL=f"{data_server}/fresh.csv?token=secret", TRAINING_DATA_FILE="fresh.csv"
    )
    assert fetched.returncode == 0, fetched.stderr
    assert (volume / "fresh.csv").read_text(encoding="utf-8") == "title\nfrom the object store\n"
    assert "token=secret" not in fetched.stdout + fetched.stderr  # presigned URLs carry credentials
    mounted = tmp_path / "bucket"
    mounted.mkdir()
    (mounted / "train.csv").write_text("title\nfrom a mounted bucket\n", encoding="utf-8")
    copied = _seed(volume, TRAINING_DATA_SOURCE_DIR=str(mounted))
    assert copied.returncode == 0, copied.stderr
    assert (volume / "train.csv").read_text(encoding="utf-8") == "title\nfrom a mounted bucket\n"


def test_seeding_failure_fails_the_job_and_leaves_the_volume_as_it_was(
    tmp_path: Path, data_server: str
) -> None:
    volume = tmp_path / "data"
    volume.mkdir()
    (volume / "train.csv").write_text("title\nlast good data\n", encoding="utf-8")
    (tmp_path / "served" / "empty.csv").write_bytes(b"")
    for env in (
        {"TRAINING_DATA_URL": f"{data_server}/missing.csv"},
        {"TRAINING_DATA_URL": f"{data_server}/empty.csv"},
        {"TRAINING_DATA_SOURCE_DIR": str(tmp_path / "no-such-mount")},
    ):
        result = _seed(volume, **env)
        assert result.returncode != 0, env
        assert "training data: cannot fetch train.csv" in result.stderr, result.stderr
        assert (volume / "train.csv").read_text(encoding="utf-8") == "title\nlast good data\n"
        assert sorted(p.name for p in volume.iterdir()) == ["train.csv"], env


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_training_data_loader_pod_mounts_the_training_data_claim(version: str) -> None:
    (pod,) = yaml.safe_load_all((K8S / "tools" / "training-data-loader.yaml").read_text(encoding="utf-8"))
    kubernetes_validate.validate(pod, version, strict=True)
    assert pod["metadata"]["namespace"] == "headline-scorer"
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]}
    (container,) = pod["spec"]["containers"]
    (mount,) = container["volumeMounts"]
    assert claims[mount["name"]] == "headline-scorer-training-data"
    # the path the seeding script and the retrain container use, so `kubectl cp ...:/data/train.csv` lands
    assert mount["mountPath"] == _seed_container()["args"][1]
    assert (
        pod["spec"]["securityContext"]["fsGroup"]
        == pod_specs()["CronJob/headline-scorer-retrain"]["securityContext"]["fsGroup"]
    )
