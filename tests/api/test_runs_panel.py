"""The operations dashboard's runs panels against a live server on both databases: the watched
run stays selected, with its final log and status, after it finished and after other runs
started, until the user picks another; the table's % is the progress bar's."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from energyops_ext.widgets import EnergyOpsClient
from energyops_ext.widgets.dashboard import operations_dashboard
from energyops_ext.widgets.logpanel import LogPanel
from energyops_ext.widgets.panels import RunProgress, RunsPanel

from ..conftest import BACKENDS
from .panels_helpers import HOLDS_AT_25, REPORTS_AND_ENDS, eventually, upload
from .servers import LiveServer, live_server


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp(f"runs-panel-{request.param}"), request.param) as s:
        yield s


def table_row(html: str, run_id: int) -> tuple[str, str] | None:
    """(status, %) of a run in the runs table."""
    found = re.search(rf"<tr><td>{run_id}</td><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td>", html)
    return (found[1], found[2]) if found else None


def labels(runs: RunsPanel) -> dict[int | None, str]:
    return {value: label for label, value in runs.selector.options}


def test_watched_run_stays_with_its_final_log_and_status_and_the_table_follows_the_bar(
    server: LiveServer,
) -> None:
    client = EnergyOpsClient(server.base, server.token)
    dashboard = operations_dashboard(client)
    runs = dashboard.panels["runs"]
    progress = dashboard.panels["progress"]
    log = dashboard.panels["log"]
    assert isinstance(runs, RunsPanel) and isinstance(progress, RunProgress)
    assert isinstance(log, LogPanel)
    try:
        assert dashboard.stream.wait_connected()
        held = int(client.start_run(upload(client, HOLDS_AT_25, "test_hold.py"))["id"])
        eventually(lambda: held in labels(runs), what="the run listed")
        runs.selector.value = held  # the user's pick (or already followed: none was watched)
        eventually(lambda: log.run_id == held and progress.run_id == held, what="watched")

        # one run.progress moves the bar and the table's % together
        eventually(lambda: progress.bar.value == 25, what="the bar at 25")
        eventually(lambda: table_row(runs.body.value, held) == ("running", "25"), what="25 %")
        assert "1,234.50" in progress.label.value

        client.kill_run(held)
        eventually(lambda: 'data-status="killed"' in progress.label.value, what="killed shown")
        eventually(lambda: labels(runs).get(held, "").endswith("(killed)"), what="relabelled")
        assert runs.selector.value == held
        eventually(lambda: (table_row(runs.body.value, held) or ("",))[0] == "killed")
        assert "holding at 25" in [line.text for line in log.lines()]

        # a run that starts and ends meanwhile does not take the view away
        other = int(client.start_run(upload(client, REPORTS_AND_ENDS, "test_ends.py"))["id"])
        client.wait_run(other, timeout=60)
        eventually(lambda: labels(runs).get(other, "").endswith("(succeeded)"), what="listed")
        assert runs.selector.value == held and log.run_id == held
        assert 'data-status="killed"' in progress.label.value
        assert "holding at 25" in [line.text for line in log.lines()]

        # until the user picks another
        runs.selector.value = other
        eventually(lambda: 'data-status="succeeded"' in progress.label.value)
        assert progress.bar.value == 100
        eventually(lambda: "report-last-line" in [line.text for line in log.lines()])
        assert "holding at 25" not in [line.text for line in log.lines()]
        eventually(lambda: table_row(runs.body.value, other) == ("succeeded", "100"))
    finally:
        dashboard.stream.close()


def test_a_new_run_is_followed_while_none_is_watched(server: LiveServer) -> None:
    client = EnergyOpsClient(server.base, server.token)
    dashboard = operations_dashboard(client)
    runs = dashboard.panels["runs"]
    assert isinstance(runs, RunsPanel)
    try:
        assert dashboard.stream.wait_connected()
        assert runs.selector.value is None
        started = int(client.start_run(upload(client, REPORTS_AND_ENDS, "test_new.py"))["id"])
        eventually(lambda: runs.selector.value == started, what="the new run followed")
        client.wait_run(started, timeout=60)
        eventually(lambda: labels(runs).get(started, "").endswith("(succeeded)"))
        assert runs.selector.value == started
    finally:
        dashboard.stream.close()
