"""The delivery outbox: one ``deliveries`` row per (notification, apprise URL).

Rows are written in the transaction that creates the notification, so a notification and its
deliveries exist together or not at all. Any server may send a row: it claims it with a
conditional update (pending and due, or a claim that expired because its server died
mid-send), and records the outcome only while its claim still holds. A server that dies
mid-delivery costs one retry, never a message.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from ..db.models import Delivery, Notification
from .channels import display_url, url_sha256

# Notifications about deliveries are never delivered themselves: a failing channel must not
# feed itself with new messages.
NOT_DELIVERED_CATEGORIES = frozenset({"delivery"})
STATUSES = ("pending", "sending", "sent", "failed")
DEFAULT_MAX_ATTEMPTS = 4

# The URLs that get every notification, per database engine (one per server).
_global_urls: weakref.WeakKeyDictionary[Engine, tuple[str, ...]] = weakref.WeakKeyDictionary()
_max_attempts: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def set_global_channels(
    engine: Engine, urls: Sequence[str], max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> None:
    """Every notification written through ``engine`` is queued for ``urls``."""
    _global_urls[engine] = tuple(urls)
    _max_attempts[engine] = max_attempts


def _engine_of(session: Session) -> Engine | None:
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else getattr(bind, "engine", None)


def queue_global(session: Session, notification: Notification) -> list[Delivery]:
    """Queue ``notification`` for the server's ``notification_urls`` (feed.add_notification
    calls this for every notification)."""
    engine = _engine_of(session)
    urls = _global_urls.get(engine, ()) if engine is not None else ()
    return queue_deliveries(session, notification, urls)


def queue_deliveries(
    session: Session, notification: Notification, extra_channels: Iterable[str]
) -> list[Delivery]:
    """Queue ``notification`` for ``extra_channels`` (a rule's, a run's or a schedule's
    ``channels``) in the caller's transaction; a URL it is already queued for is skipped."""
    if notification.category in NOT_DELIVERED_CATEGORIES:
        return []
    urls = list(dict.fromkeys(u for u in extra_channels if u))
    if not urls:
        return []
    if notification.id is None:
        session.flush()
    queued = set(
        session.scalars(
            select(Delivery.url_sha256).where(Delivery.notification_id == notification.id)
        )
    )
    engine = _engine_of(session)
    attempts = _max_attempts.get(engine, DEFAULT_MAX_ATTEMPTS) if engine else DEFAULT_MAX_ATTEMPTS
    rows = []
    for url in urls:
        digest = url_sha256(url)
        if digest in queued:
            continue
        queued.add(digest)
        rows.append(
            Delivery(
                notification_id=notification.id,
                channel=display_url(url),
                url=url,
                url_sha256=digest,
                title=notification.title,
                body=notification.message,
                severity=notification.severity,
                status="pending",
                attempts=0,
                max_attempts=attempts,
                next_attempt_at=notification.created_at,
            )
        )
    session.add_all(rows)
    session.flush()
    return rows


# --- claims and outcomes (the worker's side) ---


@dataclass(frozen=True)
class Claimed:
    """What a worker needs to send one delivery, detached from the session."""

    id: int
    notification_id: int | None
    url: str
    channel: str
    title: str
    body: str
    severity: str
    attempt: int
    max_attempts: int


def _claimable(now: datetime) -> Any:
    return or_(
        and_(Delivery.status == "pending", Delivery.next_attempt_at <= now),
        and_(Delivery.status == "sending", Delivery.claimed_until < now),
    )


