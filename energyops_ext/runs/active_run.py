"""What the engine holds of each run it runs here: ``ActiveRun`` (its log, its process once
spawned, the kill or stop asked of it, the signals of its log writer), and ``status_of``, the
final status its process's outcome means."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .logs import RunLog
from .run_errors import RunErrors
from .runner import RunProcess


@dataclass
class ActiveRun:
    """A run of this engine, from its claim to its final status. ``kill`` and ``stop`` reach
    the process once it is spawned; asked before, they are kept for it."""

    run_id: int
    log: RunLog
    process: RunProcess | None = None
    kill_reason: str | None = None
    killed_by: str | None = None
    task: asyncio.Task[None] | None = None
    flush_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    errors: RunErrors = field(default_factory=RunErrors)
    title: str = ""
    flushing: bool = True
    flushing_ends: asyncio.Event = field(default_factory=asyncio.Event)  # wakes the flush loop
    stopped_by: str | None = None  # who asked the model to stop and keep its best
    stopped_early: bool = False  # it exited 0 after the stop

    def kill(self, reason: str, user: str | None) -> None:
        if self.kill_reason is None:
            self.kill_reason, self.killed_by = reason, user
        if self.process is not None:
            self.process.request_kill()

    def stop(self, user: str) -> None:
        if self.stopped_by is None:
            self.stopped_by = user
        if self.process is not None:
            self.process.request_stop()


def status_of(
    reason: str, exit_code: int | None, active: ActiveRun, timeout_s: int
) -> tuple[str, str | None]:
    """The status and reason a run ends with, from how its process ended (``Outcome.reason``)
    and its exit code."""
    if reason == "killed":
        return "killed", active.kill_reason
    if reason == "timeout":
        return "timed_out", f"timed out after {timeout_s} s"
    if reason == "stopped":
        if exit_code == 0:
            return "succeeded", f"stopped early by {active.stopped_by}; the model kept its best"
        return "killed", (
            f"stopped by {active.stopped_by}; the model did not stop cleanly in time "
            f"(exit code {exit_code})"
        )
    if exit_code == 0:
        return "succeeded", None
    return "failed", f"exit code {exit_code}"
