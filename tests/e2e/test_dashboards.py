"""End to end: notebooks executed against a live server; the Voila dashboards and JupyterLab in
headless Chromium. One server and one Voila for the whole module."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import nbformat
import pytest
from nbclient import NotebookClient

from energyops_ext.widgets import EnergyOpsAPIError, EnergyOpsClient
from energyops_ext.widgets.buffer import format_number
from tests.ingest_files import SNAPSHOT_HEADER, csv_bytes, snapshot_rows

from .market_chart import (
    CHART_FACTS,
    assert_market_chart,
    bar_heights,
    chart_drawn,
    hover_shows_block,
    no_widget_errors,
)
from .stack import BROWSER_ARGS, REPO, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

XSS = "<img src=x onerror=alert(1)>"
LOG_SCRIPT = f"""
import sys, time
print("dashboard-line-start", flush=True)
print({XSS!r}, flush=True)
for i in range(40):
    print(f"dashboard-line-{{i}}", flush=True)
    time.sleep(0.1)
print("boom", file=sys.stderr, flush=True)
"""


@pytest.fixture(autouse=True)
def jp_asyncio_loop() -> Iterator[None]:
    """Playwright's sync API drives its own loop on this thread; the pytest-jupyter loop
    fixture (which closes the thread's loop after each test) must stay out of its way."""
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup() -> Iterator[None]:
    """No in-process server here: the stack is a subprocess."""
    yield None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("stack")).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def run_notebook(path: Path, stack: Stack, token: str | None = None) -> Any:
    nb: Any = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute(env=stack.kernel_env(token))
    return nb


@pytest.mark.parametrize(
    "notebook",
    [
        "notebooks/quickstart.ipynb",
        "notebooks/market_analysis.ipynb",
        "notebooks/model_development.ipynb",
        "dashboards/operations.ipynb",
        "dashboards/market.ipynb",
    ],
)
def test_notebook_runs_against_the_server(stack: Stack, notebook: str) -> None:
    token = stack.operator_token if notebook.startswith("dashboards/") else None
    nb = run_notebook(REPO / notebook, stack, token)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_operator_credential_is_read_only(stack: Stack) -> None:
    operator = EnergyOpsClient(stack.url, stack.operator_token)
    assert operator.health()["status"] in ("ok", "degraded")
    assert operator.market_stats()["count"] > 0
    attempts: list[Callable[[], object]] = [
        lambda: operator.upload_script(b"print(1)\n", filename="x.py", kind="test"),
        lambda: operator.upload_dataset("market-snapshot", b"a,b\n", filename="x.csv"),
        lambda: operator.start_run(1),
        lambda: operator.kill_run(1),
        lambda: operator.delete_script(1),
    ]
    for attempt in attempts:
        with pytest.raises(EnergyOpsAPIError) as caught:
            attempt()
        assert caught.value.status == 403, caught.value


