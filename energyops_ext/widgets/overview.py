"""The operators' landing page (``dashboards/overview.ipynb``): the server's live status and a
line on each of the other dashboards.

The status is the server's own health report: it arrives on the ``dashboard`` topic as
``health.update`` pushes, and is read again (``GET /health``) when a run is queued, starts or
finishes, or when no push came for a while. Between reports the uptime ticks on from the last
one, once a second, so an operator sees at a glance that the page is alive."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from .buffer import esc
from .client import EnergyOpsAPIError, EnergyOpsClient
from .dashboard import Dashboard
from .events import EventStream
from .panels import ConnectionIndicator, panel_style, shared_stream, titled

Clock = Callable[[], float]
QUEUE_EVENTS = frozenset({"run.queued", "run.started", "run.finished"})
LANDING = "overview.ipynb"

OVERVIEW_CSS = """<style>
.eo-dashboards { list-style: none; padding: 0; margin: 0; }
.eo-dashboards li { padding: 6px 0; border-bottom: 1px solid #e5e7eb; }
.eo-dashboards li:last-child { border-bottom: none; }
.eo-dashboards a { font-weight: 600; font-size: 14px; color: #1d4ed8; }
.eo-dashboard-description { color: #4b5563; font-size: 13px; }
.eo-status-foot { font-size: 11px; color: #6b7280; margin-top: 4px; }
.eo-stale .eo-card-value { color: #b45309; }
</style>"""


# --- the dashboards ---


@dataclass(frozen=True)
class DashboardLink:
    path: str  # relative to the overview, e.g. "market.ipynb"
    title: str
    description: str


def describe_notebook(notebook: dict[str, Any], fallback: str) -> tuple[str, str]:
    """A notebook's title (its first heading) and one-line description (the first line of text
    after it), from its first markdown cell; ``fallback`` when it has no heading."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines or not lines[0].startswith("#"):
            break
        title = lines[0].lstrip("#").strip() or fallback
        description = next((line for line in lines[1:] if not line.startswith("#")), "")
        return title, description
    return fallback, ""


def dashboard_links(directory: Path, exclude: Iterable[str] = (LANDING,)) -> list[DashboardLink]:
    """Every notebook of ``directory`` but the excluded ones, ordered by title."""
    skipped = set(exclude)
    links = []
    for path in sorted(directory.glob("*.ipynb")):
        if path.name in skipped:
            continue
        try:
            notebook = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            notebook = {}
        title, description = describe_notebook(notebook, fallback=path.stem)
        links.append(DashboardLink(path.name, title, description))
    return sorted(links, key=lambda link: link.title.lower())


def dashboards_html(links: list[DashboardLink]) -> str:
    if not links:
        return '<div class="eo-empty">no other dashboard in this folder</div>'
    items = "".join(
        f'<li data-dashboard="{esc(link.path)}">'
        f'<a href="{esc(link.path)}" target="_self">{esc(link.title)}</a>'
        f'<div class="eo-dashboard-description">{esc(link.description)}</div></li>'
        for link in links
    )
    return f'<ul class="eo-dashboards">{items}</ul>'


# --- the live status ---


@dataclass(frozen=True)
class HealthReading:
    """The last health report, when it came (on the status's clock), and the last error."""

    report: dict[str, Any] | None = None
    at: float | None = None
    error: str | None = None


def format_uptime(seconds: float) -> str:
    """Whole seconds, so that the figure visibly moves every second: ``2 h 03 min 07 s``."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours:02d} h {minutes:02d} min"
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def status_cards(
    reading: HealthReading, now: float, stale_after: float
) -> list[tuple[str, str, str]]:
    """Pure: (key, label, value) of each card at ``now``. The uptime is the report's plus the
    time since it came; a report older than ``stale_after`` seconds is shown as stale."""
    report = reading.report
    if report is None or reading.at is None:
        waiting = f"unreachable: {reading.error}" if reading.error else "waiting for the server"
        return [("status", "Server", waiting)]
    age = max(0.0, now - reading.at)
    queue = report.get("queue") or {}
    db = report.get("database") or {}
    migration = db.get("migration") or {}
    status = str(report.get("status", "?"))
    if age > stale_after:
        status = f"no report for {format_uptime(age)}"
    return [
        ("status", "Server", status),
        ("uptime", "Uptime", format_uptime(float(report.get("uptime_s", 0)) + age)),
        ("running", "Running runs", str(queue.get("running", "—"))),
        ("queued", "Queued runs", str(queue.get("queued", "—"))),
        (
            "database",
            "Database",
            f"{db.get('kind', '?')} " + ("ok" if db.get("reachable") else "unreachable"),
        ),
        ("schema", "Schema", "up to date" if migration.get("up_to_date") else "behind"),
        ("version", "Version", str(report.get("version", "?"))),
    ]


def status_html(cards: list[tuple[str, str, str]], stale: bool, foot: str) -> str:
    body = "".join(
        f'<div class="eo-card" data-status="{esc(key)}">'
        f'<div class="eo-card-label">{esc(label)}</div>'
        f'<div class="eo-card-value">{esc(value)}</div></div>'
        for key, label, value in cards
    )
    klass = "eo-cards eo-stale" if stale else "eo-cards"
    return f'<div class="{klass}">{body}</div><div class="eo-status-foot">{esc(foot)}</div>'


class LiveStatus:
    """The status cards, redrawn every ``tick_s`` on a thread of their own (``start=False``
    leaves the ticking to the caller, with ``tick()``)."""

    def __init__(
        self,
        client: EnergyOpsClient,
        stream: EventStream,
        *,
        clock: Clock = time.monotonic,
        tick_s: float = 1.0,
        refresh_s: float = 20.0,
        retry_s: float = 5.0,
        stale_after: float = 45.0,
        start: bool = True,
    ) -> None:
        self.client, self.clock = client, clock
        self.tick_s, self.refresh_s, self.stale_after = tick_s, refresh_s, stale_after
        self.retry_s = retry_s
        self.reading = HealthReading()
        self.reads = 0
        self._attempted: float | None = None
        self.widget = widgets.HTML()
        self.widget.add_class("eo-live-status")
        self._lock = threading.Lock()
        self._reread = threading.Event()
        self._reread.set()  # the first tick reads the report
        self._stop = threading.Event()
        stream.add_listener(self._on_event)
        stream.subscribe(["dashboard", "runs"])
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._loop, name="energyops-status", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "health.update" and isinstance(event.get("data"), dict):
            with self._lock:
                self.reading = HealthReading(event["data"], self.clock())
        elif event.get("type") in QUEUE_EVENTS:
            self._reread.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.tick_s)

    def tick(self) -> None:
        """Read the report again if a run changed the queue or no report came for
        ``refresh_s`` (then at most every ``retry_s``), and redraw."""
        now = self.clock()
        with self._lock:
            reading = self.reading
        old = reading.at is None or now - reading.at >= self.refresh_s
        may_retry = self._attempted is None or now - self._attempted >= self.retry_s
        if self._reread.is_set() or (old and may_retry):
            self._reread.clear()
            self._attempted = now
            reading = self._read(reading)
            now = self.clock()
        cards = status_cards(reading, now, self.stale_after)
        stale = reading.at is None or now - reading.at > self.stale_after
        if reading.at is None:
            foot = "no report yet"
        else:
            foot = f"last report {format_uptime(now - reading.at)} ago"
        if reading.error:
            foot += f"; last error: {reading.error}"
        self.widget.value = status_html(cards, stale, foot)

    def _read(self, previous: HealthReading) -> HealthReading:
        self.reads += 1
        try:
            report = self.client.health()
        except (EnergyOpsAPIError, OSError) as exc:
            reading = HealthReading(previous.report, previous.at, str(exc))
        else:
            reading = HealthReading(report, self.clock())
        with self._lock:
            # a push that came while we read is as new as our answer: keep the later one
            if self.reading.at is None or (reading.at or 0) >= self.reading.at:
                self.reading = reading
            return self.reading


def overview_dashboard(
    client: EnergyOpsClient | None = None, directory: Path | None = None
) -> Dashboard:
    """The live status and the dashboards of ``directory`` (default: the kernel's working
    directory, which Voila and Lab set to the notebook's folder)."""
    client = client or EnergyOpsClient()
    stream = shared_stream(client)
    connection = ConnectionIndicator(stream)
    status = LiveStatus(client, stream)
    links = widgets.HTML(dashboards_html(dashboard_links(directory or Path.cwd())))
    links.add_class("eo-dashboard-links")
    widget = widgets.VBox(
        [
            panel_style(),
            widgets.HTML(OVERVIEW_CSS),
            connection.widget,
            titled("Platform status", status.widget),
            titled("Dashboards", links),
        ]
    )
    widget.add_class("eo-overview")
    panels: dict[str, object] = {"connection": connection, "status": status, "links": links}
    return Dashboard(widget, client, stream, panels)
