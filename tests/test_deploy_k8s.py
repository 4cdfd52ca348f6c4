"""Kubernetes manifests (kustomize): Kubernetes JSON schemas (kubernetes-validate) and system needs."""

from __future__ import annotations

import copy
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_contract import DEPLOY, ENV_VARS, JOB, WEB_PORT

kubernetes_validate = pytest.importorskip("kubernetes_validate")

K8S = DEPLOY / "k8s"
BASE = K8S / "base"
OPERATOR = K8S / "prometheus-operator"
# Schemas of the oldest and newest Kubernetes versions the manifests are meant for.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CRD_GROUPS = ("monitoring.coreos.com/",)


def documents(directory: Path) -> list[dict[str, Any]]:
    """Every object in the kustomization's resources (files only, not nested kustomizations)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = directory / resource
        if path.is_file():
            found.extend(doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc)
    return found


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


def settings() -> dict[str, str]:
    data: dict[str, str] = one("ConfigMap")["data"]
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
    for directory in (BASE, OPERATOR):
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
    assert len({data["INPUT_TOPIC"], data["OUTPUT_TOPIC"], data["DLQ_TOPIC"]}) == 3
    for name, spec in pod_specs().items():
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] == one("ConfigMap")["metadata"]["name"], name
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
        for container in spec["containers"]:
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


def test_retrain_cronjob_runs_retrain_and_export_one_shot() -> None:
    cronjob = one("CronJob")
    assert len(cronjob["spec"]["schedule"].split()) == 5
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "retrain" and "--every" not in args  # one-shot: the CronJob is the schedule
    assert args[args.index("--registry") + 1] == settings()["MODEL_REGISTRY"]
    assert container["image"] == "headline-scorer-train"


def test_topic_job_creates_the_configured_topics() -> None:
    job = one("Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("apache/kafka:")
    script = container["args"][0]
    assert "--create --if-not-exists" in script
    for variable in ("INPUT_TOPIC", "OUTPUT_TOPIC", "DLQ_TOPIC", "TOPIC_PARTITIONS", "TOPIC_REPLICATION"):
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
