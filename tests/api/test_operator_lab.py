"""The operator token is a read-only credential for the EnergyOps API and nothing else.

On a server with JupyterLab and terminals enabled, the operator token (header or ``?token=``),
and any login cookie it brings, gets 403 on every page and route that is not an EnergyOps
handler: no Lab page (which would carry the server's own token), no kernel, terminal, file or
session, over HTTP or WebSocket. No response to the operator carries the server's token. And
``GET /health`` shows operators only what a dashboard needs; full users see the database URL
with its credentials masked.
"""

from __future__ import annotations

import getpass
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import websocket
from sqlalchemy.engine import make_url
from tornado.websocket import WebSocketClientConnection

from energyops_ext.events import DASHBOARD
from energyops_ext.services import Services

from ..conftest import BACKENDS
from .conftest import OPERATOR_TOKEN, Fetch, body
from .servers import LiveServer, live_server
from .wsclient import EventsClient

OPERATOR = {"Authorization": f"token {OPERATOR_TOKEN}"}
# JupyterLab and terminals on (they are what the operator must not reach); the rest off.
LAB_EXTENSIONS = {
    "energyops_ext": True,
    "jupyterlab": True,
    "jupyter_server_terminals": True,
    "jupyter_lsp": False,
    "notebook": False,
    "notebook_shim": False,
    "voila.server_extension": False,
}
LOGIN_COOKIE = "username-"


@dataclass
class Lab:
    server: LiveServer
    kernel: str
    terminal: str

    def url(self, path: str) -> str:
        return f"{self.server.base}/{path.format(kernel=self.kernel, terminal=self.terminal)}"

    def ws_url(self, path: str) -> str:
        return self.url(path).replace("http://", "ws://", 1)


