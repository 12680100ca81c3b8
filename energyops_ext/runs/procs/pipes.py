"""Reading a run's stdout and stderr in chunks, split into lines, until both pipes close.

Two readers with one behaviour: one thread and a selector (pipes can be selected on Linux and
macOS), or one blocking thread per pipe (Windows cannot select a pipe). Both stop at the drain
deadline even if a leftover process still holds a pipe open.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

from ..line_splitter import LineSplitter
from .base import LineSink

CHUNK_BYTES = 64 * 1024
SELECT_S = 0.1
PIPE_BYTES = 1024 * 1024  # Linux's default limit for an unprivileged F_SETPIPE_SZ
# After the pipes ran dry, let output gather a moment: a loud run then costs a few hundred
# reads (and lists of lines, and events) a second instead of one per write of the child, and
# the child does not block on a full pipe meanwhile.
READ_PAUSE_S = 0.002


def _pipes(proc: subprocess.Popen[bytes]) -> tuple[tuple[IO[bytes], str], ...]:
    assert proc.stdout is not None and proc.stderr is not None
    return ((proc.stdout, "stdout"), (proc.stderr, "stderr"))


def _widen(pipe: IO[bytes]) -> None:
    """A 1 MiB pipe on Linux, so a loud child rarely waits on a full pipe during the pause."""
    if sys.platform == "linux":
        import fcntl

        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class SelectorPipeReader:
    """One thread selecting over both non-blocking pipes."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        sink: LineSink,
        drain_deadline: Callable[[], float | None],
    ) -> None:
        self.proc = proc
        self.sink = sink
        self.drain_deadline = drain_deadline
        self._thread = threading.Thread(
            target=self._read, name=f"energyops-run-{proc.pid}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _read(self) -> None:
        if sys.platform == "win32":
            raise OSError("pipes cannot be selected on Windows: use ThreadedPipeReader")
        pipes = _pipes(self.proc)
        splitters = {"stdout": LineSplitter(), "stderr": LineSplitter()}
        with selectors.DefaultSelector() as selector:
            for pipe, stream in pipes:
                os.set_blocking(pipe.fileno(), False)
                _widen(pipe)
                selector.register(pipe.fileno(), selectors.EVENT_READ, stream)
            open_pipes = 2
            while open_pipes:
                deadline = self.drain_deadline()
                if deadline is not None and time.monotonic() > deadline:
                    break
                read = 0
                for key, _ in selector.select(timeout=SELECT_S):
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
                if 0 < read < CHUNK_BYTES:
                    time.sleep(READ_PAUSE_S)
        for stream, splitter in splitters.items():
            self.sink.add(stream, splitter.finish())
        for pipe, _ in pipes:
            pipe.close()


class ThreadedPipeReader:
    """One thread per pipe in blocking reads. ``join`` waits for both until the drain
    deadline; a thread still blocked then (a survivor holds its pipe) is left to end with
    that pipe, and what it reads later is dropped: the run's log is final by then."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        sink: LineSink,
        drain_deadline: Callable[[], float | None],
    ) -> None:
        self.sink = sink
        self.drain_deadline = drain_deadline
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [
            threading.Thread(
                target=self._read,
                args=(pipe, stream),
                name=f"energyops-run-{proc.pid}-{stream}",
                daemon=True,
            )
            for pipe, stream in _pipes(proc)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        deadline = self.drain_deadline()
        if deadline is not None:
            end = min(end, deadline)
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        with self._lock:
            self._closed = True

    def _add(self, stream: str, texts: list[str]) -> None:
        if not texts:
            return
        with self._lock:
            if not self._closed:
                self.sink.add(stream, texts)

    def _read(self, pipe: IO[bytes], stream: str) -> None:
        splitter = LineSplitter()
        try:
            with contextlib.suppress(OSError):  # a broken pipe ends it; what was read is kept
                while data := os.read(pipe.fileno(), CHUNK_BYTES):
                    self._add(stream, splitter.feed(data))
        finally:
            self._add(stream, splitter.finish())
            pipe.close()
