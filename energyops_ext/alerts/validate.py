"""A rule as a client sends it → the columns of ``alert_rules``, or 422 naming the field."""

from __future__ import annotations

import math
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import Invalid
from ..notify.channels import check_channels
from .rules import AGGREGATES, DAYS, IST, OPERATORS, SERIES, UNITS, parse_hhmm

REQUIRED = ("name", "series", "operator", "threshold")
FIELDS = (
    "name",
    "series",
    "operator",
    "threshold",
    "recovery_threshold",
    "aggregate",
    "unit",
    "scope",
    "pending_evaluations",
    "mute",
    "timezone",
    "channels",
    "throttle_s",
    "enabled",
)
DEFAULTS: dict[str, Any] = {
    "recovery_threshold": None,
    "aggregate": "block",
    "unit": "mw",
    "scope": {"date": "any", "blocks": None},
    "pending_evaluations": 1,
    "mute": [],
    "timezone": IST,
    "channels": [],
    "throttle_s": 900,
    "enabled": True,
}
SCOPE_WORDS = ("any", "today", "tomorrow")
MAX_PENDING_EVALUATIONS = 1000
MAX_THROTTLE_S = 7 * 24 * 3600
MAX_MUTE_WINDOWS = 20


def _invalid(field: str, message: str) -> Invalid:
    return Invalid(message, code="invalid_field", details={"field": field})


