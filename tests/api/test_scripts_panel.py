"""The workbench's scripts panel against a live server on both databases: two runs of a script,
each killed from its own row; the "last run" column and the run message follow the run
events without a refresh; the About text of one upload does not carry over to the next; the
delete question says how many runs go with the script, and asks again when that changed."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from energyops_ext.widgets import EnergyOpsAPIError, EnergyOpsClient, EventStream
from energyops_ext.widgets.actions import ScriptsPanel

from ..conftest import BACKENDS
from .panels_helpers import HOLDS_AT_25, eventually
from .servers import LiveServer, live_server


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp(f"scripts-panel-{request.param}"), request.param) as s:
        yield s


HOLDS_IF_ASKED = b"""
import json, os, time
while json.loads(os.environ["ENERGYOPS_CONFIG"]).get("hold"):
    time.sleep(0.2)
"""


@pytest.fixture(autouse=True)
def no_run_left(server: LiveServer) -> Iterator[None]:
    """A test that failed half way leaves no run holding a slot of the next one's queue."""
    yield
    client = EnergyOpsClient(server.base, server.token)
    for status in ("running", "queued"):
        for run in client.get("runs", status=status, limit=100)["items"]:
            with contextlib.suppress(EnergyOpsAPIError):
                client.kill_run(int(run["id"]))


def choose_file(panel: ScriptsPanel, name: str, source: str) -> None:
    """What the browser sends when a file is dropped on the upload button."""
    content = source.encode()
    panel.file.value = (
        {
            "name": name,
            "type": "text/x-python",
            "size": len(content),
            "content": memoryview(content),
            "last_modified": datetime(2026, 1, 5, tzinfo=UTC),
        },
    )


def last_run_cell(panel: ScriptsPanel, script_id: int) -> str | None:
    """The "last run" cell of a script's row in the listing."""
    row = re.search(rf"<tr><td>{script_id}</td>(.*?)</tr>", panel.listing.value)
    return re.findall(r"<td>([^<]*)</td>", row[1])[-1] if row else None


def row_status(panel: ScriptsPanel, run_id: int) -> str | None:
    row = panel.runs.rows.get(run_id)
    found = re.search(r'data-status="([^"]*)"', row.label.value) if row else None
    return found[1] if found else None


def test_runs_list_kills_each_run_and_the_listing_follows_run_events(server: LiveServer) -> None:
    client = EnergyOpsClient(server.base, server.token)
    with EventStream(client.url, client.token).start() as stream:
        assert stream.wait_connected()
        panel = ScriptsPanel(client, stream)
        choose_file(panel, "holds.py", HOLDS_AT_25)
        panel.description.value = "holds at 25 % until killed"
        panel.upload()
        sid = panel.selector.value
        assert isinstance(sid, int)
        assert client.script(sid)["description"] == "holds at 25 % until killed"
        assert panel.description.value == "" and panel.file.value == ()  # nothing carries over
        choose_file(panel, "other.py", "print('other')\n")
        panel.upload()
        assert client.script(int(panel.selector.value))["description"] in (None, "")

        panel.selector.value = sid
        panel.start()
        first = panel.run_id
        panel.start()
        second = panel.run_id
        assert first is not None and second is not None and first != second
        assert list(panel.runs.rows) == [second, first]  # newest first
        eventually(lambda: row_status(panel, first) == "running", what="first running")
        eventually(lambda: row_status(panel, second) == "running", what="second running")
        eventually(lambda: "25%" in panel.runs.rows[first].label.value, what="first at 25 %")
        eventually(lambda: last_run_cell(panel, sid) == "running", what="last run: running")
        eventually(lambda: f"run {second} running" in panel.run_message.value)

        # the older run, killed from its own row, not the last one started
        panel.runs.rows[first].kill.click()
        eventually(lambda: client.run(first)["status"] == "killed", what="first killed")
        assert client.run(second)["status"] == "running"
        eventually(lambda: row_status(panel, first) == "killed")
        assert panel.runs.rows[first].kill.disabled and not panel.runs.rows[second].kill.disabled
        assert last_run_cell(panel, sid) == "running"  # the newest run is still on

        panel.runs.rows[second].kill.click()
        eventually(lambda: last_run_cell(panel, sid) == "killed", what="last run: killed")
        eventually(lambda: f"run {second} killed" in panel.run_message.value)
        panel.runs.rows[first].watch.click()
        assert panel.log.run_id == first and panel.progress.run_id == first
        eventually(lambda: f"run {first} killed" in panel.run_message.value)


def test_delete_says_how_many_runs_go_and_asks_again_when_that_changed(
    server: LiveServer,
) -> None:
    client = EnergyOpsClient(server.base, server.token)
    with EventStream(client.url, client.token).start() as stream:
        panel = ScriptsPanel(client, stream)
        sid = int(client.upload_script(HOLDS_IF_ASKED, filename="test_gone.py", kind="test")["id"])
        done = [client.start_run(sid)["id"] for _ in range(2)]
        for run_id in done:
            client.wait_run(run_id, timeout=60)
        panel.refresh()
        panel.selector.value = sid
        panel.delete_button.click()
        confirm = panel.delete
        assert confirm.widget.layout.display == ""
        assert "Its <b class='eo-delete-runs'>2</b> runs, with their logs" in confirm.prompt.value
        assert "test_gone.py v1" in confirm.prompt.value
        assert confirm.confirm.description == "Delete script and 2 runs"

        held = client.start_run(sid, config={"hold": True})["id"]  # started after the question
        eventually(lambda: client.run(held)["status"] == "running")
        confirm.confirm.click()
        assert client.script(sid)["id"] == sid  # not deleted: asked again
        assert "<b class='eo-delete-runs'>3</b> runs" in confirm.prompt.value
        assert "1 of them is still active and will be killed" in confirm.prompt.value
        assert confirm.confirm.description == "Delete script and 3 runs"

        confirm.confirm.click()
        assert f"script {sid} deleted with its 3 runs" in panel.message.value
        assert confirm.widget.layout.display == "none"
        for run_id in [*done, held]:
            with pytest.raises(EnergyOpsAPIError) as gone:
                client.run(run_id)
            assert gone.value.status == 404
        with pytest.raises(EnergyOpsAPIError):
            client.script(sid)
        assert not any(v == sid for _l, v in panel.selector.options)


def test_cancel_hides_the_question(server: LiveServer) -> None:
    client = EnergyOpsClient(server.base, server.token)
    with EventStream(client.url, client.token).start() as stream:
        panel = ScriptsPanel(client, stream)
        sid = int(client.upload_script(b"print(1)\n", filename="test_kept.py", kind="test")["id"])
        panel.refresh()
        panel.selector.value = sid
        panel.delete_button.click()
        assert "It has no runs." in panel.delete.prompt.value
        assert panel.delete.confirm.description == "Delete script"
        panel.delete.cancel_button.click()
        assert panel.delete.widget.layout.display == "none"
        panel.delete.confirm.click()  # nothing asked: nothing deleted
        assert client.script(sid)["id"] == sid
