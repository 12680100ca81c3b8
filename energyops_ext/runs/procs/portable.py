"""The portable backend (macOS, Windows, and Linux when asked): psutil for identity and the
process tree, a polling thread for the exit, one reader thread per pipe.

A process's start time is its creation time in milliseconds since the epoch, as psutil
reads it; every signal goes through a psutil ``Process`` that has just been checked against
the start time found, so a recycled pid is never signalled. A run's processes are its
descendants while its main process lives, its process group (POSIX), and every process whose
environment holds the run's marker, which also catches a child that called ``setsid()``
and was re-parented. On Windows the run's tree is also held by a Job Object.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import psutil

from .base import (
    POLL_S,
    Action,
    Containment,
    LineSink,
    PipeReader,
    ProcessBackend,
    ProcRef,
    parse_marker,
)
from .pipes import ThreadedPipeReader

WINDOWS = sys.platform == "win32"
GONE = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def start_of(proc: psutil.Process) -> int:
    """A process's start time as this backend records it (ms since the epoch)."""
    return round(proc.create_time() * 1000)


@lru_cache(maxsize=1)
def _boot_id() -> str:
    # No boot id is exposed on macOS and Windows: the boot time names the boot. Servers on
    # one machine that read it a second apart take each other for other machines, which
    # is the safe side: they then wait for the lease instead of checking pids.
    return f"boot-{round(psutil.boot_time())}"


def _has_marker(proc: psutil.Process, name: str, value: str) -> bool:
    try:
        return proc.environ().get(name) == value
    except (psutil.Error, OSError):
        return False  # gone, a zombie, or not ours to read


def _in_group(proc: psutil.Process, pgid: int) -> bool:
    if sys.platform == "win32":  # no process groups: the Job Object holds the tree
        return False
    try:
        return os.getpgid(proc.pid) == pgid
    except OSError:
        return False


class PortableBackend(ProcessBackend):
    name = "portable"

    def boot_id(self) -> str:
        return _boot_id()

    def start_time(self, pid: int) -> int | None:
        try:
            return start_of(psutil.Process(pid))
        except psutil.Error:
            return None

    def is_alive(self, pid: int, expected_start: int | None = None) -> bool:
        try:
            proc = psutil.Process(pid)
            if proc.status() in GONE:
                return False
            return expected_start is None or start_of(proc) == expected_start
        except psutil.AccessDenied:
            return True  # it exists; not ours to read, so not ours to declare dead either
        except psutil.Error:
            return False

    def run_processes(self, root_pid: int | None, marker: bytes) -> set[ProcRef]:
        name, value = parse_marker(marker)
        me = os.getpid()
        found: dict[int, psutil.Process] = {}
        for proc in _fresh_processes():
            if proc.pid == me:
                continue
            in_group = root_pid is not None and _in_group(proc, root_pid)
            if in_group or _has_marker(proc, name, value):
                found[proc.pid] = proc
        if root_pid is not None:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(root_pid)
                found[root_pid] = root
                found.update((child.pid, child) for child in root.children(recursive=True))
        return {ref for ref in map(_ref, found.values()) if ref is not None}

    def signal(self, procs: set[ProcRef], action: Action) -> None:
        for ref in procs:
            try:
                proc = psutil.Process(ref.pid)
                if ref.start_time is not None and start_of(proc) != ref.start_time:
                    continue  # the pid is another process's now
                _send(proc, action)
            except psutil.Error:
                continue  # gone meanwhile, or not ours

    def kill_group(self, root_pid: int) -> None:
        """Nothing: a group is signalled member by member (``run_processes`` finds them),
        each checked against its start time; ``killpg`` could reach a reused group id."""

    def spawn_options(self) -> dict[str, Any]:
        if sys.platform == "win32":
            return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        return {"start_new_session": True}

    def contain(self, proc: subprocess.Popen[bytes]) -> Containment | None:
        if not WINDOWS:
            return None
        from .winjob import JobObject

        job = JobObject()
        try:
            # the child is Python, which runs no code of the run's before it is assigned
            job.assign(proc.pid)
        except OSError:
            job.close()
            raise
        return job

    def watch_exit(
        self,
        loop: asyncio.AbstractEventLoop,
        proc: subprocess.Popen[bytes],
        on_exit: Callable[[], None],
    ) -> Callable[[], None]:
        cancelled = threading.Event()
        watched = None if WINDOWS else psutil.Process(proc.pid)

        def exited() -> bool:
            if watched is None:  # Windows: the Popen holds the handle, the pid stays reserved
                return proc.poll() is not None
            try:  # a zombie is exited and not reaped: its pid stays reserved until the wait
                return watched.status() in GONE
            except psutil.NoSuchProcess:
                return True

        def watch() -> None:
            while not cancelled.wait(POLL_S):
                if exited():
                    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                        loop.call_soon_threadsafe(on_exit)
                    return

        threading.Thread(target=watch, name=f"energyops-exit-{proc.pid}", daemon=True).start()
        return cancelled.set

    def pipe_reader(
        self,
        proc: subprocess.Popen[bytes],
        sink: LineSink,
        drain_deadline: Callable[[], float | None],
    ) -> PipeReader:
        return ThreadedPipeReader(proc, sink, drain_deadline)


def _fresh_processes() -> list[psutil.Process]:
    """Every process now, each read afresh (``process_iter`` keeps instances from earlier
    calls, whose start time would be stale for a pid recycled in between)."""
    found = []
    for pid in psutil.pids():
        with contextlib.suppress(psutil.Error):
            found.append(psutil.Process(pid))
    return found


def _ref(proc: psutil.Process) -> ProcRef | None:
    """A live process as found, with its start time; None when gone or a zombie."""
    try:
        if proc.status() in GONE:
            return None
        return ProcRef(proc.pid, start_of(proc))
    except psutil.AccessDenied:
        return ProcRef(proc.pid, None)
    except psutil.Error:
        return None


def _send(proc: psutil.Process, action: Action) -> None:
    """``action`` to one process; psutil checks once more that its pid was not reused."""
    if sys.platform == "win32":
        # No SIGINT reaches a process without a console: a stop's first step waits out its
        # grace, then the run is terminated (TerminateProcess) like a kill.
        if action != "interrupt":
            proc.kill()
        return
    sig = {"interrupt": signal.SIGINT, "terminate": signal.SIGTERM, "kill": signal.SIGKILL}
    proc.send_signal(sig[action])
