"""End to end: JupyterLab opened with the operator token in headless Chromium.

The page must not carry the server's own token, and from the page's JavaScript no kernel,
terminal or file can be reached by any route (fetch with the browser's cookies, with the
operator token in a header or in the query, WebSockets). The same probes with the server's
token, from another browser context, do reach them: the probes themselves work.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ..api.conftest import OPERATOR_TOKEN
from ..api.servers import live_server
from ..api.test_operator_lab import LAB_EXTENSIONS, Lab, start_kernel_and_terminal
from .stack import BROWSER_ARGS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# (method, path) the page tries with each credential form
FETCHES = [
    ("GET", "/lab"),
    ("GET", "/lab/tree/server.log"),
    ("GET", "/tree"),
    ("GET", "/api/me"),
    ("GET", "/api/kernels"),
    ("POST", "/api/kernels"),
    ("GET", "/api/kernels/{kernel}"),
    ("POST", "/api/kernels/{kernel}/restart"),
    ("DELETE", "/api/kernels/{kernel}"),
    ("GET", "/api/kernelspecs"),
    ("GET", "/api/sessions"),
    ("POST", "/api/sessions"),
    ("GET", "/api/terminals"),
    ("POST", "/api/terminals"),
    ("DELETE", "/api/terminals/{terminal}"),
    ("GET", "/api/contents"),
    ("GET", "/api/contents/server.log"),
    ("PUT", "/api/contents/planted.txt"),
    ("GET", "/files/server.log"),
    ("GET", "/view/server.log"),
    ("GET", "/lab/api/settings"),
    ("GET", "/lab/api/workspaces"),
]
SOCKETS = [
    "/api/kernels/{kernel}/channels",
    "/terminals/websocket/{terminal}",
    "/api/events/subscribe",
]

PROBE = """
async ({token, fetches, sockets, forms}) => {
  const withToken = (path) => path + (path.includes("?") ? "&" : "?") + "token=" + token;
  const results = {fetches: {}, sockets: {}};
  for (const [method, path] of fetches) {
    for (const form of forms) {
      const headers = {"Content-Type": "application/json"};
      if (form === "header") headers["Authorization"] = "token " + token;
      // a redirect (to the login page, for a request without a credential) is not followed
      const init = {method, headers, credentials: "same-origin", redirect: "manual"};
      if (method === "POST" || method === "PUT") {
        init.body = JSON.stringify({name: "python3", type: "file", format: "text", content: "x",
                                    path: "x.ipynb", kernel: {name: "python3"}});
      }
      const key = `${method} ${path} (${form})`;
      try {
        const response = await fetch(form === "query" ? withToken(path) : path, init);
        const status = response.type === "opaqueredirect" ? "redirect" : response.status;
        results.fetches[key] = {status, text: await response.text()};
      } catch (error) {
        results.fetches[key] = {status: 0, text: String(error)};
      }
    }
  }
  const open = (url) => new Promise((resolve) => {
    let socket;
    try { socket = new WebSocket(url); } catch (error) { resolve("failed"); return; }
    const timer = setTimeout(() => { socket.close(); resolve("timed out"); }, 10000);
    socket.onopen = () => { clearTimeout(timer); socket.close(); resolve("opened"); };
    socket.onerror = () => { clearTimeout(timer); resolve("refused"); };
    socket.onclose = () => { clearTimeout(timer); resolve("refused"); };
  });
  for (const path of sockets) {
    const url = "ws://" + location.host + path;
    results.sockets[path + " (cookie)"] = await open(url);
    results.sockets[path + " (query)"] = await open(withToken(url));
  }
  return results;
}
"""


@pytest.fixture(autouse=True)
def jp_asyncio_loop() -> Iterator[None]:
    """Playwright's sync API drives its own loop on this thread; the pytest-jupyter loop
    fixture (which closes the thread's loop after each test) must stay out of its way."""
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup() -> Iterator[None]:
    """No in-process server here: the Lab server is a subprocess."""
    yield None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("operator-lab")
    with live_server(root, "sqlite", server_app={"jpserver_extensions": LAB_EXTENSIONS}) as s:
        yield start_kernel_and_terminal(s)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def probe(
    page: Any, lab: Lab, token: str, forms: list[str], fetches: list[tuple[str, str]] = FETCHES
) -> dict[str, Any]:
    def fill(path: str) -> str:
        return path.format(kernel=lab.kernel, terminal=lab.terminal)

    result: dict[str, Any] = page.evaluate(
        PROBE,
        {
            "token": token,
            "fetches": [[method, fill(path)] for method, path in fetches],
            "sockets": [fill(path) for path in SOCKETS],
            "forms": forms,
        },
    )
    return result


def assert_reaches_nothing(
    results: dict[str, Any], lab: Lab, without_credential: tuple[str, ...] = ()
) -> None:
    """Every request that carried the operator's credential is a 403 (or failed); a request
    with no credential at all (``without_credential`` forms) is at least not a success."""

    def refused(key: str, status: Any) -> bool:
        if any(key.endswith(f"({form})") for form in without_credential):
            return not (isinstance(status, int) and 200 <= status < 300)
        return status in (0, 403)

    reached = {
        key: (result["status"], result["text"][:120])
        for key, result in results["fetches"].items()
        if not refused(key, result["status"])
    }
    assert reached == {}, f"reached from the operator's page: {reached}"
    leaked = [key for key, r in results["fetches"].items() if lab.server.token in r["text"]]
    assert leaked == [], f"the server's token in {leaked}"
    opened = {key: state for key, state in results["sockets"].items() if state != "refused"}
    assert opened == {}, f"sockets from the operator's page: {opened}"


def test_lab_opened_with_the_operator_token_carries_no_token_and_reaches_nothing(
    lab: Lab, browser: Any
) -> None:
    admin_token = lab.server.token
    context = browser.new_context()
    try:
        page = context.new_page()
        response = page.goto(f"{lab.server.base}/lab?token={OPERATOR_TOKEN}")
        assert response is not None
        assert admin_token not in response.text(), "the server's token is in the page"
        assert admin_token not in page.content()
        assert admin_token not in page.evaluate("() => document.documentElement.outerHTML")
        assert page.evaluate("() => document.getElementById('jupyter-config-data')") is None
        assert response.status == 403
        assert not [c for c in context.cookies() if c["name"].startswith("username-")]

        forms = ["cookie", "header", "query"]
        assert_reaches_nothing(probe(page, lab, OPERATOR_TOKEN, forms), lab, ("cookie",))

        # an EnergyOps read is allowed, and gives the browser the operator's login cookie ...
        health = page.evaluate(
            "async (token) => (await fetch('/energyops/api/health?token=' + token)).status",
            OPERATOR_TOKEN,
        )
        assert health == 200, "the operator still reads the EnergyOps API"
        assert [c for c in context.cookies() if c["name"].startswith("username-")]
        # ... which opens nothing else either
        assert_reaches_nothing(probe(page, lab, OPERATOR_TOKEN, ["cookie"]), lab)
        again = page.goto(f"{lab.server.base}/lab")
        assert again is not None and again.status == 403
        assert admin_token not in page.content()
    finally:
        context.close()


def test_the_same_probes_with_the_servers_token_reach_the_lab(lab: Lab, browser: Any) -> None:
    """The control: from the same refused page, with the full user's token, the kernel,
    terminal and files answer (the refusals above come from the credential, not the page)."""
    context = browser.new_context()
    try:
        page = context.new_page()
        response = page.goto(f"{lab.server.base}/lab?token={OPERATOR_TOKEN}")
        assert response is not None and response.status == 403
        reads = [(method, path) for method, path in FETCHES if method == "GET"]
        results = probe(page, lab, lab.server.token, ["query"], reads)
        fetches = results["fetches"]
        assert fetches["GET /api/kernels (query)"]["status"] == 200, fetches
        assert fetches["GET /api/contents/server.log (query)"]["status"] == 200
        assert fetches["GET /lab (query)"]["status"] == 200
        sockets = results["sockets"]
        assert sockets[f"/api/kernels/{lab.kernel}/channels (query)"] == "opened", sockets
        assert sockets[f"/terminals/websocket/{lab.terminal} (query)"] == "opened", sockets
    finally:
        context.close()
