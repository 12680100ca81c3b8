"""GET /health and GET /openapi.yaml."""

from __future__ import annotations

import time
from importlib.resources import files
from typing import Any

from .._version import __version__
from ..db import current_revision, head_revision
from ..services import Services
from .base import EnergyOpsHandler, allow


def health_report(services: Services) -> dict[str, Any]:
    """Blocking: run in a thread. Every part says what it is and whether it works."""
    db = services.db
    reachable = db.ping()
    current = current_revision(db.read_engine) if reachable else None
    head = head_revision()
    report: dict[str, Any] = {
        "status": "ok" if reachable and current == head else "degraded",
        "version": __version__,
        "uptime_s": round(time.monotonic() - services.started_monotonic, 3),
        "database": {
            "kind": db.kind,
            "url": db.display_url,
            "reachable": reachable,
            "migration": {"current": current, "head": head, "up_to_date": current == head},
        },
    }
    report.update(services.health_parts())
    return report


class HealthHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self) -> None:
        self.write_json(await self.services.db.read(lambda _s: health_report(self.services)))


class OpenAPIHandler(EnergyOpsHandler):
    @allow("read")
    def get(self) -> None:
        spec = files("energyops_ext").joinpath("static/openapi.yaml").read_text("utf-8")
        self.set_header("Content-Type", "application/yaml; charset=UTF-8")
        self.finish(spec)


routes = [
    (r"/health", HealthHandler),
    (r"/openapi.yaml", OpenAPIHandler),
]
