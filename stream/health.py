"""Readiness and liveness that tell the truth.

* **ready** (``/ready``, ``headline_scorer_ready``): a model is serving, the
  consumer holds at least one partition, the broker answered within
  ``ready_timeout_seconds`` (an offset commit, or the worker's metadata probe,
  which runs every second), the input, output and dead-letter topics exist,
  processed events have not waited longer than that for their commit, and no
  output was lost (a lost output stops the worker).
  A worker that cannot reach the broker, or cannot commit, is not ready; it is
  ready again as soon as the broker answers and commits go through.
* **live** (``/live``): the event loop ran its heartbeat within
  ``stall_seconds``, and processed events have not waited longer than that for
  their commit (commits stopped making progress for good).

All times come from the injected ``clock``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Health:
    clock: Callable[[], float]
    stall_seconds: float = 30.0
    ready_timeout_seconds: float = 10.0
    last_heartbeat: float = field(default=0.0)
    last_commit: float = field(default=0.0)
    last_broker_answer: float = field(default=0.0)
    # when the oldest processed-but-uncommitted batch was processed (None: nothing waits)
    uncommitted_since: float | None = None
    model_loaded: bool = False
    partitions_assigned: int = 0
    failure: str | None = None
    topics_missing: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.ready_timeout_seconds <= 0 or self.stall_seconds <= 0:
            raise ValueError(
                f"expected positive timeouts, got stall_seconds={self.stall_seconds}, "
                f"ready_timeout_seconds={self.ready_timeout_seconds}"
            )
        now = self.clock()
        self.last_heartbeat = now
        self.last_commit = now
        self.last_broker_answer = now

    def heartbeat(self) -> None:
        self.last_heartbeat = self.clock()

    def processed(self) -> None:
        if self.uncommitted_since is None:
            self.uncommitted_since = self.clock()

    def committed(self) -> None:
        now = self.clock()
        self.last_commit = now
        self.last_broker_answer = now
        self.uncommitted_since = None

    def broker_answered(self) -> None:
        self.last_broker_answer = self.clock()

    def outputs_lost(self, reason: str) -> None:
        self.failure = reason

    def ready(self) -> tuple[bool, str]:
        if self.failure is not None:
            return False, f"outputs not stored, stopping: {self.failure}"
        if not self.model_loaded:
            return False, "no model loaded"
        if self.partitions_assigned == 0:
            return False, "no partitions assigned"
        if self.topics_missing:
            return False, f"topics missing on the broker: {', '.join(self.topics_missing)}"
        now = self.clock()
        silent = now - self.last_broker_answer
        if silent > self.ready_timeout_seconds:
            return False, f"no answer from the broker for {silent:.0f} s"
        if self.uncommitted_since is not None and now - self.uncommitted_since > self.ready_timeout_seconds:
            return False, f"processed events not committed for {now - self.uncommitted_since:.0f} s"
        return True, "ok"

    def live(self) -> tuple[bool, str]:
        now = self.clock()
        if now - self.last_heartbeat > self.stall_seconds:
            return False, f"event loop heartbeat {now - self.last_heartbeat:.0f} s ago"
        if self.uncommitted_since is not None and now - self.uncommitted_since > self.stall_seconds:
            return False, f"processed events not committed for {now - self.uncommitted_since:.0f} s"
        return True, "ok"
