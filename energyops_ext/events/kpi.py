"""The dashboard KPIs as aggregate SQL: a handful of small queries, no rows loaded."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db.base import utcnow
from ..db.models import MarketSnapshot, Notification, Run, Upload


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def run_counts(session: Session, since: datetime) -> dict[str, Any]:
    live: dict[str, int] = {
        status: count
        for status, count in session.execute(
            select(Run.status, func.count())
            .where(Run.status.in_(("running", "queued")))
            .group_by(Run.status)
        )
    }
    finished: dict[str, int] = {
        status: count
        for status, count in session.execute(
            select(Run.status, func.count())
            .where(Run.finished_at >= since, Run.status.not_in(("running", "queued")))
            .group_by(Run.status)
        )
    }
    return {
        "running": int(live.get("running", 0)),
        "queued": int(live.get("queued", 0)),
        "finished_24h": {str(k): int(v) for k, v in sorted(finished.items())},
    }


def latest_market_day(session: Session) -> dict[str, Any] | None:
    day = session.scalar(select(func.max(MarketSnapshot.date)))
    if day is None:
        return None
    row = session.execute(
        select(
            func.avg(MarketSnapshot.dam_price),
            func.avg(MarketSnapshot.rtm_price),
            func.avg(MarketSnapshot.gdam_price),
            func.sum(MarketSnapshot.scheduled_mw),
            func.count(),
        ).where(MarketSnapshot.date == day)
    ).one()
    return {
        "date": day.isoformat(),
        "avg_dam_price": _rounded(row[0]),
        "avg_rtm_price": _rounded(row[1]),
        "avg_gdam_price": _rounded(row[2]),
        "total_scheduled_mw": _rounded(row[3], 3),
        "rows": int(row[4]),
    }


def kpi_report(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """Blocking: run in a thread (``db.read``)."""
    now = now or utcnow()
    since = now - timedelta(hours=24)
    uploads = session.scalar(
        select(func.count()).select_from(Upload).where(Upload.created_at >= since)
    )
    unread = session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.is_read.is_(False), Notification.is_archived.is_(False))
    )
    return {
        "at": now.isoformat(),
        "runs": run_counts(session, since),
        "market": latest_market_day(session),
        "uploads_24h": int(uploads or 0),
        "unread_notifications": int(unread or 0),
    }
