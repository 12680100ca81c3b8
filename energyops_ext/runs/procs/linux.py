"""The Linux backend: /proc for identity and the process tree, a pidfd for the exit, signals
by pid after a start-time check, the process group for the final SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from .. import registry
from .base import Action, LineSink, PipeReader, ProcessBackend, ProcRef
from .pipes import SelectorPipeReader

assert sys.platform == "linux"  # imported only where ``linux_unavailable()`` is None

SIGNALS: dict[Action, int] = {
    "interrupt": signal.SIGINT,
    "terminate": signal.SIGTERM,
    "kill": signal.SIGKILL,
}


class LinuxBackend(ProcessBackend):
    name = "linux"

    def boot_id(self) -> str:
        return registry.boot_id()

    def start_time(self, pid: int) -> int | None:
        return registry.start_time(pid)

    def is_alive(self, pid: int, expected_start: int | None = None) -> bool:
        return registry.is_alive(pid, expected_start)

    def run_processes(self, root_pid: int | None, marker: bytes) -> set[ProcRef]:
        return {
            ProcRef(pid, registry.start_time(pid))
            for pid in registry.run_processes(root_pid, marker)
        }

    def signal(self, procs: set[ProcRef], action: Action) -> None:
        sig = SIGNALS[action]
        for proc in procs:
            if proc.start_time is not None and registry.start_time(proc.pid) != proc.start_time:
                continue  # gone, or the pid is another process's now
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, sig)

    def kill_group(self, root_pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(root_pid, signal.SIGKILL)

    def spawn_options(self) -> dict[str, Any]:
        return {"start_new_session": True}

    def watch_exit(
        self,
        loop: asyncio.AbstractEventLoop,
        proc: subprocess.Popen[bytes],
        on_exit: Callable[[], None],
    ) -> Callable[[], None]:
        pidfd = os.pidfd_open(proc.pid)
        loop.add_reader(pidfd, on_exit)

        def cancel() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)

        return cancel

    def pipe_reader(
        self,
        proc: subprocess.Popen[bytes],
        sink: LineSink,
        drain_deadline: Callable[[], float | None],
    ) -> PipeReader:
        return SelectorPipeReader(proc, sink, drain_deadline)