@pytest.fixture(scope="module", params=BACKENDS)
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A server with JupyterLab and terminals, a kernel and a terminal the full user started."""
    root = tmp_path_factory.mktemp(f"lab-{request.param}")
    with live_server(root, request.param, server_app={"jpserver_extensions": LAB_EXTENSIONS}) as s:
        yield start_kernel_and_terminal(s)


def start_kernel_and_terminal(server: LiveServer) -> Lab:
    kernel = requests.post(
        f"{server.base}/api/kernels", headers=server.headers, json={"name": "python3"}, timeout=60
    )
    assert kernel.status_code == 201, kernel.text
    terminal = requests.post(f"{server.base}/api/terminals", headers=server.headers, timeout=30)
    assert terminal.status_code == 200, terminal.text
    return Lab(server, kernel.json()["id"], terminal.json()["name"])


# (method, path, json body): every kind of route of the Lab server besides EnergyOps'
LAB_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "", None),
    ("GET", "lab", None),
    ("GET", "lab/tree/server.log", None),
    ("GET", "lab/workspaces/auto-x", None),
    ("GET", "tree", None),
    ("GET", "login", None),
    ("GET", "logout", None),
    ("GET", "no/such/page", None),
    ("GET", "static/favicons/favicon.ico", None),
    ("GET", "files/server.log", None),
    ("GET", "view/server.log", None),
    ("GET", "nbconvert/html/server.log", None),
    ("GET", "api", None),
    ("GET", "api/status", None),
    ("GET", "api/me", None),
    ("GET", "api/spec.yaml", None),
    ("GET", "api/contents", None),
    ("GET", "api/contents/server.log", None),
    ("GET", "api/kernels", None),
    ("GET", "api/kernels/{kernel}", None),
    ("GET", "api/kernelspecs", None),
    ("GET", "api/sessions", None),
    ("GET", "api/terminals", None),
    ("GET", "api/terminals/{terminal}", None),
    ("GET", "api/config/notebook", None),
    ("GET", "lab/api/settings", None),
    ("GET", "lab/api/workspaces", None),
    ("GET", "lab/api/translations", None),
    ("POST", "api/kernels", {"name": "python3"}),
    ("POST", "api/kernels/{kernel}/restart", {}),
    ("POST", "api/kernels/{kernel}/interrupt", {}),
    (
        "POST",
        "api/sessions",
        {"path": "x.ipynb", "type": "notebook", "kernel": {"name": "python3"}},
    ),
    ("POST", "api/terminals", {}),
    ("POST", "api/events", {"schema_id": "x", "version": "1", "data": {}}),
    ("PUT", "api/contents/evil.txt", {"type": "file", "format": "text", "content": "x"}),
    ("PATCH", "api/contents/server.log", {"path": "moved.log"}),
    ("DELETE", "api/contents/server.log", None),
    ("DELETE", "api/kernels/{kernel}", None),
    ("DELETE", "api/terminals/{terminal}", None),
    ("POST", "api/shutdown", {}),
]
LAB_SOCKETS = [
    "api/kernels/{kernel}/channels",
    "terminals/websocket/{terminal}",
    "api/events/subscribe",
]
CREDENTIAL_FORMS = ("header", "query")


def as_operator(form: str) -> dict[str, Any]:
    if form == "header":
        return {"headers": OPERATOR}
    return {"params": {"token": OPERATOR_TOKEN}}


def assert_refused(
    lab: Lab, response: requests.Response, what: str, *, lab_route: bool = True
) -> None:
    """403 in the JSON error shape, without the server's token; a Lab route also sets no
    login cookie (an EnergyOps route authenticates the operator before it refuses a write)."""
    assert response.status_code == 403, f"{what}: {response.status_code} {response.text[:300]}"
    assert lab.server.token not in response.text, f"{what}: the server's token is in the body"
    assert response.json()["error"]["status"] == 403
    if lab_route:
        for step in [*response.history, response]:
            assert not any(c.name.startswith(LOGIN_COOKIE) for c in step.cookies), what


def socket_status(
    url: str, headers: dict[str, str] | None = None, cookie: str | None = None
) -> int:
    try:
        ws = websocket.create_connection(
            url, header=[f"{k}: {v}" for k, v in (headers or {}).items()], cookie=cookie, timeout=10
        )
    except websocket.WebSocketBadStatusException as exc:
        return int(exc.status_code)
    ws.close()
    return 101


def test_the_full_user_reaches_the_lab(lab: Lab) -> None:
    """The control: what the operator is refused exists and works for the full user."""
    headers = lab.server.headers
    assert requests.get(lab.url("lab"), headers=headers, timeout=30).status_code == 200
    kernels = requests.get(lab.url("api/kernels"), headers=headers, timeout=30)
    assert [k["id"] for k in kernels.json()] == [lab.kernel]
    assert socket_status(lab.ws_url("api/kernels/{kernel}/channels"), headers) == 101
    assert socket_status(lab.ws_url("terminals/websocket/{terminal}"), headers) == 101


def test_a_lab_page_opened_with_a_cookie_carries_no_token(lab: Lab) -> None:
    """The full user's browser: the token opens a session (a login cookie); the page served
    to that cookie carries no token, and a page opened with the token carries it only in
    its own URL."""
    browser = requests.Session()
    first = browser.get(lab.url("lab"), params={"token": lab.server.token}, timeout=30)
    assert first.status_code == 200
    assert any(c.name.startswith(LOGIN_COOKIE) for c in browser.cookies)
    assert f'"token": "{lab.server.token}"' not in first.text
    page = browser.get(lab.url("lab"), timeout=30)
    assert page.status_code == 200 and "jupyter-config-data" in page.text
    assert lab.server.token not in page.text


@pytest.mark.parametrize("form", CREDENTIAL_FORMS)
@pytest.mark.parametrize(("method", "path", "payload"), LAB_ROUTES, ids=lambda v: str(v))
def test_the_operator_gets_403_on_every_lab_route(
    lab: Lab, method: str, path: str, payload: Any, form: str
) -> None:
    response = requests.request(
        method, lab.url(path), json=payload, timeout=30, **as_operator(form)
    )
    assert_refused(lab, response, f"{method} /{path} ({form})")


@pytest.mark.parametrize("form", CREDENTIAL_FORMS)
@pytest.mark.parametrize("path", LAB_SOCKETS)
def test_the_operator_opens_no_lab_socket(lab: Lab, path: str, form: str) -> None:
    url = lab.ws_url(path)
    if form == "header":
        assert socket_status(url, OPERATOR) == 403
    else:
        assert socket_status(f"{url}?token={OPERATOR_TOKEN}") == 403


@pytest.mark.parametrize("form", CREDENTIAL_FORMS)
def test_the_operator_still_reads_energyops_and_writes_nothing(lab: Lab, form: str) -> None:
    server = lab.server
    health = requests.get(server.url("health"), timeout=30, **as_operator(form))
    assert health.status_code == 200, health.text
    assert server.token not in health.text
    for method, path, payload in [
        ("PATCH", "notifications/1", {"is_read": True}),
        ("POST", "scripts/1/runs", {}),
        ("DELETE", "scripts/1", None),
    ]:
        response = requests.request(
            method, server.url(path), json=payload, timeout=30, **as_operator(form)
        )
        assert_refused(lab, response, f"{method} {path}", lab_route=False)
    assert socket_status(f"{server.url('events').replace('http', 'ws', 1)}", OPERATOR) == 101


def xsrf_value(lab: Lab) -> str:
    """An ``_xsrf`` cookie value, as the public login page hands one to anyone."""
    session = requests.Session()
    assert session.get(lab.url("login"), timeout=30).status_code == 200
    value = session.cookies.get("_xsrf")
    assert value
    return str(value)


def test_the_operator_login_cookie_reaches_only_energyops_reads(lab: Lab) -> None:
    session = requests.Session()
    login = session.get(lab.server.url("health"), params={"token": OPERATOR_TOKEN}, timeout=30)
    assert login.status_code == 200
    cookies = {
        k: str(v) for k, v in session.cookies.get_dict().items() if k.startswith(LOGIN_COOKIE)
    }
    assert cookies, "a token login on an EnergyOps read sets the login cookie"
    xsrf = xsrf_value(lab)
    browser = requests.Session()
    browser.cookies.update({**cookies, "_xsrf": xsrf})
    writes = {"X-XSRFToken": xsrf}

    assert browser.get(lab.server.url("health"), timeout=30).status_code == 200
    for method, path, payload in LAB_ROUTES:
        response = browser.request(method, lab.url(path), json=payload, headers=writes, timeout=30)
        assert_refused(lab, response, f"{method} /{path} with the operator's cookie")
    energyops_write = browser.patch(
        lab.server.url("notifications/1"), json={"is_read": True}, headers=writes, timeout=30
    )
    assert_refused(lab, energyops_write, "an EnergyOps write with the cookie", lab_route=False)
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    for path in LAB_SOCKETS:
        assert socket_status(lab.ws_url(path), cookie=cookie) == 403, path


def test_refused_requests_hand_out_no_login_cookie(lab: Lab) -> None:
    session = requests.Session()
    response = session.get(lab.url("lab"), params={"token": OPERATOR_TOKEN}, timeout=30)
    assert_refused(lab, response, "GET /lab?token=<operator>")
    assert not any(name.startswith(LOGIN_COOKIE) for name in session.cookies.get_dict())


# --- GET /health: what operators and full users see ---

URL_PASSWORD = "url-password-7f3a"
QUERY_PASSWORD = "query-password-91b2"
OPERATOR_HEALTH_KEYS = {"status", "version", "uptime_s", "database", "queue", "display"}
WsFetch = Callable[..., Awaitable[WebSocketClientConnection]]


@pytest.fixture
def energyops_config(db_url: str) -> dict[str, Any]:
    """On PostgreSQL, a database URL with a user, a password and a password parameter (the
    local server does not ask for them; they are there to be hidden)."""
    config: dict[str, Any] = {"health_interval_s": 0.2}
    if db_url.startswith("postgresql"):
        url = make_url(db_url).set(username=getpass.getuser(), password=URL_PASSWORD)
        url = url.update_query_dict({"password": QUERY_PASSWORD})
        config["db_url"] = url.render_as_string(hide_password=False)
    return config


def assert_operator_view(report: dict[str, Any]) -> None:
    assert set(report) == OPERATOR_HEALTH_KEYS
    database = report["database"]
    assert set(database) == {"kind", "reachable", "migration"}
    assert set(database["migration"]) == {"current", "head", "up_to_date"}
    assert database["reachable"] is True and database["migration"]["up_to_date"] is True
    assert set(report["queue"]) == {"running", "queued", "max_concurrent"}
    assert set(report["display"]) == {"timezone"}
    zone = report["display"]["timezone"]  # an IANA name such as Asia/Kolkata, not a path
    strings = [v for v in walk(report) if isinstance(v, str) and v != zone]
    assert not [s for s in strings if "/" in s], f"a path or URL in {strings}"


def walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def assert_no_secret(text: str) -> None:
    for secret in (URL_PASSWORD, QUERY_PASSWORD, f"{getpass.getuser()}@"):
        assert secret not in text


async def test_operators_see_only_what_a_dashboard_needs(
    api: Fetch, db_url: str, services: Services
) -> None:
    response = await api("GET", "health", headers=OPERATOR)
    assert response.code == 200
    report = body(response)
    assert_operator_view(report)
    assert report["database"]["kind"] == db_url.split(":")[0].split("+")[0]
    text = response.body.decode()
    assert str(services.settings.data_dir) not in text
    assert_no_secret(text)


async def test_the_full_user_sees_the_database_url_masked(api: Fetch, db_url: str) -> None:
    response = await api("GET", "health")
    assert response.code == 200
    report = body(response)
    url = report["database"]["url"]
    if db_url.startswith("postgresql"):
        assert url.startswith("postgresql") and "://***@" in url, url
        assert "password=***" in url, url
        assert_no_secret(response.body.decode())
    else:
        assert url.startswith("sqlite") and url.endswith("energyops-test.db"), url
    assert "sandbox" in report and "queue" in report


@pytest.fixture
def connect(services: Services, jp_ws_fetch: WsFetch) -> Iterator[Callable[..., Awaitable[Any]]]:
    clients: list[EventsClient] = []

    async def open_client(**kwargs: Any) -> EventsClient:
        client = EventsClient(await jp_ws_fetch("energyops", "api", "events", **kwargs))
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


async def test_the_dashboard_health_push_is_the_operator_view(
    connect: Callable[..., Awaitable[EventsClient]], db_url: str
) -> None:
    """Every listener of the dashboard topic gets the same frame, operators included."""
    client = await connect(headers=OPERATOR)
    await client.subscribe(DASHBOARD)
    frames = await client.until(lambda f: f["type"] == "health.update", within=10)
    assert_operator_view(frames[-1]["data"])
