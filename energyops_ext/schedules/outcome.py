"""What a transaction of the schedule service did, to announce once it has committed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ..db.models import Activity, Notification
from ..events import Event


@dataclass
class Published:
    events: list[Event] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)  # runs queued: the queue should look

    def add(self, other: Published) -> None:
        self.events += other.events
        self.activities += other.activities
        self.notifications += other.notifications
        self.queued += other.queued


def duration_text(delta: timedelta) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min``, ``2 d 4 h``: how late or how long, for people."""
    seconds = round(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def clock_text(moment: datetime, tz: ZoneInfo) -> str:
    """``2025-10-08 10:00 IST``: an instant as the desk reads it."""
    local = moment.astimezone(tz)
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or tz.key)
