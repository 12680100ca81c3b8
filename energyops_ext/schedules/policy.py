"""Retry, deadline and channel fields of run requests and schedules, and the arithmetic of
back-off and the deadline cut. Pure: checks raise ``Invalid`` naming the field."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import Invalid
from ..notify import check_channels

MAX_ATTEMPTS = 20
MAX_BACKOFF_S = 86_400.0
DEFAULT_BACKOFF_S = 60.0
DEFAULT_JITTER = 0.1
MAX_LATENESS_S = 7 * 86_400


def _bad(field: str, message: str) -> Invalid:
    return Invalid(message, code="invalid_field", details={"field": field})


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a failed, timed-out or lost attempt up to ``max_attempts`` attempts in all,
    waiting ``backoff_s * 2**(attempt - 1)``, spread by +/- ``jitter`` of that."""

    max_attempts: int
    backoff_s: float = DEFAULT_BACKOFF_S
    jitter: float = DEFAULT_JITTER

    def to_json(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "backoff_s": self.backoff_s,
            "jitter": self.jitter,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RetryPolicy:
        return cls(
            int(data["max_attempts"]),
            float(data.get("backoff_s", DEFAULT_BACKOFF_S)),
            float(data.get("jitter", DEFAULT_JITTER)),
        )


def parse_retry(value: Any, field: str = "retry") -> RetryPolicy | None:
    """``{"max_attempts": 3, "backoff_s": 60, "jitter": 0.1}`` (backoff_s and jitter
    optional), or null for no retries."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad(field, f"{field} must be an object {{max_attempts, backoff_s}} or null")
    unknown = sorted(set(value) - {"max_attempts", "backoff_s", "jitter"})
    if unknown:
        raise _bad(f"{field}.{unknown[0]}", f"{field} has unknown fields: {', '.join(unknown)}")
    attempts = value.get("max_attempts")
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        raise _bad(
            f"{field}.max_attempts",
            f"{field}.max_attempts must be an integer between 1 and {MAX_ATTEMPTS}; "
            f"got {attempts!r}",
        )
    if not 1 <= attempts <= MAX_ATTEMPTS:
        raise _bad(
            f"{field}.max_attempts",
            f"{field}.max_attempts must be between 1 and {MAX_ATTEMPTS}; got {attempts}",
        )
    backoff = value.get("backoff_s", DEFAULT_BACKOFF_S)
    if not _number(backoff) or not math.isfinite(backoff) or not 0 <= backoff <= MAX_BACKOFF_S:
        raise _bad(
            f"{field}.backoff_s",
            f"{field}.backoff_s must be a number of seconds between 0 and {MAX_BACKOFF_S:g}; "
            f"got {backoff!r}",
        )
    jitter = value.get("jitter", DEFAULT_JITTER)
    if not _number(jitter) or not math.isfinite(jitter) or not 0 <= jitter <= 1:
        raise _bad(
            f"{field}.jitter", f"{field}.jitter must be a number between 0 and 1; got {jitter!r}"
        )
    return RetryPolicy(attempts, float(backoff), float(jitter))


def retry_delay_s(policy: RetryPolicy, attempt: int, spread: float) -> float:
    """Seconds to wait after attempt ``attempt`` (1, 2, ...) failed before the next starts:
    ``backoff_s * 2**(attempt - 1) * (1 + jitter * (2 * spread - 1))`` with ``spread`` in [0, 1]
    (a random number; 0.5 gives the plain exponential)."""
    base = policy.backoff_s * 2.0 ** (attempt - 1)
    return max(0.0, base * (1.0 + policy.jitter * (2.0 * spread - 1.0)))


def can_finish_by(start_at: datetime, timeout_s: float, deadline: datetime | None) -> bool:
    """Whether an attempt started at ``start_at`` that may run ``timeout_s`` seconds ends
    by ``deadline`` (always, without one)."""
    return deadline is None or start_at + timedelta(seconds=timeout_s) <= deadline


def parse_deadline_at(
    value: Any, now: datetime | None, field: str = "deadline_at"
) -> datetime | None:
    """An ISO 8601 instant with its zone (``2025-10-08T12:00:00+05:30``, ``...Z``), in UTC;
    one already past at ``now`` is refused."""
    if value is None:
        return None
    example = "e.g. 2025-10-08T12:00:00+05:30"
    if not isinstance(value, str):
        raise _bad(field, f"{field} must be an ISO 8601 date and time with a zone ({example})")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _bad(
            field,
            f"{field} must be an ISO 8601 date and time with a zone ({example}); got {value!r}",
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _bad(field, f"{field} must carry a time zone ({example}); got {value!r}")
    moment = moment.astimezone(UTC)
    if now is not None and moment <= now:
        raise _bad(field, f"{field} {value} is in the past")
    return moment


def parse_channels(value: Any, field: str = "channels") -> list[str]:
    """A list of apprise URLs (``mailto://...``, ``json://host/path``, ``slack://...``) that
    apprise recognises; 422 naming the item otherwise."""
    return check_channels(value, field)


def parse_lateness(value: Any, default_s: int, field: str = "missed") -> int:
    """``{"max_lateness_s": 300}``: how late a slot may still fire after a downtime."""
    if value is None:
        return default_s
    if not isinstance(value, dict):
        raise _bad(field, f"{field} must be an object {{max_lateness_s}}")
    unknown = sorted(set(value) - {"max_lateness_s"})
    if unknown:
        raise _bad(f"{field}.{unknown[0]}", f"{field} has unknown fields: {', '.join(unknown)}")
    lateness = value.get("max_lateness_s", default_s)
    if isinstance(lateness, bool) or not isinstance(lateness, int):
        raise _bad(
            f"{field}.max_lateness_s",
            f"{field}.max_lateness_s must be an integer number of seconds between 0 and "
            f"{MAX_LATENESS_S}; got {lateness!r}",
        )
    if not 0 <= lateness <= MAX_LATENESS_S:
        raise _bad(
            f"{field}.max_lateness_s",
            f"{field}.max_lateness_s must be between 0 and {MAX_LATENESS_S}; got {lateness}",
        )
    return lateness
