"""Activities and notifications: recorded in the caller's transaction, announced after commit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .db.models import Activity, Notification
from .errors import BadRequest, NotFound
from .events import NOTIFICATIONS, Event, EventHub
from .notify.outbox import queue_global


def activity_json(a: Activity) -> dict[str, Any]:
    return {
        "id": a.id,
        "type": a.type,
        "action": a.action,
        "title": a.title,
        "entity_type": a.entity_type,
        "entity_id": a.entity_id,
        "status": a.status,
        "user": a.user,
        "created_at": a.created_at.isoformat(),
    }


def notification_json(n: Notification) -> dict[str, Any]:
    return {
        "id": n.id,
        "type": n.type,
        "category": n.category,
        "severity": n.severity,
        "title": n.title,
        "message": n.message,
        "entity_type": n.entity_type,
        "entity_id": n.entity_id,
        "is_read": n.is_read,
        "is_archived": n.is_archived,
        "user": n.user,
        "created_at": n.created_at.isoformat(),
    }


@dataclass
class Pending:
    """Feed rows added in an open transaction; ``announce`` them once it has committed."""

    activities: list[Activity]
    notifications: list[Notification]


def add_activity(
    session: Session,
    *,
    type: str,
    action: str,
    title: str,
    entity_type: str | None = None,
    entity_id: int | None = None,
    status: str | None = None,
    user: str | None = None,
) -> Activity:
    row = Activity(
        type=type,
        action=action,
        title=title,
        entity_type=entity_type,
        entity_id=entity_id,
        status=status,
        user=user,
    )
    session.add(row)
    session.flush()
    return row


def add_notification(
    session: Session,
    *,
    type: str,
    category: str,
    severity: str,
    title: str,
    message: str,
    entity_type: str | None = None,
    entity_id: int | None = None,
    user: str | None = None,
) -> Notification:
    row = Notification(
        type=type,
        category=category,
        severity=severity,
        title=title,
        message=message,
        entity_type=entity_type,
        entity_id=entity_id,
        user=user,
        is_read=False,
        is_archived=False,
    )
    session.add(row)
    session.flush()
    queue_global(session, row)  # the notification_urls get every notification
    return row


def announce(
    hub: EventHub,
    activities: list[Activity] | None = None,
    notifications: list[Notification] | None = None,
) -> None:
    """Publish feed rows that are committed (call after the transaction)."""
    for a in activities or []:
        hub.publish(Event(NOTIFICATIONS, "activity.new", activity_json(a)))
    for n in notifications or []:
        hub.publish(Event(NOTIFICATIONS, "notification.new", notification_json(n)))


def list_activities(
    session: Session, *, limit: int, offset: int, type: str | None = None
) -> dict[str, Any]:
    query = select(Activity)
    count = select(func.count()).select_from(Activity)
    if type:
        query = query.where(Activity.type == type)
        count = count.where(Activity.type == type)
    rows = session.scalars(
        query.order_by(Activity.created_at.desc(), Activity.id.desc()).limit(limit).offset(offset)
    ).all()
    return {"items": [activity_json(a) for a in rows], "total": session.scalar(count) or 0}


def list_notifications(
    session: Session,
    *,
    limit: int,
    offset: int,
    unread: bool | None = None,
    archived: bool = False,
) -> dict[str, Any]:
    query = select(Notification).where(Notification.is_archived == archived)
    if unread is not None:
        query = query.where(Notification.is_read == (not unread))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    unread_count = (
        session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.is_read.is_(False), Notification.is_archived.is_(False))
        )
        or 0
    )
    rows = session.scalars(
        query.order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return {
        "items": [notification_json(n) for n in rows],
        "total": total,
        "unread": unread_count,
    }


NOTIFICATION_FLAGS = ("is_read", "is_archived")


def notification_changes(body: dict[str, Any]) -> dict[str, bool]:
    """The flags a PATCH of a notification sets: ``is_read`` and/or ``is_archived``, booleans,
    nothing else (400 naming the field)."""
    changes: dict[str, bool] = {}
    for field in NOTIFICATION_FLAGS:
        if field in body:
            if not isinstance(body[field], bool):
                raise BadRequest(
                    f"{field} must be true or false",
                    code="invalid_field",
                    details={"field": field},
                )
            changes[field] = body[field]
    unknown = sorted(set(body) - set(NOTIFICATION_FLAGS))
    if unknown or not changes:
        raise BadRequest(
            "send is_read and/or is_archived (booleans)"
            + (f"; unknown fields: {', '.join(unknown)}" if unknown else ""),
            code="invalid_field",
        )
    return changes


def update_notification(
    session: Session, notification_id: int, changes: dict[str, bool]
) -> dict[str, Any]:
    """Set the flags of one notification (404 when it does not exist); the notification."""
    row = session.get(Notification, notification_id)
    if row is None:
        raise NotFound(f"notification {notification_id} does not exist")
    for field, value in changes.items():
        setattr(row, field, value)
    session.flush()
    return notification_json(row)
