"""Restart recovery with a real ``jupyter server`` process, and ``jupyter energyops cleanup``,
on the linux process backend and on the portable one (psutil, as on macOS and Windows)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from energyops_ext.runs import registry
from energyops_ext.runs.sandbox import RunPaths, process_marker

from .runs_helpers import live_pids, multipart

TOKEN = "recovery-test-token"
# A run with a child and a grandchild that left its session (setsid): all three outlive a
# SIGKILLed server, and the next server must find and kill each.
SLEEPER = """
import os, subprocess, sys, time
out = os.environ["ENERGYOPS_OUTPUT_DIR"] + "/pids"
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
escapee = os.fork()
if escapee == 0:
    os.setsid()
    time.sleep(120)
    os._exit(0)
with open(out, "w") as fh:
    fh.write(f"{os.getpid()} {child.pid} {escapee}")
print('up', flush=True)
time.sleep(120)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A ``jupyter server`` with the extension enabled by its installed config."""

    def __init__(self, data_dir: Path, db_url: str, process_backend: str) -> None:
        self.port = _free_port()
        self.data_dir = data_dir
        self.db_url = db_url
        self.process_backend = process_backend
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            "--allow-root",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={TOKEN}",
            f"--EnergyOps.data_dir={self.data_dir}",
            f"--EnergyOps.db_url={self.db_url}",
            "--EnergyOps.kill_grace_s=0.5",
            "--EnergyOps.heartbeat_s=0.2",
            "--EnergyOps.log_flush_interval_s=0.1",
            f"--EnergyOps.process_backend={self.process_backend}",
            f"--ServerApp.root_dir={self.data_dir}",
            # bubblewrap's --die-with-parent would end the run with the server; without it
            # the run's process survives a SIGKILLed server, the case recovery must handle
            "--EnergyOps.sandbox_mode=none",
        ]
        log = (self.data_dir / f"server-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.call("GET", "health")["status"]:
                    return
            except (OSError, urllib.error.URLError):
                pass
            assert self.proc.poll() is None, (self.data_dir / f"server-{self.port}.log").read_text()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)

    def call(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        content_type: str = "application/json",
    ) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/energyops/api/{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {TOKEN}", "Content-Type": content_type},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(params=["linux", "portable"])
def process_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server_factory(tmp_path: Path, db_url: str, process_backend: str) -> Iterator[Any]:
    started: list[Server] = []

    def make() -> Server:
        server = Server(tmp_path, db_url, process_backend)
        started.append(server)
        server.start()
        return server

    yield make
    for server in started:
        server.stop()


def _wait(server: Server, run_id: int, statuses: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        run: dict[str, Any] = server.call("GET", f"runs/{run_id}")
        if run["status"] in statuses:
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.05)


def test_a_killed_server_leaves_lost_runs_and_no_process(
    server_factory: Any, tmp_path: Path
) -> None:
    first = server_factory()
    payload, content_type = multipart({"kind": "test"}, ("test_sleeper.py", SLEEPER.encode()))
    script = first.call("POST", "scripts", payload, content_type)
    run = first.call("POST", f"scripts/{script['id']}/runs", b"{}")
    running = _wait(first, run["id"], {"running"})
    deadline = time.monotonic() + 10
    while first.call("GET", f"runs/{run['id']}")["line_count"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = first.call("GET", f"runs/{run['id']}")["pid"]
    assert running["host"] == registry.host_name() and pid
    paths = RunPaths.for_run(tmp_path / "sandbox", run["id"])
    marker = process_marker(paths)
    family = live_pids(paths.output_dir / "pids")
    assert pid == family[0] and len(family) == 3
    # (read from /proc, whatever the backend under test)
    assert registry.with_marker(marker) == set(family)
    health = first.call("GET", "health")
    assert health["sandbox"]["processes"] == first.process_backend

    first.kill()  # SIGKILL: no stop(), the run's processes survive the server (for now)
    assert live_pids(paths.output_dir / "pids") == family
    second = server_factory()
    lost = _wait(second, run["id"], {"lost"})  # recovery runs as the extension starts
    assert "was still running and was killed" in lost["status_reason"]
    assert registry.with_marker(marker) == set()
    assert live_pids(paths.output_dir / "pids") == []
    lines = second.call("GET", f"runs/{run['id']}/logs")["items"]
    assert lines[-1]["stream"] == "system" and lines[-1]["text"].startswith("run lost:")
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))

    again = second.call(
        "POST", f"scripts/{script['id']}/runs", json.dumps({"args": [], "timeout_s": 1}).encode()
    )
    assert _wait(second, again["id"], {"timed_out"})["status"] == "timed_out"

    # cleanup: the finished runs' directories are older than 0 s; an orphan log goes too
    orphan = tmp_path / "logs" / "999.log"
    orphan.write_text("x\n")
    env = {**os.environ, "ENERGYOPS_DATA_DIR": str(tmp_path), "ENERGYOPS_DB_URL": first.db_url}
    cli = [sys.executable, "-m", "energyops_ext.cli", "cleanup", "--max-age=0s"]
    dry = subprocess.run([*cli, "--dry-run"], env=env, capture_output=True, text=True, check=True)
    assert "would remove 0 upload temp files, 2 run directories, 1 orphan log files" in dry.stdout
    assert orphan.exists()
    done = subprocess.run(cli, env=env, capture_output=True, text=True, check=True)
    assert "removed 0 upload temp files, 2 run directories, 1 orphan log files" in done.stdout
    assert not orphan.exists() and not (tmp_path / "sandbox" / str(run["id"])).exists()
    assert (tmp_path / "logs" / f"{run['id']}.log").exists()
