"""The services of one server, built once at start and reached by handlers through settings."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .db import Database, upgrade
from .events import EventHub
from .events.periodic import DashboardPusher, dashboard_pusher
from .events.stream import run_log_stream
from .ingest.service import IngestService
from .runs.service import RunService
from .storage import LocalStorage, Storage


@dataclass
class Services:
    settings: Settings
    db: Database
    storage: Storage
    hub: EventHub
    log: logging.Logger
    runs: RunService
    ingest: IngestService
    started_monotonic: float = field(default_factory=time.monotonic)
    dashboard: DashboardPusher | None = None

    def health_parts(self) -> dict[str, Any]:
        """Sections of /health owned by the services (sandbox, queue, ...). Blocking."""
        parts: dict[str, Any] = {}
        parts.update(self.runs.health())
        return parts

    async def start(self) -> None:
        """Start background work once the event loop runs."""
        self.hub.add_stream(run_log_stream(self.runs.log_backlog))
        if self.dashboard is None:
            self.dashboard = dashboard_pusher(self)
        self.dashboard.start()
        await self.runs.start()

    async def stop(self) -> None:
        """Stop background work and release every resource; safe to call twice."""
        await self.runs.stop()
        if self.dashboard is not None:
            await self.dashboard.stop()
        self.hub.close()
        self.db.close()


def build_services(settings: Settings, log: logging.Logger) -> Services:
    """Create directories, migrate the database and wire the services together."""
    for path in (settings.data_dir, settings.sandbox_dir, settings.logs_dir, settings.files_dir):
        path.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    upgrade(db.write_engine)
    log.info("EnergyOps database: %s (%s)", db.display_url, db.kind)
    storage = LocalStorage(settings.files_dir)
    hub = EventHub(queue_frames=settings.ws_queue_frames)
    return Services(
        settings=settings,
        db=db,
        storage=storage,
        hub=hub,
        log=log,
        runs=RunService(settings, db, storage, hub, log),
        ingest=IngestService(settings, db, storage, hub, log),
    )
