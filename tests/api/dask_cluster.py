"""A real Dask cluster on loopback: a ``dask scheduler`` and ``dask worker`` processes
(``--nthreads 1 --no-dashboard``, no nanny, so a SIGKILL kills the worker for real)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distributed import Client as _Client

from .servers import free_port

DASK = str(Path(sys.executable).parent / "dask")
Client: Any = _Client  # untyped


class DaskCluster:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / f"{name}.log").open("ab")
        env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        return process

    def start_scheduler(self) -> None:
        self.scheduler = self._spawn(
            "scheduler",
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
        )

    def start_worker(self, name: str, resources: str | None = None) -> None:
        """``resources``: what the worker declares, e.g. ``"DMO=1"`` (``--resources``)."""
        more = ["--resources", resources] if resources else []
        self.workers[name] = self._spawn(
            name,
            [
                DASK,
                "worker",
                self.address,
                "--name",
                name,
                "--nthreads",
                "1",
                "--no-dashboard",
                "--no-nanny",
                "--host",
                "127.0.0.1",
                *more,
            ],
        )

    def wait_workers(self, count: int, timeout: float = 60) -> dict[str, str]:
        """Names → addresses once ``count`` workers are connected."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with Client(self.address, timeout=5) as client:
                    workers = client.scheduler_info()["workers"]
                    if len(workers) >= count:
                        return {str(w["name"]): str(addr) for addr, w in workers.items()}
            except OSError:
                pass
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.2)

    def task_states(self) -> dict[str, str]:
        """Every task the scheduler holds: key → state (``no-worker``, ``processing``, ...)."""

        def states(dask_scheduler: Any) -> dict[str, str]:
            return {str(key): str(task.state) for key, task in dask_scheduler.tasks.items()}

        with Client(self.address, timeout=5) as client:
            found: dict[str, str] = client.run_on_scheduler(states)
            return found

    def executed(self, address: str) -> int:
        """How many tasks the worker at ``address`` has executed since it started."""

        def count(dask_worker: Any) -> int:
            return int(dask_worker.state.executed_count)

        with Client(self.address, timeout=5) as client:
            return int(client.run(count, workers=[address])[address])

    def kill_worker(self, name: str) -> None:
        process = self.workers.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.workdir.glob("*.log"))

    def stop(self) -> None:
        for process in [*self.workers.values(), self.scheduler]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in [*self.workers.values(), self.scheduler]:
            if process is None:
                continue
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        self.workers.clear()
        self.scheduler = None


@contextmanager
def dask_cluster(workdir: Path, workers: int = 2) -> Iterator[tuple[DaskCluster, dict[str, str]]]:
    cluster = DaskCluster(workdir)
    try:
        cluster.start_scheduler()
        for i in range(workers):
            cluster.start_worker(f"w{i + 1}")
        yield cluster, cluster.wait_workers(workers)
    finally:
        cluster.stop()
