"""Dashboards: Voila first paint and time to chart visible (against Voila serving a trivial
one-cell notebook), and widget messages per second while a run prints 5,000 lines/s."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from jupyter_client.manager import start_new_kernel

from energyops_ext.widgets import EnergyOpsClient
from tests.e2e.stack import BROWSER_ARGS, Stack, stop

from .harness import Figure, Result, benchmark

LINES_PER_S = 5000
SECONDS = 4
FLOOD = f"""
import time
start = time.monotonic()
for i in range({LINES_PER_S * SECONDS}):
    print(f"line {{i}} " + "x" * 40)
    if i % 100 == 0:
        delay = start + i / {LINES_PER_S} - time.monotonic()
        if delay > 0:
            time.sleep(delay)
"""


def _page_times(browser: Any, url: str, ready: str, repeat: int = 3) -> tuple[float, float]:
    """Median seconds to the first rendered output and to ``ready`` (a JS predicate)."""
    paints, readies = [], []
    for _ in range(repeat):
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        started = time.monotonic()
        page.goto(url)
        page.wait_for_selector(".jp-OutputArea-output", timeout=120_000)
        paints.append(time.monotonic() - started)
        page.wait_for_function(ready, timeout=120_000)
        readies.append(time.monotonic() - started)
        page.close()
    return statistics.median(paints), statistics.median(readies)


CHART_READY = (
    "() => { const p = document.querySelector('.eo-market-chart svg path.line');"
    " return p && (p.getAttribute('d') || '').length > 100; }"
)


def _paint_figures(stack: Stack, workdir: Path) -> list[Figure]:
    from playwright.sync_api import sync_playwright

    trivial = workdir / "trivial"
    trivial.mkdir()
    cell: dict[str, Any] = {
        "cell_type": "code",
        "id": "trivial",
        "metadata": {},
        "execution_count": None,
        "outputs": [],
        "source": "print('hello')",
    }
    nb = {
        "cells": [cell],
        "metadata": {
            "kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (trivial / "trivial.ipynb").write_text(json.dumps(nb))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        paint, chart = _page_times(browser, stack.page("market.ipynb"), CHART_READY)
        ops_paint, ops_ready = _page_times(
            browser,
            stack.page("operations.ipynb"),
            "() => !!document.querySelector('.eo-connection-state[data-state=connected]')",
        )
        stop(stack.voila)
        stack.start_voila(trivial)
        base_paint, _ = _page_times(browser, stack.page("trivial.ipynb"), "() => true")
        browser.close()
    base = "trivial one-cell notebook, first output"
    return [
        Figure("market dashboard first paint", paint, "s", base_paint, base),
        Figure("market dashboard chart visible", chart, "s", base_paint, base),
        Figure("operations dashboard first paint", ops_paint, "s", base_paint, base),
        Figure("operations dashboard live (socket connected)", ops_ready, "s", base_paint, base),
    ]


def _flood_figures(stack: Stack) -> list[Figure]:
    """Count comm messages per widget on iopub while a LogPanel follows a 5,000 lines/s run."""
    quant = EnergyOpsClient(stack.url, stack.token)
    script = quant.upload_script(FLOOD.encode(), filename="test_flood.py", kind="test")
    km, kc = start_new_kernel(kernel_name="python3", env=stack.kernel_env())
    try:
        setup = (
            "from energyops_ext.widgets import EnergyOpsClient\n"
            "from energyops_ext.widgets.panels import LogPanel, RunProgress, shared_stream\n"
            "client = EnergyOpsClient()\nstream = shared_stream(client)\n"
            "stream.wait_connected(10)\n"
            "panel = LogPanel(client, stream)\nprogress = RunProgress(client, stream)\n"
            "display(panel.widget, progress.widget)\n"
        )
        kc.execute_interactive(setup, timeout=60)
        run = quant.start_run(script["id"])
        follow = f"panel.follow({run['id']}); progress.follow({run['id']})"
        kc.execute_interactive(follow, timeout=60)
        per_comm: Counter[str] = Counter()
        started = time.monotonic()
        finished_at = None
        while True:
            try:
                msg = kc.get_iopub_msg(timeout=0.5)
            except Exception:
                msg = None
            if msg is not None and msg["msg_type"] == "comm_msg":
                per_comm[msg["content"]["comm_id"]] += 1
            if finished_at is None and quant.run(run["id"])["status"] not in ("queued", "running"):
                finished_at = time.monotonic()
            if finished_at is not None and time.monotonic() - finished_at > 1.5:
                break
        elapsed = time.monotonic() - started
        done = quant.run(run["id"])
        outputs: list[dict[str, Any]] = []
        kc.execute_interactive(
            "print(len(panel.buffer), panel.buffer.gaps(), panel.buffer.last_seq,"
            " panel.buffer.capacity)",
            timeout=30,
            output_hook=outputs.append,
        )
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    kept, gaps, last_seq, capacity = (int(x) for x in text.split())
    busiest = max(per_comm.values()) / elapsed if per_comm else 0.0
    total = sum(per_comm.values()) / elapsed
    lines = int(done.get("line_count") or 0)
    return [
        Figure("widget messages/s, busiest widget", busiest, "msg/s", goal="<= 20 per panel"),
        Figure(
            "widget messages/s, all widgets",
            total,
            "msg/s",
            lines / elapsed,
            "log lines/s the run printed",
            goal="bounded",
        ),
        Figure("log lines lost inside the buffer window", gaps, "lines", goal="0"),
        Figure(
            "log lines kept / expected",
            kept,
            "lines",
            min(lines, capacity),
            f"min(run lines {lines}, capacity); last seq {last_seq}",
            goal="ratio 1.0",
        ),
    ]


@benchmark("dashboard")
def dashboard() -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp)).start()
        try:
            figures = _flood_figures(stack) + _paint_figures(stack, Path(tmp))
        finally:
            stack.stop()
    return Result("dashboard", figures, notes=f"run printing {LINES_PER_S} lines/s for {SECONDS} s")
