"""The landing page's live status against a live server (SQLite), on an injected clock: the
uptime ticks between reports without a request, an old report is read again, pushes and run
events bring new figures."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from energyops_ext.widgets import EnergyOpsClient, EventStream
from energyops_ext.widgets.overview import LiveStatus

from .conftest import OPERATOR_TOKEN
from .servers import LiveServer, live_server


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def eventually(check: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def card(status: LiveStatus, key: str) -> str:
    match = re.search(
        rf'data-status="{key}"><div class="eo-card-label">[^<]*</div>'
        r'<div class="eo-card-value">([^<]*)</div>',
        status.widget.value,
    )
    assert match, status.widget.value
    return match.group(1)


def seconds(uptime: str) -> int:
    parts: dict[str, int] = {unit: int(n) for n, unit in re.findall(r"(\d+) (d|h|min|s)", uptime)}
    return parts.get("h", 0) * 3600 + parts.get("min", 0) * 60 + parts.get("s", 0)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    # a fresh server: its first dashboard listener gets a health.update at once, the next
    # push is an hour away, so the test sees exactly the reads it causes
    with live_server(tmp_path, "sqlite", energyops={"health_interval_s": 3600.0}) as s:
        yield s


def test_status_ticks_between_reports_reads_again_when_old_and_on_run_events(
    server: LiveServer,
) -> None:
    operator = EnergyOpsClient(server.base, OPERATOR_TOKEN)
    stream = EventStream(operator.url, operator.token).start()
    clock = FakeClock()
    try:
        status = LiveStatus(
            operator, stream, clock=clock, refresh_s=20, stale_after=45, start=False
        )
        status._reread.clear()  # no first read: the push is the report
        eventually(lambda: status.reading.report is not None)
        status.tick()
        assert status.reads == 0
        assert card(status, "status") == "ok" and card(status, "database") == "sqlite ok"
        first = seconds(card(status, "uptime"))

        clock.now += 7  # no request: the uptime goes on from the report
        status.tick()
        assert status.reads == 0
        assert seconds(card(status, "uptime")) == first + 7
        assert "last report 7 s ago" in status.widget.value

        clock.now += 14  # 21 s since the report: read again
        status.tick()
        assert status.reads == 1
        assert "last report 0 s ago" in status.widget.value
        assert seconds(card(status, "uptime")) >= first

        quant = EnergyOpsClient(server.base, server.token)
        script = quant.upload_script(b"print('hi')\n", filename="test_hi.py", kind="test")
        run = quant.start_run(script["id"])
        eventually(status._reread.is_set)  # run.queued / run.started reached the page
        clock.now += 1
        status.tick()
        assert status.reads == 2
        quant.wait_run(run["id"], timeout=60)
    finally:
        stream.close()
