"""Activity feed and notifications."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ..db.models import Notification
from ..errors import BadRequest, NotFound
from ..feed import list_activities, list_notifications, notification_json
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
        body = self.json_body()
        changes: dict[str, bool] = {}
        for field in ("is_read", "is_archived"):
            if field in body:
                if not isinstance(body[field], bool):
                    raise BadRequest(
                        f"{field} must be true or false",
                        code="invalid_field",
                        details={"field": field},
                    )
                changes[field] = body[field]
        unknown = sorted(set(body) - {"is_read", "is_archived"})
        if unknown or not changes:
            raise BadRequest(
                "send is_read and/or is_archived (booleans)"
                + (f"; unknown fields: {', '.join(unknown)}" if unknown else ""),
                code="invalid_field",
            )
        nid = int(notification_id)

        def update(session: Session) -> dict[str, Any]:
            row = session.get(Notification, nid)
            if row is None:
                raise NotFound(f"notification {nid} does not exist")
            for field, value in changes.items():
                setattr(row, field, value)
            session.flush()
            return notification_json(row)

        self.write_json(await self.services.db.write(update))


routes = [
    (r"/activities", ActivitiesHandler),
    (r"/notifications", NotificationsHandler),
    (r"/notifications/(\d+)", NotificationHandler),
]
