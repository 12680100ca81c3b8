"""Notifications out: every delivery to a channel, its status and last error (URLs masked)."""

from __future__ import annotations

from ..notify import list_deliveries
from ..notify.outbox import STATUSES
from .base import EnergyOpsHandler, allow


class DeliveriesHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self) -> None:
        limit, offset = self.page_args()
        status = self.choice_arg("status", STATUSES)
        notification_id = self.int_arg("notification_id", None, minimum=1)
        self.write_json(
            await self.services.db.read(
                lambda s: list_deliveries(
                    s,
                    limit=limit,
                    offset=offset,
                    status=status,
                    notification_id=notification_id,
                )
            )
        )


routes = [(r"/deliveries", DeliveriesHandler)]