def open_dashboard(browser: Any, url: str, selector: str) -> tuple[Any, float, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.on("dialog", lambda dialog: dialog.dismiss())
    started = time.monotonic()
    page.goto(url)
    page.wait_for_selector("body", state="attached")
    first_paint = time.monotonic() - started
    page.wait_for_selector(selector, timeout=90_000)
    return page, first_paint, time.monotonic() - started


def test_market_dashboard_in_chromium(stack: Stack, browser: Any, tmp_path: Path) -> None:
    page, _paint, _chart = open_dashboard(
        browser, stack.page("market.ipynb"), ".eo-market-chart svg path.line"
    )
    latest = stack.api("GET", "market/snapshot")["to"]
    rows = stack.api("GET", f"market/snapshot?date={latest}")["rows"]
    assert_market_chart(chart_drawn(page, rows), rows)

    stats = stack.api("GET", f"market/stats?date={latest}")
    cards = {
        "avg_dam_price": 2,
        "avg_rtm_price": 2,
        "energy_scheduled_mwh": 1,
        "energy_model_result_mwh": 1,
        "count": 0,
    }
    for key, decimals in cards.items():
        shown = page.locator(f'.eo-card[data-stat="{key}"] .eo-card-value').inner_text()
        assert shown == format_number(stats[key], "", decimals), key
    average = page.locator('.eo-card[data-stat="energy_scheduled_mwh"] .eo-card-unit').inner_text()
    assert format_number(stats["avg_scheduled_mw"], "MW", 1) in average
    updated = datetime.fromisoformat(stats["last_updated"]).astimezone(ZoneInfo("Asia/Kolkata"))
    foot = page.locator(".eo-card-foot").inner_text()
    assert foot == f"last updated {updated:%Y-%m-%d %H:%M} IST", foot

    hover_shows_block(page, 37, "09:00-09:15")

    assert page.locator("a.eo-download[download]").count() == 1
    no_widget_errors(page)
    page.screenshot(path=str(tmp_path / "market.png"), full_page=True)
    page.close()


def pick_day(page: Any, day: str, note: str) -> None:
    """Choose ``day`` in the market panel's date picker; wait for the chart's note."""
    page.locator(".eo-market-panel input[type=date]").fill(day)
    page.wait_for_selector(f".eo-chart-note:has-text({note!r})", timeout=30_000)


def test_market_dashboard_says_when_a_day_has_no_data_or_misses_blocks(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    empty_day, gap_day = "2019-06-01", date(2019, 6, 2)  # days no notebook writes
    rows = [r for r in snapshot_rows(gap_day) if r[1] != 37]
    upload = EnergyOpsClient(stack.url, stack.token).upload_dataset(
        "market-snapshot", csv_bytes(SNAPSHOT_HEADER, rows), filename="gap.csv"
    )
    assert upload["rows_inserted"] == 95
    page, _paint, _chart = open_dashboard(
        browser, stack.page("market.ipynb"), ".eo-market-chart svg path.line"
    )
    pick_day(page, empty_day, f"No market data for {empty_day}")
    assert page.locator('.eo-card[data-stat="avg_dam_price"] .eo-card-value').inner_text() == "—"
    page.screenshot(path=str(tmp_path / "market-empty.png"), full_page=True)

    pick_day(page, gap_day.isoformat(), "block 37")
    assert "09:00-09:15" in page.locator(".eo-chart-note").inner_text()
    facts = page.evaluate(CHART_FACTS)
    heights = bar_heights(facts["groups"])
    assert heights[36] == [0.0, 0.0] and min(heights[35]) > 0
    no_widget_errors(page)
    page.screenshot(path=str(tmp_path / "market-gap.png"), full_page=True)
    page.close()


def test_operations_dashboard_live_log_escaping_and_no_execute(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    page, _paint, _ready = open_dashboard(
        browser,
        stack.page("operations.ipynb"),
        ".eo-operations .eo-connection-state[data-state=connected]",
    )
    assert page.get_by_role("button", name="Kill").count() == 0
    assert page.locator(".eo-upload-panel, .eo-scripts-panel").count() == 0

    quant = EnergyOpsClient(stack.url, stack.token)
    script = quant.upload_script(LOG_SCRIPT.encode(), filename="test_dash_log.py", kind="test")
    started = time.monotonic()
    run = quant.start_run(script["id"])
    page.wait_for_selector(".eo-log .eo-log-line:text('dashboard-line-start')", timeout=10_000)
    seen_after = time.monotonic() - started
    assert seen_after < 2.0, f"first log line shown after {seen_after:.2f} s"
    page.wait_for_selector(".eo-log .eo-log-line:text('dashboard-line-3')", timeout=10_000)
    assert page.locator("img[src='x']").count() == 0
    assert page.locator(".eo-log img").count() == 0
    assert page.locator(".eo-log").get_by_text(XSS, exact=True).count() == 1  # once, as text
    no_widget_errors(page)
    page.screenshot(path=str(tmp_path / "operations.png"), full_page=True)

    # follow pauses while the user reads older lines, and resumes at the bottom
    page.wait_for_selector(".eo-log .eo-log-line:text('dashboard-line-24')", timeout=10_000)
    page.evaluate("() => { const b = document.querySelector('.eo-log'); b.scrollTop = 0; }")
    page.wait_for_selector(".eo-log-paused:visible", timeout=5_000)
    page.wait_for_selector(".eo-log .eo-log-line:text('dashboard-line-30')", timeout=10_000)
    assert page.evaluate("() => document.querySelector('.eo-log').scrollTop") == 0
    page.evaluate(
        "() => { const b = document.querySelector('.eo-log'); b.scrollTop = b.scrollHeight; }"
    )
    page.wait_for_selector(".eo-log-paused", state="hidden", timeout=5_000)

    marker = tmp_path / "executed-by-voila-page"
    result = page.evaluate(
        """async (code) => {
          const config = JSON.parse(document.getElementById('jupyter-config-data').textContent);
          const base = config.baseUrl || '/';
          const url = new URL(`${base}api/kernels/${config.kernelId}/channels`, location.origin);
          url.protocol = 'ws:';
          url.search = location.search;
          const ws = new WebSocket(url);
          const replies = [];
          ws.onmessage = (m) => replies.push(JSON.parse(m.data).header.msg_type);
          await new Promise((ok, fail) => {
            ws.onopen = ok;
            ws.onerror = () => fail(new Error('kernel channel did not open: ' + url));
            setTimeout(() => fail(new Error('kernel channel open timed out')), 10000);
          });
          const send = (type, content) => ws.send(JSON.stringify({
            header: {msg_id: type + Math.random(), username: 'x', session: 'probe',
                     msg_type: type, version: '5.3', date: new Date().toISOString()},
            parent_header: {}, metadata: {}, content, channel: 'shell'}));
          send('execute_request', {code, silent: false, store_history: false,
                                   user_expressions: {}, allow_stdin: false});
          send('kernel_info_request', {});
          await new Promise((ok) => setTimeout(ok, 3000));
          ws.close();
          return replies;
        }""",
        f"open({str(marker)!r}, 'w').write('ran')",
    )
    assert "kernel_info_reply" in result  # the channel works for what Voila lets through
    assert "execute_reply" not in result and "execute_input" not in result
    assert not marker.exists()
    quant.wait_run(run["id"], timeout=60)
    page.close()


def test_jupyterlab_shows_launcher_entries_and_live_status(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{stack.url}lab?token={stack.token}")
    page.wait_for_selector(".jp-LauncherCard", timeout=90_000)
    for label in ("Operations dashboard", "Market dashboard", "Quickstart notebook"):
        assert page.locator(".jp-LauncherCard", has_text=label).count() == 1, label
    page.wait_for_selector("[data-energyops-status][data-state=connected]", timeout=30_000)
    running = page.locator("[data-energyops-status]").get_attribute("data-running")
    assert running is not None and running.isdigit()
    page.screenshot(path=str(tmp_path / "lab.png"))
    page.close()
