"""One evaluation of every enabled rule: read (rules and market figures), decide (pure), write.

The write is a conditional update per rule on the ``version`` it read: two servers that
evaluate at once both decide, one write matches and the other matches nothing and is
dropped, so a rule makes one transition and sends one notification. Timer evaluations skip
rules another server evaluated within the interval, so N servers do not count N breaches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from ..db.models import AlertHistory, AlertRule, Notification
from ..events import Event
from ..events.types import ALERTS
from ..feed import Pending, add_activity, add_notification
from ..notify.outbox import queue_deliveries
from . import series as market
from .rules import Outcome, RuleState, advance, is_breached, limit_in_force, scope_blocks
from .rules import scope_date as rule_day
from .series import SeriesKey, Window, WindowFigures, series_key

SERIES_LABELS = {
    "dam_price": "DAM price",
    "rtm_price": "RTM price",
    "gdam_price": "GDAM price",
    "dam_rtm_spread": "DAM-RTM spread",
    "schedule_deviation": "schedule deviation",
}
DETAIL_BLOCKS = 96
# a timer evaluation skips a rule evaluated less than this share of the interval ago
TIMER_SLACK = 0.9


@dataclass(frozen=True)
class RuleSnapshot:
    """A rule as one evaluation read it."""

    id: int
    name: str
    series: str
    operator: str
    threshold: float
    recovery_threshold: float | None
    aggregate: str
    unit: str
    scope: dict[str, Any]
    pending_evaluations: int
    mute: list[dict[str, Any]]
    timezone: str
    channels: list[str]
    throttle_s: int
    state: str
    breaches: int
    since: datetime | None
    last_notified_at: datetime | None
    version: int

    @classmethod
    def of(cls, rule: AlertRule) -> RuleSnapshot:
        return cls(
            id=rule.id,
            name=rule.name,
            series=rule.series,
            operator=rule.operator,
            threshold=rule.threshold,
            recovery_threshold=rule.recovery_threshold,
            aggregate=rule.aggregate,
            unit=rule.unit,
            scope=dict(rule.scope or {}),
            pending_evaluations=rule.pending_evaluations,
            mute=list(rule.mute or []),
            timezone=rule.timezone,
            channels=list(rule.channels or []),
            throttle_s=rule.throttle_s,
            state=rule.state,
            breaches=rule.breaches,
            since=rule.state_since,
            last_notified_at=rule.last_notified_at,
            version=rule.version,
        )

    @property
    def key(self) -> SeriesKey:
        return series_key(self.series, self.unit)

    def window(self, now: datetime, latest: date | None) -> Window | None:
        day = rule_day(self.scope, now)
        day = latest if day is None else day
        if day is None:
            return None
        first, last = scope_blocks(self.scope)
        return Window(day, first, last)

    def value_of(self, figures: WindowFigures | None) -> float | None:
        if figures is None:
            return None
        found = figures.series.get(self.key)
        if found is None or not found.blocks:
            return None
        if self.aggregate == "daily_avg":
            return found.average
        return found.maximum if self.operator == ">" else found.minimum


@dataclass
class Planned:
    """What an evaluation decided for one rule, before it is written."""

    rule: RuleSnapshot
    window: Window | None
    value: float | None
    limit: float
    outcome: Outcome
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Written:
    """What the write made: the feed rows to announce and the events to publish."""

    pending: Pending = field(default_factory=lambda: Pending([], []))
    events: list[Event] = field(default_factory=list)
    written: int = 0
    dropped: int = 0
    dropped_ids: set[int] = field(default_factory=set)
    transitions: list[dict[str, Any]] = field(default_factory=list)


def plan(
    session: Session,
    now: datetime,
    *,
    trigger: str,
    interval_s: float,
    only: set[int] | None = None,
) -> tuple[int, list[Planned]]:
    """Read the enabled rules (``only`` those ids, if given) and the figures they need;
    decide each rule's next state. Returns the number of enabled rules and the decisions."""
    rows = session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True))).all()
    rules = [RuleSnapshot.of(r) for r in rows if only is None or r.id in only]
    if trigger == "timer":
        recent = now - timedelta(seconds=interval_s * TIMER_SLACK)
        fresh = {r.id for r in rows if r.last_evaluated_at and r.last_evaluated_at > recent}
        rules = [r for r in rules if r.id not in fresh]
    latest = (
        market.latest_day(session)
        if any(r.scope.get("date", "any") == "any" for r in rules)
        else None
    )
    windows: dict[Window, set[SeriesKey]] = {}
    of_rule: dict[int, Window | None] = {}
    for rule in rules:
        window = rule.window(now, latest)
        of_rule[rule.id] = window
        if window is not None:
            windows.setdefault(window, set()).add(rule.key)
    found = {w: market.figures(session, w, keys) for w, keys in windows.items()}
    planned = []
    for rule in rules:
        window = of_rule[rule.id]
        value = rule.value_of(found.get(window) if window else None)
        firing = rule.state == "firing"
        breached = is_breached(
            rule.operator, rule.threshold, rule.recovery_threshold, value, firing=firing
        )
        outcome = advance(
            RuleState(rule.state, rule.breaches, rule.since, rule.last_notified_at),
            breached,
            now=now,
            pending_evaluations=rule.pending_evaluations,
            mute=rule.mute,
            zone=rule.timezone,
            throttle_s=rule.throttle_s,
        )
        limit = limit_in_force(rule.threshold, rule.recovery_threshold, firing=firing)
        planned.append(Planned(rule, window, value, limit, outcome))
    _add_details(session, planned)
    return len(rows), planned


