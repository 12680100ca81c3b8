"""The body of POST /schedules and PATCH /schedules/{id}, checked field by field (pure).

The run part (args, config, inputs, priority, timeout_s) goes through the checks of a run
request, so a schedule accepts exactly what POST /scripts/{id}/runs accepts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from ..config import Settings
from ..errors import Invalid
from ..runs.inputs import parse_run_request
from .cron import Cron, parse_cron, parse_deadline, zone
from .policy import RetryPolicy, parse_channels, parse_lateness, parse_retry

RUN_FIELDS = frozenset({"args", "config", "parameters", "inputs", "priority", "timeout_s"})
OWN_FIELDS = frozenset(
    {
        "name",
        "script_id",
        "script_name",
        "cron",
        "timezone",
        "enabled",
        "deadline",
        "retry",
        "missed",
        "channels",
    }
)
FIELDS = RUN_FIELDS | OWN_FIELDS
NULLABLE = frozenset(
    {"name", "script_id", "script_name", "deadline", "retry", "missed", "channels"}
)
MAX_NAME = 255
MAX_ID = 2**31 - 1


def _bad(field_name: str, message: str) -> Invalid:
    return Invalid(message, code="invalid_field", details={"field": field_name})


@dataclass(frozen=True)
class ScheduleSpec:
    cron: Cron
    timezone: str
    script_id: int | None = None
    script_name: str | None = None
    name: str | None = None
    args: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    priority: int = 0
    timeout_s: int = 600
    enabled: bool = True
    deadline: str | None = None
    retry: RetryPolicy | None = None
    max_lateness_s: int = 300
    channels: list[str] = field(default_factory=list)

    @property
    def zone(self) -> ZoneInfo:
        return self.cron.zone


def _script(body: dict[str, Any]) -> tuple[int | None, str | None]:
    script_id, script_name = body.get("script_id"), body.get("script_name")
    if (script_id is None) == (script_name is None):
        raise _bad(
            "script_id",
            "give script_id (a fixed version) or script_name (the latest active version "
            "at each fire), not both",
        )
    if script_id is not None and (
        isinstance(script_id, bool)
        or not isinstance(script_id, int)
        or not 1 <= script_id <= MAX_ID
    ):
        raise _bad("script_id", f"script_id must be a positive integer; got {script_id!r}")
    if script_name is not None and (
        not isinstance(script_name, str)
        or not script_name.strip()
        or len(script_name) > MAX_NAME
        or "\x00" in script_name
    ):
        raise _bad("script_name", f"script_name must be a script's name; got {script_name!r}")
    return script_id, script_name


def _name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME or "\x00" in value:
        raise _bad("name", f"name must be a string of at most {MAX_NAME} characters, no NUL")
    return value.strip() or None


def parse_schedule(body: dict[str, Any], settings: Settings) -> ScheduleSpec:
    """A whole schedule (422 naming the first bad field)."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise _bad(unknown[0], f"unknown fields: {', '.join(unknown)}")
    script_id, script_name = _script(body)
    tz_name = body.get("timezone", settings.schedule_timezone)
    cron = parse_cron(body.get("cron"), zone(tz_name))
    run = parse_run_request({k: v for k, v in body.items() if k in RUN_FIELDS}, settings)
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _bad("enabled", f"enabled must be true or false; got {enabled!r}")
    return ScheduleSpec(
        cron=cron,
        timezone=str(tz_name),
        script_id=script_id,
        script_name=script_name.strip() if script_name else None,
        name=_name(body.get("name")),
        args=run.args,
        config=run.config,
        parameters=run.parameters,
        inputs=[i.to_json() for i in run.inputs],
        priority=run.priority,
        timeout_s=run.timeout_s,
        enabled=enabled,
        deadline=parse_deadline(body.get("deadline")),
        retry=parse_retry(body.get("retry")),
        max_lateness_s=parse_lateness(body.get("missed"), settings.schedule_max_lateness_s),
        channels=parse_channels(body.get("channels")),
    )


def merge_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """The body of a schedule after ``patch``: a patch naming the script one way drops the
    other way; ``null`` clears deadline, retry, name and channels."""
    if not patch:
        raise _bad("body", "send at least one field to change")
    unknown = sorted(set(patch) - FIELDS)
    if unknown:
        raise _bad(unknown[0], f"unknown fields: {', '.join(unknown)}")
    merged = {**current, **patch}
    if "script_id" in patch and "script_name" not in patch:
        merged.pop("script_name", None)
    if "script_name" in patch and "script_id" not in patch:
        merged.pop("script_id", None)
    return {k: v for k, v in merged.items() if v is not None or k not in NULLABLE}
