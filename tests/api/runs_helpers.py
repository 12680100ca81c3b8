"""Factories for script and run tests: multipart uploads, starting runs, waiting for an end."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

from tornado.httpclient import HTTPResponse

from .conftest import Fetch, body

FINISHED = {"succeeded", "failed", "killed", "timed_out", "lost"}
FAST_RUNS = {
    "kill_grace_s": 0.5,
    "log_flush_interval_s": 0.1,
    "heartbeat_s": 0.2,
}


def multipart(fields: dict[str, str], file: tuple[str, bytes] | None) -> tuple[bytes, str]:
    boundary = "----energyops" + secrets.token_hex(8)
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    if file is not None:
        filename, data = file
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: text/x-python\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


async def upload(
    api: Fetch,
    filename: str,
    source: str | bytes,
    kind: str = "test",
    **fields: str,
) -> HTTPResponse:
    data = source.encode() if isinstance(source, str) else source
    payload, content_type = multipart({"kind": kind, **fields}, (filename, data))
    return await api("POST", "scripts", body=payload, headers={"Content-Type": content_type})


async def script_id(api: Fetch, filename: str, source: str, **fields: str) -> int:
    response = await upload(api, filename, source, **fields)
    assert response.code in (200, 201), response.body
    return int(body(response)["id"])


async def start_run(api: Fetch, sid: int, **payload: Any) -> dict[str, Any]:
    response = await api("POST", f"scripts/{sid}/runs", json=payload)
    assert response.code == 202, response.body
    run: dict[str, Any] = body(response)
    return run


async def wait_for(
    api: Fetch, run_id: int, statuses: set[str] = FINISHED, timeout_s: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        run: dict[str, Any] = body(await api("GET", f"runs/{run_id}"))
        if run["status"] in statuses:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        await asyncio.sleep(0.05)


async def wait_until(check: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def live_pids(pid_file: Path) -> list[int]:
    """Pids listed in ``pid_file`` that still exist (and are not zombies)."""
    alive = []
    for raw in pid_file.read_text().split():
        try:
            state = Path(f"/proc/{raw}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            alive.append(int(raw))
    return alive


def run_dir(services_data: Path, run_id: int) -> Path:
    return services_data / "sandbox" / str(run_id)
