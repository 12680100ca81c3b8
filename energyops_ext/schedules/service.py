"""ScheduleService: schedules (create, list, show, change, pause/resume, delete, fires) and
the tick every server runs: fire due slots, sweep deadlines, sweep retries.

All servers are equal. Each tick reads the enabled schedules, works out their due slots from
the clock it was given (``clock``, so tests move time instead of sleeping), and fires them
through ``fire.fire_due``, where a unique row per slot lets one server win. The tick runs
every ``schedule_poll_s`` and also wakes at the next known slot, so a slot starts within
milliseconds of its time, not within a poll.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..cluster.servers import ServerIdentity
from ..config import Settings
from ..db import Database, utcnow
from ..db.models import Run, Schedule
from ..errors import BadRequest
from ..events import Event, EventHub
from ..events.types import SCHEDULES
from ..feed import add_activity, announce
from ..tasks import cancel_and_wait, wait_event
from . import store
from .cron import Cron, Due, due_slots, next_fires, parse_cron, zone
from .fire import fire_due
from .outcome import Published
from .spec import ScheduleSpec, merge_patch, parse_schedule
from .sweeps import (
    deadline_chains,
    late_retries,
    retry_candidates,
    sweep_deadline,
    sweep_late_retry,
    sweep_retry,
)

FIRE_STATUSES = ("fired", "missed", "skipped")
WAKE_MARGIN_S = 0.002  # timers may fire a hair early: look just after the slot


@dataclass
class Plan:
    """What one look at the schedules found: due slots per schedule, and the next slot."""

    due: dict[int, Due] = field(default_factory=dict)
    next_slot: datetime | None = None


@dataclass
class TickReport:
    fired: list[int] = field(default_factory=list)  # runs queued by slots
    missed: int = 0
    notices: int = 0
    retries: list[int] = field(default_factory=list)  # runs queued as retries


class ScheduleService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        hub: EventHub,
        log: logging.Logger,
        me: ServerIdentity,
        *,
        clock: Callable[[], datetime] = utcnow,
        spread: Callable[[], float] = random.random,
        on_queued: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.hub = hub
        self.log = log
        self.me = me
        self.clock = clock
        self.spread = spread  # the jitter of retry back-off: a number in [0, 1]
        self.on_queued = on_queued
        self.next_slot: datetime | None = None
        self._crons: dict[tuple[str, str], Cron] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._tick_lock = asyncio.Lock()

    # --- start / stop ---

    async def start(self) -> None:
        if self.settings.schedule_poll_s > 0 and self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def wake(self) -> None:
        """Look at the schedules now (one was created or changed)."""
        if self._wake is not None:
            self._wake.set()

    async def _loop(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await self.tick()
            except Exception:
                self.log.exception("EnergyOps schedule tick failed")
            await wait_event(self._wake, self._sleep_s())
            self._wake.clear()

    def _sleep_s(self) -> float:
        wait = self.settings.schedule_poll_s
        if self.next_slot is not None:
            until = (self.next_slot - self.clock()).total_seconds() + WAKE_MARGIN_S
            wait = min(wait, max(until, 0.0))
        return wait

    # --- the tick ---

    async def tick(self) -> TickReport:
        """Fire due slots, then sweep deadlines and retries; returns what this server did."""
        async with self._tick_lock:
            report = TickReport()
            for part in (self._fire_slots, self._sweep_deadlines, self._sweep_retries):
                try:
                    await part(report)
                except Exception:
                    self.log.exception("EnergyOps schedule tick: %s failed", part.__name__)
            return report

    def _cron(self, expr: str, tz_name: str) -> Cron:
        key = (expr, tz_name)
        cron = self._crons.get(key)
        if cron is None:
            cron = self._crons[key] = parse_cron(expr, zone(tz_name))
        return cron

    def _plan(self, session: Session, now: datetime) -> Plan:
        plan = Plan()
        rows = session.execute(
            select(
                Schedule.id,
                Schedule.cron,
                Schedule.timezone,
                Schedule.anchor_at,
                Schedule.last_slot,
            ).where(Schedule.enabled.is_(True))
        ).all()
        for schedule_id, expr, tz_name, anchor_at, last_slot in rows:
            try:
                cron = self._cron(expr, tz_name)
            except Exception:
                self.log.warning(
                    "schedule %s: cannot read cron %r in %s", schedule_id, expr, tz_name
                )
                continue
            after = max(anchor_at, last_slot) if last_slot is not None else anchor_at
            due = due_slots(cron, after, now)
            if due.slots:
                plan.due[schedule_id] = due
            upcoming = next_fires(cron, max(now, after), 1)[0]
            if plan.next_slot is None or upcoming < plan.next_slot:
                plan.next_slot = upcoming
        return plan

    async def _fire_slots(self, report: TickReport) -> None:
        now = self.clock()
        plan = await self.db.read(lambda s: self._plan(s, now))
        self.next_slot = plan.next_slot
        for schedule_id, due in plan.due.items():
            done = await self.db.write(
                lambda s, i=schedule_id, d=due: fire_due(s, i, d, now, self.me.id)  # type: ignore[misc]
            )
            report.fired += done.queued
            report.missed += sum(1 for e in done.events if e.type == "schedule.missed")
            await self._publish(done)

    async def _sweep_deadlines(self, report: TickReport) -> None:
        now = self.clock()
        warnings = self.settings.deadline_warnings_min
        chains = await self.db.read(lambda s: deadline_chains(s, now, warnings))
        for chain in chains:
            done = await self.db.write(
                lambda s, c=chain: sweep_deadline(  # type: ignore[misc]
                    s, c, now, warnings, self.me.id, self.settings.schedule_timezone
                )
            )
            report.notices += len(done.notifications)
            await self._publish(done)

    async def _sweep_retries(self, report: TickReport) -> None:
        now = self.clock()
        for run_id in await self.db.read(lambda s: late_retries(s, now)):
            done = await self.db.write(
                lambda s, r=run_id: sweep_late_retry(s, r, now, self.settings.schedule_timezone)  # type: ignore[misc]
            )
            report.notices += len(done.notifications)
            await self._publish(done)
        for run_id in await self.db.read(retry_candidates):
            spread = self.spread()
            done = await self.db.write(
                lambda s, r=run_id, x=spread: sweep_retry(  # type: ignore[misc]
                    s, r, now, x, self.me.id, self.settings.schedule_timezone
                )
            )
            report.retries += done.queued
            await self._publish(done)

    async def _publish(self, done: Published) -> None:
        announce(self.hub, done.activities, done.notifications)
        for event in done.events:
            self.hub.publish(event)
        if done.queued and self.on_queued is not None:
            await self.on_queued()

    # --- schedules ---

    async def create(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        spec = parse_schedule(body, self.settings)
        now = self.clock()

        def write(session: Session) -> tuple[dict[str, Any], list[Any]]:
            store.check_script(session, spec.script_id, spec.script_name, spec.parameters)
            schedule = Schedule(anchor_at=now, created_by=user, created_at=now, updated_at=now)
            _apply(schedule, spec)
            session.add(schedule)
            session.flush()
            activity = _activity(session, schedule, "created", user)
            return store.schedule_json(schedule, now, None), [activity]

        data, activities = await self.db.write(write)
        self._announce_change(data, "created", activities)
        return data

    async def list_schedules(
        self, *, enabled: bool | None, limit: int, offset: int
    ) -> dict[str, Any]:
        now = self.clock()

        def read(session: Session) -> dict[str, Any]:
            query = select(Schedule)
            if enabled is not None:
                query = query.where(Schedule.enabled.is_(enabled))
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = list(session.scalars(query.order_by(Schedule.id).limit(limit).offset(offset)))
            last = store.last_fires(session, rows)
            items = [store.schedule_json(s, now, last.get(s.id)) for s in rows]
            return {"items": items, "total": total}

        return await self.db.read(read)

    async def get(self, schedule_id: int) -> dict[str, Any]:
        now = self.clock()

        def read(session: Session) -> dict[str, Any]:
            schedule = store.get_schedule(session, schedule_id)
            last = store.last_fires(session, [schedule]).get(schedule_id)
            return store.schedule_json(schedule, now, last)

        return await self.db.read(read)

    async def update(self, schedule_id: int, patch: dict[str, Any], user: str) -> dict[str, Any]:
        now = self.clock()

        def write(session: Session) -> tuple[dict[str, Any], str, list[Any]]:
            schedule = store.get_schedule(session, schedule_id)
            spec = parse_schedule(merge_patch(store.schedule_body(schedule), patch), self.settings)
            if patch.keys() & {"script_id", "script_name", "parameters"}:
                store.check_script(session, spec.script_id, spec.script_name, spec.parameters)
            resumed = spec.enabled and not schedule.enabled
            paused = schedule.enabled and not spec.enabled
            retimed = (spec.cron.expr, spec.timezone) != (schedule.cron, schedule.timezone)
            _apply(schedule, spec)
            if resumed or retimed:
                schedule.anchor_at = now  # slots of a pause or of the old cron are not due
            schedule.updated_at = now
            action = "paused" if paused else "resumed" if resumed else "updated"
            activity = _activity(session, schedule, action, user)
            last = store.last_fires(session, [schedule]).get(schedule_id)
            return store.schedule_json(schedule, now, last), action, [activity]

        data, action, activities = await self.db.write(write)
        self._announce_change(data, action, activities)
        return data

    async def delete(self, schedule_id: int, user: str) -> None:
        def write(session: Session) -> tuple[dict[str, Any], list[Any]]:
            schedule = store.get_schedule(session, schedule_id)
            data = {"id": schedule.id, "title": store.title_of(schedule)}
            activity = _activity(session, schedule, "deleted", user)
            session.execute(
                update(Run).where(Run.schedule_id == schedule_id).values(schedule_id=None)
            )
            session.delete(schedule)
            return data, [activity]

        data, activities = await self.db.write(write)
        self._announce_change(data, "deleted", activities)

    async def fires(
        self,
        schedule_id: int,
        *,
        limit: int,
        offset: int,
        since: datetime | None = None,
        status: str | None = None,
    ) -> dict[str, Any]:
        if status is not None and status not in FIRE_STATUSES:
            raise BadRequest(
                f"status must be one of {', '.join(FIRE_STATUSES)}; got {status!r}",
                code="invalid_parameter",
                details={"field": "status"},
            )
        return await self.db.read(
            lambda s: store.list_fires(
                s, schedule_id, limit=limit, offset=offset, since=since, status=status
            )
        )

    def _announce_change(self, data: dict[str, Any], action: str, activities: list[Any]) -> None:
        announce(self.hub, activities)
        self.hub.publish(Event(SCHEDULES, "schedule.updated", {"action": action, "schedule": data}))
        self.wake()


def _apply(schedule: Schedule, spec: ScheduleSpec) -> None:
    schedule.name = spec.name
    schedule.script_id = spec.script_id
    schedule.script_name = spec.script_name
    schedule.cron = spec.cron.expr
    schedule.timezone = spec.timezone
    schedule.args = spec.args
    schedule.config = spec.config
    schedule.parameters = spec.parameters
    schedule.inputs = spec.inputs
    schedule.priority = spec.priority
    schedule.timeout_s = spec.timeout_s
    schedule.enabled = spec.enabled
    schedule.deadline = spec.deadline
    schedule.retry = spec.retry.to_json() if spec.retry else None
    schedule.max_lateness_s = spec.max_lateness_s
    schedule.channels = spec.channels


def _activity(session: Session, schedule: Schedule, action: str, user: str) -> Any:
    detail = f" ({schedule.cron}, {schedule.timezone})" if action in ("created", "updated") else ""
    return add_activity(
        session,
        type="schedule",
        action=action,
        title=f"Schedule {store.title_of(schedule)} {action}{detail}",
        entity_type="schedule",
        entity_id=schedule.id,
        user=user,
    )


def parse_since(raw: str | None) -> datetime | None:
    """The ``since`` query parameter of /schedules/{id}/fires: an ISO 8601 instant (UTC
    when it names no zone)."""
    if raw is None or raw == "":
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(
            f"since must be an ISO 8601 date and time; got {raw!r}",
            code="invalid_parameter",
            details={"field": "since"},
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
