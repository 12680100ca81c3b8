"""Deadlines and retries of runs, swept by every server, each step once across servers.

A deadline belongs to an attempt chain (a first run and its retries share ``deadline_at``):
while no attempt has succeeded, warnings go out at the configured offsets and, once it has
passed, the chain is marked ``deadline_missed``. Each notice is a unique (first run, kind)
row, so two sweepers send it once.

A failed, timed-out or lost attempt with a retry policy gets its next attempt from whichever
server's sweep first flips its ``retry_outcome`` from NULL (a conditional update); the unique
(first_run_id, attempt) index stands behind it. The next attempt waits in the queue until its
``not_before``; one that could not end before the deadline is not created, and a
notification says why; a retry still queued when it could no longer end by the deadline
(the queue was full) is not started either. A killed run is never retried.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..cluster import wakeups
from ..db.models import Run, Schedule
from ..events import RUNS, Event, run_topic
from ..feed import add_activity, add_notification
from ..notify import queue_deliveries
from .cron import zone
from .outcome import Published, clock_text, duration_text
from .policy import RetryPolicy, can_finish_by, retry_delay_s
from .store import chain_id, notice_once, run_json

RETRIED = ("failed", "timed_out", "lost")
DEADLINE_WINDOW = timedelta(days=2)  # deadlines further past than this are left alone
SWEEP_BATCH = 200


def _zone_of(session: Session, run: Run, default: str) -> ZoneInfo:
    """A scheduled run's deadline reads in its schedule's zone, any other in the default."""
    if run.schedule_id is not None:
        schedule = session.get(Schedule, run.schedule_id)
        if schedule is not None:
            return zone(schedule.timezone)
    return zone(default)


def _title(run: Run) -> str:
    return f"Run {run.id} of {run.script.name} v{run.script.version}"


# --- deadlines ---


def deadline_chains(session: Session, now: datetime, warnings_min: Sequence[float]) -> list[int]:
    """Attempt chains whose deadline is within the first warning or past, not yet marked
    missed, with an attempt that has not succeeded."""
    horizon = now + timedelta(minutes=max(warnings_min, default=0.0))
    rows = session.execute(
        select(chain_id())
        .where(
            Run.deadline_at.is_not(None),
            Run.deadline_at <= horizon,
            Run.deadline_at > now - DEADLINE_WINDOW,
            Run.deadline_missed.is_(False),
            Run.status != "succeeded",
        )
        .distinct()
        .limit(SWEEP_BATCH)
    ).all()
    return [row[0] for row in rows]


def sweep_deadline(
    session: Session,
    chain: int,
    now: datetime,
    warnings_min: Sequence[float],
    server_id: str,
    default_zone: str,
) -> Published:
    out = Published()
    runs = list(
        session.scalars(select(Run).where(chain_id() == chain).order_by(Run.attempt, Run.id))
    )
    if not runs or any(r.status == "succeeded" for r in runs):
        return out
    latest = runs[-1]
    deadline = latest.deadline_at or runs[0].deadline_at
    if deadline is None or latest.deadline_missed:
        return out
    tz = _zone_of(session, latest, default_zone)
    state = f"attempt {latest.attempt} is {latest.status.replace('_', ' ')}"
    if now >= deadline:
        if not notice_once(session, chain, "missed", server_id, now):
            return out
        session.execute(update(Run).where(chain_id() == chain).values(deadline_missed=True))
        for run in runs:
            session.refresh(run)
        goes_on = " and goes on" if latest.status in ("queued", "running") else ""
        note = add_notification(
            session,
            type="run_deadline_missed",
            category="run",
            severity="error",
            title=f"{_title(latest)} missed its deadline",
            message=f"the deadline {clock_text(deadline, tz)} passed without success; "
            f"{state}{goes_on}",
            entity_type="run",
            entity_id=latest.id,
            user=latest.requested_by,
        )
        queue_deliveries(session, note, latest.channels)
        out.notifications.append(note)
        data = run_json(latest)
        out.events += [
            Event(RUNS, "run.deadline_missed", _deadline_data(latest, chain, deadline, data)),
            Event(run_topic(latest.id), "run.status", data),
        ]
        return out
    crossed = sorted(w for w in warnings_min if deadline - timedelta(minutes=w) <= now)
    if not crossed:
        return out
    sent = [w for w in crossed if notice_once(session, chain, f"warning:{w:g}", server_id, now)]
    if crossed[0] not in sent:
        return out  # the nearest warning went out from another server (or earlier)
    left = max(1, math.ceil((deadline - now).total_seconds() / 60))
    note = add_notification(
        session,
        type="run_deadline_warning",
        category="run",
        severity="warning",
        title=f"{_title(latest)}: deadline in {left} min",
        message=f"deadline {clock_text(deadline, tz)}; {state}",
        entity_type="run",
        entity_id=latest.id,
        user=latest.requested_by,
    )
    queue_deliveries(session, note, latest.channels)
    out.notifications.append(note)
    data = _deadline_data(latest, chain, deadline, None)
    data.update(minutes_left=left, warning_min=crossed[0])
    out.events.append(Event(RUNS, "run.deadline_warning", data))
    return out


def _deadline_data(
    run: Run, chain: int, deadline: datetime, run_data: dict[str, Any] | None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "run_id": run.id,
        "first_run_id": chain,
        "attempt": run.attempt,
        "status": run.status,
        "deadline_at": deadline.isoformat(),
    }
    if run_data is not None:
        data["run"] = run_data
    return data


# --- retries ---


def retry_candidates(session: Session) -> list[int]:
    """Finished attempts with a retry policy whose next step nobody has decided yet."""
    rows = session.execute(
        select(Run.id)
        .where(
            Run.status.in_(RETRIED),
            Run.retry.is_not(None),
            Run.retry_outcome.is_(None),
        )
        .order_by(Run.finished_at, Run.id)
        .limit(SWEEP_BATCH)
    ).all()
    return [row[0] for row in rows]


def sweep_retry(
    session: Session,
    run_id: int,
    now: datetime,
    spread: float,
    server_id: str,
    default_zone: str,
) -> Published:
    out = Published()
    run = session.get(Run, run_id)
    if run is None or run.retry is None or run.status not in RETRIED:
        return out
    policy = RetryPolicy.from_json(run.retry)
    ended = run.finished_at or now
    delay = retry_delay_s(policy, run.attempt, spread)
    not_before = ended + timedelta(seconds=delay)
    start_at = max(now, not_before)
    if run.attempt >= policy.max_attempts:
        outcome = "exhausted"
    elif not can_finish_by(start_at, run.timeout_s, run.deadline_at):
        outcome = "cut"
    else:
        outcome = "scheduled"
    decided = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.retry_outcome.is_(None), Run.status == run.status)
        .values(retry_outcome=outcome)
    )
    if getattr(decided, "rowcount", 0) != 1:
        return out  # another server decided first
    session.refresh(run)
    ended_as = run.status.replace("_", " ")
    tz = _zone_of(session, run, default_zone)
    if outcome == "scheduled":
        return _next_attempt(session, run, policy, not_before, delay)
    if outcome == "exhausted" and policy.max_attempts == 1:
        return out  # no retries asked for: the run's own failure notice says it all
    if outcome == "exhausted":
        title = f"{_title(run)} {ended_as} after {run.attempt} attempts"
        message = f"attempt {run.attempt} of {policy.max_attempts} ended {ended_as}"
        message += f" ({run.status_reason}); no attempts left" if run.status_reason else ""
        kind = "run_retries_exhausted"
    else:
        assert run.deadline_at is not None
        title = f"{_title(run)}: attempt {run.attempt + 1} not started"
        message = (
            f"attempt {run.attempt + 1} could start at {clock_text(start_at, tz)} at the "
            f"earliest and may run {duration_text(timedelta(seconds=run.timeout_s))} "
            f"(timeout_s {run.timeout_s}), past the deadline {clock_text(run.deadline_at, tz)}; "
            f"attempt {run.attempt} ended {ended_as}"
        )
        kind = "run_retry_cut"
    note = add_notification(
        session,
        type=kind,
        category="run",
        severity="error",
        title=title,
        message=message,
        entity_type="run",
        entity_id=run.id,
        user=run.requested_by,
    )
    queue_deliveries(session, note, run.channels)
    out.notifications.append(note)
    return out


def late_retries(session: Session, now: datetime) -> list[int]:
    """Queued retries that, started now, could no longer end by their chain's deadline."""
    rows = session.execute(
        select(Run.id, Run.timeout_s, Run.deadline_at)
        .where(
            Run.status == "queued",
            Run.attempt > 1,
            Run.deadline_at.is_not(None),
            Run.deadline_at > now - DEADLINE_WINDOW,
        )
        .order_by(Run.id)
        .limit(SWEEP_BATCH)
    ).all()
    return [
        run_id
        for run_id, timeout_s, deadline in rows
        if not can_finish_by(now, timeout_s, deadline)
    ]


