"""GET /health and GET /openapi.yaml."""

from __future__ import annotations

from importlib.resources import files

from ..auth import is_read_only
from ..health import health_report
from .base import EnergyOpsHandler, allow


class HealthHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self) -> None:
        full = not is_read_only(self, self.current_user)
        report = await self.services.db.read(lambda _s: health_report(self.services, full=full))
        self.write_json(report)


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
