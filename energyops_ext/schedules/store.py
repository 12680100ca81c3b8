"""Database work of schedules: JSON shapes, the exactly-once inserts, queries.

Every "once across servers" decision here is an ``INSERT ... ON CONFLICT DO NOTHING`` on a
unique row (a slot of a schedule, a deadline notice of an attempt chain) or an ``UPDATE``
conditional on the state read: the server whose statement writes the row does the work, the
others find it done."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..db.models import DeadlineNotice, Run, Schedule, ScheduleFire, Script
from ..errors import Invalid, NotFound
from ..notify import display_url
from ..runs import inputs as run_inputs
from ..runs import parameters as run_params
from ..runs import store as run_store
from ..runs.inputs import RunRequest
from ..runs.service import _run_parameters as resolve_run_parameters  # a run request's rules
from .cron import Cron, deadline_of, local_iso, next_fires, parse_cron, zone
from .policy import RetryPolicy

NEXT_FIRES = 5


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def insert_once(session: Session, table: Table, values: dict[str, Any]) -> int | None:
    """Insert a row unless one with the same unique key exists (its id, or None when
    another transaction got there first). PostgreSQL waits for a concurrent insert of the
    same key to commit, then does nothing; SQLite serializes writers."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(**values).on_conflict_do_nothing().returning(table.c.id)
    found: int | None = session.scalar(statement)
    return found


def get_schedule(session: Session, schedule_id: int) -> Schedule:
    schedule = session.get(Schedule, schedule_id)
    if schedule is None:
        raise NotFound(f"schedule {schedule_id} does not exist", code="schedule_not_found")
    return schedule


def cron_of(schedule: Schedule) -> Cron:
    return parse_cron(schedule.cron, zone(schedule.timezone))


def title_of(schedule: Schedule) -> str:
    return schedule.name or f"schedule {schedule.id}"


def chain_id() -> ColumnElement[int]:
    """The id of a run's attempt chain: its first run's id."""
    return func.coalesce(Run.first_run_id, Run.id)


def check_script(
    session: Session,
    script_id: int | None,
    script_name: str | None,
    parameters: dict[str, Any],
) -> None:
    """The script a schedule names exists, and the parameters fit what it declares (422
    naming the field or the parameter otherwise)."""
    script = session.get(Script, script_id) if script_id is not None else None
    if script_id is not None and script is None:
        raise Invalid(
            f"script_id {script_id} does not exist",
            code="invalid_field",
            details={"field": "script_id"},
        )
    if script_name is not None:
        script = active_version(session, script_name)
        if script is None:
            raise Invalid(
                f"script_name {script_name!r} has no active version",
                code="invalid_field",
                details={"field": "script_name"},
            )
    assert script is not None
    declared = run_params.from_json(script.parameters)
    run_params.resolve(declared, parameters)


def run_parameters(
    session: Session, script: Script, schedule: Schedule
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The parameter values and inputs of a fire, as a run request would get them (checked
    against the version that fires, defaults filled in, ``latest`` dates resolved)."""
    request = RunRequest(
        args=list(schedule.args),
        config=dict(schedule.config),
        inputs=run_inputs.parse_inputs(schedule.inputs),
        timeout_s=schedule.timeout_s,
        priority=schedule.priority,
        parameters=dict(schedule.parameters or {}),
    )
    return resolve_run_parameters(session, script, request)


def active_version(session: Session, name: str) -> Script | None:
    return session.scalars(
        select(Script)
        .where(Script.name == name, Script.status == "active")
        .order_by(Script.version.desc())
        .limit(1)
    ).first()


def script_to_run(session: Session, schedule: Schedule) -> Script | str:
    """The script version a fire runs, or why there is none."""
    if schedule.script_id is not None:
        script = session.get(Script, schedule.script_id)
        if script is None:
            return f"script {schedule.script_id} no longer exists"
        if script.status != "active":
            return f"script {script.id} ({script.name} v{script.version}) is archived"
        return script
    assert schedule.script_name is not None
    latest = active_version(session, schedule.script_name)
    if latest is None:
        return f"script {schedule.script_name!r} has no active version"
    return latest


def schedule_body(schedule: Schedule) -> dict[str, Any]:
    """The schedule as a request body (real channel URLs), for merging a PATCH."""
    return {
        "name": schedule.name,
        "script_id": schedule.script_id,
        "script_name": schedule.script_name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "args": schedule.args,
        "config": schedule.config,
        "parameters": schedule.parameters,
        "inputs": schedule.inputs,
        "priority": schedule.priority,
        "timeout_s": schedule.timeout_s,
        "enabled": schedule.enabled,
        "deadline": schedule.deadline,
        "retry": schedule.retry,
        "missed": {"max_lateness_s": schedule.max_lateness_s},
        "channels": schedule.channels,
    }


def schedule_json(
    schedule: Schedule, now: datetime, last_fire: dict[str, Any] | None
) -> dict[str, Any]:
    cron = cron_of(schedule)
    upcoming = next_fires(cron, now, NEXT_FIRES) if schedule.enabled else []
    deadlines = [deadline_of(slot, schedule.deadline, cron.zone) for slot in upcoming]
    return {
        "id": schedule.id,
        **schedule_body(schedule),
        "title": title_of(schedule),
        "channels": [display_url(url) for url in schedule.channels],
        "next_fires": [slot.isoformat() for slot in upcoming],
        "next_fires_local": [local_iso(slot, cron.zone) for slot in upcoming],
        "next_deadlines": [_iso(d) for d in deadlines],
        "last_slot": _iso(schedule.last_slot),
        "last_fire": last_fire,
        "last_outcome": last_fire["outcome"] if last_fire else None,
        "created_by": schedule.created_by,
        "created_at": schedule.created_at.isoformat(),
        "updated_at": schedule.updated_at.isoformat(),
    }


def attempts_of(session: Session, run_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The attempts of the chains that start with ``run_ids``, oldest first."""
    if not run_ids:
        return {}
    rows = session.execute(
        select(chain_id(), Run.id, Run.attempt, Run.status, Run.not_before, Run.finished_at)
        .where(chain_id().in_(run_ids))
        .order_by(Run.attempt, Run.id)
    ).all()
    chains: dict[int, list[dict[str, Any]]] = {run_id: [] for run_id in run_ids}
    for chain, run_id, attempt, status, not_before, finished_at in rows:
        chains[chain].append(
            {
                "id": run_id,
                "attempt": attempt,
                "status": status,
                "not_before": _iso(not_before),
                "finished_at": _iso(finished_at),
            }
        )
    return chains


def outcome_of(fire: ScheduleFire, attempts: list[dict[str, Any]]) -> str:
    """missed | skipped, else the status of the chain's latest attempt."""
    if fire.status != "fired" or not attempts:
        return fire.status
    return str(attempts[-1]["status"])


def fires_json(session: Session, fires: list[ScheduleFire], tz: Any) -> list[dict[str, Any]]:
    run_ids = [f.run_id for f in fires if f.run_id is not None]
    chains = attempts_of(session, run_ids)
    runs = (
        {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(run_ids))).all()}
        if run_ids
        else {}
    )
    items = []
    for fire in fires:
        attempts = chains.get(fire.run_id, []) if fire.run_id is not None else []
        run = runs.get(fire.run_id) if fire.run_id is not None else None
        items.append(
            {
                "id": fire.id,
                "schedule_id": fire.schedule_id,
                "slot": fire.slot.isoformat(),
                "slot_local": local_iso(fire.slot, tz),
                "status": fire.status,
                "reason": fire.reason,
                "fired_at": fire.fired_at.isoformat(),
                "server_id": fire.server_id,
                "run_id": fire.run_id,
                "deadline_at": _iso(run.deadline_at) if run else None,
                "deadline_missed": bool(run.deadline_missed) if run else False,
                "attempts": attempts,
                "outcome": outcome_of(fire, attempts),
            }
        )
    return items


