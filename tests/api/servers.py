"""A live ``jupyter server`` with EnergyOps in a subprocess, on a free port, with a token.

Used where a test needs what the in-process server of pytest-jupyter cannot give: a captured
server log, another client library (schemathesis, requests, websocket-client), many servers
of different configuration in one module, or load from several connections.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.identity import User
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from energyops_ext.auth import EnergyOpsAuthorizer

from ..conftest import PG_ADMIN_URL
from .conftest import OPERATOR_TOKEN

REPO = Path(__file__).resolve().parents[2]
API = "/energyops/api"
# Server extensions installed beside EnergyOps that its API does not need (faster start).
OTHERS = (
    "jupyterlab",
    "jupyter_lsp",
    "jupyter_server_terminals",
    "notebook",
    "notebook_shim",
    "voila.server_extension",
)


class DenyWriteExecuteAuthorizer(EnergyOpsAuthorizer):
    """Everyone may read; nobody may write or execute (the authorizer row of the matrix)."""

    denied_actions = frozenset({"write", "execute"})

    def is_authorized(self, handler: Any, user: User, action: str, resource: str) -> bool:
        if action in self.denied_actions:
            return False
        return super().is_authorized(handler, user, action, resource)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """One ``jupyter server`` process; ``url(path)`` builds API URLs, ``headers`` carries the
    full user's token."""

    def __init__(
        self,
        workdir: Path,
        db_url: str,
        *,
        energyops: dict[str, Any] | None = None,
        authorizer: type[Authorizer] | None = None,
        server_app: dict[str, Any] | None = None,
        hostname: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.db_url = db_url
        # a host name of its own (``unshare --uts``): the server acts as if on another machine
        self.hostname = hostname
        self.token = secrets.token_hex(24)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        authorizer = authorizer or EnergyOpsAuthorizer
        self.config = {
            "ServerApp": {
                "jpserver_extensions": {"energyops_ext": True, **{x: False for x in OTHERS}},
                "identity_provider_class": "energyops_ext.auth.EnergyOpsIdentityProvider",
                "authorizer_class": f"{authorizer.__module__}.{authorizer.__qualname__}",
                "ip": "127.0.0.1",
                "port": self.port,
                "port_retries": 0,
                "open_browser": False,
                "root_dir": str(workdir),
                "allow_root": True,
                **(server_app or {}),
            },
            "IdentityProvider": {"token": self.token},
            "EnergyOpsIdentityProvider": {"operator_token": OPERATOR_TOKEN, "user_name": "quant"},
            "EnergyOps": {"data_dir": str(workdir / "data"), "db_url": db_url, **(energyops or {})},
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def url(self, path: str = "") -> str:
        return f"{self.base}{API}/{path.lstrip('/')}"

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def start(self, timeout: float = 60.0) -> LiveServer:
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> None:
        """Start the process without waiting for it to answer (start several at once)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_dir = self.workdir / "jupyter-config"
        config_dir.mkdir(exist_ok=True)
        config_file = config_dir / "jupyter_server_config.json"
        config_file.write_text(json.dumps(self.config))
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(config_dir),
            "JUPYTER_RUNTIME_DIR": str(self.workdir / "runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        env.pop("ENERGYOPS_TOKEN", None)
        argv = [sys.executable, "-m", "jupyter_server", f"--config={config_file}"]
        if self.hostname is not None:
            argv = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname]
            argv += [sys.executable, "-m", "jupyter_server", f"--config={config_file}"]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            argv,
            cwd=self.workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        self._wait_ready(timeout)

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to stop anything."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter server exited:\n{self.log_text()[-4000:]}")
            try:
                response = requests.get(self.url("health"), headers=self.headers, timeout=2)
                if response.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"jupyter server did not answer in {timeout}s:\n{self.log_text()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (the server migrates it at start), dropped after."""
    admin_url = make_url(PG_ADMIN_URL)
    if admin_url.drivername in ("postgresql", "postgres"):
        admin_url = admin_url.set(drivername="postgresql+psycopg")
    name = f"energyops_live_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def live_server(
    workdir: Path,
    backend: str,
    *,
    energyops: dict[str, Any] | None = None,
    authorizer: type[Authorizer] | None = None,
    server_app: dict[str, Any] | None = None,
) -> Iterator[LiveServer]:
    """A started server on ``backend`` ("sqlite" or "postgresql"), stopped and cleaned after."""
    with _database(workdir, backend) as db_url:
        server = LiveServer(
            workdir, db_url, energyops=energyops, authorizer=authorizer, server_app=server_app
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextmanager
def _database(workdir: Path, backend: str) -> Iterator[str]:
    if backend == "sqlite":
        workdir.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{workdir / 'energyops.db'}"
        return
    with postgres_database() as url:
        yield url
