"""Read-only panels: live log, run progress, connection, runs, KPIs, feeds, market.

Every panel takes an :class:`EnergyOpsClient` and an :class:`EventStream`; events arrive on the
stream's thread, change plain Python state, and a :class:`Throttle` pushes that state to the
widgets a few times a second (never one widget message per event)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import date
from typing import Any

import ipywidgets as widgets
import pandas as pd

from .buffer import Throttle, esc, format_duration, format_number, html_table
from .charts import MarketChart, StatCards
from .client import FINISHED, EnergyOpsAPIError, EnergyOpsClient
from .events import CONNECTED, EventStream
from .logpanel import LogPanel, download_link
from .runstate import RunStates, shown_progress

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


class RunProgress:
    """Progress bar, status and objective value of one run, live (from the stream's
    :class:`RunStates`, the same state the runs table shows)."""

    def __init__(
        self, client: EnergyOpsClient, stream: EventStream, states: RunStates | None = None
    ) -> None:
        self.client, self.stream = client, stream
        self.states = states or RunStates.of(stream)
        self.run_id: int | None = None
        self.bar = widgets.IntProgress(min=0, max=100, description="Progress")
        self.label = widgets.HTML()
        self.widget = widgets.HBox([self.bar, self.label])
        self.widget.add_class("eo-run-progress")
        self._reread = False
        self.throttle = Throttle(self._render, 5.0)
        self.states.add_listener(self._changed)
        stream.add_listener(self._on_subscribed)
        stream.subscribe(["runs"])

    def _on_subscribed(self, event: Event) -> None:
        """The server attached the run's topic: read the run again (a progress reported just
        before went to nobody)."""
        topics = (event.get("data") or {}).get("topics") or []
        if event.get("type") == "subscribed" and f"run:{self.run_id}" in topics:
            self._reread = True
            self.throttle.poke()

    @property
    def state(self) -> dict[str, Any]:
        return self.states.get(self.run_id)

    def follow(self, run_id: int | None) -> None:
        previous, self.run_id = self.run_id, run_id
        if run_id is not None and run_id != previous:
            self.stream.subscribe([f"run:{run_id}"])
        if previous is not None and previous != run_id:
            self.stream.unsubscribe([f"run:{previous}"])
        if run_id is not None:
            mark = self.states.reading()
            self.states.merge([self.client.run(run_id)], mark)
        self.throttle.poke()

    def _changed(self, run_id: int) -> None:
        if run_id == self.run_id:
            self.throttle.poke()

    def _render(self) -> None:
        run_id = self.run_id
        if self._reread and run_id is not None:
            self._reread = False
            mark = self.states.reading()
            with contextlib.suppress(EnergyOpsAPIError):  # the next pick reads it again
                self.states.merge([self.client.run(run_id)], mark)
        s = self.state
        status = str(s.get("status", "—"))
        with self.bar.hold_sync():
            self.bar.value = shown_progress(s)
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
    """Recent runs; ``selector`` picks one to watch (its log and progress). The watched run
    stays selected, and listed, until the user picks another, also after it finished. Rows
    come from the same :class:`RunStates` as the progress bar (its ``%`` is the bar's)."""

    event_types = frozenset({"run.queued", "run.started", "run.finished"})
    topics = ("runs",)
    per_page = 20

    def __init__(
        self,
        client: EnergyOpsClient,
        stream: EventStream,
        on_select: Callable[[int | None], None] | None = None,
        states: RunStates | None = None,
    ) -> None:
        self.selector = widgets.Dropdown(description="Watch run", options=[("—", None)])
        self.selector.add_class("eo-watch-run")
        self.on_select = on_select
        self.states = states or RunStates.of(stream)
        self.listed: list[int] = []
        self._reread = threading.Event()
        self._reread.set()
        # the user picks on the kernel's thread while redraws run on the throttle's: the pick
        # and the redraw's own changes of the selector are told apart, and the pick wins
        self._pick_lock = threading.RLock()
        self._watched: int | None = None
        self._redrawing: int | None = None  # the thread setting the selector itself
        self._options: list[tuple[str, int | None]] = [("—", None)]
        self.selector.observe(self._selected, "value")
        self.latest_started: int | None = None
        super().__init__(client, stream)
        self.states.add_listener(self._changed)

    def _on_event(self, event: Event) -> None:
        if event.get("type") in self.event_types:
            self._reread.set()  # a run came or went: read the list again
        if event.get("type") == "run.started" and self.on_select is not None:
            data = event.get("data") or {}
            self.latest_started = data.get("id", data.get("run_id"))
        super()._on_event(event)

    def _changed(self, run_id: int) -> None:
        if run_id in self.listed or run_id == self._watched:
            self.throttle.poke()

    def _selected(self, change: dict[str, Any]) -> None:
        if self._redrawing == threading.get_ident():
            return  # a redraw putting the options and the watched run back
        with self._pick_lock:
            picked, self._watched = self._watched, change["new"]
            if self.selector.value != self._watched:  # a redraw meanwhile put the old one back
                self._put(None, self._watched)
        if self.on_select is not None and change["new"] != picked:
            self.on_select(change["new"])

    def render(self) -> str:
        if self._reread.is_set():
            self._reread.clear()
            mark = self.states.reading()
            try:
                rows = _records(self.client.runs(per_page=self.per_page))
            except EnergyOpsAPIError:
                self._reread.set()  # read again next time
                raise
            self.states.merge(rows, mark)
            self.listed = [int(r["id"]) for r in rows]
        watched = self._watched
        ids = list(self.listed)
        if watched is not None and watched not in ids:
            ids.append(watched)  # older than the page, still the one watched
        runs = [self.states.get(run_id) for run_id in ids]
        self._set_options(runs)
        for run in runs:
            run["shown_progress"] = shown_progress(run)
        return html_table(
            runs,
            [
                ("id", "run"),
                ("script_name", "script"),
                ("status", "status"),
                ("shown_progress", "%"),
                ("objective_value", "objective"),
                ("created_at", "created"),
            ],
            empty="no runs yet",
        )

    def _set_options(self, runs: list[dict[str, Any]]) -> None:
        options: list[tuple[str, int | None]] = [("—", None)]
        options += [
            (
                f"#{r['id']} {r.get('script_name') or r.get('name') or ''} ({r.get('status')})",
                int(r["id"]),
            )
            for r in runs
        ]
        with self._pick_lock:
            watched = pick = self._watched
            # a newly started run is shown by itself only while none is watched
            if watched is None and any(v == self.latest_started for _l, v in options):
                pick, self.latest_started = self.latest_started, None
            elif watched is not None:
                self.latest_started = None
            if options == self._options and pick == watched:
                return
            self._options = options
            self._put(options, pick)
            self._watched = pick
        if pick != watched and self.on_select is not None:
            self.on_select(pick)

    def _put(self, options: list[tuple[str, int | None]] | None, value: int | None) -> None:
        """Set the selector without it counting as the user's pick."""
        self._redrawing = threading.get_ident()
        try:
            if options is not None:
                # new options select the first ("—"): the watched run is put back at once
                self.selector.options = options
            self.selector.value = value
        finally:
            self._redrawing = None


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
