"""A real EnergyOps stack for end-to-end tests: ``jupyter server`` with the extension on a fresh
SQLite data directory seeded with ``jupyter energyops demo-data``, and a standalone Voila on the
dashboards started the way ``jupyter energyops up`` starts it (operator token, own token)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(
    url: str,
    headers: dict[str, str],
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float = 90.0,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=3):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout} s\n{log.read_text()[-4000:]}")


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


class Stack:
    def __init__(self, workdir: Path, days: int = 3, root_dir: Path = REPO) -> None:
        """``root_dir``: the folder Lab serves (this checkout unless a test gives a copy,
        where Lab may save a notebook it ran)."""
        self.workdir = workdir
        self.days = days
        self.root_dir = root_dir
        self.data_dir = workdir / "data"
        self.token = secrets.token_hex(24)
        self.operator_token = secrets.token_hex(24)
        self.voila_token = secrets.token_hex(24)
        self.port = free_port()
        self.voila_port = free_port()
        self.server: subprocess.Popen[bytes] | None = None
        self.voila: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def voila_url(self) -> str:
        return f"http://127.0.0.1:{self.voila_port}/"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["ENERGYOPS_DATA_DIR"] = str(self.data_dir)
        # the servers and kernels import this checkout, whatever another install points at
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env.pop("ENERGYOPS_DB_URL", None)
        return env

    def kernel_env(self, token: str | None = None) -> dict[str, str]:
        env = self.env()
        env["ENERGYOPS_URL"] = self.url
        env["ENERGYOPS_TOKEN"] = token or self.token
        return env

    def start(self, voila: bool = True) -> Stack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "energyops_ext.cli", "demo-data", f"--days={self.days}"],
            env=self.env(),
            check=True,
            capture_output=True,
            timeout=180,
        )
        log = self.workdir / "server.log"
        self.server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--no-browser",
                "--allow-root",
                f"--port={self.port}",
                "--ServerApp.port_retries=0",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.root_dir={self.root_dir}",
                # a layout another test saved (a notebook open) would hide the launcher
                f"--LabApp.workspaces_dir={self.workdir / 'lab-workspaces'}",
                f"--IdentityProvider.token={self.token}",
                f"--EnergyOpsIdentityProvider.operator_token={self.operator_token}",
                "--ServerApp.identity_provider_class=energyops_ext.auth.EnergyOpsIdentityProvider",
                "--ServerApp.authorizer_class=energyops_ext.auth.EnergyOpsAuthorizer",
            ],
            env=self.env(),
            cwd=self.workdir,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_http(self.url + "energyops/api/health", self.headers(), self.server, log)
        if voila:
            self.start_voila()
        return self

    def start_voila(self, directory: Path | None = None) -> None:
        """Voila on ``directory`` (default: the repository's dashboards/)."""
        log = self.workdir / "voila.log"
        env = self.env()
        env["ENERGYOPS_URL"] = self.url
        env["ENERGYOPS_TOKEN"] = self.operator_token
        self.voila = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voila",
                str(directory or REPO / "dashboards"),
                "--no-browser",
                "--Voila.ip=127.0.0.1",
                f"--port={self.voila_port}",
                f"--token={self.voila_token}",
                "--Voila.tornado_settings={'websocket_max_message_size': 104857600}",
            ],
            env=env,
            cwd=REPO,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_http(f"{self.voila_url}?token={self.voila_token}", {}, self.voila, log)

    def stop(self) -> None:
        stop(self.voila)
        stop(self.server)

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"token {token or self.token}"}

    def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = self.headers(token)
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.url + "energyops/api/" + path, data=data, method=method, headers=headers
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            content = response.read()
        return json.loads(content) if content else None

    def page(self, notebook: str) -> str:
        return f"{self.voila_url}voila/render/{notebook}?token={self.voila_token}"
