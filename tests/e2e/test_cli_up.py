"""`jupyter energyops up` as a person runs it: two servers, tokens, a clean stop."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"token {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with OPENER.open(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(url: str, token: str | None, deadline_s: float = 90) -> int:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            status, _ = get(url, token)
            if status < 500:
                return status
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {deadline_s} s")


def test_up_serves_lab_and_read_only_voila_then_stops(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "dashboards", tmp_path / "dashboards")
    lab_port, voila_port = free_port(), free_port()
    env = {**os.environ, "ENERGYOPS_LAB_TOKEN": "lab-secret-token"}
    env.pop("ENERGYOPS_DATA_DIR", None)
    env.pop("ENERGYOPS_DB_URL", None)
    up = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "jupyter"),
            "energyops",
            "up",
            f"--lab-port={lab_port}",
            f"--voila-port={voila_port}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    try:
        lab = f"http://127.0.0.1:{lab_port}"
        assert wait_for(f"{lab}/energyops/api/health", "lab-secret-token") == 200
        status, body = get(f"{lab}/energyops/api/health", "lab-secret-token")
        assert b'"reachable":true' in body
        assert str(tmp_path / ".energyops") in body.decode()
        # An empty database is seeded with demo market data on the first start.
        status, body = get(f"{lab}/energyops/api/market/stats", "lab-secret-token")
        assert status == 200 and json.loads(body)["count"] > 0, body
        status, body = get(f"{lab}/energyops/api/runs/424242", "lab-secret-token")
        assert status == 404
        assert b'"status":404' in body

        # The printed Voila URL carries its token; without it Voila refuses the page.
        assert up.stdout is not None
        deadline = time.monotonic() + 30
        voila_token = None
        while voila_token is None and time.monotonic() < deadline:
            line = up.stdout.readline()
            output.append(line)
            match = re.search(rf":{voila_port}/\?token=([0-9a-f]+)", line)
            voila_token = match.group(1) if match else None
        assert voila_token, "".join(output)
        page = f"http://127.0.0.1:{voila_port}/voila/render/overview.ipynb"
        assert wait_for(f"{page}?token={voila_token}", None) == 200
        assert get(page)[0] in (302, 403)
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        try:
            rest, _ = up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            raise
    assert up.returncode == 0, "".join(output) + rest
    assert "EnergyOps stopped." in rest
    for port in (lab_port, voila_port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still served"
