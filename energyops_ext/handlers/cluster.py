"""GET /servers: every server that shares this database."""

from __future__ import annotations

from .base import EnergyOpsHandler, allow


class ServersHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self) -> None:
        items = await self.services.cluster.list_servers()
        self.write_json({"items": items, "live": sum(1 for s in items if s["live"])})


routes = [
    (r"/servers", ServersHandler),
]