def last_fires(session: Session, schedules: list[Schedule]) -> dict[int, dict[str, Any]]:
    """The latest fire of each schedule, as JSON."""
    if not schedules:
        return {}
    latest = (
        select(ScheduleFire.schedule_id, func.max(ScheduleFire.slot).label("slot"))
        .where(ScheduleFire.schedule_id.in_([s.id for s in schedules]))
        .group_by(ScheduleFire.schedule_id)
        .subquery()
    )
    fires = session.scalars(
        select(ScheduleFire).join(
            latest,
            (ScheduleFire.schedule_id == latest.c.schedule_id)
            & (ScheduleFire.slot == latest.c.slot),
        )
    ).all()
    zones = {s.id: zone(s.timezone) for s in schedules}
    out = {}
    for fire in fires:
        out[fire.schedule_id] = fires_json(session, [fire], zones[fire.schedule_id])[0]
    return out


def list_fires(
    session: Session,
    schedule_id: int,
    *,
    limit: int,
    offset: int,
    since: datetime | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    schedule = get_schedule(session, schedule_id)
    query = select(ScheduleFire).where(ScheduleFire.schedule_id == schedule_id)
    if since is not None:
        query = query.where(ScheduleFire.slot >= since)
    if status is not None:
        query = query.where(ScheduleFire.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    fires = list(
        session.scalars(query.order_by(ScheduleFire.slot.desc()).limit(limit).offset(offset)).all()
    )
    return {
        "schedule_id": schedule_id,
        "items": fires_json(session, fires, zone(schedule.timezone)),
        "total": total,
    }


def new_run(
    script: Script,
    *,
    args: list[str],
    config: dict[str, Any],
    parameters: dict[str, Any],
    inputs: list[dict[str, Any]],
    priority: int,
    timeout_s: int,
    requested_by: str | None,
    schedule_id: int | None,
    deadline_at: datetime | None,
    retry: RetryPolicy | None,
    channels: list[str],
) -> Run:
    """A queued first attempt (a scheduled fire; retries copy the run they follow)."""
    return Run(
        script=script,
        status="queued",
        args=list(args),
        config=dict(config),
        parameters=parameters,
        inputs=list(inputs),
        priority=priority,
        timeout_s=timeout_s,
        requested_by=requested_by,
        line_count=0,
        error_count=0,
        attempt=1,
        schedule_id=schedule_id,
        deadline_at=deadline_at,
        deadline_missed=False,
        retry=retry.to_json() if retry else None,
        channels=list(channels),
    )


def notice_once(session: Session, chain: int, kind: str, server_id: str, now: datetime) -> bool:
    """Record a deadline notice of an attempt chain; False when it was sent already."""
    table: Any = DeadlineNotice.__table__
    values = {"run_id": chain, "kind": kind, "server_id": server_id, "created_at": now}
    return insert_once(session, table, values) is not None


run_json = run_store.run_json