def sweep_late_retry(session: Session, run_id: int, now: datetime, default_zone: str) -> Published:
    """A retry that waited in the queue past the point where it could still end by the
    deadline is not started: the first server to flip it from queued says so, once."""
    out = Published()
    run = session.get(Run, run_id)
    if run is None or run.status != "queued" or run.deadline_at is None:
        return out
    if can_finish_by(now, run.timeout_s, run.deadline_at):
        return out
    tz = _zone_of(session, run, default_zone)
    deadline = clock_text(run.deadline_at, tz)
    reason = f"not started: it could no longer end by the deadline {deadline}"
    cut = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "queued")
        .values(status="killed", status_reason=reason, finished_at=now)
    )
    if getattr(cut, "rowcount", 0) != 1:
        return out  # claimed, cancelled or cut by another server first
    session.refresh(run)
    note = add_notification(
        session,
        type="run_retry_cut",
        category="run",
        severity="error",
        title=f"{_title(run)}: attempt {run.attempt} not started",
        message=f"attempt {run.attempt} was still queued at {clock_text(now, tz)} and may run "
        f"{duration_text(timedelta(seconds=run.timeout_s))} (timeout_s {run.timeout_s}), "
        f"past the deadline {deadline}",
        entity_type="run",
        entity_id=run.id,
        user=run.requested_by,
    )
    queue_deliveries(session, note, run.channels)
    out.notifications.append(note)
    data = run_json(run)
    finished = {"run_id": run.id, "status": "killed", "exit_code": None, "runtime_ms": None}
    out.events += [
        Event(run_topic(run.id), "run.status", data),
        Event(RUNS, "run.finished", {**finished, "objective_value": None, "run": data}),
    ]
    return out


