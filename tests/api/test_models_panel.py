"""The model panels against a live server on both databases: the run form built from the
reference SO model's parameters (a bad value refused with the server's message, a good run
with its solver chart filled from run.progress), stop from the form, and the compare panel on
two runs with different parameters."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date

import pytest

from energyops_ext.models import REFERENCE_MODELS
from energyops_ext.widgets import EnergyOpsClient, EventStream
from energyops_ext.widgets.models import ComparePanel, RunForm

from ..conftest import BACKENDS
from ..ingest_files import snapshot_csv
from .servers import LiveServer, live_server


def eventually(check: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp(f"models-panel-{request.param}")
    with live_server(workdir, request.param) as s:
        yield s


def test_run_form_solver_chart_and_compare(server: LiveServer) -> None:
    client = EnergyOpsClient(server.base, server.token)
    client.upload_dataset("market-snapshot", snapshot_csv([date(2025, 10, 6)]), filename="day.csv")
    so_id = _install(client)
    stream = EventStream(client.url, client.token).start()
    try:
        form = RunForm(client, stream, so_id)
        assert set(form.inputs) >= {"date", "capacity_mwh", "power_mw", "mode"}
        form.inputs["power_mw"].value = -5.0
        assert form.submit() is None
        assert "parameter &#x27;power_mw&#x27; must be between 0.1 and 100000; got -5.0" in (
            form.message.value
        )
        form.inputs["power_mw"].value = 25.0
        first = form.submit()
        assert first is not None and first["parameters"]["date"] == "2025-10-06"
        eventually(lambda: client.run(first["id"])["status"] == "succeeded")
        eventually(lambda: len(form.chart.lines.x) > 0)
        assert "gap" in form.chart.gap.value

        form.inputs["power_mw"].value = 50.0
        second = form.submit()
        assert second is not None
        eventually(lambda: client.run(second["id"])["status"] == "succeeded")
        form.stop()
        assert "has already finished" in form.message.value

        panel = ComparePanel(client)
        diff = panel.show(first["id"], second["id"])
        assert diff is not None
        assert "parameters.power_mw" in panel.table.value and "25.0" in panel.table.value
        assert len(panel.bars.x) == 96
        assert panel.show(first["id"], first["id"]) is None
        assert "two different runs" in panel.table.value
    finally:
        stream.close()


def _install(client: EnergyOpsClient) -> int:
    """The reference SO model, uploaded as demo-data installs it."""
    model = next(m for m in REFERENCE_MODELS if m.model_type == "SO")
    script = client.upload_script(model.path, filename=model.file, model_type="SO")
    return int(script["id"])
