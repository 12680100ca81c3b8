"""Read-only panels: live log, run progress, connection, runs, KPIs, feeds, market.

Every panel takes an :class:`EnergyOpsClient` and an :class:`EventStream`; events arrive on the
stream's thread, change plain Python state, and a :class:`Throttle` pushes that state to the
widgets a few times a second (never one widget message per event)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from datetime import date
from typing import Any

import ipywidgets as widgets
import pandas as pd

from .buffer import LEVELS, LogBuffer, Throttle, esc, format_duration, format_number, html_table
from .charts import MarketChart, StatCards
from .client import FINISHED, EnergyOpsAPIError, EnergyOpsClient
from .events import CONNECTED, EventStream
from .logview import LogView

Event = dict[str, Any]

PANEL_CSS = """<style>
.eo-panel { border: 1px solid #e5e7eb; border-radius: 6px; padding: 8px; margin: 4px 0; }
.eo-title { font-weight: 600; font-size: 14px; margin-bottom: 4px; }
.eo-table { border-collapse: collapse; font-size: 12px; width: 100%; }
.eo-table th, .eo-table td { border-bottom: 1px solid #e5e7eb; padding: 2px 6px; text-align: left; }
.eo-empty { color: #6b7280; font-size: 12px; }
.eo-cards { display: flex; flex-wrap: wrap; gap: 8px; }
.eo-card { border: 1px solid #e5e7eb; border-radius: 6px; padding: 6px 10px; min-width: 120px; }
.eo-card-label { font-size: 11px; color: #6b7280; }
.eo-card-value { font-size: 18px; font-weight: 600; }
.eo-card-unit, .eo-card-foot { font-size: 11px; color: #6b7280; }
.eo-dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 4px; }
.eo-state-connected { background: #16a34a; } .eo-state-reconnecting { background: #f59e0b; }
.eo-state-connecting { background: #f59e0b; } .eo-state-offline { background: #dc2626; }
.eo-state-closed { background: #6b7280; }
</style>"""


def panel_style() -> widgets.HTML:
    return widgets.HTML(PANEL_CSS)


def titled(title: str, *children: widgets.Widget) -> widgets.VBox:
    box = widgets.VBox([widgets.HTML(f'<div class="eo-title">{esc(title)}</div>'), *children])
    box.add_class("eo-panel")
    return box


def download_link(filename: str, content: bytes, mime: str, label: str) -> str:
    """An anchor that downloads ``content`` from the page itself (no token in any URL)."""
    data = base64.b64encode(content).decode("ascii")
    return (
        f'<a class="eo-download" download="{esc(filename)}" '
        f'href="data:{esc(mime)};base64,{data}">{esc(label)}</a>'
    )


_SHARED: dict[str, EventStream] = {}
_SHARED_LOCK = threading.Lock()


def shared_stream(client: EnergyOpsClient) -> EventStream:
    """One event stream per server per kernel, shared by the panels."""
    with _SHARED_LOCK:
        stream = _SHARED.get(client.url)
        if stream is None or stream.state == "closed":
            stream = EventStream(client.url, client.token).start()
            _SHARED[client.url] = stream
        return stream


class ConnectionIndicator:
    def __init__(self, stream: EventStream) -> None:
        self.widget = widgets.HTML()
        self.widget.add_class("eo-connection")
        stream.add_state_listener(self._show)

    def _show(self, state: str) -> None:
        self.widget.value = (
            f'<span class="eo-dot eo-state-{esc(state)}"></span>'
            f'<span class="eo-connection-state" data-state="{esc(state)}">live: {esc(state)}</span>'
        )


class LogPanel:
    """A run's log: level and text filters, follow/pause (in the view), download, clear."""

    def __init__(
        self,
        client: EnergyOpsClient,
        stream: EventStream,
        *,
        capacity: int = 10_000,
        view_lines: int = 1000,
        per_second: float = 5.0,
    ) -> None:
        self.client, self.stream = client, stream
        self.buffer = LogBuffer(capacity)
        self.view_lines = view_lines
        self.run_id: int | None = None
        self._lock = threading.Lock()
        self.view = LogView()
        self.levels = widgets.SelectMultiple(
            options=LEVELS, value=LEVELS, rows=4, description="Levels", layout={"width": "200px"}
        )
        self.search = widgets.Text(placeholder="filter text", layout={"width": "220px"})
        self.status = widgets.Label("no run selected")
        self.download = widgets.Button(description="Download", icon="download")
        self.clear_button = widgets.Button(description="Clear", icon="eraser")
        self.link = widgets.HTML()
        self.download.on_click(lambda _b: self._download())
        self.clear_button.on_click(lambda _b: self.clear())
        self.throttle = Throttle(self._render, per_second)
        for control in (self.levels, self.search):
            control.observe(lambda _c: self.throttle.poke(), "value")
        bar = widgets.HBox([self.levels, self.search, self.download, self.clear_button, self.link])
        self.widget = widgets.VBox([bar, self.status, self.view])
        self.widget.add_class("eo-log-panel")
        stream.add_listener(self._on_event)

    def follow(self, run_id: int | None) -> None:
        """Show ``run_id``'s log from its first line (replayed), then live."""
        with self._lock:
            if self.run_id is not None:
                self.stream.unsubscribe([f"run:{self.run_id}"])
            self.buffer = LogBuffer(self.buffer.capacity)
            self.run_id = run_id
        if run_id is not None:
            topic = f"run:{run_id}"
            self.stream.seq.last.pop(topic, None)
            self.stream.subscribe([topic], since={topic: 0})
        self.throttle.poke()

    def clear(self) -> None:
        with self._lock:
            self.buffer.clear()
        self.throttle.poke()

    def _on_event(self, event: Event) -> None:
        if event.get("type") != "run.log" or event.get("topic") != f"run:{self.run_id}":
            return
        with self._lock:
            self.buffer.extend(event.get("data", {}).get("lines", []))
        self.throttle.poke()

    def _render(self) -> None:
        with self._lock:
            shown = self.buffer.view(self.levels.value, self.search.value, self.view_lines)
            total, run_id = len(self.buffer), self.run_id
        with self.view.hold_sync():
            self.view.show(shown)
        self.status.value = (
            "no run selected"
            if run_id is None
            else f"run {run_id}: {total} lines kept, {len(shown)} shown"
        )

    def _download(self) -> None:
        with self._lock:
            text = self.buffer.to_text()
        name = f"run-{self.run_id or 0}.log"
        self.link.value = download_link(name, text.encode("utf-8"), "text/plain", f"save {name}")


class RunProgress:
    """Progress bar, status and objective value of one run, live."""

    def __init__(self, client: EnergyOpsClient, stream: EventStream) -> None:
        self.client, self.stream = client, stream
        self.run_id: int | None = None
        self.state: dict[str, Any] = {}
        self.bar = widgets.IntProgress(min=0, max=100, description="Progress")
        self.label = widgets.HTML()
        self.widget = widgets.HBox([self.bar, self.label])
        self.widget.add_class("eo-run-progress")
        self.throttle = Throttle(self._render, 5.0)
        stream.add_listener(self._on_event)

    def follow(self, run_id: int | None) -> None:
        self.run_id = run_id
        self.state = self.client.run(run_id) if run_id is not None else {}
        if run_id is not None:
            self.stream.subscribe([f"run:{run_id}", "runs"])
        self.throttle.poke()

    def _on_event(self, event: Event) -> None:
        data = event.get("data") or {}
        mine = event.get("topic") == f"run:{self.run_id}" or (
            event.get("topic") == "runs" and data.get("id", data.get("run_id")) == self.run_id
        )
        if not mine or event.get("type") == "run.log":
            return
        self.state = {**self.state, **{k: v for k, v in data.items() if v is not None}}
        self.throttle.poke()

    def _render(self) -> None:
        s = self.state
        status = str(s.get("status", "—"))
        progress = s.get("progress")
        with self.bar.hold_sync():
            self.bar.value = 100 if status == "succeeded" else int(progress or 0)
            self.bar.bar_style = {"succeeded": "success", "failed": "danger"}.get(status, "info")
        self.label.value = (
            f'<span data-status="{esc(status)}">{esc(status)}</span> · objective '
            f'<b class="eo-objective">{esc(format_number(s.get("objective_value"), "", 2))}</b>'
            f" · results {esc(format_number(s.get('results_count')))}"
            f" · runtime {esc(format_duration(s.get('runtime_ms')))}"
        )


class Refreshing:
    """A panel re-read from the API when one of its event types arrives (throttled)."""

    event_types: frozenset[str] = frozenset()
    topics: tuple[str, ...] = ()

    def __init__(self, client: EnergyOpsClient, stream: EventStream, per_second: float = 2.0):
        self.client, self.stream = client, stream
        self.body = widgets.HTML()
        self.throttle = Throttle(self.refresh, per_second)
        stream.add_listener(self._on_event)
        if self.topics:
            stream.subscribe(self.topics)
        self.throttle.poke()

    def _on_event(self, event: Event) -> None:
        if event.get("type") in self.event_types:
            self.throttle.poke()

    def refresh(self) -> None:
        try:
            self.body.value = self.render()
        except EnergyOpsAPIError as exc:
            self.body.value = f'<div class="eo-error">{esc(exc)}</div>'

    def render(self) -> str:
        raise NotImplementedError


class FeedPanel(Refreshing):
    event_types = frozenset({"notification.new", "activity.new"})
    topics = ("notifications",)

    def render(self) -> str:
        notes = self.client.notifications(limit=10)
        acts = self.client.activities(limit=10)
        return (
            "<b>Notifications</b>"
            + html_table(
                _records(notes),
                [
                    ("created_at", "when"),
                    ("severity", "severity"),
                    ("title", "title"),
                    ("message", "message"),
                ],
            )
            + "<b>Activity</b>"
            + html_table(
                _records(acts),
                [("created_at", "when"), ("user", "user"), ("title", "what"), ("status", "status")],
            )
        )


class KpiPanel(Refreshing):
    event_types = frozenset(
        {
            "run.queued",
            "run.started",
            "run.finished",
            "kpi.update",
            "health.update",
            "dataset.uploaded",
        }
    )
    topics = ("runs", "dashboard", "datasets")

    def render(self) -> str:
        health = self.client.health()
        queue = health.get("queue") or {}
        db = health.get("database") or {}
        cards = [
            ("status", "Server", health.get("status")),
            ("running", "Running runs", queue.get("running")),
            ("queued", "Queued runs", queue.get("queued")),
            (
                "database",
                "Database",
                f"{db.get('kind', '?')} " + ("ok" if db.get("reachable") else "unreachable"),
            ),
            ("uptime", "Uptime", format_duration(1000 * float(health.get("uptime_s", 0)))),
        ]
        return (
            '<div class="eo-cards">'
            + "".join(
                f'<div class="eo-card" data-kpi="{esc(key)}">'
                f'<div class="eo-card-label">{esc(label)}</div>'
                f'<div class="eo-card-value">{esc("—" if v is None else v)}</div></div>'
                for key, label, v in cards
            )
            + "</div>"
        )


class RunsPanel(Refreshing):
    """Recent runs; ``selector`` picks one to watch (its log and progress)."""

    event_types = frozenset({"run.queued", "run.started", "run.finished"})
    topics = ("runs",)

    def __init__(
        self,
        client: EnergyOpsClient,
        stream: EventStream,
        on_select: Callable[[int | None], None] | None = None,
    ) -> None:
        self.selector = widgets.Dropdown(description="Watch run", options=[("—", None)])
        self.on_select = on_select
        self.selector.observe(self._selected, "value")
        self.latest_started: int | None = None
        super().__init__(client, stream)

    def _on_event(self, event: Event) -> None:
        if event.get("type") == "run.started" and self.on_select is not None:
            data = event.get("data") or {}
            self.latest_started = data.get("id", data.get("run_id"))
        super()._on_event(event)

    def _selected(self, change: dict[str, Any]) -> None:
        if self.on_select is not None:
            self.on_select(change["new"])

    def render(self) -> str:
        runs = _records(self.client.runs(per_page=20))
        options = [("—", None)] + [
            (
                f"#{r['id']} {r.get('script_name') or r.get('name') or ''} ({r.get('status')})",
                int(r["id"]),
            )
            for r in runs
        ]
        follow_new = self.latest_started is not None and self.latest_started != self.selector.value
        with self.selector.hold_trait_notifications():
            self.selector.options = options
        if follow_new and any(v == self.latest_started for _l, v in options):
            self.selector.value = self.latest_started
        return html_table(
            runs,
            [
                ("id", "run"),
                ("script_name", "script"),
                ("status", "status"),
                ("progress", "%"),
                ("objective_value", "objective"),
                ("created_at", "created"),
            ],
            empty="no runs yet",
        )


class MarketPanel:
    """Date picker, chart, stat cards and an export link; redrawn in place on market.updated."""

    def __init__(self, client: EnergyOpsClient, stream: EventStream, day: date | None = None):
        self.client, self.stream = client, stream
        self.chart = MarketChart()
        self.cards = StatCards()
        self.picker = widgets.DatePicker(description="Date", value=day or self._latest_day())
        self.export = widgets.HTML()
        self.throttle = Throttle(self.refresh, 2.0)
        self.picker.observe(lambda _c: self.throttle.poke(), "value")
        self.widget = widgets.VBox(
            [widgets.HBox([self.picker, self.export]), self.cards.widget, self.chart.widget]
        )
        self.widget.add_class("eo-market-panel")
        stream.add_listener(self._on_event)
        stream.subscribe(["datasets"])
        self.refresh()

    def _latest_day(self) -> date:
        last = self.client.get("market/snapshot").get("to")  # no date: the latest day
        return date.fromisoformat(str(last)[:10]) if last else date.today()

    def _on_event(self, event: Event) -> None:
        if event.get("type") != "market.updated":
            return
        touched = {str(d)[:10] for d in (event.get("data") or {}).get("dates", [])}
        if not touched or str(self.picker.value) in touched:
            self.throttle.poke()

    def refresh(self) -> None:
        day = self.picker.value
        if day is None:
            return
        frame = self.client.market_snapshot(day)
        self.chart.update(frame, title=f"Market {day.isoformat()}")
        self.cards.update(self.client.market_stats(day))
        csv = self.client.market_export(day)
        self.export.value = download_link(
            f"market-{day.isoformat()}.csv", csv, "text/csv", "Export CSV"
        )


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def run_finished(status: Any) -> bool:
    return status in FINISHED


__all__ = [
    "CONNECTED",
    "ConnectionIndicator",
    "FeedPanel",
    "KpiPanel",
    "LogPanel",
    "MarketPanel",
    "RunProgress",
    "RunsPanel",
    "panel_style",
    "shared_stream",
    "titled",
]
