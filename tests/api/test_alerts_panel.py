"""The alert panels against a live server on both databases: create, refuse, fire, pause,
delete in the rules panel; the read-only firing list under the operator's token."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import requests

from energyops_ext.widgets import EnergyOpsClient, EventStream
from energyops_ext.widgets.alerts import (
    AlertsPanel,
    FiringAlertsPanel,
    firing_html,
    history_html,
    rule_body,
    rules_html,
)

from ..conftest import BACKENDS
from .conftest import OPERATOR_TOKEN
from .seed import MARKET_CSV
from .servers import LiveServer, live_server

XSS = "<img src=x onerror=alert(1)>"


def eventually(check: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp(f"alerts-panel-{request.param}"), request.param) as s:
        yield s


def test_rules_panel_creates_refuses_fires_pauses_and_deletes(server: LiveServer) -> None:
    client = EnergyOpsClient(server.base, server.token)
    stream = EventStream(client.url, client.token).start()
    operator = EnergyOpsClient(server.base, OPERATOR_TOKEN)
    operator_stream = EventStream(operator.url, operator.token).start()
    try:
        panel = AlertsPanel(client, stream)
        firing = FiringAlertsPanel(operator, operator_stream)
        assert "no alert rules" in panel.listing.value
        eventually(lambda: "no alert is firing" in firing.body.value)

        panel.name.value = XSS
        panel.channels.value = "notaservice://x"
        assert panel.create() is None
        assert "channels[0] is not an apprise URL" in panel.message.value

        panel.channels.value = ""
        panel.threshold.value = 3090.0
        rule = panel.create()
        assert rule is not None and rule["state"] == "normal"
        assert "&lt;img" in panel.listing.value and XSS not in panel.listing.value
        assert panel.selector.value == rule["id"]
        assert "no state changes yet" in panel.history.value

        response = requests.post(
            server.url("datasets/market-snapshot/uploads"),
            headers=server.headers,
            files={"file": ("market.csv", MARKET_CSV, "text/csv")},
            timeout=60,
        )
        assert response.status_code == 201, response.text
        # the alert.firing event makes both panels read again
        eventually(lambda: 'data-state="firing"' in panel.listing.value)
        eventually(lambda: 'data-state="firing"' in firing.body.value)
        assert "normal → firing" in panel.history.value and "3,096" in panel.history.value
        assert "91, 92, 93, 94, 95, 96" in panel.history.value

        panel.toggle()
        assert 'data-state="paused"' in panel.listing.value
        assert "firing → normal" in panel.history.value
        eventually(lambda: "no alert is firing" in firing.body.value, within=30)
        panel.toggle()
        assert 'data-state="normal"' in panel.listing.value

        panel.delete()
        assert "no alert rules" in panel.listing.value
    finally:
        stream.close()
        operator_stream.close()


def test_render_functions_escape_and_summarise() -> None:
    rule = {
        "id": 3,
        "name": XSS,
        "series": "dam_price",
        "operator": ">",
        "threshold": 9000,
        "recovery_threshold": 8500,
        "aggregate": "block",
        "unit": "mw",
        "scope": {"date": "today", "blocks": [69, 84]},
        "state": "firing",
        "enabled": True,
        "since": "2025-10-06T12:00:00+00:00",
        "last_value": 9700,
    }
    html = rules_html([rule])
    assert XSS not in html and "&lt;img" in html
    assert "dam_price &gt; 9,000 (recovers past 8,500)" in html
    assert "today, blocks 69-84" in html
    assert firing_html([{**rule, "state": "normal"}]).count("no alert is firing") == 1
    assert 'data-state="firing"' in firing_html([rule])
    assert "no alert is firing" in firing_html([{**rule, "enabled": False}])
    history = history_html(
        [
            {
                "created_at": "t",
                "from_state": "pending",
                "to_state": "firing",
                "value": 9700,
                "threshold": 9000,
                "notified": True,
                "detail": {"date": "2025-10-06", "blocks": [{"block": 75, "value": 9700}]},
            }
        ]
    )
    assert "pending → firing" in history and "<td>75</td>" in history
    body = rule_body(
        name="n",
        series="dam_price",
        operator="<",
        threshold=100.0,
        recovery=" ",
        pending_evaluations=2,
        scope="",
        channels="json://127.0.0.1:9/a\n\n mailto://127.0.0.1:25?to=a@b.example \n",
    )
    assert body == {
        "name": "n",
        "series": "dam_price",
        "operator": "<",
        "threshold": 100.0,
        "pending_evaluations": 2,
        "scope": "any",
        "channels": ["json://127.0.0.1:9/a", "mailto://127.0.0.1:25?to=a@b.example"],
    }
