"""Readiness and liveness that tell the truth.

* ready: a model is serving and the consumer holds at least one partition.
* live: the event loop ran its heartbeat recently, and processed events are
  being committed (processed work older than the stall limit that is still
  uncommitted means commits stopped making progress).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Health:
    clock: Callable[[], float]
    stall_seconds: float = 30.0
    last_heartbeat: float = field(default=0.0)
    last_processed: float = field(default=0.0)
    last_commit: float = field(default=0.0)
    model_loaded: bool = False
    partitions_assigned: int = 0

    def __post_init__(self) -> None:
        now = self.clock()
        self.last_heartbeat = now
        self.last_commit = now

    def heartbeat(self) -> None:
        self.last_heartbeat = self.clock()

    def processed(self) -> None:
        self.last_processed = self.clock()

    def committed(self) -> None:
        self.last_commit = self.clock()

    def ready(self) -> tuple[bool, str]:
        if not self.model_loaded:
            return False, "no model loaded"
        if self.partitions_assigned == 0:
            return False, "no partitions assigned"
        return True, "ok"

    def live(self) -> tuple[bool, str]:
        now = self.clock()
        if now - self.last_heartbeat > self.stall_seconds:
            return False, f"event loop heartbeat {now - self.last_heartbeat:.0f} s ago"
        if self.last_processed > self.last_commit and now - self.last_commit > self.stall_seconds:
            return False, f"processed events not committed for {now - self.last_commit:.0f} s"
        return True, "ok"