def claim(
    session: Session, server_id: str, now: datetime, lease: timedelta, limit: int
) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries for ``server_id``. Each claim is a conditional
    update of a row that is still claimable, so two servers never both take one; rows another
    server took between the look and the update are passed over for the next ones due, so a
    server that loses a race still gets its share."""
    claimed: list[Claimed] = []
    tried: list[int] = []
    while len(claimed) < limit:
        candidates = session.execute(
            select(Delivery.id, Delivery.status, Delivery.attempts)
            .where(_claimable(now), Delivery.id.not_in(tried))
            .order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(limit - len(claimed))
        ).all()
        if not candidates:
            break
        for row_id, status, attempts in candidates:
            tried.append(row_id)
            taken = _take(session, row_id, status, attempts, server_id, now, lease)
            if taken is not None:
                claimed.append(taken)
    return claimed


def _take(
    session: Session,
    row_id: int,
    status: str,
    attempts: int,
    server_id: str,
    now: datetime,
    lease: timedelta,
) -> Claimed | None:
    """The row claimed for ``server_id``, or None when it changed since it was looked at."""
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.id == row_id,
            Delivery.status == status,
            Delivery.attempts == attempts,
            _claimable(now),
        )
        .values(
            status="sending",
            attempts=Delivery.attempts + 1,
            claimed_by=server_id,
            claimed_until=now + lease,
        )
    )
    if getattr(result, "rowcount", 0) != 1:
        return None
    row = session.get(Delivery, row_id, populate_existing=True)
    assert row is not None
    return Claimed(
        id=row.id,
        notification_id=row.notification_id,
        url=row.url,
        channel=row.channel,
        title=row.title,
        body=row.body,
        severity=row.severity,
        attempt=row.attempts,
        max_attempts=row.max_attempts,
    )


def _mine(delivery: Claimed, server_id: str) -> Any:
    return and_(
        Delivery.id == delivery.id,
        Delivery.status == "sending",
        Delivery.claimed_by == server_id,
        Delivery.attempts == delivery.attempt,
    )


def record_sent(session: Session, delivery: Claimed, server_id: str, now: datetime) -> bool:
    result = session.execute(
        update(Delivery)
        .where(_mine(delivery, server_id))
        .values(status="sent", sent_at=now, last_error=None, claimed_until=None)
    )
    return getattr(result, "rowcount", 0) == 1


def record_failure(
    session: Session,
    delivery: Claimed,
    server_id: str,
    error: str,
    retry_at: datetime | None,
) -> bool:
    """A failed attempt: pending again at ``retry_at``, or failed for good when it is None.
    False when the claim no longer holds (another server took the row over)."""
    values: dict[str, Any] = {"last_error": error, "claimed_until": None}
    if retry_at is None:
        values["status"] = "failed"
    else:
        values.update(status="pending", next_attempt_at=retry_at)
    result = session.execute(update(Delivery).where(_mine(delivery, server_id)).values(**values))
    return getattr(result, "rowcount", 0) == 1


def prune(session: Session, before: datetime) -> int:
    """Forget sent and failed deliveries created before ``before``; any server may do it."""
    result = session.execute(
        delete(Delivery).where(
            Delivery.status.in_(("sent", "failed")), Delivery.created_at < before
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def backoff_delay(attempt: int, base_s: float, cap_s: float = 3600.0) -> timedelta:
    """Wait before attempt ``attempt + 1``: base, 2 x base, 4 x base, ... at most ``cap_s``."""
    return timedelta(seconds=min(cap_s, base_s * 2 ** max(0, attempt - 1)))


# --- reading ---


def delivery_json(d: Delivery) -> dict[str, Any]:
    """A delivery as the API shows it: the channel masked, never the URL."""
    return {
        "id": d.id,
        "notification_id": d.notification_id,
        "channel": d.channel,
        "title": d.title,
        "status": d.status,
        "attempts": d.attempts,
        "max_attempts": d.max_attempts,
        "next_attempt_at": d.next_attempt_at.isoformat() if d.status == "pending" else None,
        "last_error": d.last_error,
        "claimed_by": d.claimed_by,
        "created_at": d.created_at.isoformat(),
        "sent_at": d.sent_at.isoformat() if d.sent_at else None,
    }


def list_deliveries(
    session: Session,
    *,
    limit: int,
    offset: int,
    status: str | None = None,
    notification_id: int | None = None,
) -> dict[str, Any]:
    query = select(Delivery)
    if status is not None:
        query = query.where(Delivery.status == status)
    if notification_id is not None:
        query = query.where(Delivery.notification_id == notification_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Delivery.created_at.desc(), Delivery.id.desc()).limit(limit).offset(offset)
    ).all()
    counts: dict[str, int] = {
        status: count
        for status, count in session.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status)
        ).all()
    }
    return {
        "items": [delivery_json(d) for d in rows],
        "total": int(total),
        "counts": {s: int(counts.get(s, 0)) for s in STATUSES},
    }
