"""The serving install as the worker image builds it, in a fresh virtual environment, scoring real events.

The build stage of ``deploy/docker/Dockerfile`` is replayed without Docker: the build context is the
repository filtered by ``Dockerfile.dockerignore`` (Docker's rules, ``tests/docker_context.py``), the stage's
COPY instructions copy from that context, and its RUN instruction runs word for word with ``/opt/venv``
replaced by a temporary directory and ``python`` being this interpreter's base Python (3.11, as the
image's). One difference from the image: the Dockerfile's ``PIP_NO_CACHE_DIR`` is not applied, so pip may
reuse its cache. The resulting ``headline-scorer worker`` then scores headlines on the session broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from deploy_contract import DEPLOY, ROOT
from docker_context import Stage, apply_copies, build_context, parse_dockerfile

from artifact.registry import Registry
from artifact.runtime import load_model
from tests.stream_harness import Topics, WorkerProcess, consume_until, event, produce, template_registry

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.install]

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
IMAGE_VENV = "/opt/venv"
# the Dockerfile's ENV left out here: pip may use its cache (PyPI is still asked for every version)
NOT_APPLIED_ENV = frozenset({"PIP_NO_CACHE_DIR"})
HEADLINES = [
    ("s-1", "Ten things nobody tells you about Kafka", "tech"),
    ("s-2", "Markets close higher after a quiet week", "business"),
    ("s-3", "Why the city council finally said yes", None),
    ("s-4", "A 10-step guide to better sleep", "health"),
    ("s-5", "מחקר חדש: כך תשפרו את השינה", "tech"),
]


@dataclass(frozen=True)
class ServingInstall:
    venv: Path
    build_log: str

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _stage_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.of("ENV"):
        for pair in instruction.arguments.split():
            name, _, value = pair.partition("=")
            if name not in NOT_APPLIED_ENV:
                env[name] = value
    return env


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without anything pointing at the repository or the shared venv."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    return {**env, **(extra or {})}


@pytest.fixture(scope="module")
def serving_install(tmp_path_factory: pytest.TempPathFactory) -> ServingInstall:
    """The Dockerfile's build stage replayed into a fresh venv (minutes on a cold pip cache)."""
    work = tmp_path_factory.mktemp("serving-image")
    build_stage = parse_dockerfile(DOCKERFILE)[0]
    assert build_stage.base == "python:3.11-slim" and sys.version_info[:2] == (3, 11)
    build_context(ROOT, DOCKERFILE.with_name("Dockerfile.dockerignore"), work / "context")
    image = work / "image"
    apply_copies(build_stage, work / "context", image)
    (workdir,) = [image / i.arguments.lstrip("/") for i in build_stage.of("WORKDIR")]
    (run,) = build_stage.of("RUN")
    assert "pip install -c constraints.txt ." in run.arguments and "[" not in run.arguments.split("&&")[2]
    venv = work / "venv"
    command = run.arguments.replace(IMAGE_VENV, str(venv))
    # `python` on PATH is the image's Python: here the base interpreter of this one (not its venv)
    shim = work / "bin"
    shim.mkdir()
    (shim / "python").symlink_to(Path(getattr(sys, "_base_executable", sys.executable)))
    env = _clean_env({**_stage_env(build_stage), "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"})
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"the Dockerfile's RUN step failed:\n{log[-6000:]}"
    return ServingInstall(venv, log)


def test_serving_install_has_no_training_stack(serving_install: ServingInstall, tmp_path: Path) -> None:
    # every distribution of the optional extras (train: torch, onnx, ...; and any other but dev) stays out
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    names = sorted(
        {
            re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
            for extra, reqs in extras.items()
            if extra != "dev"
            for requirement in reqs
        }
    )
    assert {"torch", "onnx"} <= set(names)
    probe = (
        "import importlib.metadata as m, json, sys, stream\n"
        "def installed(name):\n"
        "    try:\n"
        "        return m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        "found = {n: installed(n) for n in sys.argv[1:]}\n"
        "print(json.dumps({'installed': found, 'stream': stream.__file__}))\n"
    )
    result = subprocess.run(
        [str(serving_install.python), "-c", probe, *names],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(result.stdout)
    assert {name: version for name, version in found["installed"].items() if version} == {}
    for module in ("torch", "onnx"):  # and not importable by any other name
        check = subprocess.run(
            [str(serving_install.python), "-c", f"import {module}"],
            cwd=tmp_path,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.returncode != 0 and "ModuleNotFoundError" in check.stderr, module
    # the installed package, not the repository's sources
    assert Path(found["stream"]).is_relative_to(serving_install.venv), found


@dataclass
class InstalledWorker(WorkerProcess):
    """A worker run from the serving venv's console script, without the repository on its path."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env.pop("PYTHONPATH", None)
        return env


def test_installed_worker_scores_headlines(
    serving_install: ServingInstall, kafka_bootstrap: str, tmp_path: Path
) -> None:
    root, current, _ = template_registry()
    registry = tmp_path / "registry"
    shutil.copytree(root, registry)
    topics = Topics.unique()
    worker = InstalledWorker(
        kafka_bootstrap,
        registry,
        topics,
        f"install-{uuid.uuid4().hex[:6]}",
        tmp_path / "worker.log",
        command=(str(serving_install.venv / "bin" / "headline-scorer"), "worker"),
    ).start()
    try:
        worker.wait_ready(timeout=90)
        records = [(id_.encode(), event(id_, title, category)) for id_, title, category in HEADLINES]
        asyncio.run(produce(kafka_bootstrap, topics.input, records))
        out = asyncio.run(consume_until(kafka_bootstrap, [topics.output], len(HEADLINES), timeout=60))
    finally:
        assert worker.stop() == 0, worker.log()[-4000:]
    scores = {json.loads(value)["id"]: json.loads(value) for _, _, value, _ in out if value is not None}
    assert set(scores) == {id_ for id_, _, _ in HEADLINES}, worker.log()[-4000:]
    # the same numbers as the repository's runtime on the same model version
    expected = load_model(Registry(registry).version_dir(current)).score(
        [title for _, title, _ in HEADLINES], [category for _, _, category in HEADLINES]
    )
    for index, (id_, _, _) in enumerate(HEADLINES):
        score = scores[id_]
        assert score["model_version"] == current
        assert score["ctr"] == pytest.approx(float(expected.ctr[index]), rel=1e-5)
        assert score["quality_prob"] == pytest.approx(float(expected.quality_prob[index]), rel=1e-5, abs=1e-7)
        assert score["quality_label"] == bool(expected.quality_label[index])
