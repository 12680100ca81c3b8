"""Who may call what: every route x method x credential, derived from the route table.

Rows come from ``energyops_ext.handlers.ROUTES`` (a new route is a new row, and fails until
``SAMPLES`` has a request for it). Expectations come from the HTTP method alone: GET (and the
WebSocket upgrade) is a read, every other method a write or an execution. So:

- no credential: 403 everywhere;
- the read-only operator token: reads pass, writes 403;
- the full user: nothing is 403 (and the sample request, a valid one, succeeds);
- the full user on a server whose authorizer denies write and execute for everyone: reads
  pass, writes 403;
- the login cookie without the XSRF header: reads pass, writes 403; with the ``_xsrf`` cookie
  and its ``X-XSRFToken`` header: nothing is 403.

Every request of a route carries the same valid body, so a 403 never depends on the body.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
import yaml
from tornado.websocket import WebSocketHandler

from energyops_ext.handlers import ROUTES
from energyops_ext.handlers.base import EnergyOpsHandler

from ..conftest import BACKENDS
from .conftest import OPERATOR_TOKEN
from .seed import MARKET_CSV, seed
from .servers import DenyWriteExecuteAuthorizer, LiveServer, live_server

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
CATCH_ALL = r"/(.*)"
READ = "read"

Body = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Sample:
    """A valid request for one route: the concrete path, a body per method (requests kwargs),
    and the statuses the full user may get besides 2xx (e.g. 404 for a route that only
    answers errors, 409 for a second delete)."""

    path: str
    bodies: Mapping[str, Body] = field(default_factory=dict)
    paths: Mapping[str, str] = field(default_factory=dict)
    also_ok: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def path_for(self, method: str) -> str:
        return self.paths.get(method, self.path)

    def body_for(self, method: str) -> dict[str, Any]:
        make = self.bodies.get(method)
        return make() if make else {}


def _json(payload: Any) -> Body:
    return lambda: {"json": payload}


SAMPLES: dict[str, Sample] = {
    r"/health": Sample("health"),
    r"/openapi.yaml": Sample("openapi.yaml"),
    r"/servers": Sample("servers"),
    r"/activities": Sample("activities"),
    r"/notifications": Sample("notifications"),
    r"/notifications/(\d+)": Sample(
        "notifications/1",
        bodies={"PATCH": _json({"is_read": True})},
        also_ok={"PATCH": (404,)},
    ),
    r"/scripts": Sample(
        "scripts",
        bodies={
            "POST": lambda: {
                "files": {"file": ("test_matrix.py", b"print('matrix')\n")},
                "data": {"kind": "test"},
            }
        },
    ),
    r"/scripts/(\d+)": Sample(
        "scripts/1",
        bodies={"PATCH": _json({"description": "checked by the auth matrix"})},
        paths={"DELETE": "scripts/2"},
        also_ok={"DELETE": (404,)},
    ),
    r"/scripts/(\d+)/source": Sample("scripts/1/source"),
    r"/scripts/(\d+)/runs": Sample("scripts/1/runs", bodies={"POST": _json({"args": ["x"]})}),
    r"/runs": Sample("runs"),
    r"/runs/(\d+)": Sample("runs/1", also_ok={"DELETE": (409,)}),
    r"/runs/compare": Sample("runs/compare?ids=1,2", also_ok={"GET": (404,)}),
    r"/runs/(\d+)/stop": Sample("runs/1/stop", also_ok={"POST": (409,)}),
    r"/runs/(\d+)/notebook": Sample("runs/1/notebook", also_ok={"GET": (404,)}),
    r"/runs/(\d+)/logs": Sample("runs/1/logs"),
    r"/runs/(\d+)/artifacts": Sample("runs/1/artifacts"),
    r"/runs/(\d+)/artifacts/([^/]+)": Sample("runs/1/artifacts/result.csv"),
    r"/events": Sample("events"),
    r"/datasets": Sample("datasets"),
    r"/datasets/([^/]+)/uploads": Sample(
        "datasets/market-snapshot/uploads",
        bodies={"POST": lambda: {"files": {"file": ("market.csv", MARKET_CSV, "text/csv")}}},
    ),
    r"/datasets/([^/]+)/rows": Sample("datasets/market-snapshot/rows"),
    r"/uploads/(\d+)": Sample("uploads/1"),
    r"/market/stats": Sample("market/stats"),
    r"/market/snapshot": Sample("market/snapshot"),
    r"/market/export": Sample("market/export"),
    r"/alerts": Sample(
        "alerts",
        bodies={
            "POST": _json(
                {"name": "matrix", "series": "dam_price", "operator": ">", "threshold": 9000}
            )
        },
    ),
    r"/alerts/(\d+)": Sample(
        "alerts/1",
        bodies={"PATCH": _json({"threshold": 9500})},
        also_ok={"GET": (404,), "PATCH": (404,), "DELETE": (404,)},
    ),
    r"/alerts/(\d+)/history": Sample("alerts/1/history", also_ok={"GET": (404,)}),
    r"/deliveries": Sample("deliveries"),
    r"/schedules": Sample(
        "schedules",
        bodies={"POST": _json({"script_id": 1, "cron": "0 9 * * *", "enabled": False})},
    ),
    r"/schedules/(\d+)": Sample(
        "schedules/1",
        bodies={"PATCH": _json({"name": "checked by the auth matrix"})},
        also_ok={"GET": (404,), "PATCH": (404,), "DELETE": (404,)},
    ),
    r"/schedules/(\d+)/fires": Sample("schedules/1/fires", also_ok={"GET": (404,)}),
    CATCH_ALL: Sample(
        "no/such/route",
        bodies={m: _json({"name": "x"}) for m in ("POST", "PUT", "PATCH")},
        also_ok={m: (404,) for m in METHODS},
    ),
}


def route_methods(handler: type[Any]) -> list[str]:
    if issubclass(handler, WebSocketHandler):
        return ["GET"]
    return [
        m
        for m in METHODS
        if getattr(handler, m.lower()) is not getattr(EnergyOpsHandler, m.lower(), None)
    ]


def is_websocket(handler: type[Any]) -> bool:
    return issubclass(handler, WebSocketHandler)


@dataclass(frozen=True)
class Row:
    pattern: str
    handler: type[Any]
    method: str

    @property
    def read(self) -> bool:
        return self.method in ("GET", "HEAD")

    def __str__(self) -> str:
        return f"{self.method} {self.pattern}"


ROWS = [Row(pattern, handler, m) for pattern, handler in ROUTES for m in route_methods(handler)]

CREDENTIALS = ("none", "operator", "denied", "cookie", "user", "cookie+xsrf")


def test_every_route_method_carries_an_action_that_fits_the_method() -> None:
    for row in ROWS:
        if is_websocket(row.handler):
            continue
        action = getattr(getattr(row.handler, row.method.lower()), "energyops_action", None)
        assert action is not None, f"{row}: the method has no @allow(...)"
        if row.read:
            assert action == READ, f"{row}: a {row.method} must be a read, not {action}"
        else:
            assert action in ("write", "execute"), f"{row}: {row.method} is declared {action}"


def test_every_route_method_is_documented_and_every_operation_is_routed() -> None:
    spec = yaml.safe_load(
        (Path(__file__).parents[2] / "energyops_ext/static/openapi.yaml").read_text()
    )
    documented = {
        (re.sub(r"\{[^}]+\}", "{}", path), method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method.upper() in METHODS
    }
    routed = {
        (re.sub(r"\([^)]*\)", "{}", row.pattern), row.method)
        for row in ROWS
        if row.pattern != CATCH_ALL and row.method != "HEAD"
    }
    assert routed - documented == set(), "routes missing from openapi.yaml"
    assert documented - routed == set(), "openapi.yaml documents operations no route serves"


# --- live servers ---


@dataclass
class Servers:
    normal: LiveServer
    denying: LiveServer
    cookies: dict[str, str]
    xsrf: str


@pytest.fixture(scope="module", params=BACKENDS)
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp(f"auth-{request.param}")
    with live_server(root / "normal", request.param) as normal:
        seed(normal)
        shared = {"data_dir": str(root / "normal" / "data"), "db_url": normal.db_url}
        denying = LiveServer(
            root / "denying",
            normal.db_url,
            energyops=shared,
            authorizer=DenyWriteExecuteAuthorizer,
        ).start()
        try:
            yield Servers(normal, denying, *login_cookies(normal))
        finally:
            denying.stop()


def login_cookies(server: LiveServer) -> tuple[dict[str, str], str]:
    """The login cookie a browser would hold after the token login, and an ``_xsrf`` value."""
    session = requests.Session()
    assert session.get(f"{server.base}/api/status", headers=server.headers).status_code == 200
    assert session.get(f"{server.base}/login").status_code == 200
    cookies = {k: v for k, v in session.cookies.get_dict().items() if v is not None}
    xsrf = cookies.pop("_xsrf")
    assert any(name.startswith("username-") for name in cookies), cookies
    return cookies, xsrf


def call(servers: Servers, credential: str, row: Row, sample: Sample) -> int:
    server = servers.denying if credential == "denied" else servers.normal
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    if credential in ("user", "denied"):
        headers = server.headers
    elif credential == "operator":
        headers = {"Authorization": f"token {OPERATOR_TOKEN}"}
    elif credential.startswith("cookie"):
        cookies = dict(servers.cookies)
        if credential == "cookie+xsrf":
            cookies["_xsrf"] = servers.xsrf
            headers = {"X-XSRFToken": servers.xsrf}
    url = server.url(sample.path_for(row.method))
    if is_websocket(row.handler):
        return websocket_status(url, headers, cookies)
    response = requests.request(
        row.method, url, headers=headers, cookies=cookies, timeout=30, **sample.body_for(row.method)
    )
    if response.status_code == 403 and row.method != "HEAD":
        assert response.json()["error"]["status"] == 403, response.text
    return response.status_code


def websocket_status(url: str, headers: dict[str, str], cookies: dict[str, str]) -> int:
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items()) or None
    try:
        ws = websocket.create_connection(
            url.replace("http://", "ws://", 1),
            header=[f"{k}: {v}" for k, v in headers.items()],
            cookie=cookie,
            timeout=10,
        )
    except websocket.WebSocketBadStatusException as exc:
        return int(exc.status_code)
    ws.close()
    return 101


def expect_forbidden(credential: str, row: Row) -> bool:
    if credential == "none":
        return True
    if credential in ("operator", "denied", "cookie"):
        return not row.read
    return False


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("row", ROWS, ids=str)
def test_auth_matrix(servers: Servers, row: Row, credential: str) -> None:
    sample = SAMPLES.get(row.pattern)
    assert sample is not None, f"add a valid sample request for {row} to SAMPLES"
    status = call(servers, credential, row, sample)
    if expect_forbidden(credential, row):
        assert status == 403, f"{credential}: {row} answered {status}, not 403"
        return
    assert status != 403, f"{credential}: {row} was refused"
    assert status < 500, f"{credential}: {row} answered {status}"
    if credential in ("user", "denied") or (credential == "operator" and row.read):
        ok = status < 400 or status in sample.also_ok.get(row.method, ())
        assert ok, f"{credential}: the valid sample {row} answered {status}"
