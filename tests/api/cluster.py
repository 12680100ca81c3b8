"""Several real EnergyOps servers on one database, for the tests of servers working together."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from .servers import LiveServer, _database
from .wsclient import EventsClient

FINISHED = {"succeeded", "failed", "killed", "timed_out", "lost"}
# fast enough for tests: a server silent for 3 s is dead
CLUSTER_SETTINGS: dict[str, Any] = {
    "max_concurrent_runs": 1,
    "heartbeat_s": 0.5,
    "lease_s": 3.0,
    "poll_s": 0.2,
    "kill_grace_s": 0.5,
}


class Node:
    """One server of a test cluster, with the calls the tests make."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self._id: str | None = None

    @property
    def id(self) -> str:
        """This server's id in the registry."""
        if self._id is None:
            self._id = str(self.get("health")["server"]["id"])
        return self._id

    @property
    def name(self) -> str:
        return self.server.workdir.name

    def get(self, path: str, **params: Any) -> Any:
        response = requests.get(
            self.server.url(path), headers=self.server.headers, params=params, timeout=30
        )
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def post(self, path: str, body: dict[str, Any] | None = None, status: int = 202) -> Any:
        response = requests.post(
            self.server.url(path), headers=self.server.headers, json=body or {}, timeout=30
        )
        assert response.status_code == status, (path, response.status_code, response.text)
        return response.json()

    def delete(self, path: str, status: int = 202) -> Any:
        response = requests.delete(self.server.url(path), headers=self.server.headers, timeout=30)
        assert response.status_code == status, (path, response.status_code, response.text)
        return response.json() if response.text else None

    def upload_script(
        self, name: str, source: str, kind: str = "test", model_type: str | None = None
    ) -> dict[str, Any]:
        form = {"kind": kind, **({"model_type": model_type} if model_type else {})}
        response = requests.post(
            self.server.url("scripts"),
            headers=self.server.headers,
            data=form,
            files={"file": (name, source.encode(), "text/x-python")},
            timeout=30,
        )
        assert response.status_code in (200, 201), response.text
        script: dict[str, Any] = response.json()
        return script

    def upload_dataset(self, kind: str, name: str, data: bytes) -> dict[str, Any]:
        response = requests.post(
            self.server.url(f"datasets/{kind}/uploads"),
            headers=self.server.headers,
            files={"file": (name, data, "application/octet-stream")},
            timeout=60,
        )
        assert response.status_code == 201, response.text
        report: dict[str, Any] = response.json()
        return report

    def run(self, script_id: int, **body: Any) -> dict[str, Any]:
        run: dict[str, Any] = self.post(f"scripts/{script_id}/runs", body)
        return run

    def wait_run(
        self, run_id: int, done: Callable[[dict[str, Any]], bool], within: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            run: dict[str, Any] = self.get(f"runs/{run_id}")
            if done(run):
                return run
            assert time.monotonic() < deadline, f"run {run_id} still {run['status']}: {run}"
            time.sleep(0.05)

    def finished(self, run_id: int, within: float = 30) -> dict[str, Any]:
        return self.wait_run(run_id, lambda r: r["status"] in FINISHED, within)

    def lines(self, run_id: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get(f"runs/{run_id}/logs", limit=10_000)["items"]
        return items

    async def events(self) -> EventsClient:
        ws_url = self.server.base.replace("http://", "ws://") + "/energyops/api/events"
        conn = await websocket_connect(HTTPRequest(ws_url, headers=self.server.headers))
        return EventsClient(conn)

    def log_text(self) -> str:
        return self.server.log_text()


def owner_and_other(nodes: list[Node], run: dict[str, Any]) -> tuple[Node, Node]:
    """The node that runs ``run`` and another one."""
    owner = next(node for node in nodes if node.id == run["server_id"])
    return owner, next(node for node in nodes if node is not owner)


@contextmanager
def cluster(
    workdir: Path,
    backend: str,
    count: int,
    *,
    energyops: dict[str, Any] | None = None,
    hostnames: list[str | None] | None = None,
) -> Iterator[list[Node]]:
    """``count`` servers on one database, each with its own data dir, one shared storage."""
    shared = workdir / "shared-storage"
    shared.mkdir(parents=True, exist_ok=True)
    settings = {**CLUSTER_SETTINGS, "storage_url": f"file://{shared}", **(energyops or {})}
    names = hostnames or [None] * count
    with _database(workdir, backend) as db_url, ExitStack() as stack:
        servers = [
            LiveServer(workdir / f"server-{i}", db_url, energyops=settings, hostname=names[i])
            for i in range(count)
        ]
        for server in servers:
            stack.callback(server.stop)
            server.launch()
        for server in servers:
            server.wait_ready()
        yield [Node(server) for server in servers]


def start_node(workdir: Path, db_url: str, **energyops: Any) -> Node:
    shared = workdir.parent / "shared-storage"
    settings = {**CLUSTER_SETTINGS, "storage_url": f"file://{shared}", **energyops}
    return Node(LiveServer(workdir, db_url, energyops=settings).start())


def dumps(data: Any) -> str:
    return json.dumps(data)
