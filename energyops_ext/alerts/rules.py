"""Alert rules as pure functions: breached or not, the state machine, mute windows, throttle.

States follow Grafana's alerting: ``normal`` → ``pending`` (breached, fewer than
``pending_evaluations`` times in a row) → ``firing`` → back to ``normal``, recorded as a
``resolved`` transition. A pending rule whose breach stops goes back to ``normal``. While a
rule fires, a ``recovery_threshold`` (if set) decides when it resolves, so a value that
hovers around the threshold does not flap. Mute windows and the throttle decide only whether
a notification goes out; the state changes regardless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

SERIES = ("dam_price", "rtm_price", "gdam_price", "dam_rtm_spread", "schedule_deviation")
OPERATORS = (">", "<")
AGGREGATES = ("block", "daily_avg")
UNITS = ("mw", "pct")
STATES = ("normal", "pending", "firing")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
IST = "Asia/Kolkata"
MINUTES_PER_DAY = 24 * 60


def compare(operator: str, value: float, limit: float) -> bool:
    return value > limit if operator == ">" else value < limit


def is_breached(
    operator: str,
    threshold: float,
    recovery_threshold: float | None,
    value: float | None,
    *,
    firing: bool,
) -> bool | None:
    """Whether ``value`` breaches the rule; None when there is no value (no data). A firing
    rule with a recovery threshold stays breached until the value crosses that threshold
    (``> 9000, recovery 8500``: firing until the value goes below 8500)."""
    if value is None:
        return None
    if firing and recovery_threshold is not None:
        return not compare("<" if operator == ">" else ">", value, recovery_threshold)
    return compare(operator, value, threshold)


def limit_in_force(threshold: float, recovery_threshold: float | None, *, firing: bool) -> float:
    """The threshold ``is_breached`` compares with in this state."""
    return recovery_threshold if firing and recovery_threshold is not None else threshold


@dataclass(frozen=True)
class Step:
    state: str
    breaches: int  # consecutive breached evaluations
    transition: str | None  # pending | firing | resolved | normal | None


def step(state: str, breaches: int, breached: bool | None, pending_evaluations: int) -> Step:
    """One evaluation of the state machine. ``breached`` None (no data) changes nothing."""
    if breached is None:
        return Step(state, breaches, None)
    if breached:
        count = breaches + 1
        if state == "firing":
            return Step("firing", count, None)
        if count >= pending_evaluations:
            return Step("firing", count, "firing")
        return Step("pending", count, None if state == "pending" else "pending")
    if state == "firing":
        return Step("normal", 0, "resolved")
    if state == "pending":
        return Step("normal", 0, "normal")
    return Step("normal", 0, None)


# --- mute windows ---


@dataclass(frozen=True)
class MuteWindow:
    """``start``-``end`` local time on ``days`` (the days a window starts on; a window whose
    end is before its start runs past midnight into the next day)."""

    start: int  # minutes after midnight
    end: int  # minutes after midnight, 1..1440
    days: frozenset[int]  # 0 = Monday

    @classmethod
    def of(cls, window: dict[str, Any]) -> MuteWindow:
        days = window.get("days") or list(DAYS)
        return cls(
            parse_hhmm(str(window["start"])),
            parse_hhmm(str(window["end"])),
            frozenset(DAYS.index(d) for d in days),
        )

    def covers(self, weekday: int, minute: float) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        before_midnight = weekday in self.days and minute >= self.start
        after_midnight = (weekday - 1) % 7 in self.days and minute < self.end
        return before_midnight or after_midnight


def parse_hhmm(text: str) -> int:
    """``HH:MM`` (00:00-24:00) as minutes after midnight; ValueError otherwise."""
    hours, sep, minutes = text.partition(":")
    if not (sep and len(hours) == 2 and len(minutes) == 2 and (hours + minutes).isdigit()):
        raise ValueError(text)
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > MINUTES_PER_DAY:
        raise ValueError(text)
    return value


def is_muted(windows: list[dict[str, Any]], now: datetime, zone: str = IST) -> bool:
    local = now.astimezone(ZoneInfo(zone))
    minute = local.hour * 60 + local.minute + local.second / 60
    return any(MuteWindow.of(w).covers(local.weekday(), minute) for w in windows)


# --- notifications ---


def notification_for(
    *,
    state: str,
    transition: str | None,
    episode_since: datetime | None,
    last_notified_at: datetime | None,
    now: datetime,
    muted: bool,
    throttle_s: float,
) -> str | None:
    """What to tell after an evaluation: ``firing``, ``resolved`` or nothing.

    A firing episode (from ``episode_since``) is told once: at its first evaluation that is
    neither muted nor within ``throttle_s`` of the rule's last notification, so a firing
    muted or throttled is told when the mute or throttle ends, if it still fires. Its
    resolution is told only if the firing was, so a flapping rule sends nothing in pairs it
    throttled away."""
    if muted:
        return None
    told = (
        last_notified_at is not None
        and episode_since is not None
        and last_notified_at >= episode_since
    )
    if transition == "resolved":
        return "resolved" if told else None
    if state != "firing" or told:
        return None
    if last_notified_at is not None and now - last_notified_at < timedelta(seconds=throttle_s):
        return None
    return "firing"


@dataclass(frozen=True)
class RuleState:
    state: str = "normal"
    breaches: int = 0
    since: datetime | None = None
    last_notified_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    state: str
    breaches: int
    since: datetime | None
    transition: str | None
    notify: str | None
    muted: bool
    last_notified_at: datetime | None

    @property
    def changed(self) -> bool:
        return self.transition is not None or self.notify is not None


def advance(
    current: RuleState,
    breached: bool | None,
    *,
    now: datetime,
    pending_evaluations: int = 1,
    mute: list[dict[str, Any]] | None = None,
    zone: str = IST,
    throttle_s: float = 900,
) -> Outcome:
    """One evaluation of a rule: the new state, the transition and what to notify."""
    moved = step(current.state, current.breaches, breached, pending_evaluations)
    since = now if moved.transition is not None else current.since
    muted = is_muted(mute or [], now, zone)
    episode = current.since if moved.transition == "resolved" else since
    notify = notification_for(
        state=moved.state,
        transition=moved.transition,
        episode_since=episode,
        last_notified_at=current.last_notified_at,
        now=now,
        muted=muted,
        throttle_s=throttle_s,
    )
    return Outcome(
        state=moved.state,
        breaches=moved.breaches,
        since=since,
        transition=moved.transition,
        notify=notify,
        muted=muted,
        last_notified_at=now if notify else current.last_notified_at,
    )


# --- scope ---


def ist_today(now: datetime) -> date:
    """The market day (IST) at ``now``."""
    return now.astimezone(ZoneInfo(IST)).date()


def scope_date(scope: dict[str, Any], now: datetime) -> date | None:
    """The day a rule looks at; None for ``any`` (the latest day with data)."""
    day = scope.get("date", "any")
    if day == "any":
        return None
    if day == "today":
        return ist_today(now)
    if day == "tomorrow":
        return ist_today(now) + timedelta(days=1)
    return date.fromisoformat(str(day))


def scope_blocks(scope: dict[str, Any]) -> tuple[int, int]:
    blocks = scope.get("blocks") or [1, 96]
    return int(blocks[0]), int(blocks[1])
