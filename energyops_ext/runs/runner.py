"""The lifecycle of one run's process: spawn, read both pipes, watch the exit, kill the tree.

The exit of the main process ends the run even when a leftover grandchild still holds the pipes
(asyncio's ``wait()`` would wait for the pipes): the exit is watched through a pidfd, then every
process of the run is killed, then the pipes are drained for a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import registry
from .logs import LineSplitter

CHUNK_BYTES = 64 * 1024
PIPE_BYTES = 1024 * 1024  # Linux's default limit for an unprivileged F_SETPIPE_SZ
# After the pipes ran dry, let output gather a moment: a loud run then costs a few hundred
# reads (and lists of lines, and events) a second instead of one per write of the child, and
# the child does not block on a full pipe meanwhile.
READ_PAUSE_S = 0.002
DRAIN_S = 2.0
POLL_S = 0.02


class LineSink(Protocol):
    def add(self, stream: str, texts: list[str]) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """How a process ended: ``reason`` is exit, stopped (it ended after a stop request; its
    exit code says whether it stopped cleanly), killed or timeout."""

    reason: str
    exit_code: int | None
    runtime_ms: int


def spare_bwrap(pid: int) -> bool:
    """bubblewrap's own processes get no SIGTERM: they leave when the script leaves, and
    killing them first would SIGKILL the script without its grace period."""
    return registry.command_name(pid) == "bwrap"


def _signal(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def signal_tree(
    root_pid: int | None, marker: bytes, sig: int, spare: Callable[[int], bool] | None = None
) -> int:
    """Send ``sig`` to every process of a run (as ``terminate_tree`` finds them); how many."""
    found = {p for p in registry.run_processes(root_pid, marker) if spare is None or not spare(p)}
    _signal(found, sig)
    return len(found)


def terminate_tree(
    root_pid: int | None,
    marker: bytes,
    grace_s: float,
    spare: Callable[[int], bool] | None = None,
    give_up_s: float = 5.0,
) -> int:
    """SIGTERM every process of a run (its group, its descendants, whatever carries its
    environment marker), SIGKILL what is left after ``grace_s``. Blocking. Returns how many
    processes were found at first."""
    found = registry.run_processes(root_pid, marker)
    if not found:
        return 0
    if grace_s > 0:
        _signal({p for p in found if spare is None or not spare(p)}, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            time.sleep(POLL_S)
            if not registry.run_processes(root_pid, marker):
                return len(found)
    deadline = time.monotonic() + give_up_s
    while time.monotonic() < deadline:
        remaining = registry.run_processes(root_pid, marker)
        if not remaining:
            break
        _signal(remaining, signal.SIGKILL)
        if root_pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(root_pid, signal.SIGKILL)
        time.sleep(POLL_S)
    return len(found)


class RunProcess:
    """One spawned run. ``start`` (blocking) spawns it; ``finish`` awaits its end."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        marker: bytes,
        sink: LineSink,
        *,
        kill_grace_s: float,
        spare: Callable[[int], bool] | None = None,
    ) -> None:
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.marker = marker
        self.sink = sink
        self.kill_grace_s = kill_grace_s
        self.spare = spare
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_time: int | None = None
        self._started = 0.0
        self._kill = asyncio.Event()
        self._stop = asyncio.Event()
        self._drain_deadline: float | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        """Spawn in a new session with both pipes; start the pipe reader. Blocking."""
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            close_fds=True,
        )
        self._started = time.monotonic()
        self.start_time = registry.start_time(self.proc.pid)
        self._reader = threading.Thread(
            target=self._read_pipes, name=f"energyops-run-{self.proc.pid}", daemon=True
        )
        self._reader.start()

    def request_kill(self) -> None:
        self._kill.set()

    def request_stop(self) -> None:
        """Ask the model to stop and keep its best: SIGINT, then SIGTERM after the grace,
        then SIGKILL after another grace (``finish`` runs the steps)."""
        self._stop.set()

    async def finish(self, timeout_s: float) -> Outcome:
        """Wait for exit, kill or timeout; then kill the tree, reap, drain. Never hangs on a
        grandchild holding the pipes."""
        proc = self.proc
        assert proc is not None
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()
        pidfd = os.pidfd_open(proc.pid)

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, on_exit)
        kill: asyncio.Future[Any] = asyncio.ensure_future(self._kill.wait())
        stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        try:
            remaining = max(0.0, timeout_s - (time.monotonic() - self._started))
            watched: set[asyncio.Future[Any]] = {exited, kill, stop}
            await asyncio.wait(watched, timeout=remaining, return_when="FIRST_COMPLETED")
            reason = "exit" if exited.done() else "killed" if kill.done() else "timeout"
            if stop.done() and not exited.done() and not kill.done():
                reason = await self._stop_steps(proc.pid, exited, kill, timeout_s)
            runtime_ms = round((time.monotonic() - self._started) * 1000)
            grace = 0.0 if reason in ("exit", "stopped") else self.kill_grace_s
            await asyncio.to_thread(terminate_tree, proc.pid, self.marker, grace, self.spare)
            if reason != "exit":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), 5.0)
                runtime_ms = round((time.monotonic() - self._started) * 1000)
        finally:
            kill.cancel()
            stop.cancel()
            loop.remove_reader(pidfd)
            os.close(pidfd)
        exit_code = await asyncio.to_thread(proc.wait)
        self._drain_deadline = time.monotonic() + DRAIN_S
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, DRAIN_S + 1.0)
        return Outcome(reason, exit_code, runtime_ms)

    async def _stop_steps(
        self, pid: int, exited: asyncio.Future[None], kill: asyncio.Future[Any], timeout_s: float
    ) -> str:
        """SIGINT, then SIGTERM: each gets ``kill_grace_s`` to end the run. "stopped" once
        the process exits (its exit code tells how), else what came first (kill, timeout),
        else "stopped" after the SIGKILL that ``finish`` sends next."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            await asyncio.to_thread(signal_tree, pid, self.marker, sig, self.spare)
            left = timeout_s - (time.monotonic() - self._started)
            await asyncio.wait(
                {exited, kill},
                timeout=max(0.0, min(self.kill_grace_s, left)),
                return_when="FIRST_COMPLETED",
            )
            if exited.done():
                return "stopped"
            if kill.done():
                return "killed"
            if left <= self.kill_grace_s:
                return "timeout"
        await asyncio.to_thread(signal_tree, pid, self.marker, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), 5.0)
        return "stopped"

    def _read_pipes(self) -> None:
        """Read stdout and stderr in chunks until both close (or the drain deadline)."""
        proc = self.proc
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        splitters = {"stdout": LineSplitter(), "stderr": LineSplitter()}
        with selectors.DefaultSelector() as selector:
            for pipe, stream in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
                os.set_blocking(pipe.fileno(), False)
                with contextlib.suppress(OSError):
                    fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
                selector.register(pipe.fileno(), selectors.EVENT_READ, stream)
            open_pipes = 2
            while open_pipes:
                deadline = self._drain_deadline
                if deadline is not None and time.monotonic() > deadline:
                    break
                read = 0
                for key, _ in selector.select(timeout=0.1):
                    stream = key.data
                    try:
                        data = os.read(key.fd, CHUNK_BYTES)
                    except BlockingIOError:
                        continue
                    if data:
                        read = max(read, len(data))
                        self.sink.add(stream, splitters[stream].feed(data))
                    else:
                        selector.unregister(key.fd)
                        open_pipes -= 1
                if 0 < read < CHUNK_BYTES and READ_PAUSE_S:
                    time.sleep(READ_PAUSE_S)
        for stream, splitter in splitters.items():
            self.sink.add(stream, splitter.finish())
        proc.stdout.close()
        proc.stderr.close()
