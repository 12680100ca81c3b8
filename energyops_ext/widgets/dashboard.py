"""Whole dashboards built from the panels.

``operations_dashboard`` and ``market_dashboard`` are read-only (what Voila serves to
operators): they show, they never upload, run, kill or delete. ``workbench`` is the quant's
view with the upload and scripts panels."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import ipywidgets as widgets

from .actions import ScriptsPanel, UploadPanel
from .client import EnergyOpsClient
from .events import EventStream
from .logpanel import LogPanel
from .panels import (
    ConnectionIndicator,
    FeedPanel,
    KpiPanel,
    MarketPanel,
    RunProgress,
    RunsPanel,
    panel_style,
    shared_stream,
    titled,
)


@dataclass
class Dashboard:
    """The widget to display, and the panels in it (tests and notebooks reach into them)."""

    widget: widgets.Widget
    client: EnergyOpsClient
    stream: EventStream
    panels: dict[str, object] = field(default_factory=dict)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)  # type: ignore[no-untyped-call]


def _setup(client: EnergyOpsClient | None) -> tuple[EnergyOpsClient, EventStream]:
    client = client or EnergyOpsClient()
    client.display_zone()  # times in every panel in the server's display_timezone
    return client, shared_stream(client)


def operations_dashboard(client: EnergyOpsClient | None = None) -> Dashboard:
    """KPIs, runs with their live logs and progress, notifications and activity, health."""
    client, stream = _setup(client)
    connection = ConnectionIndicator(stream)
    kpis = KpiPanel(client, stream)
    log = LogPanel(client, stream)
    progress = RunProgress(client, stream)

    def watch(run_id: int | None) -> None:
        progress.follow(run_id)
        log.follow(run_id)

    runs = RunsPanel(client, stream, on_select=watch)
    feed = FeedPanel(client, stream)
    widget = widgets.VBox(
        [
            panel_style(),
            connection.widget,  # the notebook's heading is the page's title
            titled("Platform", kpis.body),
            titled("Runs", runs.selector, runs.body, progress.widget, log.widget),
            titled("Notifications and activity", feed.body),
        ]
    )
    widget.add_class("eo-operations")
    panels: dict[str, object] = {
        "connection": connection,
        "kpis": kpis,
        "runs": runs,
        "log": log,
        "progress": progress,
        "feed": feed,
    }
    return Dashboard(widget, client, stream, panels)


def market_dashboard(client: EnergyOpsClient | None = None, day: date | None = None) -> Dashboard:
    """Prices and schedules of a day: chart, stat cards, export link."""
    client, stream = _setup(client)
    connection = ConnectionIndicator(stream)
    market = MarketPanel(client, stream, day)
    widget = widgets.VBox(
        [
            panel_style(),
            connection.widget,  # the notebook's heading is the page's title
            titled("Day view", market.widget),
        ]
    )
    widget.add_class("eo-market")
    return Dashboard(widget, client, stream, {"connection": connection, "market": market})


def workbench(client: EnergyOpsClient | None = None) -> Dashboard:
    """The quant's panels: data upload, scripts and runs with live logs, market."""
    client, stream = _setup(client)
    connection = ConnectionIndicator(stream)
    upload = UploadPanel(client)
    scripts = ScriptsPanel(client, stream)
    widget = widgets.VBox(
        [
            panel_style(),
            connection.widget,
            titled("Upload data", upload.widget),
            titled("Scripts and models", scripts.widget),
        ]
    )
    return Dashboard(
        widget, client, stream, {"connection": connection, "upload": upload, "scripts": scripts}
    )
