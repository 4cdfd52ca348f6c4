"""Apache Kafka brokers for development and the test suite (``make test-kafka``): never used by the worker.

::

    with ApacheKafkaBroker(log_dir=DIR) as broker:   # one KRaft node (broker + controller), free ports
        run_something(broker.bootstrap)              # "127.0.0.1:PORT"
        broker.kill()                                 # SIGKILL; start() brings it back with its data
        broker.restart()                              # same port, empty storage (like EmbeddedBroker)

    with ApacheKafkaCluster(nodes=3, log_dir=DIR) as cluster:   # three combined KRaft nodes
        cluster.bootstrap                            # "127.0.0.1:P0,127.0.0.1:P1,127.0.0.1:P2"
        cluster.leader("topic", 0)                   # node id (0..2) of the partition's leader
        cluster.kill(1); cluster.start(1)            # SIGKILL a node, bring it back with its data
        cluster.restart(2)                           # SIGTERM (controlled shutdown) and start again

The broker jars come from Maven Central through ``deploy/apache-kafka/pom.xml``
(``mvn dependency:copy-dependencies``) and are cached in
``~/.cache/headline-scorer/apache-kafka-<version>/`` (``HEADLINE_SCORER_CACHE``
moves it); a cached copy is reused without the network. Needs ``java`` (17+) and,
for the first fetch, ``mvn``.

The settings suit tests, not production: no topic is auto-created with more
replicas than there are nodes, consumer groups rebalance without the initial
delay, short session timeouts are allowed, and a dead node is fenced after
3 s. A cluster of three sets ``min.insync.replicas=2`` and replication 3 as the
defaults. Every JVM dies with this process (``PR_SET_PDEATHSIG``, for nodes
started from the main thread, as :class:`~headline_scorer.embedded_broker.EmbeddedBroker`
does), when its object is garbage collected, and at interpreter exit.

Errors: :class:`ApacheKafkaError` (a :class:`~headline_scorer.embedded_broker.BrokerError`) for a
missing tool, a failed fetch, a node that does not start.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from headline_scorer.embedded_broker import BrokerError, die_with_parent, terminate_process
from stream.asyncio_util import answers_metadata, free_port, run_sync

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
POM = Path(__file__).resolve().parents[1] / "deploy" / "apache-kafka" / "pom.xml"
_COMPLETE = ".complete"

# Defaults for tests: fast group joins and failure detection on one machine.
_BASE_CONFIG: dict[str, str] = {
    # Topics a client touches before anyone created them get 4 partitions, as on the embedded broker
    # (and the tests' TOPIC_PARTITIONS): after a restart with empty storage, a producer or the worker
    # may recreate a topic before the test does, and the worker's assignment must still exist.
    "auto.create.topics.enable": "true",
    "num.partitions": "4",
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
    "offsets.topic.num.partitions": "5",
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "3000",
    "replica.lag.time.max.ms": "10000",
    "num.network.threads": "2",
    "num.io.threads": "4",
    "log.cleaner.enable": "false",
}

# Start-up costs about a third of the CPU with the C1 compiler only and a class-data archive
# (measured on 2 shared cores: 9.3 -> 3.2 CPU seconds, 31 -> 9 s to "Kafka Server started").
_JVM_OPTIONS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)
# The dynamic class-data archive (AppCDS), written next to the jars when the first node stops cleanly.
CDS_ARCHIVE = "kafka-broker.jsa"

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = out
logger.state.name = state.change.logger
logger.state.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""


class ApacheKafkaError(BrokerError):
    """Apache Kafka could not be fetched, formatted, started or queried."""


# --- the jars -------------------------------------------------------------------------------------


def cache_root() -> Path:
    """Where fetched jars are kept: ``HEADLINE_SCORER_CACHE`` or ``~/.cache/headline-scorer``."""
    configured = os.environ.get("HEADLINE_SCORER_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "headline-scorer"


def _tool(name: str) -> str:
    home = os.environ.get("JAVA_HOME")
    if name == "java" and home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which(name)
    if found is None:
        raise ApacheKafkaError(f"Apache Kafka mode needs '{name}' on PATH")
    return found


def kafka_jars(version: str = KAFKA_VERSION, *, cache: Path | None = None, pom: Path = POM) -> Path:
    """The directory of Apache Kafka ``version``'s broker jars, fetched with Maven on first use."""
    target = (cache or cache_root()) / f"apache-kafka-{version}"
    if (target / _COMPLETE).is_file():
        return target
    if not pom.is_file():
        raise ApacheKafkaError(f"no {pom}: Apache Kafka mode runs from a source checkout")
    mvn = _tool("mvn")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{target.name}.partial-", dir=target.parent))
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}",
        f"-Dkafka.version={version}",
    ]
    logger.info("fetching Apache Kafka %s with Maven into %s", version, target)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0 or not (partial / f"kafka_2.13-{version}.jar").is_file():
            output = " ".join((result.stdout + result.stderr)[-1500:].split())
            raise ApacheKafkaError(
                f"Maven could not fetch Apache Kafka {version} (exit {result.returncode}): {output}"
            )
        (partial / _COMPLETE).write_text(version + "\n", encoding="utf-8")
        try:
            partial.rename(target)
        except OSError:  # fetched meanwhile by another process
            if not (target / _COMPLETE).is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def new_cluster_id() -> str:
    """A KRaft cluster id (a UUID in Kafka's URL-safe base64 form)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


# --- one JVM --------------------------------------------------------------------------------------


class _Node:
    """One KRaft node (broker and controller in one JVM) with its own config, storage and log."""

    def __init__(
        self,
        node_id: int,
        directory: Path,
        log_path: Path,
        *,
        port: int,
        controller_port: int,
        voters: str,
        config: Mapping[str, str],
        host: str,
    ) -> None:
        self.node_id = node_id
        self.host = host
        self.port = port
        self.controller_port = controller_port
        self.directory = directory
        self.data = directory / "data"
        self.log_path = log_path
        self._config = {
            **config,
            "process.roles": "broker,controller",
            "node.id": str(node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._archive: Path | None = None
        self._jars: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in self._config.items()), encoding="utf-8")
        for level, name in (("INFO", "log4j2.properties"), ("WARN", "log4j2-tools.properties")):
            (self.directory / name).write_text(_LOG4J2.format(level=level), encoding="utf-8")
        return path

    def java(self, jars: Path, main: str, *args: str, tools: bool = False) -> list[str]:
        log_config = self.directory / ("log4j2-tools.properties" if tools else "log4j2.properties")
        archive: list[str] = []
        if (jars / CDS_ARCHIVE).is_file():
            archive = [f"-XX:SharedArchiveFile={jars / CDS_ARCHIVE}"]
        elif not tools:
            self._archive = self.directory / f"{CDS_ARCHIVE}.{os.getpid()}"
            archive = [f"-XX:ArchiveClassesAtExit={self._archive}"]
        return [
            _tool("java"),
            *_JVM_OPTIONS,
            *archive,
            f"-Dlog4j2.configurationFile={log_config}",
            "-cp",
            f"{jars}/*",
            main,
            *args,
        ]

    def format(self, jars: Path, cluster_id: str) -> subprocess.Popen[bytes]:
        """Start formatting empty storage (``kafka-storage format``); the caller waits."""
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.directory / "formatted", ignore_errors=True)
        config = self.write_config()
        command = self.java(
            jars, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config), tools=True
        )
        return self._spawn(command)

    def keep_formatted(self) -> None:
        """Keep a copy of the freshly formatted storage for :meth:`reset_storage`."""
        shutil.copytree(self.data, self.directory / "formatted")

    def reset_storage(self) -> None:
        """Empty storage again (the formatted copy: same cluster id, no topics, no offsets)."""
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.copytree(self.directory / "formatted", self.data)

    def launch(self, jars: Path) -> None:
        if self.running:
            return
        self._jars = jars
        self.process = self._spawn(self.java(jars, "kafka.Kafka", str(self.write_config())))
        self._finalizer = weakref.finalize(self, terminate_process, self.process, 5.0)
        logger.info(
            "Apache Kafka node %s pid %s starting on %s", self.node_id, self.process.pid, self.bootstrap
        )

    def _spawn(self, command: Sequence[str]) -> subprocess.Popen[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,  # Ctrl-C in a terminal reaches the parent only
                preexec_fn=die_with_parent(),  # SIGKILL when this process dies (PR_SET_PDEATHSIG)
            )

    def stop(self, timeout: float) -> None:
        if self.process is None:
            return
        terminate_process(self.process, timeout)
        logger.info("Apache Kafka node %s stopped (exit code %s)", self.node_id, self.process.returncode)
        if self._finalizer is not None:
            self._finalizer.detach()
        self.process = None
        self._keep_archive()

    def _keep_archive(self) -> None:
        archive, self._archive = self._archive, None
        if archive is None or self._jars is None:
            return
        if archive.is_file() and archive.stat().st_size > 0 and not (self._jars / CDS_ARCHIVE).exists():
            with contextlib.suppress(OSError):  # another node may have been first: either is fine
                archive.replace(self._jars / CDS_ARCHIVE)
                logger.info("kept the class-data archive %s", self._jars / CDS_ARCHIVE)
        archive.unlink(missing_ok=True)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stop(1.0)

    def log_tail(self, chars: int = 800) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return " ".join(text[-chars:].split()) or "(empty log)"


def _format_all(nodes: Sequence[_Node], jars: Path, cluster_id: str, timeout: float = 180.0) -> None:
    """Format the storage of ``nodes`` concurrently (one short JVM each)."""
    running = [(node, node.format(jars, cluster_id)) for node in nodes]
    for node, process in running:
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = -signal.SIGKILL
        if code != 0:
            raise ApacheKafkaError(
                f"formatting the storage of node {node.node_id} failed ({code}): {node.log_tail()}"
            )
        node.keep_formatted()


async def _describe_cluster(bootstrap: str, timeout: float) -> tuple[set[int], dict[tuple[str, int], Any]]:
    """Broker ids in the metadata, and ``(topic, partition) -> partition metadata`` of every topic."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        topics = await asyncio.wait_for(admin.describe_topics(), timeout)
        brokers = {int(b.nodeId) for b in admin._client.cluster.brokers()}
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    partitions = {(t["topic"], int(p["partition"])): p for t in topics for p in t["partitions"]}
    return brokers, partitions


