"""Times and missing values as the desk reads them. Pure functions, no widgets.

The API speaks UTC ISO timestamps with microseconds; people read their own wall clock to the
minute, so an instant is shown in the *display zone* (the server's ``display_timezone``, which
the widgets learn from ``GET /health``; Asia/Kolkata until then). A missing value (``None``,
NaN, ``NaT``, ``pd.NA``) is shown as an em dash, never as ``nan``. The 96 blocks of a market
day are times of day: block 1 is 00:00-00:15, block 96 is 23:45-24:00, whatever the display
zone (a delivery day is a day in the market's own zone).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

DEFAULT_ZONE = "Asia/Kolkata"
MISSING = "—"
BLOCKS_PER_DAY = 96
MINUTES_PER_BLOCK = 15
HOURS_PER_BLOCK = MINUTES_PER_BLOCK / 60

# An ISO timestamp with at least hours and minutes (a bare date is a day, not an instant).
_ISO_INSTANT = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
)


# The zone this kernel shows times in: one per process, set once the server is known.
_display_zone = ZoneInfo(DEFAULT_ZONE)


def zone_named(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a known IANA time zone") from None


def display_zone() -> ZoneInfo:
    return _display_zone


def use_display_zone(zone: str | ZoneInfo) -> ZoneInfo:
    """Show times in ``zone`` from now on (every table and card of this kernel)."""
    global _display_zone
    _display_zone = zone if isinstance(zone, ZoneInfo) else zone_named(zone)
    return _display_zone


def zone_from_health(health: Mapping[str, Any]) -> ZoneInfo:
    """The display zone a ``/health`` report names; the default for an older server."""
    display = health.get("display")
    name = display.get("timezone") if isinstance(display, Mapping) else None
    return zone_named(str(name)) if name else ZoneInfo(DEFAULT_ZONE)


def is_missing(value: Any) -> bool:
    """``None``, ``""``, NaN, ``NaT`` and ``pd.NA``: what a table shows as a dash."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, str):
        return value == ""
    if isinstance(value, float):  # numpy's float64 is a float too
        return math.isnan(value)
    return False


def parse_instant(value: Any) -> datetime | None:
    """An aware datetime from a datetime or an ISO timestamp text (naive means UTC);
    ``None`` for anything else (a missing value, a bare date, a number, a word)."""
    if is_missing(value):
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and _ISO_INSTANT.match(value.strip()):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def format_instant(value: Any, zone: ZoneInfo | None = None, *, with_zone: bool = True) -> str:
    """``2026-12-03T15:13:58.123456+00:00`` → ``2026-12-03 20:43 IST``; missing → a dash."""
    moment = parse_instant(value)
    if moment is None:
        return MISSING if is_missing(value) else str(value)
    local = moment.astimezone(zone or display_zone())
    return local.strftime("%Y-%m-%d %H:%M %Z" if with_zone else "%Y-%m-%d %H:%M")


def local_hm(value: Any, zone: ZoneInfo) -> str:
    """The wall-clock ``HH:MM`` of an instant in ``zone``; a dash without one."""
    moment = parse_instant(value)
    return moment.astimezone(zone).strftime("%H:%M") if moment else MISSING


def format_cell(value: Any, zone: ZoneInfo | None = None) -> str:
    """A table cell's text: a dash for a missing value, an instant in the display zone to the
    minute, anything else as it is (dates stay dates)."""
    if is_missing(value):
        return MISSING
    if isinstance(value, datetime | str):
        moment = parse_instant(value)
        if moment is not None:
            return format_instant(moment, zone)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# --- blocks of a market day ---


def clock(minutes: int) -> str:
    """Minutes since midnight as ``HH:MM`` (1440 is ``24:00``, the end of the day)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def block_span(block: int) -> str:
    """``09:00-09:15`` for block 37."""
    start = (block - 1) * MINUTES_PER_BLOCK
    return f"{clock(start)}-{clock(start + MINUTES_PER_BLOCK)}"


def hour_ticks(step: int = 3) -> dict[str, str]:
    """Tick labels of a time-of-day axis in hours: ``{"0": "00:00", ..., "24": "24:00"}``.

    The keys are the tick values as the browser prints numbers, which is how bqplot looks
    a label up."""
    return {str(hour): clock(hour * 60) for hour in range(0, 25, step)}


def block_runs(blocks: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive blocks as (first, last) runs: ``[3, 4, 5, 9]`` → ``[(3, 5), (9, 9)]``."""
    runs: list[tuple[int, int]] = []
    for block in sorted(set(blocks)):
        if runs and block == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], block)
        else:
            runs.append((block, block))
    return runs


def blocks_text(blocks: Iterable[int]) -> str:
    """``block 37 (09:00-09:15)``, ``blocks 5-8 (01:00-02:00), 37 (09:00-09:15)``."""
    runs = block_runs(blocks)
    parts = []
    for first, last in runs:
        start = (first - 1) * MINUTES_PER_BLOCK
        span = f"{clock(start)}-{clock(last * MINUTES_PER_BLOCK)}"
        parts.append(f"{first} ({span})" if first == last else f"{first}-{last} ({span})")
    single = len(runs) == 1 and runs[0][0] == runs[0][1]
    return ("block " if single else "blocks ") + ", ".join(parts) if parts else ""
