"""End to end, the workbench's scripts panel in headless Chromium (Voila with the quant's
token): a file dropped on the upload button with an About text, which is empty again for the
next upload; two runs, the older one killed from its own row; the "last run" column following
the runs; the delete question naming how many runs go with the script."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from energyops_ext.widgets import EnergyOpsAPIError, EnergyOpsClient

from . import test_dashboards as dashboards
from .market_chart import no_widget_errors
from .stack import REPO, Stack, free_port, stop, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

browser = dashboards.browser
jp_asyncio_loop = dashboards.jp_asyncio_loop
jp_server_cleanup = dashboards.jp_server_cleanup
open_dashboard = dashboards.open_dashboard

HOLDS = """import time
print("held", flush=True)
while True:
    time.sleep(0.2)
"""


class Workbench:
    """Voila on a notebook that shows ``workbench()``, its kernels holding the quant's token."""

    def __init__(self, stack: Stack, directory: Path) -> None:
        nb: Any = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
        nb.cells = [
            nbformat.v4.new_code_cell(  # type: ignore[no-untyped-call]
                "from energyops_ext.widgets import workbench\nbench = workbench()\nbench"
            )
        ]
        nbformat.write(nb, directory / "workbench.ipynb")  # type: ignore[no-untyped-call]
        self.port, self.token = free_port(), "wb-" + stack.voila_token
        log = directory / "voila.log"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voila",
                str(directory),
                "--no-browser",
                "--Voila.ip=127.0.0.1",
                f"--port={self.port}",
                f"--token={self.token}",
            ],
            env=stack.kernel_env(stack.token),
            cwd=REPO,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_http(f"http://127.0.0.1:{self.port}/?token={self.token}", {}, self.process, log)

    def page(self) -> str:
        return f"http://127.0.0.1:{self.port}/voila/render/workbench.ipynb?token={self.token}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Workbench]]:
    running = Stack(tmp_path_factory.mktemp("bench-stack"), days=1).start(voila=False)
    bench = None
    try:
        bench = Workbench(running, tmp_path_factory.mktemp("bench-notebooks"))
        yield running, bench
    finally:
        stop(bench.process if bench else None)
        running.stop()


# the "last run" cell of the script's row in the listing
LAST_RUN_CELL = """() => {
  const row = [...document.querySelectorAll('.eo-script-listing tr')].find(
    (tr) => tr.cells[1] && tr.cells[1].textContent.trim() === 'test_bench_hold.py');
  return row ? row.cells[row.cells.length - 1].textContent.trim() : null;
}"""


def run_rows(page: Any) -> Any:
    return page.locator(".eo-scripts-panel .eo-run-item")


def test_workbench_runs_list_kill_per_run_and_delete_question(
    stack: tuple[Stack, Workbench], browser: Any, tmp_path: Path
) -> None:
    server, bench = stack
    page, _paint, _ready = open_dashboard(browser, bench.page(), ".eo-scripts-panel")
    panel = page.locator(".eo-scripts-panel")
    script = tmp_path / "test_bench_hold.py"
    script.write_text(HOLDS)
    with page.expect_file_chooser() as chooser:
        panel.locator(".widget-upload").first.click()
    chooser.value.set_files(str(script))
    panel.locator(".eo-script-about input").fill("holds until killed")
    panel.get_by_role("button", name="Upload").click()
    page.wait_for_selector(".eo-scripts-panel :text('uploaded test_bench_hold.py v1')")
    quant = EnergyOpsClient(server.url, server.token)
    sid = int(quant.scripts()["id"].iloc[0])
    assert quant.script(sid)["description"] == "holds until killed"
    # the About text of that upload is gone before the next one
    page.wait_for_function(
        "() => document.querySelector('.eo-script-about input').value === ''", timeout=10_000
    )

    run = panel.locator("button.eo-run-button")
    run.click()
    page.wait_for_function(
        "() => document.querySelectorAll('.eo-scripts-panel .eo-run-item').length === 1"
    )
    run.click()
    page.wait_for_function(
        "() => document.querySelectorAll('.eo-scripts-panel .eo-run-row[data-status=running]')"
        ".length === 2",
        timeout=30_000,
    )
    ids = [
        int(r)
        for r in run_rows(page)
        .locator(".eo-run-row")
        .evaluate_all("(rows) => rows.map((r) => r.dataset.run)")
    ]
    newer, older = ids
    assert newer > older
    page.wait_for_function(f"() => ({LAST_RUN_CELL})() === 'running'", timeout=30_000)

    # Kill on the older run's row reaches that run, not the last one started
    run_rows(page).nth(1).locator("button.eo-kill-button").click()
    page.wait_for_selector(f".eo-run-row[data-run='{older}'][data-status=killed]", timeout=30_000)
    assert quant.run(older)["status"] == "killed"
    assert quant.run(newer)["status"] == "running"
    assert run_rows(page).nth(1).locator("button.eo-kill-button").is_disabled()
    run_rows(page).nth(0).locator("button.eo-kill-button").click()
    page.wait_for_selector(f".eo-run-row[data-run='{newer}'][data-status=killed]", timeout=30_000)
    page.wait_for_function(f"() => ({LAST_RUN_CELL})() === 'killed'", timeout=30_000)
    page.wait_for_selector(f".eo-run-message:text('run {newer} killed')", timeout=30_000)

    panel.locator("button.eo-delete-button").click()
    prompt = page.locator(".eo-delete-prompt")
    prompt.wait_for(timeout=10_000)
    assert "test_bench_hold.py v1" in prompt.inner_text()
    assert "Its 2 runs, with their logs and output files, are deleted with it." in (
        prompt.inner_text()
    )
    page.screenshot(path=str(tmp_path / "workbench-delete.png"), full_page=True)
    confirm = panel.locator("button.eo-confirm-delete")
    assert confirm.inner_text().strip() == "Delete script and 2 runs"
    confirm.click()
    page.wait_for_selector(
        f".eo-scripts-panel :text('script {sid} deleted with its 2 runs')", timeout=10_000
    )
    for run_id in ids:
        with pytest.raises(EnergyOpsAPIError) as gone:
            quant.run(run_id)
        assert gone.value.status == 404
    no_widget_errors(page)
    page.close()