def _next_attempt(
    session: Session, run: Run, policy: RetryPolicy, not_before: datetime, delay_s: float
) -> Published:
    out = Published()
    first = run.first_run_id or run.id
    retry = Run(
        script_id=run.script_id,
        status="queued",
        args=list(run.args),
        config=dict(run.config),
        parameters=run.parameters,
        inputs=list(run.inputs),
        priority=run.priority,
        timeout_s=run.timeout_s,
        requested_by=run.requested_by,
        line_count=0,
        error_count=0,
        attempt=run.attempt + 1,
        first_run_id=first,
        schedule_id=run.schedule_id,
        deadline_at=run.deadline_at,
        deadline_missed=run.deadline_missed,
        retry=run.retry,
        channels=list(run.channels),
        not_before=not_before,
    )
    session.add(retry)
    session.flush()
    wakeups.wake(session, wakeups.QUEUE, str(retry.id))
    wait = duration_text(timedelta(seconds=delay_s))
    out.activities.append(
        add_activity(
            session,
            type="run",
            action="queued",
            title=f"Run {retry.id}: attempt {retry.attempt} of {policy.max_attempts} after "
            f"run {run.id} {run.status.replace('_', ' ')}, in {wait}",
            entity_type="run",
            entity_id=retry.id,
            status="queued",
            user=run.requested_by,
        )
    )
    data = run_json(retry)
    out.events += [
        Event(run_topic(retry.id), "run.status", data),
        Event(RUNS, "run.queued", data),
        Event(
            RUNS,
            "run.retry_scheduled",
            {
                "run_id": retry.id,
                "previous_run_id": run.id,
                "first_run_id": first,
                "attempt": retry.attempt,
                "max_attempts": policy.max_attempts,
                "not_before": not_before.isoformat(),
                "delay_s": round(delay_s, 3),
                "run": data,
            },
        ),
    ]
    out.queued.append(retry.id)
    return out
