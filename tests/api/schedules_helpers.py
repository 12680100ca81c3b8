"""Factories for schedule, deadline and retry tests: a clock tests move by hand, and
schedule services that each believe they are a separate server on one database."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from energyops_ext.cluster.servers import ServerIdentity
from energyops_ext.db import Database
from energyops_ext.db.models import Notification, Run, ScheduleFire
from energyops_ext.schedules.service import ScheduleService, TickReport
from energyops_ext.services import Services

from .cluster_factories import identity
from .conftest import Fetch, body

# Monday 2030-01-07 07:30 IST: far from the real clock, so nothing real is ever due
START = datetime(2030, 1, 7, 2, 0, tzinfo=UTC)
SCHEDULE_CONFIG = {"schedule_poll_s": 0.0}  # tests tick by hand


class Clock:
    """``clock()`` is whatever the test last set."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, moment: datetime | str, plus_s: float = 0.0) -> datetime:
        when = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
        self.now = when + timedelta(seconds=plus_s)
        return self.now


@dataclass
class Fleet:
    """Schedule services of several "servers" (own identity, own Database) on one database,
    publishing on the test server's hub."""

    services: Services
    clock: Clock
    members: list[ScheduleService] = field(default_factory=list)
    databases: list[Database] = field(default_factory=list)

    def add(self, me: ServerIdentity, spread: float = 0.5) -> ScheduleService:
        db = Database(self.services.settings.db_url)
        self.databases.append(db)
        member = ScheduleService(
            self.services.settings,
            db,
            self.services.hub,
            logging.getLogger(f"energyops.test.{me.id}"),
            me,
            clock=self.clock,
            spread=lambda: spread,
        )
        self.members.append(member)
        return member

    async def race(self) -> list[TickReport]:
        """Every member ticks at once, at the same clock."""
        return list(await asyncio.gather(*(m.tick() for m in self.members)))

    def close(self) -> None:
        for db in self.databases:
            db.close()


def use_clock(services: Services) -> Clock:
    """A clock for the test, also the clock of the test server's own schedule service."""
    moving = Clock()
    assert services.schedules is not None
    services.schedules.clock = moving
    return moving


def three_servers(services: Services, clock: Clock) -> Fleet:
    made = Fleet(services, clock)
    for name in ("a", "b", "c"):
        made.add(identity(f"srv-sched-{name}", host=f"eo-{name}", boot_id=f"boot-{name}"))
    return made


async def create_schedule(api: Fetch, **payload: Any) -> dict[str, Any]:
    response = await api("POST", "schedules", json=payload)
    assert response.code == 201, response.body
    schedule: dict[str, Any] = body(response)
    return schedule


def count_runs(services: Services, **where: Any) -> int:
    query = select(func.count()).select_from(Run).filter_by(**where)
    return services.db.read_sync(lambda s: s.scalar(query) or 0)


def fire_rows(services: Services, schedule_id: int) -> list[tuple[str, str, int | None]]:
    """(slot ISO, status, run_id) of a schedule's fires, oldest first."""
    rows = services.db.read_sync(
        lambda s: s.execute(
            select(ScheduleFire.slot, ScheduleFire.status, ScheduleFire.run_id)
            .where(ScheduleFire.schedule_id == schedule_id)
            .order_by(ScheduleFire.slot)
        ).all()
    )
    return [(slot.isoformat(), status, run_id) for slot, status, run_id in rows]


def notifications(services: Services, type_: str) -> list[tuple[str, str]]:
    """(title, message) of the notifications of one type, oldest first."""
    rows = services.db.read_sync(
        lambda s: s.execute(
            select(Notification.title, Notification.message)
            .where(Notification.type == type_)
            .order_by(Notification.id)
        ).all()
    )
    return [(title, message) for title, message in rows]
