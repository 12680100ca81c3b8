"""Activity feed and notifications."""

from __future__ import annotations

from ..feed import (
    list_activities,
    list_notifications,
    notification_changes,
    update_notification,
)
from .base import EnergyOpsHandler, allow


class ActivitiesHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self) -> None:
        limit, offset = self.page_args()
        kind = self.get_query_argument("type", None)
        self.write_json(
            await self.services.db.read(
                lambda s: list_activities(s, limit=limit, offset=offset, type=kind)
            )
        )


class NotificationsHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self) -> None:
        limit, offset = self.page_args()
        unread = self.get_query_argument("unread", None)
        only_unread = None if unread is None else self.bool_arg("unread")
        archived = self.bool_arg("archived", False)
        self.write_json(
            await self.services.db.read(
                lambda s: list_notifications(
                    s, limit=limit, offset=offset, unread=only_unread, archived=archived
                )
            )
        )


class NotificationHandler(EnergyOpsHandler):
    @allow("write")
    async def patch(self, notification_id: str) -> None:
        changes = notification_changes(self.json_body())
        nid = int(notification_id)
        self.write_json(
            await self.services.db.write(lambda s: update_notification(s, nid, changes))
        )


routes = [
    (r"/activities", ActivitiesHandler),
    (r"/notifications", NotificationsHandler),
    (r"/notifications/(\d+)", NotificationHandler),
]
