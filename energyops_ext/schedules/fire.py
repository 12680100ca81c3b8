"""Firing the due slots of one schedule, in one transaction, once across servers.

Each slot is a unique (schedule_id, slot) row of ``schedule_fires``. The row of a fired slot
is inserted in the same transaction as its run: the server whose insert writes the row
queues the run; a server racing it inserts nothing and queues nothing. Slots missed while no
server was up get a row too (``missed``, with why), so they are reported once as well.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from ..cluster import wakeups
from ..db.models import Schedule, ScheduleFire
from ..errors import EnergyOpsError
from ..events import RUNS, Event, run_topic
from ..events.types import SCHEDULES
from ..feed import add_activity, add_notification
from ..notify import queue_deliveries
from . import store
from .cron import Due, deadline_of, zone
from .outcome import Published, clock_text, duration_text
from .policy import RetryPolicy

MAX_LISTED = 10


def fire_due(
    session: Session, schedule_id: int, due: Due, now: datetime, server_id: str
) -> Published:
    """Fire the latest due slot if it is at most ``max_lateness_s`` late, record the others
    (and the latest when it is later than that) as missed. Nothing for slots another server
    handled first."""
    out = Published()
    schedule = session.get(Schedule, schedule_id)
    if schedule is None or not schedule.enabled or not due.slots:
        return out
    tz = zone(schedule.timezone)
    latest = due.slots[-1]
    on_time = (now - latest).total_seconds() <= schedule.max_lateness_s
    missed: list[tuple[datetime, str]] = []
    for slot in due.slots if not on_time else due.slots[:-1]:
        late = duration_text(now - slot)
        if on_time:
            reason = (
                f"no server fired it: it was {late} late when one looked, and after a "
                f"downtime only the latest due slot ({clock_text(latest, tz)}) runs"
            )
        else:
            reason = (
                f"no server fired it: it was {late} late when one looked, past "
                f"missed.max_lateness_s ({schedule.max_lateness_s} s)"
            )
        if _insert(session, schedule_id, slot, "missed", reason, server_id, now) is not None:
            missed.append((slot, reason))
            out.events.append(
                _slot_event("schedule.missed", schedule, slot, None, reason, server_id)
            )
    if missed:
        out.notifications.append(_missed_note(session, schedule, missed, due.more, tz))
    if on_time:
        fire_id = _insert(session, schedule_id, latest, "fired", None, server_id, now)
        if fire_id is not None:
            out.add(_queue_run(session, schedule, fire_id, latest, tz, server_id))
    session.execute(
        update(Schedule)
        .where(
            Schedule.id == schedule_id,
            Schedule.last_slot.is_(None) | (Schedule.last_slot < latest),
        )
        .values(last_slot=latest)
    )
    return out


def _insert(
    session: Session,
    schedule_id: int,
    slot: datetime,
    status: str,
    reason: str | None,
    server_id: str,
    now: datetime,
) -> int | None:
    table: Any = ScheduleFire.__table__
    values = {
        "schedule_id": schedule_id,
        "slot": slot,
        "status": status,
        "reason": reason,
        "server_id": server_id,
        "fired_at": now,
        "run_id": None,
    }
    return store.insert_once(session, table, values)


def _slot_event(
    kind: str,
    schedule: Schedule,
    slot: datetime,
    run_id: int | None,
    reason: str | None,
    server_id: str | None = None,
) -> Event:
    data: dict[str, Any] = {
        "schedule_id": schedule.id,
        "title": store.title_of(schedule),
        "slot": slot.isoformat(),
        "run_id": run_id,
        "server_id": server_id,
    }
    if reason is not None:
        data["reason"] = reason
    return Event(SCHEDULES, kind, data)


def _missed_note(
    session: Session,
    schedule: Schedule,
    missed: list[tuple[datetime, str]],
    more: bool,
    tz: Any,
) -> Any:
    count = len(missed)
    lines = [f"{clock_text(slot, tz)}: {reason}" for slot, reason in missed[-MAX_LISTED:]]
    if count > MAX_LISTED:
        lines.insert(0, f"({count - MAX_LISTED} earlier slots not listed)")
    if more:
        lines.append("older slots were not looked at")
    note = add_notification(
        session,
        type="schedule_missed",
        category="schedule",
        severity="warning",
        title=f"{store.title_of(schedule)}: {count} slot{'s' if count > 1 else ''} missed",
        message="\n".join(lines),
        entity_type="schedule",
        entity_id=schedule.id,
        user=schedule.created_by,
    )
    queue_deliveries(session, note, schedule.channels)
    return note


def _queue_run(
    session: Session, schedule: Schedule, fire_id: int, slot: datetime, tz: Any, server_id: str
) -> Published:
    title = store.title_of(schedule)
    script = store.script_to_run(session, schedule)
    if isinstance(script, str):
        return _skip(session, schedule, fire_id, slot, tz, server_id, f"not run: {script}")
    try:
        parameters, inputs = store.run_parameters(session, script, schedule)
    except EnergyOpsError as exc:  # the version that fires declares other parameters
        reason = f"not run: {script.name} v{script.version}: {exc.message}"
        return _skip(session, schedule, fire_id, slot, tz, server_id, reason)
    out = Published()
    run = store.new_run(
        script,
        args=schedule.args,
        config=schedule.config,
        parameters=parameters,
        inputs=inputs,
        priority=schedule.priority,
        timeout_s=schedule.timeout_s,
        requested_by=schedule.created_by,
        schedule_id=schedule.id,
        deadline_at=deadline_of(slot, schedule.deadline, tz),
        retry=RetryPolicy.from_json(schedule.retry) if schedule.retry else None,
        channels=schedule.channels,
    )
    session.add(run)
    session.flush()
    fires: Any = ScheduleFire.__table__
    session.execute(update(fires).where(fires.c.id == fire_id).values(run_id=run.id))
    wakeups.wake(session, wakeups.QUEUE, str(run.id))
    out.activities.append(
        add_activity(
            session,
            type="run",
            action="queued",
            title=f"Run {run.id} of {script.name} v{script.version} queued by {title} "
            f"(slot {clock_text(slot, tz)})",
            entity_type="run",
            entity_id=run.id,
            status="queued",
            user=schedule.created_by,
        )
    )
    data = store.run_json(run)
    out.events += [
        Event(run_topic(run.id), "run.status", data),
        Event(RUNS, "run.queued", data),
        _slot_event("schedule.fired", schedule, slot, run.id, None, server_id),
    ]
    out.queued.append(run.id)
    return out


def _skip(
    session: Session,
    schedule: Schedule,
    fire_id: int,
    slot: datetime,
    tz: Any,
    server_id: str,
    reason: str,
) -> Published:
    """A due slot that cannot run: the row says why, a notification and an event too."""
    out = Published()
    fires: Any = ScheduleFire.__table__
    session.execute(
        update(fires).where(fires.c.id == fire_id).values(status="skipped", reason=reason)
    )
    note = add_notification(
        session,
        type="schedule_skipped",
        category="schedule",
        severity="error",
        title=f"{store.title_of(schedule)}: the {clock_text(slot, tz)} slot did not run",
        message=reason,
        entity_type="schedule",
        entity_id=schedule.id,
        user=schedule.created_by,
    )
    queue_deliveries(session, note, schedule.channels)
    out.notifications.append(note)
    out.events.append(_slot_event("schedule.missed", schedule, slot, None, reason, server_id))
    return out
