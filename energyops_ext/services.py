"""The services of one server, built once at start and reached by handlers through settings."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .db import Database, upgrade
from .events import EventHub
from .storage import LocalStorage, Storage


@dataclass
class Services:
    settings: Settings
    db: Database
    storage: Storage
    hub: EventHub
    log: logging.Logger
    started_monotonic: float = field(default_factory=time.monotonic)

    def health_parts(self) -> dict[str, Any]:
        """Sections of /health owned by the services (sandbox, queue, ...). Blocking."""
        return {}

    async def start(self) -> None:
        """Start background work once the event loop runs."""

    async def stop(self) -> None:
        """Stop background work and release every resource; safe to call twice."""
        self.db.close()


def build_services(settings: Settings, log: logging.Logger) -> Services:
    """Create directories, migrate the database and wire the services together."""
    for path in (settings.data_dir, settings.sandbox_dir, settings.logs_dir, settings.files_dir):
        path.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    upgrade(db.write_engine)
    log.info("EnergyOps database: %s (%s)", db.display_url, db.kind)
    return Services(
        settings=settings,
        db=db,
        storage=LocalStorage(settings.files_dir),
        hub=EventHub(),
        log=log,
    )