def _choice(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        shown = ", ".join(allowed)
        raise _invalid(field, f"{field} must be one of {shown}; got {_shown(value)}")
    return value


def _number(value: Any, field: str) -> float:
    number = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer past the float range
            number = None
    if number is None or not math.isfinite(number):
        raise _invalid(field, f"{field} must be a finite number; got {_shown(value)}")
    return number


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _integer(value: Any, field: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise _invalid(
            field, f"{field} must be an integer from {minimum} to {maximum}; got {_shown(value)}"
        )
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 255 or "\x00" in value:
        raise _invalid("name", "name must be a non-empty string of at most 255 characters")
    return value.strip()


def check_scope(value: Any, field: str = "scope") -> dict[str, Any]:
    """``any``, ``today``, ``tomorrow``, a date ``YYYY-MM-DD``, or an object with ``date``
    (one of those) and ``blocks`` ([from, to], 1-96)."""
    if isinstance(value, str):
        value = {"date": value}
    if not isinstance(value, dict):
        raise _invalid(field, f"{field} must be a string or an object with date and blocks")
    unknown = sorted(set(value) - {"date", "blocks"})
    if unknown:
        raise _invalid(f"{field}.{unknown[0]}", f"{field} has unknown keys: {', '.join(unknown)}")
    day = value.get("date", "any")
    if not isinstance(day, str) or (day not in SCOPE_WORDS and not _is_date(day)):
        raise _invalid(
            f"{field}.date",
            f"{field}.date must be any, today, tomorrow or a date YYYY-MM-DD; got {_shown(day)}",
        )
    blocks = value.get("blocks")
    if blocks is not None:
        ok = (
            isinstance(blocks, list)
            and len(blocks) == 2
            and all(isinstance(b, int) and not isinstance(b, bool) for b in blocks)
            and 1 <= blocks[0] <= blocks[1] <= 96
        )
        if not ok:
            raise _invalid(
                f"{field}.blocks",
                f"{field}.blocks must be [from, to] with 1 <= from <= to <= 96; "
                f"got {_shown(blocks)}",
            )
        blocks = list(blocks)
    return {"date": day, "blocks": blocks}


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def check_mute(value: Any, field: str = "mute") -> list[dict[str, Any]]:
    """Windows ``{"start": "HH:MM", "end": "HH:MM", "days": ["mon", ...]}``; an end before
    the start runs past midnight; no days means every day."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_MUTE_WINDOWS:
        raise _invalid(field, f"{field} must be a list of at most {MAX_MUTE_WINDOWS} windows")
    windows = []
    for index, window in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(window, dict):
            raise _invalid(where, f"{where} must be an object with start, end and days")
        unknown = sorted(set(window) - {"start", "end", "days"})
        if unknown:
            raise _invalid(f"{where}.{unknown[0]}", f"{where} has unknown keys: {unknown[0]}")
        times = {}
        for key in ("start", "end"):
            raw = window.get(key)
            try:
                times[key] = parse_hhmm(raw) if isinstance(raw, str) else -1
            except ValueError:
                times[key] = -1
            if times[key] < 0 or (key == "start" and times[key] == 24 * 60):
                raise _invalid(
                    f"{where}.{key}", f"{where}.{key} must be a time HH:MM; got {_shown(raw)}"
                )
        if times["start"] == times["end"]:
            raise _invalid(f"{where}.end", f"{where}.end must differ from its start")
        days = window.get("days") or []
        if not isinstance(days, list) or not all(isinstance(d, str) and d in DAYS for d in days):
            raise _invalid(
                f"{where}.days",
                f"{where}.days must be a list of {', '.join(DAYS)}; got {_shown(days)}",
            )
        windows.append({"start": window["start"], "end": window["end"], "days": days})
    return windows


def _zone(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid("timezone", f"timezone must be an IANA zone name; got {_shown(value)}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid("timezone", f"timezone {_shown(value)} is not a known zone") from None
    return value


def check_rule(body: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The columns a POST (``current`` None) or a PATCH (``current``: the rule's fields)
    writes; the rule they make is checked as a whole (a recovery threshold on the wrong side
    of a new threshold is refused)."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise Invalid(
            f"unknown field {_shown(unknown[0])}; a rule has: {', '.join(FIELDS)}",
            code="unknown_field",
            details={"field": unknown[0]},
        )
    if current is None:
        for name in REQUIRED:
            if body.get(name) is None:
                raise _invalid(name, f"{name} is required")
    values: dict[str, Any] = {}
    checks: dict[str, Any] = {
        "name": _name,
        "series": lambda v: _choice(v, "series", SERIES),
        "operator": lambda v: _choice(v, "operator", OPERATORS),
        "threshold": lambda v: _number(v, "threshold"),
        "recovery_threshold": lambda v: None if v is None else _number(v, "recovery_threshold"),
        "aggregate": lambda v: _choice(v, "aggregate", AGGREGATES),
        "unit": lambda v: _choice(v, "unit", UNITS),
        "scope": check_scope,
        "pending_evaluations": lambda v: _integer(
            v, "pending_evaluations", 1, MAX_PENDING_EVALUATIONS
        ),
        "mute": check_mute,
        "timezone": _zone,
        "channels": check_channels,
        "throttle_s": lambda v: _integer(v, "throttle_s", 0, MAX_THROTTLE_S),
        "enabled": _enabled,
    }
    for name in FIELDS:
        if name in body:
            values[name] = checks[name](body[name])
        elif current is None:
            values[name] = DEFAULTS[name]
    merged = {**(current or {}), **values}
    _check_together(merged)
    return values


def _enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _invalid("enabled", f"enabled must be true or false; got {_shown(value)}")
    return value


def _check_together(rule: dict[str, Any]) -> None:
    recovery, threshold, operator = (
        rule.get("recovery_threshold"),
        rule["threshold"],
        rule["operator"],
    )
    if recovery is not None:
        if operator == ">" and recovery > threshold:
            raise _invalid(
                "recovery_threshold",
                f"recovery_threshold must be at most threshold for operator '>' (a firing "
                f"rule resolves when the value falls below it); got {recovery:g} > "
                f"{threshold:g}",
            )
        if operator == "<" and recovery < threshold:
            raise _invalid(
                "recovery_threshold",
                f"recovery_threshold must be at least threshold for operator '<' (a firing "
                f"rule resolves when the value rises above it); got {recovery:g} < "
                f"{threshold:g}",
            )
    if rule.get("unit") == "pct" and rule["series"] != "schedule_deviation":
        raise _invalid("unit", "unit pct applies only to series schedule_deviation")
