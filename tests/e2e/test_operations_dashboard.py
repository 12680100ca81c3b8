"""End to end, the operations dashboard in headless Chromium (Voila, operator token): the watched
run keeps its final log and status and stays selected after it finished and after another run
ran; the table's % is the bar's; ``::energyops`` lines are hidden until the toggle shows them
(dimmed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from energyops_ext.widgets import EnergyOpsClient

from . import test_dashboards as dashboards
from .stack import Stack

# the fixtures and page helper of the other dashboard tests (one Chromium per module)
browser = dashboards.browser
jp_asyncio_loop = dashboards.jp_asyncio_loop
jp_server_cleanup = dashboards.jp_server_cleanup
open_dashboard = dashboards.open_dashboard

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

HOLDS = """
import time
print("held-start", flush=True)
print('::energyops {"progress": 25, "objective": 1234.5}', flush=True)
print("held at 25", flush=True)
while True:
    time.sleep(0.2)
"""
ENDS = 'print("ends-line", flush=True)\n'

WATCH_SELECT = ".eo-operations .eo-watch-run select"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("ops-stack"), days=1).start()
    try:
        yield running
    finally:
        running.stop()


def table_cells(page: Any, run_id: int) -> list[str]:
    row = page.locator(".eo-operations .eo-table tr", has=page.locator(f"td:text-is('{run_id}')"))
    return [c.strip() for c in row.first.locator("td").all_inner_texts()]


def bar_percent(page: Any) -> float:
    width = page.evaluate(
        "() => document.querySelector('.eo-run-progress .progress-bar').style.width"
    )
    return float(str(width).rstrip("%") or 0)


def test_watched_run_stays_and_its_percent_is_the_bars(
    stack: Stack,
    browser: Any,
    tmp_path: Path,
) -> None:
    page, _paint, _ready = open_dashboard(
        browser,
        stack.page("operations.ipynb"),
        ".eo-operations .eo-connection-state[data-state=connected]",
    )
    quant = EnergyOpsClient(stack.url, stack.token)
    held = quant.start_run(
        int(quant.upload_script(HOLDS.encode(), filename="test_e2e_hold.py", kind="test")["id"])
    )["id"]
    # none was watched: the new run is followed
    page.wait_for_selector(".eo-log .eo-log-line:text('held at 25')", timeout=30_000)
    assert page.locator(".eo-log .eo-log-line.eo-log-marker").count() == 0
    texts = page.locator(".eo-log .eo-log-line").all_inner_texts()
    assert not [t for t in texts if "::energyops" in t], texts

    page.wait_for_function(
        "() => document.querySelector('.eo-run-progress .progress-bar').style.width === '25%'",
        timeout=30_000,
    )
    page.wait_for_function(
        """(id) => [...document.querySelectorAll('.eo-operations .eo-table tr')].some(
             (tr) => tr.cells[0] && tr.cells[0].textContent.trim() === String(id)
                     && tr.cells[3].textContent.trim() === '25')""",
        arg=held,
        timeout=30_000,
    )
    assert bar_percent(page) == float(table_cells(page, held)[3])

    page.locator(".eo-log-markers input[type=checkbox]").check()
    marker = page.locator(".eo-log .eo-log-line.eo-log-marker")
    marker.first.wait_for(timeout=10_000)
    assert marker.count() == 1 and "::energyops" in marker.first.inner_text()
    assert float(marker.first.evaluate("(el) => getComputedStyle(el).opacity")) < 1
    page.locator(".eo-log-markers input[type=checkbox]").uncheck()
    page.wait_for_selector(".eo-log .eo-log-line.eo-log-marker", state="detached")

    quant.kill_run(held)
    page.wait_for_selector(".eo-run-progress [data-status=killed]", timeout=30_000)
    page.wait_for_function(
        "(sel) => { const s = document.querySelector(sel);"  # options re-render: none for a frame
        " const o = s && s.selectedOptions[0];"
        " return !!o && o.textContent.endsWith('(killed)'); }",
        arg=WATCH_SELECT,
        timeout=30_000,
    )
    assert page.locator(".eo-log .eo-log-line:text('held at 25')").count() == 1

    ended = quant.start_run(
        int(quant.upload_script(ENDS.encode(), filename="test_e2e_ends.py", kind="test")["id"])
    )["id"]
    quant.wait_run(ended, timeout=60)
    page.wait_for_function(
        """(id) => [...document.querySelectorAll('.eo-operations .eo-table tr')].some(
             (tr) => tr.cells[0] && tr.cells[0].textContent.trim() === String(id)
                     && tr.cells[2].textContent.trim() === 'succeeded')""",
        arg=ended,
        timeout=30_000,
    )
    selected = page.locator(WATCH_SELECT).evaluate("(s) => s.selectedOptions[0].textContent")
    selected = selected.replace("\xa0", " ")  # the dropdown draws spaces as no-break spaces
    assert selected.startswith(f"#{held} ") and selected.endswith("(killed)")
    assert page.locator(".eo-log .eo-log-line:text('held at 25')").count() == 1
    assert page.locator(".eo-run-progress [data-status=killed]").count() == 1
    page.screenshot(path=str(tmp_path / "operations-kept.png"), full_page=True)

    # the user picks the other run: now that one is shown
    label = f"#{ended} test_e2e_ends.py (succeeded)".replace(" ", "\xa0")
    page.locator(WATCH_SELECT).select_option(label=label)
    page.wait_for_selector(".eo-log .eo-log-line:text('ends-line')", timeout=30_000)
    page.wait_for_selector(".eo-run-progress [data-status=succeeded]", timeout=30_000)
    assert page.locator(".eo-log .eo-log-line:text('held at 25')").count() == 0
    page.close()
