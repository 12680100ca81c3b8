"""Schedule panels: the quant's (create, pause/resume, delete, next fires, last outcomes, the
attempts of each slot) and the operations dashboard's read-only view of today's scheduled runs
with a countdown to each deadline, met or missed.

Both talk to the server only through the client (``/schedules``, ``/schedules/{id}/fires``)
and re-read when a ``schedule.*`` or ``run.*`` event arrives; the countdown is redrawn every
second from what was read, without asking the server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from time import monotonic
from typing import Any
from zoneinfo import ZoneInfo

import ipywidgets as widgets

from .buffer import Throttle, esc, html_table
from .client import EnergyOpsAPIError, EnergyOpsClient
from .controls import ManageButtons
from .events import EventStream

DESK_ZONE = "Asia/Kolkata"
SCHEDULE_EVENTS = frozenset({"schedule.fired", "schedule.missed", "schedule.updated"})
RUN_EVENTS = frozenset(
    {
        "run.started",
        "run.finished",
        "run.deadline_warning",
        "run.deadline_missed",
        "run.retry_scheduled",
    }
)
OUTCOME_COLOURS = {
    "succeeded": "#16a34a",
    "met": "#16a34a",
    "running": "#2563eb",
    "queued": "#6b7280",
    "waiting": "#6b7280",
    "failed": "#dc2626",
    "timed_out": "#dc2626",
    "lost": "#dc2626",
    "missed": "#dc2626",
    "killed": "#f59e0b",
    "skipped": "#f59e0b",
    "at risk": "#f59e0b",
    "paused": "#6b7280",
}
Event = Mapping[str, Any]


def _moment(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def badge(text: Any) -> str:
    shown = str(text) if text not in (None, "") else "—"
    colour = OUTCOME_COLOURS.get(shown, "#1f2937")
    return (
        f'<span class="eo-outcome" data-outcome="{esc(shown)}" '
        f'style="color:{colour};font-weight:600">{esc(shown.replace("_", " "))}</span>'
    )


def countdown(target: datetime | None, now: datetime) -> str:
    """``in 1 h 05 min``, ``in 42 s``, ``3 min ago``; an em dash without a target."""
    if target is None:
        return "—"
    seconds = int((target - now).total_seconds())
    ahead = seconds >= 0
    seconds = abs(seconds)
    if seconds < 60:
        text = f"{seconds} s"
    elif seconds < 3600:
        text = (
            f"{seconds // 60} min {seconds % 60:02d} s" if seconds < 600 else f"{seconds // 60} min"
        )
    else:
        text = f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"in {text}" if ahead else f"{text} ago"


def local_hm(value: Any, zone: ZoneInfo) -> str:
    moment = _moment(value)
    return moment.astimezone(zone).strftime("%H:%M") if moment else "—"


def attempts_text(attempts: Sequence[Mapping[str, Any]]) -> str:
    """``1 failed → 2 succeeded``."""
    return " → ".join(f"{a.get('attempt')} {a.get('status')}" for a in attempts) or "—"


def deadline_outcome(fire: Mapping[str, Any], now: datetime) -> str:
    """met | missed | at risk (the deadline is near and nothing succeeded) | waiting | —."""
    deadline = _moment(fire.get("deadline_at"))
    if fire.get("status") in ("missed", "skipped"):
        return "missed" if deadline is not None or fire.get("status") == "missed" else "skipped"
    if deadline is None:
        return "—"
    if any(a.get("status") == "succeeded" for a in fire.get("attempts") or []):
        return "met"
    if fire.get("deadline_missed") or now >= deadline:
        return "missed"
    return "at risk" if deadline - now <= timedelta(minutes=30) else "waiting"


def schedules_html(schedules: Sequence[Mapping[str, Any]], now: datetime) -> str:
    """Schedules with their next fire (in their zone, and how long until it), deadline and
    last outcome; every value escaped."""
    if not schedules:
        return '<div class="eo-empty">no schedules yet</div>'
    rows = []
    for s in schedules:
        zone = ZoneInfo(str(s.get("timezone") or DESK_ZONE))
        upcoming = (s.get("next_fires") or [None])[0]
        state = "enabled" if s.get("enabled") else "paused"
        rows.append(
            "<tr>"
            f"<td>{esc(s.get('id'))}</td><td>{esc(s.get('title'))}</td>"
            f"<td>{esc(s.get('script_name') or s.get('script_id'))}</td>"
            f"<td>{esc(s.get('cron'))} <small>{esc(s.get('timezone'))}</small></td>"
            f"<td>{badge(state) if state == 'paused' else esc(state)}</td>"
            f"<td>{esc(local_hm(upcoming, zone))} <small>{esc(countdown(_moment(upcoming), now))}"
            "</small></td>"
            f"<td>{esc(s.get('deadline') or '—')}</td>"
            f"<td>{badge(s.get('last_outcome'))}</td>"
            "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("id", "schedule", "script", "cron", "state", "next fire", "deadline", "last")
    )
    return (
        f'<table class="eo-table eo-schedules"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def fires_html(fires: Sequence[Mapping[str, Any]], zone: ZoneInfo, now: datetime) -> str:
    rows = [
        {
            "slot": f"{local_hm(f.get('slot'), zone)} {str(f.get('slot_local', ''))[:10]}",
            "status": f.get("status"),
            "run": f.get("run_id") or "",
            "attempts": attempts_text(f.get("attempts") or []),
            "deadline": deadline_outcome(f, now),
            "why": f.get("reason") or "",
        }
        for f in fires
    ]
    columns = [(k, k) for k in ("slot", "status", "run", "attempts", "deadline", "why")]
    return html_table(rows, columns, empty="no slots yet")


def today_rows(
    schedules: Sequence[Mapping[str, Any]],
    fires: Mapping[int, Sequence[Mapping[str, Any]]],
    now: datetime,
    zone: ZoneInfo,
) -> list[dict[str, Any]]:
    """Today's slots (in ``zone``) of every schedule: those that came (fired, missed,
    skipped) and those still to come, in time order, each with its deadline."""
    day = now.astimezone(zone).date()
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = start + timedelta(days=1)
    rows: list[dict[str, Any]] = []
    for s in schedules:
        seen = set()
        for f in fires.get(int(s["id"]), []):
            slot = _moment(f.get("slot"))
            if slot is None or not start <= slot < end:
                continue
            seen.add(slot)
            attempts = f.get("attempts") or []
            rows.append(
                {
                    "schedule": s.get("title"),
                    "slot": slot,
                    "deadline": _moment(f.get("deadline_at")),
                    "run": f.get("run_id"),
                    "status": attempts[-1]["status"] if attempts else f.get("status"),
                    "attempts": attempts_text(attempts),
                    "outcome": deadline_outcome(f, now),
                }
            )
        deadlines = s.get("next_deadlines") or []
        for index, value in enumerate(s.get("next_fires") or []):
            slot = _moment(value)
            if slot is None or not start <= slot < end or slot in seen:
                continue
            deadline = _moment(deadlines[index]) if index < len(deadlines) else None
            pending = {"status": "fired", "deadline_at": deadline and deadline.isoformat()}
            rows.append(
                {
                    "schedule": s.get("title"),
                    "slot": slot,
                    "deadline": deadline,
                    "run": None,
                    "status": "upcoming",
                    "attempts": "—",
                    "outcome": deadline_outcome(pending, now),
                }
            )
    rows.sort(key=lambda r: r["slot"])
    return rows


def today_html(rows: Sequence[Mapping[str, Any]], now: datetime, zone: ZoneInfo) -> str:
    if not rows:
        return '<div class="eo-empty eo-no-schedule">nothing scheduled today</div>'
    body = "".join(
        f'<tr data-outcome="{esc(r["outcome"])}">'
        f"<td>{esc(r['schedule'])}</td><td>{esc(local_hm(r['slot'].isoformat(), zone))}</td>"
        f"<td>{esc(r['run'] or '')}</td><td>{esc(r['status'])}</td>"
        f"<td>{esc(r['attempts'])}</td>"
        f"<td>{esc(local_hm(r['deadline'].isoformat(), zone) if r['deadline'] else '—')}</td>"
        f'<td class="eo-countdown">{esc(countdown(r["deadline"], now))}</td>'
        f"<td>{badge(r['outcome'])}</td></tr>"
        for r in rows
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("schedule", "slot", "run", "status", "attempts", "deadline", "countdown", "")
    )
    return (
        f'<table class="eo-table eo-today"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def schedule_body(
    *,
    script: str,
    cron: str,
    timezone: str,
    name: str = "",
    deadline: str = "",
    max_attempts: int = 1,
    backoff_s: float = 60.0,
    max_lateness_s: int = 300,
    channels: str = "",
) -> dict[str, Any]:
    """The POST body of the create form: ``script`` is an id (a fixed version) or a name (the
    latest active version at each fire); one channel URL a line."""
    body: dict[str, Any] = {
        "cron": cron.strip(),
        "timezone": timezone.strip() or DESK_ZONE,
        "missed": {"max_lateness_s": max_lateness_s},
        "channels": [line.strip() for line in channels.splitlines() if line.strip()],
    }
    text = script.strip()
    body["script_id" if text.isdigit() else "script_name"] = int(text) if text.isdigit() else text
    if name.strip():
        body["name"] = name.strip()
    if deadline.strip():
        body["deadline"] = deadline.strip()
    if max_attempts > 1:
        body["retry"] = {"max_attempts": max_attempts, "backoff_s": backoff_s}
    return body


class _Ticker:
    """Calls ``tick`` every ``interval_s`` on its own thread until stopped."""

    def __init__(self, tick: Callable[[], None], interval_s: float = 1.0) -> None:
        self._tick, self._interval = tick, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="energyops-ticker", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._tick()

    def stop(self) -> None:
        self._stop.set()


class TodaySchedulePanel:
    """Read-only (GETs only): today's scheduled runs in the desk's zone with a countdown to
    each deadline and whether it was met or missed."""

    def __init__(
        self,
        client: EnergyOpsClient,
        stream: EventStream,
        zone: str = DESK_ZONE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        reread_s: float = 30.0,
    ) -> None:
        self.client, self.zone, self.clock = client, ZoneInfo(zone), clock
        self.body = widgets.HTML()
        self.body.add_class("eo-today-schedule")
        self.rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stale = True
        self._last_read = 0.0
        self._reread_s = reread_s
        self.throttle = Throttle(self._render, 2.0)
        stream.add_listener(self._on_event)
        stream.subscribe(["schedules", "runs"])
        self.ticker = _Ticker(self.throttle.poke)
        self.throttle.poke()

    def _on_event(self, event: Event) -> None:
        if event.get("type") in SCHEDULE_EVENTS | RUN_EVENTS:
            self._stale = True
            self.throttle.poke()

    def read(self) -> list[dict[str, Any]]:
        now = self.clock()
        start = datetime.combine(now.astimezone(self.zone).date(), time(0), tzinfo=self.zone)
        schedules = self.client.get("schedules", per_page=200).get("items", [])
        fires = {
            int(s["id"]): self.client.get(
                f"schedules/{s['id']}/fires", since=start.isoformat(), limit=200
            ).get("items", [])
            for s in schedules
        }
        return today_rows(schedules, fires, now, self.zone)

    def _render(self) -> None:
        if self._stale or monotonic() - self._last_read > self._reread_s:
            try:
                rows = self.read()
            except EnergyOpsAPIError as exc:
                self.body.value = f'<div class="eo-error">{esc(exc)}</div>'
                return
            with self._lock:
                self.rows, self._stale = rows, False
                self._last_read = monotonic()
        with self._lock:
            rows = list(self.rows)
        self.body.value = today_html(rows, self.clock(), self.zone)

    def close(self) -> None:
        self.ticker.stop()
        self.throttle.stop()


class SchedulesPanel:
    """Schedules with next fires and last outcomes; one schedule's slots with their attempts;
    create, pause / resume and delete."""

    def __init__(
        self,
        client: EnergyOpsClient,
        stream: EventStream,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client, self.clock = client, clock
        self.listing = widgets.HTML()
        self.fires = widgets.HTML()
        self.message = widgets.HTML()
        self.selector = widgets.Dropdown(description="Schedule", options=[])
        self.script = widgets.Text(description="Script", placeholder="id or name")
        self.name = widgets.Text(description="Name", placeholder="DMO day-ahead")
        self.cron = widgets.Text(description="Cron", value="0 9 * * *")
        self.timezone = widgets.Text(description="Zone", value=DESK_ZONE)
        self.deadline = widgets.Text(description="Deadline", placeholder="12:00 or +90")
        self.attempts = widgets.BoundedIntText(description="Attempts", value=1, min=1, max=20)
        self.backoff = widgets.BoundedFloatText(
            description="Back-off s", value=60.0, min=0, max=86400
        )
        self.lateness = widgets.BoundedIntText(
            description="Lateness s", value=300, min=0, max=604800
        )
        self.channels = widgets.Textarea(
            description="Channels", placeholder="one apprise URL a line"
        )
        self.buttons = ManageButtons(self.create, self.toggle, self.delete)
        self.selector.observe(lambda _c: self.show_fires(), "value")
        form = widgets.VBox(
            [
                widgets.HBox([self.script, self.name, self.cron, self.timezone]),
                widgets.HBox([self.deadline, self.attempts, self.backoff, self.lateness]),
                widgets.HBox([self.channels, self.buttons.create]),
            ]
        )
        self.widget = widgets.VBox(
            [
                self.listing,
                self.buttons.row(self.selector),
                self.fires,
                form,
                self.message,
            ]
        )
        self.widget.add_class("eo-schedules-panel")
        self.schedules: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self.throttle = Throttle(self.refresh, 2.0)
        stream.add_listener(self._on_event)
        stream.subscribe(["schedules", "runs"])
        self.refresh()

    def _on_event(self, event: Event) -> None:
        if event.get("type") in SCHEDULE_EVENTS | RUN_EVENTS:
            self.throttle.poke()

    def _act(self, action: Callable[[], Any]) -> Any:
        try:
            result = action()
        except (EnergyOpsAPIError, ValueError) as exc:
            self.message.value = f'<div class="eo-error">{esc(exc)}</div>'
            return None
        self.message.value = ""
        return result

    def refresh(self) -> None:
        with self._lock:  # the throttle's thread and a button's click may both refresh
            answer = self._act(lambda: self.client.get("schedules", per_page=200))
            if answer is None:
                return
            self.schedules = list(answer.get("items", []))
            self.listing.value = schedules_html(self.schedules, self.clock())
            current = self.selector.value
            ids = [s["id"] for s in self.schedules]
            self.selector.options = [(f"{s['id']}: {s['title']}", s["id"]) for s in self.schedules]
            self.selector.value = current if current in ids else (ids[0] if ids else None)
            self.show_fires()

    def _selected(self) -> dict[str, Any] | None:
        return next((s for s in self.schedules if s["id"] == self.selector.value), None)

    def show_fires(self) -> None:
        schedule = self._selected()
        if schedule is None:
            self.fires.value = ""
            return
        answer = self._act(lambda: self.client.get(f"schedules/{schedule['id']}/fires", limit=20))
        if answer is not None:
            zone = ZoneInfo(str(schedule.get("timezone") or DESK_ZONE))
            self.fires.value = fires_html(answer.get("items", []), zone, self.clock())

    def create(self) -> dict[str, Any] | None:
        def post() -> Any:
            body = schedule_body(
                script=self.script.value,
                cron=self.cron.value,
                timezone=self.timezone.value,
                name=self.name.value,
                deadline=self.deadline.value,
                max_attempts=int(self.attempts.value),
                backoff_s=float(self.backoff.value),
                max_lateness_s=int(self.lateness.value),
                channels=self.channels.value,
            )
            return self.client.request("POST", "schedules", json_body=body)

        schedule: dict[str, Any] | None = self._act(post)
        if schedule is not None:
            self.refresh()
            self.selector.value = schedule["id"]
            self.message.value = f'<div class="eo-ok">created schedule {esc(schedule["id"])}</div>'
        return schedule

    def toggle(self) -> dict[str, Any] | None:
        schedule = self._selected()
        if schedule is None:
            return None
        change = {"enabled": not schedule["enabled"]}
        path = f"schedules/{schedule['id']}"
        changed: dict[str, Any] | None = self._act(
            lambda: self.client.request("PATCH", path, json_body=change)
        )
        if changed is not None:
            self.refresh()
        return changed

    def delete(self) -> None:
        schedule = self._selected()
        self.buttons.hide_confirm()
        if schedule is None:
            return
        try:
            self.client.request("DELETE", f"schedules/{schedule['id']}")
        except EnergyOpsAPIError as exc:
            self.message.value = f'<div class="eo-error">{esc(exc)}</div>'
            return
        self.refresh()

    def close(self) -> None:
        self.throttle.stop()
