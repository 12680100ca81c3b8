"""End to end, the market chart in JupyterLab itself (headless Chromium): the market analysis
notebook opened in Lab and run from the Run menu draws the same chart the Voila dashboard does
(``market_chart.py`` checks both). Lab serves a copy of the notebook, so what it saves stays in
the test's directory."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import test_dashboards as dashboards
from .market_chart import assert_market_chart, chart_drawn, hover_shows_block, no_widget_errors
from .stack import REPO, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

browser = dashboards.browser
jp_asyncio_loop = dashboards.jp_asyncio_loop
jp_server_cleanup = dashboards.jp_server_cleanup

NOTEBOOK = "notebooks/market_analysis.ipynb"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("lab-root")
    (root / "notebooks").mkdir()
    shutil.copy(REPO / NOTEBOOK, root / NOTEBOOK)
    running = Stack(tmp_path_factory.mktemp("lab-stack"), days=1, root_dir=root)
    running.start(voila=False)
    try:
        yield running
    finally:
        running.stop()


def test_the_market_notebook_run_in_lab_draws_the_market_chart(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("dialog", lambda dialog: dialog.dismiss())
    page.goto(f"{stack.url}lab/tree/{NOTEBOOK}?token={stack.token}")
    # the notebook is open and its kernel is up
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    page.wait_for_selector(
        ".jp-StatusBar-TextItem:has-text('Python 3 (ipykernel) | Idle')", timeout=90_000
    )
    assert page.locator(".eo-market-chart").count() == 0  # the stored notebook has no outputs
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    # the last cell (the export) has run: every cell ran without an error
    page.wait_for_selector(".jp-OutputArea-output:has-text('missing blocks:')", timeout=120_000)
    assert page.locator(".jp-OutputArea-output[data-mime-type*=error]").count() == 0
    page.wait_for_selector(".eo-market-chart svg path.line", timeout=60_000)

    latest = stack.api("GET", "market/snapshot")["to"]
    rows = stack.api("GET", f"market/snapshot?date={latest}")["rows"]
    assert len(rows) == 96
    assert page.locator(".eo-market-chart").count() == 1
    assert_market_chart(chart_drawn(page, rows), rows)
    hover_shows_block(page, 37, "09:00-09:15")  # the tooltip comes from the notebook's kernel
    no_widget_errors(page)
    page.screenshot(path=str(tmp_path / "lab-market.png"))
    page.close()
