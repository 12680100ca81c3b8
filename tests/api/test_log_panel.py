"""The log view of a run against a live server on both databases: opened while the run prints
flat out, it shows every line from seq 1, in order, each once, whether the shared stream had
already passed lines of that run on (another panel watched it first) or lines were printed
between the panel's API read and its subscription. Report lines are hidden until asked for."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from energyops_ext.widgets import EnergyOpsClient, EventStream
from energyops_ext.widgets.logpanel import LogPanel
from energyops_ext.widgets.panels import RunProgress

from ..conftest import BACKENDS
from .panels_helpers import (
    FLAT_OUT,
    FLAT_OUT_LINES,
    REPORTS_AND_ENDS,
    all_lines,
    eventually,
    upload,
)
from .servers import LiveServer, live_server


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp(f"log-panel-{request.param}"), request.param) as s:
        yield s


@pytest.fixture
def client(server: LiveServer) -> EnergyOpsClient:
    return EnergyOpsClient(server.base, server.token)


@pytest.fixture
def stream(client: EnergyOpsClient) -> Iterator[EventStream]:
    with EventStream(client.url, client.token).start() as s:
        assert s.wait_connected()
        yield s


def assert_whole(panel: LogPanel, client: EnergyOpsClient, run_id: int) -> None:
    stored = all_lines(client, run_id)
    assert len(stored) >= FLAT_OUT_LINES
    eventually(lambda: panel.buffer.last_seq == len(stored), what="the last line shown")
    shown = panel.lines()
    seqs = [line.seq for line in shown]
    assert seqs[0] == 1, f"the view starts at seq {seqs[0]}"
    assert seqs == list(range(1, len(stored) + 1))  # no gap, no duplicate
    assert [line.text for line in shown] == [line["text"] for line in stored]
    assert panel.buffer.gaps() == 0


def test_opened_after_another_panel_watched_the_run_it_still_starts_at_seq_1(
    client: EnergyOpsClient, stream: EventStream
) -> None:
    """The reported case: the progress bar subscribed to the run first, so the shared stream
    had already passed its first lines on (and drops them as seen) when the log opened."""
    run_id = int(client.start_run(upload(client, FLAT_OUT, "test_flat_a.py"))["id"])
    progress = RunProgress(client, stream)
    progress.follow(run_id)
    topic = f"run:{run_id}"
    eventually(lambda: stream.seq.last.get(topic, 0) > 200, what="live lines passed on")
    panel = LogPanel(client, stream)
    panel.follow(run_id)
    assert client.run(run_id)["status"] == "running"  # opened mid-flight
    client.wait_run(run_id, timeout=60)
    assert_whole(panel, client, run_id)


class PausingClient(EnergyOpsClient):
    """A client whose first page read of a run's log returns only after the run has printed
    ``more`` lines past that page: those lines exist before the panel subscribes, and only
    the subscription's replay can bring them."""

    more = 600

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.page_end: int | None = None
        self.printed_meanwhile = 0

    def get(self, path: str, **params: Any) -> Any:
        answer = super().get(path, **params)
        if path.endswith("/logs") and self.page_end is None:
            self.page_end = max((int(x["seq"]) for x in answer["items"]), default=0)
            run_id = int(path.split("/")[1])

            def printed() -> int:
                return len(super(PausingClient, self).get(path, after=self.page_end)["items"])

            eventually(
                lambda: printed() >= self.more or self.run(run_id)["status"] != "running",
                what="lines printed after the page read",
            )
            self.printed_meanwhile = printed()
        return answer


def test_lines_printed_between_the_page_read_and_the_subscription_are_not_lost(
    server: LiveServer, client: EnergyOpsClient, stream: EventStream
) -> None:
    run_id = int(client.start_run(upload(client, FLAT_OUT, "test_flat_b.py"))["id"])
    eventually(lambda: len(client.get(f"runs/{run_id}/logs", limit=500)["items"]) >= 500)
    pausing = PausingClient(server.base, server.token)
    panel = LogPanel(pausing, stream)
    panel.follow(run_id)
    assert pausing.page_end is not None and pausing.page_end >= 500
    assert pausing.printed_meanwhile >= PausingClient.more
    client.wait_run(run_id, timeout=60)
    assert_whole(panel, client, run_id)
    assert panel.repairs == 0  # the replay brought them, not a second read


def test_report_lines_are_hidden_until_asked_for_then_dimmed(
    client: EnergyOpsClient, stream: EventStream
) -> None:
    run_id = int(client.start_run(upload(client, REPORTS_AND_ENDS, "test_reports.py"))["id"])
    client.wait_run(run_id, timeout=60)
    panel = LogPanel(client, stream)
    panel.follow(run_id)
    eventually(lambda: any(row[2] == "report-last-line" for row in panel.view.lines))
    printed = ["report-start", "Objective value: 99.5", "report-last-line"]
    texts = [row[2] for row in panel.view.lines]  # also the server's own system lines
    assert [t for t in texts if t in printed] == printed
    assert not any(str(t).startswith("::energyops") for t in texts)
    assert "3 ::energyops lines hidden" in panel.status.value
    panel.markers.value = True
    eventually(lambda: len(panel.view.lines) == len(texts) + 3)
    shown = {str(row[2]): row[3] for row in panel.view.lines}
    assert shown['::energyops {"progress": 60}'] is True  # drawn dimmed
    assert shown["report-start"] is False
    assert "hidden" not in panel.status.value
