"""The server registry: every EnergyOps server sharing a database has a row in ``servers``.

A server gets a new id at every start and heartbeats its row. Another server takes it for dead
when its heartbeat is older than the lease, or at once when it ran on this machine (same host
name and boot id) and its process (pid + start time) is gone. Ownership of runs is keyed on the
server id, never on the host: two servers on one laptop share a host and a boot id.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from .._version import __version__
from ..db.models import Run, Server
from ..runs import registry
from ..runs.procs import ProcessBackend, process_backend

Alive = Callable[[int, int | None], bool]
# the executor of a row written by a run's task on a Dask worker
WORKER_EXECUTOR = "dask-worker"


@dataclass(frozen=True)
class ServerIdentity:
    """Who this server is, fixed for the life of the process."""

    id: str
    host: str
    boot_id: str
    pid: int
    pid_start_time: int | None
    version: str
    executor: str

    @classmethod
    def of_this_process(
        cls, executor: str = "local", procs: ProcessBackend | None = None
    ) -> ServerIdentity:
        """``procs``: the process backend whose boot id and start times this server records
        (the runs' engine must use the same one); the automatic choice by default."""
        procs = procs or process_backend()
        pid = os.getpid()
        return cls(
            id=str(uuid.uuid4()),
            host=registry.host_name(),
            boot_id=procs.boot_id(),
            pid=pid,
            pid_start_time=procs.start_time(pid),
            version=__version__,
            executor=executor,
        )

    def same_machine(self, host: str | None, boot: str | None) -> bool:
        return host == self.host and bool(boot) and boot == self.boot_id


def dead_reason(
    server: Server,
    *,
    now: datetime,
    lease_s: float,
    me: ServerIdentity,
    alive: Alive = registry.is_alive,
) -> str | None:
    """Why ``server`` is taken for dead, or None while it lives. Pure but for ``alive``."""
    name = f"server {server.id} ({server.host}, pid {server.pid})"
    if server.executor == WORKER_EXECUTOR:
        name = f"Dask worker {server.url} (its task {server.id} on {server.host}, pid {server.pid})"
    if server.stopped_at is not None:
        return f"{name} stopped at {server.stopped_at.isoformat(timespec='seconds')}"
    if server.id == me.id:
        return None
    if me.same_machine(server.host, server.boot_id) and not alive(
        server.pid, server.pid_start_time
    ):
        return f"{name} is gone: its process no longer exists on this machine"
    silent = (now - server.heartbeat_at).total_seconds()
    if silent > lease_s:
        return f"{name} sent no heartbeat for {silent:.1f} s (lease {lease_s:g} s)"
    return None


def register(session: Session, me: ServerIdentity, now: datetime, url: str | None) -> None:
    session.add(
        Server(
            id=me.id,
            host=me.host,
            boot_id=me.boot_id,
            pid=me.pid,
            pid_start_time=me.pid_start_time,
            version=me.version,
            executor=me.executor,
            url=url,
            started_at=now,
            heartbeat_at=now,
        )
    )


def heartbeat(session: Session, me: ServerIdentity, now: datetime) -> bool:
    """Renew this server's lease; False when its row is gone or marked stopped."""
    result = session.execute(
        update(Server)
        .where(Server.id == me.id, Server.stopped_at.is_(None))
        .values(heartbeat_at=now)
    )
    return getattr(result, "rowcount", 0) == 1


def renew(session: Session, me: ServerIdentity, now: datetime, url: str | None = None) -> None:
    """Renew this server's lease, bringing its row back if it was forgotten or marked
    stopped while the server still runs (its runs may have been reaped meanwhile)."""
    if heartbeat(session, me, now):
        return
    row = session.get(Server, me.id)
    if row is None:
        register(session, me, now, url)
    else:
        row.stopped_at, row.dead_reason, row.heartbeat_at = None, None, now


def mark_stopped(session: Session, server_id: str, now: datetime, reason: str | None) -> None:
    session.execute(
        update(Server)
        .where(Server.id == server_id, Server.stopped_at.is_(None))
        .values(stopped_at=now, dead_reason=reason)
    )


def server_json(server: Server, reason: str | None, me: ServerIdentity) -> dict[str, Any]:
    return {
        "id": server.id,
        "host": server.host,
        "pid": server.pid,
        "version": server.version,
        "executor": server.executor,
        "url": server.url,
        "started_at": server.started_at.isoformat(),
        "heartbeat_at": server.heartbeat_at.isoformat(),
        "stopped_at": server.stopped_at.isoformat() if server.stopped_at else None,
        "live": reason is None,
        "dead_reason": reason,
        "this": server.id == me.id,
    }


def list_servers(
    session: Session, me: ServerIdentity, now: datetime, lease_s: float, alive: Alive
) -> list[dict[str, Any]]:
    rows = session.scalars(select(Server).order_by(Server.started_at, Server.id)).all()
    return [
        server_json(row, dead_reason(row, now=now, lease_s=lease_s, me=me, alive=alive), me)
        for row in rows
    ]


@dataclass(frozen=True)
class OrphanRun:
    """A ``running`` run whose owner is dead, with what is needed to find its processes."""

    run_id: int
    server_id: str | None
    reason: str
    host: str | None
    boot_id: str | None
    pid: int | None
    pid_start_time: int | None
    workdir: str | None


def orphan_runs(
    session: Session, me: ServerIdentity, now: datetime, lease_s: float, alive: Alive
) -> list[OrphanRun]:
    """Running runs whose owner is dead. A run without an owner (written before servers
    had ids) counts as orphaned when it ran on this machine."""
    rows = session.execute(
        select(
            Run.id,
            Run.server_id,
            Run.host,
            Run.boot_id,
            Run.pid,
            Run.pid_start_time,
            Run.workdir,
        ).where(Run.status == "running", Run.server_id.is_distinct_from(me.id))
    ).all()
    if not rows:
        return []
    owners = {r[1] for r in rows if r[1] is not None}
    servers = {s.id: s for s in session.scalars(select(Server).where(Server.id.in_(owners))).all()}
    found = []
    for run_id, server_id, host, boot, pid, started, workdir in rows:
        if server_id is None:
            if host != me.host:
                continue
            reason = "the server that ran it stopped before servers had ids"
        elif server_id not in servers:
            reason = f"server {server_id} is not registered any more"
        else:
            dead = dead_reason(servers[server_id], now=now, lease_s=lease_s, me=me, alive=alive)
            if dead is None:
                continue
            reason = dead
        found.append(OrphanRun(run_id, server_id, reason, host, boot, pid, started, workdir))
    return found


def forget_stopped(session: Session, now: datetime, keep: timedelta) -> int:
    """Drop rows of servers that stopped long ago and own no active run (idempotent: two
    servers doing it at once delete the same rows)."""
    active_owners = select(Run.server_id).where(
        Run.status.in_(("queued", "running")), Run.server_id.is_not(None)
    )
    result = session.execute(
        delete(Server).where(
            Server.heartbeat_at < now - keep,
            Server.id.not_in(active_owners),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
