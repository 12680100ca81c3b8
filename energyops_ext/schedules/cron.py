"""Cron slots in a time zone, and the deadline of a slot. Pure: the time is an argument.

croniter iterates in the zone of the datetime it is given, so every walk starts from an aware
datetime in the schedule's zone and every slot comes back in UTC. Daylight saving follows
croniter, with one rule of classic cron on top: a slot at a fixed hour (the hour field is not
``*``) inside the hour that repeats when clocks go back fires at its first occurrence only, so
a daily 01:30 job in Europe/London runs once on the October change, while an hourly one runs
every hour of that longer day. A slot that does not exist (clocks go forward) fires at the
moment of the change, as croniter places it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from croniter import croniter

from ..errors import Invalid

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_CRON_CHARS = 255
MAX_DUE = 100  # slots looked at in one go; older ones are past any lateness anyway
MAX_DEADLINE_MINUTES = 7 * 24 * 60
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_OFFSET = re.compile(r"^([+-])(\d{1,6})$")
_TINY = timedelta(microseconds=1)


def _bad(field: str, message: str) -> Invalid:
    return Invalid(message, code="invalid_field", details={"field": field})


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def zone(name: object, field: str = "timezone") -> ZoneInfo:
    """An IANA time zone by name (Asia/Kolkata, Europe/London, UTC); 422 otherwise."""
    if not isinstance(name, str) or name not in _zone_names():
        raise _bad(
            field,
            f"{field} must be an IANA time zone name such as Asia/Kolkata; got {name!r}",
        )
    return ZoneInfo(name)


@dataclass(frozen=True)
class Cron:
    """A checked cron expression in its zone."""

    expr: str
    zone: ZoneInfo
    fixed_hour: bool  # the hour field is not "*": a slot in a repeated hour fires once

    def _iter(self, start: datetime) -> croniter:
        return croniter(self.expr, start.astimezone(self.zone))

    def _repeated(self, slot: datetime) -> bool:
        """The second occurrence of a wall time in the hour that repeats (clocks go back)."""
        if not self.fixed_hour:
            return False
        local = slot.astimezone(self.zone)
        return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def parse_cron(expr: object, tz: ZoneInfo, field: str = "cron") -> Cron:
    """5 fields (minute hour day-of-month month day-of-week), 6 with seconds last (as
    croniter reads them), or an alias such as @daily; 422 naming the field otherwise."""
    if not isinstance(expr, str) or not expr.strip():
        raise _bad(field, f"{field} must be a cron expression such as '0 9 * * *'; got {expr!r}")
    text = " ".join(expr.split())
    if len(text) > MAX_CRON_CHARS:
        raise _bad(field, f"{field} is {len(text)} characters; the limit is {MAX_CRON_CHARS}")
    fields = ALIASES.get(text.lower(), text).split()
    if len(fields) not in (5, 6):
        raise _bad(
            field,
            f"{field} must have 5 fields (minute hour day month weekday) or 6 (seconds "
            f"last); {text!r} has {len(fields)}",
        )
    try:
        croniter(text, datetime(2025, 1, 1, tzinfo=tz))
    except Exception as exc:  # croniter raises several kinds on odd text
        raise _bad(field, f"{field} {text!r} is not a valid cron expression: {exc}") from None
    cron = Cron(text, tz, fields[1] != "*")
    try:
        cron._iter(datetime(2025, 1, 1, tzinfo=UTC)).get_next(datetime)
    except Exception as exc:
        raise _bad(field, f"{field} {text!r} never fires: {exc}") from None
    return cron


def next_fires(cron: Cron, now: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` slots strictly after ``now`` (aware), in UTC."""
    walk = cron._iter(now)
    slots: list[datetime] = []
    while len(slots) < count:
        slot = walk.get_next(datetime).astimezone(UTC)
        if not cron._repeated(slot):
            slots.append(slot)
    return slots


@dataclass(frozen=True)
class Due:
    """Slots in (after, now], oldest first; ``more`` when older ones were left out."""

    slots: list[datetime]
    more: bool


def due_slots(cron: Cron, after: datetime, now: datetime, limit: int = MAX_DUE) -> Due:
    """The slots that came due after ``after`` up to and including ``now`` (the latest
    ``limit`` of them), in UTC. Walks back from ``now``, so a long downtime costs at most
    ``limit`` steps."""
    if now <= after:
        return Due([], False)
    walk = cron._iter(now + _TINY)  # croniter's previous slot is strictly before its start
    found: list[datetime] = []
    while True:
        slot = walk.get_prev(datetime).astimezone(UTC)
        if slot <= after:
            return Due(found[::-1], False)
        if cron._repeated(slot):
            continue
        if len(found) == limit:
            return Due(found[::-1], True)
        found.append(slot)


def parse_deadline(spec: object, field: str = "deadline") -> str | None:
    """``HH:MM`` (a time of day in the schedule's zone) or ``+minutes`` after the slot."""
    if spec is None:
        return None
    hint = '"HH:MM" (a time of day in the schedule\'s zone) or "+minutes" after the slot'
    if not isinstance(spec, str):
        raise _bad(field, f"{field} must be {hint}; got {spec!r}")
    text = spec.strip()
    if _HHMM.match(text):
        return text
    offset = _OFFSET.match(text)
    if offset is None:
        raise _bad(field, f"{field} must be {hint}; got {spec!r}")
    minutes = int(offset.group(2))
    if offset.group(1) == "-" or minutes == 0:
        raise _bad(
            field,
            f"{field} {text} is not after the slot; a deadline must come after it "
            f'("+1" to "+{MAX_DEADLINE_MINUTES}" minutes, or "HH:MM")',
        )
    if minutes > MAX_DEADLINE_MINUTES:
        raise _bad(
            field, f"{field} {text} is more than {MAX_DEADLINE_MINUTES} minutes after the slot"
        )
    return f"+{minutes}"


def deadline_of(slot: datetime, spec: str | None, tz: ZoneInfo) -> datetime | None:
    """The deadline of a slot, in UTC: ``+minutes`` after it, or the first ``HH:MM`` in the
    zone after it (the slot itself would be a deadline missed as the run is queued)."""
    if spec is None:
        return None
    if spec.startswith("+"):
        return (slot + timedelta(minutes=int(spec[1:]))).astimezone(UTC)
    hours, minutes = (int(part) for part in spec.split(":"))
    day = slot.astimezone(tz).date()
    for add in (0, 1, 2):
        wall = datetime.combine(day + timedelta(days=add), time(hours, minutes), tzinfo=tz)
        if wall.astimezone(UTC) > slot:
            return wall.astimezone(UTC)
    raise AssertionError("a time of day recurs within two days")  # pragma: no cover


def local_iso(moment: datetime, tz: ZoneInfo) -> str:
    """``moment`` in the zone, ISO 8601 with its offset (what a desk reads)."""
    return moment.astimezone(tz).isoformat()
