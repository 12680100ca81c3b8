"""Alert rules and their history in the database: CRUD and the JSON the API shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..db.models import AlertHistory, AlertRule
from ..errors import NotFound
from ..notify.channels import display_url
from .rules import STATES
from .validate import FIELDS, check_rule


def rule_json(rule: AlertRule) -> dict[str, Any]:
    """A rule as the API shows it (channels masked: they may carry credentials)."""
    return {
        "id": rule.id,
        "name": rule.name,
        "series": rule.series,
        "operator": rule.operator,
        "threshold": rule.threshold,
        "recovery_threshold": rule.recovery_threshold,
        "aggregate": rule.aggregate,
        "unit": rule.unit,
        "scope": rule.scope,
        "pending_evaluations": rule.pending_evaluations,
        "mute": rule.mute,
        "timezone": rule.timezone,
        "channels": [display_url(u) for u in rule.channels],
        "throttle_s": rule.throttle_s,
        "enabled": rule.enabled,
        "state": rule.state,
        "since": _iso(rule.state_since),
        "breaches": rule.breaches,
        "last_value": rule.last_value,
        "last_evaluated_at": _iso(rule.last_evaluated_at),
        "last_notified_at": _iso(rule.last_notified_at),
        "created_by": rule.created_by,
        "created_at": rule.created_at.isoformat(),
        "updated_at": rule.updated_at.isoformat(),
        "version": rule.version,
    }


def history_json(row: AlertHistory) -> dict[str, Any]:
    return {
        "id": row.id,
        "rule_id": row.rule_id,
        "from_state": row.from_state,
        "to_state": row.to_state,
        "value": row.value,
        "threshold": row.threshold,
        "detail": row.detail,
        "notified": row.notified,
        "created_at": row.created_at.isoformat(),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def get_rule(session: Session, rule_id: int) -> AlertRule:
    rule = session.get(AlertRule, rule_id)
    if rule is None:
        raise NotFound(f"alert rule {rule_id} does not exist", code="not_found")
    return rule


def create_rule(
    session: Session, body: dict[str, Any], user: str | None, now: datetime
) -> dict[str, Any]:
    values = check_rule(body)
    rule = AlertRule(
        **values,
        state="normal",
        state_since=now,
        breaches=0,
        created_by=user,
        created_at=now,
        updated_at=now,
        version=1,
    )
    session.add(rule)
    session.flush()
    return rule_json(rule)


def update_rule(
    session: Session, rule_id: int, body: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """Change a rule's fields. Pausing a rule (``enabled`` false) puts it back to normal,
    recorded in its history; the version grows, so an evaluation that read the rule before
    the change writes nothing."""
    rule = get_rule(session, rule_id)
    current = {name: getattr(rule, name) for name in FIELDS}
    values = check_rule(body, current)
    paused = values.get("enabled") is False and rule.enabled
    if paused and rule.state != "normal":
        session.add(
            AlertHistory(
                rule_id=rule.id,
                from_state=rule.state,
                to_state="normal",
                value=rule.last_value,
                threshold=rule.threshold,
                detail={"reason": "paused"},
                notified=False,
                created_at=now,
            )
        )
        values.update(state="normal", state_since=now)
    if paused:
        values["breaches"] = 0
    session.execute(
        update(AlertRule)
        .where(AlertRule.id == rule.id)
        .values(**values, updated_at=now, version=AlertRule.version + 1)
    )
    session.flush()
    return rule_json(get_refreshed(session, rule.id))


def get_refreshed(session: Session, rule_id: int) -> AlertRule:
    rule = session.get(AlertRule, rule_id, populate_existing=True)
    assert rule is not None
    return rule


def delete_rule(session: Session, rule_id: int) -> None:
    session.delete(get_rule(session, rule_id))
    session.flush()


def list_rules(
    session: Session,
    *,
    limit: int,
    offset: int,
    state: str | None = None,
    enabled: bool | None = None,
) -> dict[str, Any]:
    query = select(AlertRule)
    if state is not None:
        query = query.where(AlertRule.state == state)
    if enabled is not None:
        query = query.where(AlertRule.enabled.is_(enabled))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AlertRule.id).limit(limit).offset(offset)).all()
    counts: dict[str, int] = {
        state: count
        for state, count in session.execute(
            select(AlertRule.state, func.count())
            .where(AlertRule.enabled.is_(True))
            .group_by(AlertRule.state)
        ).all()
    }
    return {
        "items": [rule_json(r) for r in rows],
        "total": int(total),
        "counts": {s: int(counts.get(s, 0)) for s in STATES},
    }


def list_history(session: Session, rule_id: int, *, limit: int, offset: int) -> dict[str, Any]:
    get_rule(session, rule_id)
    where = AlertHistory.rule_id == rule_id
    total = session.scalar(select(func.count()).select_from(AlertHistory).where(where)) or 0
    rows = session.scalars(
        select(AlertHistory)
        .where(where)
        .order_by(AlertHistory.created_at.desc(), AlertHistory.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return {"items": [history_json(r) for r in rows], "total": int(total)}
