"""Test helpers around Debian's ``prometheus`` package: find or install its tools, run a real server.

``require_prometheus_tool("promtool")`` returns the path of a tool of the package, installing the package
with apt-get when it is missing and we are root (the way CI gets it); otherwise it skips the test with the
reason. ``running_prometheus(targets, workdir)`` starts a real Prometheus server on loopback (free port,
temporary configuration scraping the given ``host:port`` targets under the job ``headline-scorer``,
temporary storage), waits until it is ready and stops it on exit. ``PrometheusServer.query`` evaluates an
instant query through the HTTP API (``/api/v1/query``). ``serving_metrics(registry)`` exposes a
prometheus_client registry on a free loopback port for it to scrape.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server

logger = logging.getLogger(__name__)

JOB = "headline-scorer"
_INSTALL_LOCK = threading.Lock()


class PrometheusError(RuntimeError):
    """The Prometheus server did not start, or answered a query with an error."""


def require_prometheus_tool(name: str) -> str:
    """Path of ``name`` (``promtool`` or ``prometheus``); installs Debian's package if missing, else skips."""
    found = shutil.which(name)
    if found:
        return found
    with _INSTALL_LOCK:
        found = shutil.which(name)
        if found:
            return found
        if os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip(
                f"{name} not on PATH and cannot install Debian's 'prometheus' (needs root and apt-get)"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]
        logger.info("installing Debian's prometheus package for %s", name)
        result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            # The package lists may be missing or stale on a fresh machine.
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
            result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"installing Debian's 'prometheus' failed: {result.stderr.strip()[-500:]}")
        return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving_metrics(registry: CollectorRegistry) -> Iterator[str]:
    """Serves ``registry`` on ``/metrics`` of a free loopback port; yields the ``host:port`` target."""
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _get_json(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass(frozen=True)
class PrometheusServer:
    """A Prometheus server at ``base_url`` (``http://127.0.0.1:PORT``); ``process`` when we started it."""

    base_url: str
    config_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def query(self, expr: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Instant query; returns ``data.result`` (a list of series for vector results)."""
        url = f"{self.base_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            body = _get_json(url, timeout)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise PrometheusError(f"query {expr!r} failed with HTTP {exc.code}: {detail}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"query {expr!r} failed: {body}")
        result = body["data"]["result"]
        if body["data"]["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result)

    def wait_for(self, expr: str, *, timeout: float = 30.0, interval: float = 0.25) -> list[dict[str, Any]]:
        """Polls ``expr`` until it returns data; raises ``PrometheusError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise PrometheusError(f"{expr!r} returned no data within {timeout} s")
            time.sleep(interval)

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets (``/api/v1/targets``)."""
        body = _get_json(f"{self.base_url}/api/v1/targets?state=active", 10.0)
        return list(body["data"]["activeTargets"])


def write_config(
    path: Path,
    targets: Sequence[str],
    *,
    scrape_interval: str = "1s",
    rule_files: Sequence[Path] = (),
) -> Path:
    """Writes a configuration scraping ``targets`` (``host:port``) as job ``headline-scorer``."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(rule) for rule in rule_files],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": list(targets)}]}],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@contextmanager
def running_prometheus(
    targets: Sequence[str],
    workdir: Path,
    *,
    scrape_interval: str = "1s",
    rule_files: Sequence[Path] = (),
    startup_timeout: float = 30.0,
) -> Iterator[PrometheusServer]:
    """Starts ``prometheus`` on 127.0.0.1 scraping ``targets``; yields once it is ready; stops it on exit."""
    binary = require_prometheus_tool("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(
        workdir / "prometheus.yml", targets, scrape_interval=scrape_interval, rule_files=rule_files
    )
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = workdir / "prometheus.log"
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    server = PrometheusServer(base_url=base_url, config_file=config, process=process)
    try:
        _wait_ready(server, log_path, startup_timeout)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_ready(server: PrometheusServer, log_path: Path, timeout: float) -> None:
    assert server.process is not None
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            log = log_path.read_text(encoding="utf-8", errors="replace")
            raise PrometheusError(f"prometheus exited with {server.process.returncode}: {log[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.base_url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise PrometheusError(f"prometheus at {server.base_url} not ready within {timeout} s")
        time.sleep(0.1)
