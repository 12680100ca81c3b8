"""The part of a run that happens on a Dask worker.

The server that claimed a run submits ``run_on_worker`` as a Dask task. The task takes the run
over (a conditional update from the claiming server to the task's own server id, so a task
that Dask starts a second time, or a run that was killed or reaped meanwhile, never runs), then
runs it exactly as a server would: the same sandbox, limits, clean environment, timeout,
gap-free seq and tree kill, through a run engine of its own that writes lines, state and
events to the database and files to the shared storage. So the run does not depend on the
server that submitted it: that server may restart, the run goes on, and every server follows
its lines from the database. Kill requests are read from the run, like any owner does; if the
worker dies, its heartbeats stop and any server reaps the run as ``lost``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from ..cluster import servers
from ..cluster.relay import EventRelay
from ..cluster.servers import WORKER_EXECUTOR, ServerIdentity
from ..config import Settings
from ..db import Database, utcnow
from ..db.models import Run
from ..events import EventHub
from ..notify import set_global_channels
from ..storage import open_storage
from . import store
from .engine import RunEngine
from .procs import process_backend

# settings a worker takes from the server that submits (paths are the worker's own)
LOCAL_PATHS = ("data_dir", "sandbox_dir", "logs_dir", "files_dir")

log = logging.getLogger("energyops.worker")


@dataclass(frozen=True)
class WorkerRun:
    """What a Dask task needs to run one run (pickled to the worker)."""

    run_id: int
    submitted_by: str  # the server id that claimed the run
    settings: dict[str, Any]  # the server's Settings, without its local paths

    @classmethod
    def of(cls, run_id: int, submitted_by: str, settings: Settings) -> WorkerRun:
        values = {
            f.name: getattr(settings, f.name)
            for f in dataclasses.fields(Settings)
            if f.name not in LOCAL_PATHS
        }
        # the server's default storage is its own files directory: name it for the worker
        values["storage_url"] = settings.storage_url or settings.files_dir.as_uri()
        values["executor"] = "local"  # on the worker the run is a local subprocess
        return cls(run_id, submitted_by, values)

    def worker_settings(self, root: Path) -> Settings:
        """The server's settings with this worker's own paths. Settings this worker's
        version does not know (the server is newer) are left out rather than failing."""
        known = {f.name for f in dataclasses.fields(Settings)}
        unknown = sorted(set(self.settings) - known)
        if unknown:
            log.warning("settings unknown to this worker's version: %s", ", ".join(unknown))
        values = {k: v for k, v in self.settings.items() if k in known}
        return Settings.for_data_dir(root, **values)


def run_on_worker(spec: WorkerRun) -> dict[str, Any]:
    """The Dask task. Returns ``{"run_id", "taken", "status"}``."""
    address = _worker_address()
    return asyncio.run(_run(spec, address))


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


async def _run(spec: WorkerRun, address: str | None) -> dict[str, Any]:
    procs = process_backend(str(spec.settings.get("process_backend", "auto")))
    me = dataclasses.replace(ServerIdentity.of_this_process(procs=procs), executor=WORKER_EXECUTOR)
    # a directory of this task's own: tasks of several databases may share a worker
    settings = spec.worker_settings(Path(tempfile.gettempdir()) / "energyops-worker" / me.id)
    for path in (settings.sandbox_dir, settings.logs_dir, settings.files_dir):
        path.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url, reader_threads=2)
    set_global_channels(db.write_engine, settings.notification_urls, settings.delivery_attempts)
    hub = EventHub()
    hub.bind_loop(asyncio.get_running_loop())
    relay = EventRelay(db, hub, me.id, poll_s=settings.poll_s, log=log, receive=False)
    storage = open_storage(
        settings.storage_url, default_root=settings.files_dir, options=settings.storage_options
    )
    engine = RunEngine(settings, db, storage, hub, log, me, claims=False)
    try:
        await db.write(lambda s: servers.register(s, me, utcnow(), address))
        taken = await db.write(
            lambda s: take_over(s, spec.run_id, spec.submitted_by, me, address, utcnow())
        )
        if not taken:
            log.warning("run %s was not taken over: it is no longer %s's", spec.run_id, me.id)
            return {"run_id": spec.run_id, "taken": False, "status": None}
        relay.start()
        await engine.start()
        await engine.run_owned(spec.run_id)
        status = await db.read(lambda s: store.get_run(s, spec.run_id).status)
        return {"run_id": spec.run_id, "taken": True, "status": status}
    finally:
        await engine.stop()
        await relay.stop()
        await db.write(lambda s: servers.mark_stopped(s, me.id, utcnow(), "its run ended"))
        db.close()


def take_over(
    session: Session,
    run_id: int,
    submitted_by: str,
    me: ServerIdentity,
    address: str | None,
    now: datetime,
) -> bool:
    """The worker's task becomes the run's owner, only if the server that claimed it still
    owns it as running (not killed, not reaped, not taken by an earlier try of this task)."""
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, store.owned(submitted_by))
        .values(
            server_id=me.id,
            worker=address,
            host=me.host,
            boot_id=me.boot_id,
            started_at=now,
            heartbeat_at=now,
        )
    )
    return getattr(result, "rowcount", 0) == 1