def _listening(node: _Node) -> bool:
    """True when the node accepts TCP connections (a cheap check before a Kafka request)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((node.host, node.port)) == 0


class _Processes:
    """What :class:`ApacheKafkaBroker` and :class:`ApacheKafkaCluster` share: nodes, jars, clean-up."""

    def __init__(
        self,
        nodes: int,
        *,
        log_dir: Path | None,
        version: str,
        host: str,
        config: Mapping[str, str] | None,
        startup_timeout: float,
    ) -> None:
        if nodes < 1:
            raise ValueError(f"expected at least one node, got {nodes}")
        self.version = version
        self.host = host
        self.startup_timeout = startup_timeout
        self._workdir = Path(tempfile.mkdtemp(prefix="headline-scorer-kafka-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, True)
        self.log_dir = log_dir if log_dir is not None else self._workdir / "logs"
        ports = [(free_port(host), free_port(host)) for _ in range(nodes)]
        voters = ",".join(f"{i}@{host}:{controller}" for i, (_, controller) in enumerate(ports))
        replication = str(min(nodes, 3))
        defaults = {
            **_BASE_CONFIG,
            "offsets.topic.replication.factor": replication,
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": str(min(nodes, 2)),
            "default.replication.factor": replication,
            "min.insync.replicas": str(min(nodes, 2)) if nodes >= 3 else "1",
            **(config or {}),
        }
        self.nodes = [
            _Node(
                i,
                self._workdir / f"node-{i}",
                self.log_dir / f"kafka-node-{i}.log",
                port=port,
                controller_port=controller,
                voters=voters,
                config=defaults,
                host=host,
            )
            for i, (port, controller) in enumerate(ports)
        ]
        self.cluster_id = new_cluster_id()
        self._jars: Path | None = None
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        """``host:port`` of every node, comma-separated (``KAFKA_BOOTSTRAP_SERVERS``)."""
        return ",".join(node.bootstrap for node in self.nodes)

    def jars(self) -> Path:
        if self._jars is None:
            self._jars = kafka_jars(self.version)
        return self._jars

    def _start_nodes(self, nodes: Sequence[_Node]) -> None:
        if not nodes:
            return
        jars = self.jars()
        if not self._formatted:
            _format_all(self.nodes, jars, self.cluster_id)
            self._formatted = True
        for node in nodes:
            node.launch(jars)
        self._wait(nodes)

    def _wait(self, nodes: Sequence[_Node]) -> None:
        """Until every node of ``nodes`` answers and the cluster's metadata lists all of them."""
        deadline = time.monotonic() + self.startup_timeout
        wanted = {node.node_id for node in nodes}
        last: object = "no node answered"
        while time.monotonic() < deadline:
            for node in nodes:
                if node.process is not None and node.process.poll() is not None:
                    code = node.process.returncode
                    node.stop(1.0)
                    raise ApacheKafkaError(
                        f"Apache Kafka node {node.node_id} exited with code {code}: {node.log_tail()}"
                    )
            if all(_listening(node) for node in nodes) and all(
                run_sync(answers_metadata(node.bootstrap, timeout=2.0)) for node in nodes
            ):
                try:
                    brokers, _ = run_sync(_describe_cluster(nodes[0].bootstrap, 5.0))
                except Exception as exc:  # still starting: retried until the deadline
                    last = exc
                else:
                    if wanted <= brokers:
                        logger.info("Apache Kafka nodes %s ready on %s", sorted(wanted), self.bootstrap)
                        return
                    last = f"the metadata lists brokers {sorted(brokers)}"
            time.sleep(0.3)
        tails = "; ".join(f"node {n.node_id}: {n.log_tail(400)}" for n in nodes)
        tails = f"{last!r}; {tails}"
        for node in nodes:
            node.stop(5.0)
        raise ApacheKafkaError(
            f"Apache Kafka did not become ready within {self.startup_timeout:g} s: {tails}"
        )

    def close(self, timeout: float = 30.0) -> None:
        """Stop every node and delete the storage (logs in a given ``log_dir`` are kept)."""
        for node in self.nodes:
            if node.process is not None:
                node.process.terminate()
        for node in self.nodes:
            node.stop(timeout)
        self._cleanup()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ApacheKafkaBroker(_Processes):
    """One Apache Kafka KRaft node (combined broker and controller) on free loopback ports.

    The interface of :class:`~headline_scorer.embedded_broker.EmbeddedBroker`: ``bootstrap``, ``port``,
    ``running``, ``pid``, ``log_path``, ``start``, ``stop``, ``kill`` and ``restart``.
    Unlike the embedded broker it keeps its data on disk across ``kill``/``stop`` and
    ``start``; :meth:`restart` starts over with empty storage, on the same port.
    """

    def __init__(
        self,
        *,
        log_dir: Path | None = None,
        version: str = KAFKA_VERSION,
        host: str = "127.0.0.1",
        config: Mapping[str, str] | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        super().__init__(
            1, log_dir=log_dir, version=version, host=host, config=config, startup_timeout=startup_timeout
        )
        self.node = self.nodes[0]

    @property
    def port(self) -> int:
        return self.node.port

    @property
    def running(self) -> bool:
        return self.node.running

    @property
    def pid(self) -> int | None:
        return None if self.node.process is None else self.node.process.pid

    @property
    def log_path(self) -> Path:
        return self.node.log_path

    def start(self) -> Self:
        """Start the node (formatting its storage the first time) and wait until it answers."""
        if not self.running:
            self._start_nodes([self.node])
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL after ``timeout`` seconds; the data stays."""
        self.node.stop(timeout)

    def kill(self) -> None:
        """SIGKILL the node (a crash); :meth:`start` brings it back with its data."""
        self.node.kill()

    def restart(self) -> None:
        """Stop and start again on the same port with empty storage (every topic and offset is gone)."""
        self.stop()
        if self._formatted:
            self.node.reset_storage()
        self.start()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise


class ApacheKafkaCluster(_Processes):
    """``nodes`` combined KRaft nodes (ids ``0 .. nodes-1``), replication 3 and ``min.insync.replicas=2``.

    Every node is a broker and a voter of the controller quorum, so a cluster of
    three keeps working with any one node down.
    """

    def __init__(
        self,
        nodes: int = 3,
        *,
        log_dir: Path | None = None,
        version: str = KAFKA_VERSION,
        host: str = "127.0.0.1",
        config: Mapping[str, str] | None = None,
        startup_timeout: float = 180.0,
    ) -> None:
        super().__init__(
            nodes, log_dir=log_dir, version=version, host=host, config=config, startup_timeout=startup_timeout
        )

    def _node(self, node: int) -> _Node:
        if not 0 <= node < len(self.nodes):
            raise ValueError(f"expected a node id in 0..{len(self.nodes) - 1}, got {node}")
        return self.nodes[node]

    def running(self, node: int) -> bool:
        return self._node(node).running

    def pid(self, node: int) -> int | None:
        process = self._node(node).process
        return None if process is None else process.pid

    def log_path(self, node: int) -> Path:
        return self._node(node).log_path

    def live_bootstrap(self) -> str:
        """``bootstrap`` of the nodes that are running now."""
        return ",".join(n.bootstrap for n in self.nodes if n.running) or self.bootstrap

    def start(self, node: int | None = None) -> Self:
        """Start one node (with its data) or all of them; wait until the cluster lists them."""
        chosen = self.nodes if node is None else [self._node(node)]
        self._start_nodes([n for n in chosen if not n.running])
        return self

    def stop(self, node: int, timeout: float = 30.0) -> None:
        """SIGTERM one node (a controlled shutdown: leadership moves first), SIGKILL after ``timeout``."""
        self._node(node).stop(timeout)

    def kill(self, node: int) -> None:
        """SIGKILL one node (a crash); :meth:`start` brings it back with its data."""
        self._node(node).kill()

    def restart(self, node: int) -> None:
        """Stop one node cleanly and start it again with its data (one step of a rolling restart)."""
        self.stop(node)
        self.start(node)

    def partitions(self, topic: str) -> dict[int, Any]:
        """``partition -> metadata`` (``leader``, ``replicas``, ``isr``) of ``topic``, from the admin API."""
        # right after a kill the client's metadata may still name the dead node and send the request
        # there (NodeNotReadyError): ask again until the cluster's metadata has moved on
        deadline = time.monotonic() + 30.0
        while True:
            try:
                _, found = run_sync(_describe_cluster(self.live_bootstrap(), 10.0))
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise ApacheKafkaError(f"cannot describe the topics of the cluster: {exc!r}") from exc
                time.sleep(0.5)
                continue
            return {p: meta for (t, p), meta in found.items() if t == topic}

    def leader(self, topic: str, partition: int) -> int:
        """Node id of the leader of ``topic[partition]`` (raises when it has none)."""
        meta = self.partitions(topic).get(partition)
        if meta is None or int(meta["leader"]) < 0:
            raise ApacheKafkaError(f"{topic}[{partition}] has no leader: {meta}")
        return int(meta["leader"])

    def wait_in_sync(self, topics: Sequence[str], timeout: float = 120.0) -> float:
        """Until every partition of ``topics`` has all its replicas in sync; return the seconds waited."""
        started = time.monotonic()
        last: Any = None
        while time.monotonic() - started < timeout:
            with contextlib.suppress(Exception):
                _, found = run_sync(_describe_cluster(self.live_bootstrap(), 5.0))
                mine = [meta for (t, _), meta in found.items() if t in topics]
                last = mine
                if (
                    mine
                    and {t for (t, _) in found if t in topics} == set(topics)
                    and all(int(m["leader"]) >= 0 and sorted(m["isr"]) == sorted(m["replicas"]) for m in mine)
                ):
                    return time.monotonic() - started
            time.sleep(0.3)
        raise ApacheKafkaError(f"partitions of {list(topics)} not in sync within {timeout:g} s: {last}")

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise


@contextlib.contextmanager
def apache_kafka(
    nodes: int = 1, *, log_dir: Path | None = None
) -> Iterator[ApacheKafkaBroker | ApacheKafkaCluster]:
    """A running single node (``nodes == 1``) or cluster, stopped and deleted on exit."""
    if nodes == 1:
        with ApacheKafkaBroker(log_dir=log_dir) as broker:
            yield broker
    else:
        with ApacheKafkaCluster(nodes, log_dir=log_dir) as cluster:
            yield cluster