def _add_details(session: Session, planned: list[Planned]) -> None:
    """The blocks behind each transition or notification (one query per window)."""
    wanted: dict[Window, list[Planned]] = {}
    for p in planned:
        if p.outcome.changed and p.window is not None:
            wanted.setdefault(p.window, []).append(p)
    for window, group in wanted.items():
        values = market.block_values(session, window, {p.rule.key for p in group})
        for p in group:
            p.detail = _detail(p, values[p.rule.key])


def _detail(p: Planned, blocks: list[tuple[int, float]]) -> dict[str, Any]:
    rule, window = p.rule, p.window
    assert window is not None
    peak = (max if rule.operator == ">" else min)(blocks, key=lambda b: b[1], default=None)
    firing = rule.state == "firing"
    beyond = [
        {"block": b, "value": round(v, 3)}
        for b, v in blocks
        if is_breached(rule.operator, rule.threshold, rule.recovery_threshold, v, firing=firing)
    ]
    return {
        "date": window.day.isoformat(),
        "blocks_in_scope": [window.first, window.last],
        "aggregate": rule.aggregate,
        "series": rule.series,
        "unit": rule.unit,
        "limit": p.limit,
        "blocks": beyond[:DETAIL_BLOCKS] if rule.aggregate == "block" else [],
        "blocks_beyond": len(beyond),
        "peak": {"block": peak[0], "value": round(peak[1], 3)} if peak else None,
        "block_count": len(blocks),
    }


_RULES = cast(Table, AlertRule.__table__)
# one statement, compiled once, executed per rule (Core: no ORM bookkeeping per row)
_WRITE_DECISION = (
    update(_RULES)
    .where(_RULES.c.id == bindparam("rule_id"), _RULES.c.version == bindparam("read_version"))
    .values(
        state=bindparam("new_state"),
        breaches=bindparam("new_breaches"),
        state_since=bindparam("new_since"),
        last_value=bindparam("new_value"),
        last_evaluated_at=bindparam("evaluated_at"),
        last_notified_at=bindparam("notified_at"),
        version=_RULES.c.version + 1,
    )
)


