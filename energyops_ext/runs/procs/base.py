"""What the run lifecycle and recovery need of the operating system, as one interface.

A backend identifies processes (boot id, pid + start time), finds every process of a run
(its group, its descendants, whatever carries its environment marker), signals them without
ever touching a recycled pid, watches a run's exit and reads its pipes.
"""

from __future__ import annotations

import asyncio
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

# What a run's processes are asked to do: interrupt (SIGINT: stop and keep the best),
# terminate (SIGTERM) or kill (SIGKILL; on Windows every step but interrupt is TerminateProcess).
Action = Literal["interrupt", "terminate", "kill"]
POLL_S = 0.02


class LineSink(Protocol):
    def add(self, stream: str, texts: list[str]) -> None: ...


class PipeReader(Protocol):
    """Reads a run's stdout and stderr into a sink until both close (or ``join`` gives up)."""

    def start(self) -> None: ...

    def join(self, timeout_s: float) -> None: ...


class Containment(Protocol):
    """Something that holds a run's whole tree and can end it at once (a Windows Job Object)."""

    def terminate(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ProcRef:
    """One process as found: its pid and its start time (in the backend's unit, None when
    unreadable). A signal goes to the pid only while it still has that start time."""

    pid: int
    start_time: int | None


def parse_marker(marker: bytes) -> tuple[str, str]:
    """``b"NAME=value\\0"`` (as it appears in /proc/<pid>/environ) → ``("NAME", "value")``."""
    name, _, value = marker.decode().rstrip("\0").partition("=")
    return name, value


class ProcessBackend(ABC):
    """One way of doing the process work; chosen once at start (``process_backend``)."""

    name: str

    @abstractmethod
    def boot_id(self) -> str:
        """What changes at every boot of this machine (servers and runs record it)."""

    @abstractmethod
    def start_time(self, pid: int) -> int | None:
        """When ``pid`` started, in this backend's unit; None when it is gone."""

    @abstractmethod
    def is_alive(self, pid: int, expected_start: int | None = None) -> bool:
        """The process exists, is not a zombie, and (if given) started at ``expected_start``."""

    @abstractmethod
    def run_processes(self, root_pid: int | None, marker: bytes) -> set[ProcRef]:
        """Every live process of a run: the root's group and descendants, and every process
        carrying the run's environment marker (which survives a setsid())."""

    @abstractmethod
    def signal(self, procs: set[ProcRef], action: Action) -> None:
        """Ask each process to ``action``; a process that is gone, or whose pid now names
        another process (another start time), is skipped."""

    @abstractmethod
    def kill_group(self, root_pid: int) -> None:
        """SIGKILL the root's whole process group at once, where that is safe."""

    @abstractmethod
    def spawn_options(self) -> dict[str, Any]:
        """``subprocess.Popen`` keywords that give a run its own session / process group."""

    def contain(self, proc: subprocess.Popen[bytes]) -> Containment | None:
        """Put a just-spawned run into something that ends its whole tree (Windows)."""
        return None

    @abstractmethod
    def watch_exit(
        self,
        loop: asyncio.AbstractEventLoop,
        proc: subprocess.Popen[bytes],
        on_exit: Callable[[], None],
    ) -> Callable[[], None]:
        """Call ``on_exit`` on ``loop`` once the run's main process has exited, without
        reaping it (its pid stays reserved until the runner waits). Returns the cancel."""

    @abstractmethod
    def pipe_reader(
        self,
        proc: subprocess.Popen[bytes],
        sink: LineSink,
        drain_deadline: Callable[[], float | None],
    ) -> PipeReader:
        """The reader of ``proc``'s two pipes; it stops at ``drain_deadline()`` once set."""
