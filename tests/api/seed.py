"""Data a live server's tests refer to, created through the API itself.

Each part is created only if its route exists, so the auth matrix and the fuzzer run while
the API grows. After ``seed``: upload 1 (market-snapshot), script 1 (a test script) with a
finished run 1 that wrote ``result.csv``, and script 2 (spare, for deleting).
"""

from __future__ import annotations

import re
import time
from typing import Any

import requests

from energyops_ext.handlers import ROUTES

from .servers import LiveServer

FINISHED = {"succeeded", "failed", "killed", "timed_out", "lost"}

MARKET_CSV = (
    "Date,Block,Plant,Contract,DAM Price,RTM Price,GDAM Price,Scheduled MW,Model Result MW,"
    "Purchase Bid MW,Sell Bid MW,State,Plant Name,Contract Name\n"
    + "".join(
        f"2025-10-06,{b},P1,C1,{3000 + b},{3100 + b},{3050 + b},{100 + b},{90 + b},"
        f"{50 + b},{40 + b},Delhi,Alpha,Base\n"
        for b in range(1, 97)
    )
).encode()

SCRIPT = b"""import os, pathlib
out = pathlib.Path(os.environ["ENERGYOPS_OUTPUT_DIR"])
out.mkdir(parents=True, exist_ok=True)
(out / "result.csv").write_text("block,mw\\n1,10\\n")
for i in range(5):
    print(f"line {i}")
print("Objective value: 125436.78")
"""


def has_route(path: str) -> bool:
    """Whether a concrete path under the API base is served by a route other than the 404."""
    return any(re.fullmatch(pattern, "/" + path) for pattern, _ in ROUTES if pattern != r"/(.*)")


def post(server: LiveServer, path: str, **kwargs: Any) -> requests.Response:
    response = requests.post(server.url(path), headers=server.headers, timeout=60, **kwargs)
    assert response.status_code < 300, f"seed POST {path}: {response.status_code} {response.text}"
    return response


def upload_script(server: LiveServer, name: str, source: bytes) -> dict[str, Any]:
    response = post(server, "scripts", files={"file": (name, source)}, data={"kind": "test"})
    script: dict[str, Any] = response.json()
    return script


def wait_run(server: LiveServer, run_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = requests.get(
            server.url(f"runs/{run_id}"), headers=server.headers, timeout=10
        ).json()
        if run["status"] in FINISHED or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def seed(server: LiveServer) -> None:
    if has_route("datasets/market-snapshot/uploads"):
        post(
            server,
            "datasets/market-snapshot/uploads",
            files={"file": ("market.csv", MARKET_CSV, "text/csv")},
        )
    if has_route("scripts"):
        upload_script(server, "test_seed.py", SCRIPT)
        upload_script(server, "test_spare.py", b"print('spare')\n")
        if has_route("scripts/1/runs"):
            run = post(server, "scripts/1/runs", json={}).json()
            finished = wait_run(server, run["id"])
            assert finished["status"] == "succeeded", finished
