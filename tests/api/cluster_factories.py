"""Rows and in-process "servers" for the cluster tests: registry rows, scripts, runs, and run
engines that each believe they are a separate server on one database."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from energyops_ext.cluster import servers
from energyops_ext.cluster.servers import ServerIdentity
from energyops_ext.config import Settings
from energyops_ext.db import Database
from energyops_ext.db.models import Notification, Run, Script, Server
from energyops_ext.events import Event, EventHub
from energyops_ext.runs import registry, store
from energyops_ext.runs.engine import RunEngine
from energyops_ext.storage import LocalStorage

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
LEASE_S = 30.0


def identity(
    server_id: str,
    *,
    host: str = "eo-a",
    boot_id: str = "boot-a",
    pid: int = 1000,
    pid_start_time: int | None = 5000,
) -> ServerIdentity:
    return ServerIdentity(
        id=server_id,
        host=host,
        boot_id=boot_id,
        pid=pid,
        pid_start_time=pid_start_time,
        version="0.0.0-test",
        executor="local",
    )


def this_machine(server_id: str, *, pid: int | None = None) -> ServerIdentity:
    """A server on the machine the tests run on (real host name and boot id); by default
    with this process's pid, so it is alive here."""
    pid = os.getpid() if pid is None else pid
    return identity(
        server_id,
        host=registry.host_name(),
        boot_id=registry.boot_id(),
        pid=pid,
        pid_start_time=registry.start_time(pid),
    )


def gone_pid() -> int:
    """A pid no process can have on this machine."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def add_server(
    session: Session,
    me: ServerIdentity,
    *,
    heartbeat_at: datetime = NOW,
    stopped_at: datetime | None = None,
) -> None:
    servers.register(session, me, heartbeat_at - timedelta(hours=2), None)
    session.flush()
    row = session.get(Server, me.id)
    assert row is not None
    row.heartbeat_at = heartbeat_at
    row.stopped_at = stopped_at


def add_script(session: Session, name: str = "test_cluster.py") -> int:
    script = Script(
        kind="test",
        name=name,
        version=1,
        sha256="0" * 64,
        size=1,
        storage_key="scripts/none.py",
    )
    session.add(script)
    session.flush()
    return script.id


def add_run(
    session: Session,
    script_id: int,
    *,
    status: str = "queued",
    priority: int = 0,
    created_at: datetime = NOW,
    owner: ServerIdentity | None = None,
    host: str | None = None,
    pid: int | None = None,
) -> int:
    """A run; ``owner`` fills server_id, host and boot id as a claim would (``host`` alone
    makes a run of the days before servers had ids)."""
    run = Run(
        script_id=script_id,
        status=status,
        priority=priority,
        created_at=created_at,
        server_id=owner.id if owner else None,
        host=owner.host if owner else host,
        boot_id=owner.boot_id if owner else None,
        pid=pid,
        started_at=created_at if status != "queued" else None,
    )
    session.add(run)
    session.flush()
    return run.id


def run_row(db: Database, run_id: int) -> Run:
    run = db.read_sync(lambda s: s.get(Run, run_id))
    assert run is not None
    return run


def lost_lines(db: Database, run_id: int) -> list[tuple[int, str, str]]:
    """(seq, stream, text) of a run's "run lost:" lines."""
    lines = db.read_sync(lambda s: store.read_lines(s, run_id, 0, None))
    return [
        (line["seq"], line["stream"], line["text"])
        for line in lines
        if line["text"].startswith("run lost:")
    ]


def notification_count(db: Database, type_: str, run_id: int) -> int:
    return db.read_sync(
        lambda s: (
            s.scalar(
                select(func.count()).where(
                    Notification.type == type_,
                    Notification.entity_type == "run",
                    Notification.entity_id == run_id,
                )
            )
            or 0
        )
    )


@dataclass
class InProcessServer:
    """One "server": its identity, its own Database, hub and run engine, and what its hub
    published."""

    me: ServerIdentity
    db: Database
    hub: EventHub
    engine: RunEngine
    log: logging.Logger
    events: list[Event] = field(default_factory=list)

    def finished(self, run_id: int) -> list[dict[str, Any]]:
        return [
            e.data
            for e in self.events
            if e.type == "run.finished" and e.data.get("run_id") == run_id
        ]


class ServerFactory:
    """Builds in-process servers on the loop of the running test; closes their databases."""

    def __init__(self, db_url: str, tmp_path: Path, clock_now: datetime = NOW) -> None:
        self.db_url = db_url
        self.tmp_path = tmp_path
        self.now = clock_now
        self.made: list[InProcessServer] = []

    def clock(self) -> datetime:
        return self.now

    def __call__(self, me: ServerIdentity, **settings: Any) -> InProcessServer:
        data_dir = self.tmp_path / f"server-{me.id}"
        config = Settings.for_data_dir(data_dir, db_url=self.db_url, lease_s=LEASE_S, **settings)
        db = Database(self.db_url)
        hub = EventHub()
        hub.bind_loop(asyncio.get_running_loop())
        log = logging.getLogger(f"energyops.test.{me.id}")
        engine = RunEngine(
            config, db, LocalStorage(config.files_dir), hub, log, me, clock=self.clock
        )
        server = InProcessServer(me, db, hub, engine, log)
        hub.add_listener(server.events.append)
        self.made.append(server)
        return server

    def close(self) -> None:
        for server in self.made:
            server.hub.close()
            server.db.close()
