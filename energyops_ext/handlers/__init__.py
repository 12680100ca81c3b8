"""Route table: each module lists its routes; unknown paths under the API end in a JSON 404."""

from __future__ import annotations

from typing import Any

from . import (
    alerts,
    cluster,
    datasets,
    deliveries,
    feed,
    health,
    market,
    runs,
    schedules,
    scripts,
    ws,
)
from .base import NotFoundHandler

ROUTES: list[tuple[str, Any]] = [
    *health.routes,
    *cluster.routes,
    *feed.routes,
    *scripts.routes,
    *runs.routes,
    *schedules.routes,
    *ws.routes,
    *datasets.routes,
    *market.routes,
    *alerts.routes,
    *deliveries.routes,
    (r"/(.*)", NotFoundHandler),
]
