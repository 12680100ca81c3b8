"""The market dashboard's panel against a live server whose display zone is not the default:
the widgets learn the zone from /health, the cards show energy and average MW and the last
change in that zone, the chart's scales hold the data and its note names the missing block."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import requests

from energyops_ext.widgets import EnergyOpsClient
from energyops_ext.widgets.format import DEFAULT_ZONE, display_zone, use_display_zone
from tests.ingest_files import SNAPSHOT_HEADER, csv_bytes, snapshot_rows

from .conftest import OPERATOR_TOKEN
from .servers import LiveServer, live_server

ZONE = "America/New_York"
GAP_DAY = date(2025, 10, 6)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("market-panel")
    with live_server(workdir, "sqlite", energyops={"display_timezone": ZONE}) as s:
        yield s


@pytest.fixture
def zone_restored() -> Iterator[None]:
    yield None
    use_display_zone(DEFAULT_ZONE)  # the zone is one per process


def test_health_names_the_display_zone_to_every_user(server: LiveServer) -> None:
    for token in (server.token, OPERATOR_TOKEN):
        health = EnergyOpsClient(server.base, token).health()
        assert health["display"] == {"timezone": ZONE}


def test_market_panel_in_the_servers_zone(server: LiveServer, zone_restored: None) -> None:
    from energyops_ext.widgets.dashboard import market_dashboard

    rows = [r for r in snapshot_rows(GAP_DAY) if r[1] != 37]
    response = requests.post(
        server.url("datasets/market-snapshot/uploads"),
        headers=server.headers,
        files={"file": ("gap.csv", csv_bytes(SNAPSHOT_HEADER, rows))},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    operator = EnergyOpsClient(server.base, OPERATOR_TOKEN)
    dashboard = market_dashboard(operator, day=GAP_DAY)
    try:
        assert display_zone() == ZoneInfo(ZONE)
        market: Any = dashboard.panels["market"]
        stats = operator.market_stats(GAP_DAY)
        changed = datetime.fromisoformat(stats["last_updated"]).astimezone(ZoneInfo(ZONE))
        cards = market.cards.widget.value
        assert f"last updated {changed:%Y-%m-%d %H:%M} E" in cards  # EST or EDT
        assert 'data-stat="energy_scheduled_mwh"' in cards and "avg " in cards

        chart = market.chart
        scheduled = [100.0 + b for b in range(1, 97)]
        scheduled[36] = 0.0  # block 37 has no row: no bar
        assert np.array_equal(np.asarray(chart.bars.y)[0], scheduled)
        assert (chart.mw_scale.min, chart.mw_scale.max) == (0, 250)  # 196 MW + 5%, rounded up
        assert (chart.price_scale.min, chart.price_scale.max) == (0, 4000)  # 3,196 Rs + 5%
        assert chart.note.value == (
            "No data for block 37 (09:00-09:15): the chart has a gap and the export no row."
        )
    finally:
        dashboard.stream.close()
