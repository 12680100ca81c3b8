"""The lifecycle of one run's process: spawn, read both pipes, watch the exit, kill the tree.

The exit of the main process ends the run even when a leftover grandchild still holds the pipes
(asyncio's ``wait()`` would wait for the pipes): the exit is watched (a pidfd on Linux, a
polling thread elsewhere), then every process of the run is killed, then the pipes are drained
for a bounded time. What is done with the operating system is the process backend's
(``procs``): the same lifecycle runs on Linux, macOS and Windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import registry
from .procs import Action, Containment, LineSink, PipeReader, ProcessBackend, ProcRef

DRAIN_S = 2.0
POLL_S = 0.02


@dataclass(frozen=True)
class Outcome:
    """How a process ended: ``reason`` is exit, stopped (it ended after a stop request; its
    exit code says whether it stopped cleanly), killed or timeout."""

    reason: str
    exit_code: int | None
    runtime_ms: int


def signal_exit(code: int) -> int:
    """A wrapper's exit status for a child killed by signal N (128 + N) as the child's own
    (-N). Which of the two a kill of the whole tree yields depends on which process dies
    first; a script that calls ``exit(137)`` under the wrapper reads as killed too."""
    return 128 - code if 128 < code <= 128 + 64 else code


def spare_bwrap(pid: int) -> bool:
    """bubblewrap's own processes get no SIGTERM: they leave when the script leaves, and
    killing them first would SIGKILL the script without its grace period."""
    return registry.command_name(pid) == "bwrap"


def _spared(found: set[ProcRef], spare: Callable[[int], bool] | None) -> set[ProcRef]:
    return {p for p in found if spare is None or not spare(p.pid)}


def signal_tree(
    procs: ProcessBackend,
    root_pid: int | None,
    marker: bytes,
    action: Action,
    spare: Callable[[int], bool] | None = None,
) -> int:
    """Send ``action`` to every process of a run (as ``terminate_tree`` finds them); how
    many."""
    found = _spared(procs.run_processes(root_pid, marker), spare)
    procs.signal(found, action)
    return len(found)


def terminate_tree(
    procs: ProcessBackend,
    root_pid: int | None,
    marker: bytes,
    grace_s: float,
    spare: Callable[[int], bool] | None = None,
    give_up_s: float = 5.0,
    job: Containment | None = None,
) -> int:
    """SIGTERM every process of a run (its group, its descendants, whatever carries its
    environment marker), SIGKILL what is left after ``grace_s``; a run's ``job`` (Windows,
    where nothing is graceful) is terminated at once. Blocking. Returns how many processes
    were found at first."""
    found = procs.run_processes(root_pid, marker)
    if job is not None:
        job.terminate()
    if not found:
        return 0
    if grace_s > 0 and job is None:
        procs.signal(_spared(found, spare), "terminate")
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            time.sleep(POLL_S)
            if not procs.run_processes(root_pid, marker):
                return len(found)
    deadline = time.monotonic() + give_up_s
    while time.monotonic() < deadline:
        remaining = procs.run_processes(root_pid, marker)
        if not remaining:
            break
        procs.signal(remaining, "kill")
        if root_pid is not None:
            procs.kill_group(root_pid)
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
        procs: ProcessBackend,
        spare: Callable[[int], bool] | None = None,
        wrapped: bool = False,
    ) -> None:
        """``wrapped``: the process is a wrapper (bubblewrap) that exits with 128 + N when the
        script dies of signal N; the run's exit code is then -N, as without the wrapper."""
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.marker = marker
        self.sink = sink
        self.kill_grace_s = kill_grace_s
        self.spare = spare
        self.wrapped = wrapped
        self.procs = procs
        self.proc: subprocess.Popen[bytes] | None = None
        self.job: Containment | None = None
        self.start_time: int | None = None
        self._started = 0.0
        self._kill = asyncio.Event()
        self._stop = asyncio.Event()
        self._drain_deadline: float | None = None
        self._reader: PipeReader | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        """Spawn in a new session (POSIX) or process group and job (Windows) with both
        pipes; start the pipe reader. Blocking."""
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
            close_fds=True,
            **self.procs.spawn_options(),
        )
        self._started = time.monotonic()
        try:
            self.job = self.procs.contain(self.proc)
        except OSError:
            self.proc.kill()
            self.proc.wait()
            raise
        self.start_time = self.procs.start_time(self.proc.pid)
        self._reader = self.procs.pipe_reader(self.proc, self.sink, lambda: self._drain_deadline)
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

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        stop_watching = self.procs.watch_exit(loop, proc, on_exit)
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
            await asyncio.to_thread(
                terminate_tree, self.procs, proc.pid, self.marker, grace, self.spare, job=self.job
            )
            if reason != "exit":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), 5.0)
                runtime_ms = round((time.monotonic() - self._started) * 1000)
        finally:
            kill.cancel()
            stop.cancel()
            stop_watching()
        exit_code = await asyncio.to_thread(proc.wait)
        if self.wrapped:
            exit_code = signal_exit(exit_code)
        if self.job is not None:
            self.job.close()
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
        steps: tuple[Action, ...] = ("interrupt", "terminate")
        for action in steps:
            await asyncio.to_thread(signal_tree, self.procs, pid, self.marker, action, self.spare)
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
        await asyncio.to_thread(signal_tree, self.procs, pid, self.marker, "kill")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), 5.0)
        return "stopped"
