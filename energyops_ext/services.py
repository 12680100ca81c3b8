"""The services of one server, built once at start and reached by handlers through settings."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .alerts.service import AlertService
from .cluster.node import ClusterNode
from .cluster.servers import ServerIdentity, list_servers
from .config import Settings
from .db import Database, upgrade, utcnow
from .events import EventHub
from .events.periodic import DashboardPusher, dashboard_pusher
from .events.stream import run_log_stream
from .ingest.service import IngestService
from .notify.worker import DeliveryWorker, delivery_worker
from .runs.engine import RunEngine
from .runs.executors.dask import DaskExecutor
from .runs.procs import process_backend
from .runs.service import RunService
from .schedules.service import ScheduleService
from .storage import Storage, open_storage


@dataclass
class Services:
    settings: Settings
    db: Database
    storage: Storage
    hub: EventHub
    log: logging.Logger
    runs: RunService
    ingest: IngestService
    me: ServerIdentity
    cluster: ClusterNode
    alerts: AlertService
    deliveries: DeliveryWorker
    started_monotonic: float = field(default_factory=time.monotonic)
    dashboard: DashboardPusher | None = None
    schedules: ScheduleService | None = None

    def health_parts(self) -> dict[str, Any]:
        """Sections of /health owned by the services (sandbox, queue, ...). Blocking."""
        parts: dict[str, Any] = {}
        parts.update(self.runs.health())
        servers = self.db.read_sync(
            lambda s: list_servers(
                s, self.me, utcnow(), self.settings.lease_s, self.runs.engine.procs.is_alive
            )
        )
        parts["server"] = {
            "id": self.me.id,
            "host": self.me.host,
            "executor": self.me.executor,
            "live_servers": sum(1 for s in servers if s["live"]),
        }
        return parts

    async def start(self, url: str | None = None) -> None:
        """Start background work once the event loop runs."""
        self.hub.add_stream(run_log_stream(self.runs.log_backlog, self.cluster.follower.prepare))
        await self.cluster.register(url)
        await self.cluster.start()
        if self.dashboard is None:
            self.dashboard = dashboard_pusher(self)
        self.dashboard.start()
        await self.runs.start()
        if self.schedules is not None:
            await self.schedules.start()  # after the engine: a fire may start a run at once
        self.deliveries.start()
        self.alerts.start()

    async def stop(self) -> None:
        """Stop background work and release every resource; safe to call twice."""
        if self.schedules is not None:
            await self.schedules.stop()
        await self.alerts.stop()
        await self.deliveries.stop()
        await self.runs.stop()
        if self.dashboard is not None:
            await self.dashboard.stop()
        await self.cluster.stop()
        self.hub.close()
        self.db.close()


def build_services(settings: Settings, log: logging.Logger) -> Services:
    """Create directories, migrate the database and wire the services together."""
    for path in (settings.data_dir, settings.sandbox_dir, settings.logs_dir, settings.files_dir):
        path.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    upgrade(db.write_engine)
    log.info("EnergyOps database: %s (%s)", db.display_url, db.kind)
    storage = open_storage(
        settings.storage_url, default_root=settings.files_dir, options=settings.storage_options
    )
    log.info("EnergyOps storage: %r", storage)
    hub = EventHub(queue_frames=settings.ws_queue_frames)
    procs = process_backend(settings.process_backend)
    me = ServerIdentity.of_this_process(settings.executor, procs)
    executor = DaskExecutor(settings, db, me, log) if settings.executor == "dask" else None
    engine = RunEngine(settings, db, storage, hub, log, me, executor=executor)
    cluster = ClusterNode(
        settings, db, hub, me, log, wake_queue=engine.wake, is_local=engine.is_local
    )
    deliveries = delivery_worker(settings, db, hub, me.id, log)
    schedules = ScheduleService(settings, db, hub, log, me, on_queued=engine.pump)
    return Services(
        settings=settings,
        db=db,
        storage=storage,
        hub=hub,
        log=log,
        runs=RunService(engine),
        ingest=IngestService(settings, db, storage, hub, log),
        me=me,
        cluster=cluster,
        alerts=AlertService(
            db,
            hub,
            me.id,
            log,
            interval_s=settings.alert_interval_s,
            on_notified=deliveries.wake,
        ),
        deliveries=deliveries,
        schedules=schedules,
    )
