"""Dashboard pushes: one task per server, kpi.update and health.update while someone listens."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..health import health_report
from ..tasks import cancel_and_wait
from .hub import EventHub
from .kpi import kpi_report
from .types import DASHBOARD, Event

if TYPE_CHECKING:
    from ..services import Services

Source = Callable[[], Awaitable[dict[str, Any]]]

log = logging.getLogger(__name__)


class DashboardPusher:
    """Publishes each source's report on ``dashboard`` every ``interval`` seconds, only while
    the topic has listeners; a first listener gets every report at once."""

    def __init__(self, hub: EventHub, sources: dict[str, tuple[Source, float]]) -> None:
        self.hub = hub
        self.sources = sources
        self.pushes = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="energyops-dashboard-pushes"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = dict.fromkeys(self.sources, 0.0)
        while True:
            if not self.hub.listened(DASHBOARD):
                await self.hub.until_listened(DASHBOARD)
                due = dict.fromkeys(self.sources, loop.time())
            for type, (source, interval) in self.sources.items():
                if due[type] <= loop.time() and self.hub.listened(DASHBOARD):
                    await self._push(type, source)
                    due[type] = loop.time() + interval
            delay = min(due.values()) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _push(self, type: str, source: Source) -> None:
        try:
            data = await source()
        except Exception:
            log.exception("dashboard %s failed; trying again next interval", type)
            return
        self.pushes += 1
        self.hub.publish(Event(DASHBOARD, type, data))


def dashboard_pusher(services: Services) -> DashboardPusher:
    """The server's pusher: KPIs from aggregate SQL, health as GET /health reports it."""

    async def kpi() -> dict[str, Any]:
        return await services.db.read(kpi_report)

    async def health() -> dict[str, Any]:
        return await services.db.read(lambda _session: health_report(services))

    settings = services.settings
    return DashboardPusher(
        services.hub,
        {
            "kpi.update": (kpi, settings.kpi_interval_s),
            "health.update": (health, settings.health_interval_s),
        },
    )