def apply(session: Session, planned: list[Planned], now: datetime, server_id: str) -> Written:
    """Write the decisions, each only if its rule is still at the version read."""
    out = Written()
    conn = session.connection()
    for p in planned:
        o = p.outcome
        result = conn.execute(
            _WRITE_DECISION,
            {
                "rule_id": p.rule.id,
                "read_version": p.rule.version,
                "new_state": o.state,
                "new_breaches": o.breaches,
                "new_since": o.since,
                "new_value": p.value,
                "evaluated_at": now,
                "notified_at": o.last_notified_at,
            },
        )
        if result.rowcount != 1:
            out.dropped += 1
            out.dropped_ids.add(p.rule.id)
            continue
        out.written += 1
        if o.transition is not None:
            _record(session, p, now, server_id, out)
        if o.notify is not None:
            out.pending.notifications.append(_notify(session, p, out))
    return out


def _record(session: Session, p: Planned, now: datetime, server_id: str, out: Written) -> None:
    o, rule = p.outcome, p.rule
    transition = o.transition
    assert transition is not None
    detail = {
        **p.detail,
        "muted": o.muted,
        "notified": o.notify is not None,
        "evaluated_by": server_id,
        "breaches": o.breaches,
    }
    session.add(
        AlertHistory(
            rule_id=rule.id,
            from_state=rule.state,
            to_state=transition,
            value=p.value,
            threshold=p.limit,
            detail=detail,
            notified=o.notify is not None,
            created_at=now,
        )
    )
    data = {
        "rule_id": rule.id,
        "name": rule.name,
        "series": rule.series,
        "operator": rule.operator,
        "threshold": rule.threshold,
        "recovery_threshold": rule.recovery_threshold,
        "from_state": rule.state,
        "state": o.state,
        "transition": transition,
        "since": o.since.isoformat() if o.since else None,
        "value": p.value,
        "detail": detail,
    }
    out.events.append(Event(ALERTS, f"alert.{transition}", data))
    out.transitions.append({"rule_id": rule.id, "transition": transition, "value": p.value})
    if transition in ("firing", "resolved"):
        out.pending.activities.append(
            add_activity(
                session,
                type="alert",
                action=transition,
                title=_title(p),
                entity_type="alert",
                entity_id=rule.id,
                status=o.state,
            )
        )


def _title(p: Planned) -> str:
    word = "firing" if p.outcome.state == "firing" else "resolved"
    return f"Alert {word}: {p.rule.name}"


def _notify(session: Session, p: Planned, out: Written) -> Notification:
    rule, o = p.rule, p.outcome
    firing = o.notify == "firing"
    label = SERIES_LABELS.get(rule.series, rule.series)
    unit = "%" if rule.unit == "pct" and rule.series == "schedule_deviation" else ""
    day = p.detail.get("date") or (p.window.day.isoformat() if p.window else "no data")
    value = "no data" if p.value is None else f"{p.value:g}{unit}"
    if firing:
        blocks = [b["block"] for b in p.detail.get("blocks", [])]
        where = f" in blocks {_ranges(blocks)}" if blocks else ""
        message = (
            f"{label} {rule.operator} {rule.threshold:g}{unit}: {value} on {day}{where} "
            f"({'daily average' if rule.aggregate == 'daily_avg' else 'per block'})"
        )
    else:
        side = "below" if rule.operator == ">" else "above"
        message = f"{label} back {side} {p.limit:g}{unit}: {value} on {day}"
    notification = add_notification(
        session,
        type="alert_firing" if firing else "alert_resolved",
        category="alert",
        severity="error" if firing else "info",
        title=_title(p),
        message=message,
        entity_type="alert",
        entity_id=rule.id,
    )
    queue_deliveries(session, notification, rule.channels)
    return notification


def _ranges(blocks: list[int]) -> str:
    """``[1, 2, 3, 7]`` → ``1-3, 7``."""
    parts: list[str] = []
    start = prev = None
    for b in blocks:
        if prev is not None and b == prev + 1:
            prev = b
            continue
        if start is not None:
            parts.append(f"{start}-{prev}" if start != prev else f"{start}")
        start = prev = b
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else f"{start}")
    return ", ".join(parts)
