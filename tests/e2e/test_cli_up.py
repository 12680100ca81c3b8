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
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .stack import BROWSER_ARGS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


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


# --- `make run` in a fresh clone: landing page, titles, Lab's folder, icons, a clean tree ---


@dataclass
class Up:
    clone: Path
    process: subprocess.Popen[str]
    lab: str
    lab_url: str  # as printed, with its token
    voila: str
    voila_token: str
    output: list[str]

    @property
    def workspace(self) -> Path:
        return self.clone / ".energyops" / "workspace"


def git(clone: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=clone, capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout


def clone_of_the_repository(target: Path) -> Path:
    """The tracked files as a fresh clone has them, committed in a repository of their own."""
    tracked = git(ROOT, "ls-files", "-z").split("\0")
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    git(target, "init", "-q")
    git(target, "add", "-A")
    git(target, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone")
    return target


def printed(process: subprocess.Popen[str], output: list[str], pattern: str) -> re.Match[str]:
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        output.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"{pattern!r} was not printed:\n" + "".join(output))


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    clone = clone_of_the_repository(tmp_path_factory.mktemp("clone"))
    lab_port, voila_port = free_port(), free_port()
    env = {**os.environ, "ENERGYOPS_LAB_TOKEN": "lab-secret-token"}
    env.pop("ENERGYOPS_DATA_DIR", None)
    env.pop("ENERGYOPS_DB_URL", None)
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "jupyter"),
            "energyops",
            "up",
            f"--lab-port={lab_port}",
            f"--voila-port={voila_port}",
        ],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    try:
        lab_url = printed(process, output, r"JupyterLab:\s+(\S+)").group(1)
        voila_token = printed(process, output, rf":{voila_port}/\?token=([0-9a-f]+)").group(1)
        # the rest is read on, so that a full pipe never blocks the servers
        threading.Thread(target=output.extend, args=(process.stdout,), daemon=True).start()
        running = Up(
            clone,
            process,
            f"http://127.0.0.1:{lab_port}",
            lab_url,
            f"http://127.0.0.1:{voila_port}",
            voila_token,
            output,
        )
        assert wait_for(f"{running.lab}/energyops/api/health", "lab-secret-token") == 200
        assert wait_for(f"{running.voila}/?token={voila_token}", None) == 200
        yield running
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(autouse=True)
def jp_asyncio_loop() -> Iterator[None]:
    """Playwright's sync API drives its own loop on this thread (see test_dashboards)."""
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup() -> Iterator[None]:
    yield None


def test_landing_page_opens_the_live_overview_with_a_line_on_each_dashboard(
    up: Up, browser: Any
) -> None:
    page = browser.new_page()
    page.goto(f"{up.voila}/?token={up.voila_token}")
    page.wait_for_url("**/voila/render/overview.ipynb", timeout=30_000)
    uptime = page.locator('[data-status="uptime"] .eo-card-value')
    uptime.wait_for(timeout=90_000)
    assert page.locator('[data-status="status"] .eo-card-value').inner_text() == "ok"
    first = uptime.inner_text()
    # live: the figure moves by itself (it ticks every second); seen twice, no sleep
    page.wait_for_function(
        "first => document.querySelector('[data-status=\"uptime\"] .eo-card-value')"
        ".textContent !== first",
        arg=first,
        timeout=10_000,
    )
    assert uptime.inner_text() != first
    items = page.locator(".eo-dashboards li")
    names = [items.nth(i).get_attribute("data-dashboard") for i in range(items.count())]
    assert sorted(n for n in names if n) == ["market.ipynb", "operations.ipynb"]
    for i in range(items.count()):
        assert items.nth(i).locator("a").inner_text().strip()
        assert items.nth(i).locator(".eo-dashboard-description").inner_text().strip()
    # the links work with the cookie the token set: no token in their URL
    page.locator('.eo-dashboards li[data-dashboard="market.ipynb"] a').click()
    page.wait_for_url("**/voila/render/market.ipynb", timeout=30_000)
    page.locator(".eo-connection").wait_for(timeout=90_000)
    page.close()


