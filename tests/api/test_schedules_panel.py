"""The schedule panels against a live server on both databases: create (and refuse), fire for
real, pause, resume and delete in the quant's panel; today's runs with their deadline under the
operator's token on the read-only view."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import requests

from energyops_ext.widgets import EnergyOpsClient, EventStream
from energyops_ext.widgets.schedules import SchedulesPanel, TodaySchedulePanel

from ..conftest import BACKENDS
from .conftest import OPERATOR_TOKEN
from .servers import LiveServer, live_server

XSS = "<img src=x onerror=alert(1)>"
EVERY_2S = "* * * * * */2"


def eventually(check: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp(f"schedules-panel-{request.param}")
    with live_server(workdir, request.param, energyops={"schedule_poll_s": 0.5}) as s:
        yield s


def test_schedules_panel_and_todays_runs(server: LiveServer) -> None:
    response = requests.post(
        server.url("scripts"),
        headers=server.headers,
        files={"file": ("test_panel_schedule.py", b"print('on time')\n")},
        data={"kind": "test"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    client = EnergyOpsClient(server.base, server.token)
    stream = EventStream(client.url, client.token).start()
    operator = EnergyOpsClient(server.base, OPERATOR_TOKEN)
    operator_stream = EventStream(operator.url, operator.token).start()
    panel = SchedulesPanel(client, stream)
    today = TodaySchedulePanel(operator, operator_stream)
    try:
        assert "no schedules yet" in panel.listing.value
        eventually(lambda: "nothing scheduled today" in today.body.value)

        panel.script.value = "test_panel_schedule.py"
        panel.cron.value = "61 * * * *"
        assert panel.create() is None
        assert "cron &#x27;61 * * * *&#x27; is not a valid cron expression" in panel.message.value

        panel.name.value = XSS
        panel.cron.value = EVERY_2S
        panel.deadline.value = "+1"
        schedule = panel.create()
        assert schedule is not None and schedule["enabled"] is True
        assert "&lt;img" in panel.listing.value and XSS not in panel.listing.value
        assert panel.selector.value == schedule["id"]

        # the server's own tick fires it; the run starts, succeeds and meets its deadline
        eventually(lambda: 'data-outcome="met"' in today.body.value)
        assert XSS not in today.body.value
        eventually(lambda: "1 succeeded" in panel.fires.value)
        assert "met" in panel.fires.value

        paused = panel.toggle()
        assert paused is not None and paused["enabled"] is False
        assert 'data-outcome="paused"' in panel.listing.value
        resumed = panel.toggle()
        assert resumed is not None and resumed["enabled"] is True

        panel.delete()
        assert "no schedules yet" in panel.listing.value
    finally:
        panel.close()
        today.close()
        stream.close()
        operator_stream.close()