def headings(page: Any) -> list[tuple[str, str]]:
    found = page.eval_on_selector_all(
        "h1, h2, h3, h4, h5, h6",
        "els => els.map(e => [e.tagName, e.textContent.replace('¶', '').trim()])",
    )
    return [(tag, text) for tag, text in found]


@pytest.mark.parametrize("dashboard", ["overview.ipynb", "market.ipynb", "operations.ipynb"])
def test_each_dashboard_shows_one_title(up: Up, browser: Any, dashboard: str) -> None:
    page = browser.new_page()
    page.goto(f"{up.voila}/voila/render/{dashboard}?token={up.voila_token}")
    page.locator(".eo-connection").wait_for(timeout=90_000)  # the widgets are drawn
    found = headings(page)
    titles = [text for tag, text in found if tag == "H1"]
    assert len(titles) == 1, found
    assert [text for _tag, text in found].count(titles[0]) == 1, found
    page.close()


def test_lab_opens_in_the_notebooks_folder_of_the_working_copy(up: Up, browser: Any) -> None:
    assert up.lab_url.startswith(f"{up.lab}/lab/tree/notebooks?token=")
    status, _ = get(f"{up.lab}/", "lab-secret-token")
    assert status == 302  # / goes to the same folder
    status, body = get(f"{up.lab}/api/contents", "lab-secret-token")
    root = {item["name"] for item in json.loads(body)["content"]}
    assert root == {"notebooks", "dashboards"}, root  # the working copy, not the repository
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(up.lab_url)
    listing = page.locator(".jp-DirListing-content .jp-DirListing-itemText")
    page.wait_for_selector(".jp-DirListing-item[title*='quickstart.ipynb']", timeout=90_000)
    names = set(listing.all_inner_texts())
    assert {"quickstart.ipynb", "market_analysis.ipynb"} <= names, names
    assert "README.md" not in names and "dashboards" not in names
    assert "notebooks" in page.locator(".jp-BreadCrumbs").inner_text()

    # the three EnergyOps launcher cards each have an icon of their own
    cards = page.locator(".jp-LauncherCard[data-category='EnergyOps']")
    cards.first.wait_for(timeout=30_000)
    icons = [
        cards.nth(i).locator(".jp-LauncherCard-icon").inner_html() for i in range(cards.count())
    ]
    assert len(icons) == 3 and len(set(icons)) == 3, icons
    assert all("<svg" in icon for icon in icons), icons
    page.close()


def test_opening_and_saving_a_notebook_leaves_the_clone_clean(up: Up, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{up.lab}/lab/tree/notebooks/quickstart.ipynb?token=lab-secret-token")
    cell = page.locator(".jp-Notebook .jp-CodeCell .cm-content").first
    cell.wait_for(timeout=90_000)
    cell.click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("# edited in Lab\n")
    page.keyboard.press("Control+s")
    saved = f"{up.lab}/api/contents/notebooks/quickstart.ipynb"
    deadline = time.monotonic() + 30
    while b"# edited in Lab" not in get(saved, "lab-secret-token")[1]:
        assert time.monotonic() < deadline, "the notebook was not saved"
        time.sleep(0.2)
    page.close()
    # every test of this module ran against the clone by now: its tracked files and the
    # folders around them are as cloned; what Lab saved is in the working copy
    assert git(up.clone, "status", "--porcelain", "--ignored=no") == ""
    assert not list(up.clone.glob("*/.ipynb_checkpoints"))
    assert "# edited in Lab" not in (up.clone / "notebooks" / "quickstart.ipynb").read_text()
    assert "# edited in Lab" in (up.workspace / "notebooks" / "quickstart.ipynb").read_text()
    assert (up.workspace / "notebooks" / ".ipynb_checkpoints").is_dir()
