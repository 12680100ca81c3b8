"""What a run asks for: validation of the POST body (pure) and input files (CSV) from datasets."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Settings
from ..db.models import DATASET_MODELS
from ..errors import Invalid
from ..schedules.policy import RetryPolicy, parse_channels, parse_deadline_at, parse_retry

MAX_ARGS = 100
MAX_ARG_CHARS = 4096
MAX_CONFIG_BYTES = 64 * 1024
MAX_INPUTS = 10
MAX_INPUT_DAYS = 400
PRIORITY_RANGE = (-1000, 1000)
SKIP_COLUMNS = {"upload_id"}


@dataclass(frozen=True)
class InputSpec:
    kind: str
    start: date
    end: date

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "from": self.start.isoformat(), "to": self.end.isoformat()}


@dataclass(frozen=True)
class RunRequest:
    args: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    inputs: list[InputSpec] = field(default_factory=list)
    timeout_s: int = 600
    priority: int = 0
    deadline_at: datetime | None = None
    retry: RetryPolicy | None = None
    channels: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)  # checked against the script later


def _bad(field_name: str, message: str) -> Invalid:
    return Invalid(message, code="invalid_field", details={"field": field_name})


def _int_field(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, f"{name} must be an integer between {low} and {high}")
    if not low <= value <= high:
        raise _bad(name, f"{name} must be between {low} and {high}; got {value}")
    return value


def _args(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise _bad("args", "args must be a list of strings")
    if len(value) > MAX_ARGS:
        raise _bad("args", f"args has {len(value)} items; the limit is {MAX_ARGS}")
    for arg in value:
        if "\x00" in arg or len(arg) > MAX_ARG_CHARS:
            raise _bad("args", f"each arg must be at most {MAX_ARG_CHARS} characters, no NUL")
    return list(value)


def _config(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad("config", "config must be a JSON object")
    size = len(json.dumps(value))
    if size > MAX_CONFIG_BYTES:
        raise _bad("config", f"config is {size} bytes as JSON; the limit is {MAX_CONFIG_BYTES}")
    return value


def _parameters(value: Any) -> dict[str, Any]:
    """An object; its values are checked against the script's declaration when queued."""
    if not isinstance(value, dict):
        raise _bad("parameters", "parameters must be a JSON object")
    size = len(json.dumps(value))
    if size > MAX_CONFIG_BYTES:
        raise _bad(
            "parameters", f"parameters is {size} bytes as JSON; the limit is {MAX_CONFIG_BYTES}"
        )
    return value


def _date(item: dict[str, Any], key: str, index: int) -> date:
    raw = item.get(key)
    try:
        return date.fromisoformat(raw) if isinstance(raw, str) else date.fromisoformat("")
    except ValueError:
        raise _bad(
            f"inputs[{index}].{key}",
            f"inputs[{index}].{key} must be a date (YYYY-MM-DD); got {raw!r}",
        ) from None


def parse_inputs(value: Any) -> list[InputSpec]:
    """A request's (or a stored run's or schedule's) ``inputs``: dataset ranges a run is given
    as files; a 422 naming the field for anything else."""
    if not isinstance(value, list):
        raise _bad("inputs", "inputs must be a list of {kind, from, to} objects")
    if len(value) > MAX_INPUTS:
        raise _bad("inputs", f"inputs has {len(value)} items; the limit is {MAX_INPUTS}")
    specs = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise _bad(f"inputs[{index}]", f"inputs[{index}] must be an object")
        kind = item.get("kind")
        if kind not in DATASET_MODELS:
            raise _bad(
                f"inputs[{index}].kind",
                f"inputs[{index}].kind must be one of {', '.join(DATASET_MODELS)}; got {kind!r}",
            )
        start, end = _date(item, "from", index), _date(item, "to", index)
        if end < start:
            raise _bad(f"inputs[{index}].to", f"inputs[{index}]: to is before from")
        if (end - start).days >= MAX_INPUT_DAYS:
            raise _bad(f"inputs[{index}]", f"inputs[{index}] spans more than {MAX_INPUT_DAYS} days")
        specs.append(InputSpec(kind, start, end))
    return specs


RUN_REQUEST_FIELDS = frozenset(
    {
        "args",
        "config",
        "parameters",
        "inputs",
        "timeout_s",
        "priority",
        "deadline_at",
        "retry",
        "channels",
    }
)


def parse_run_request(
    body: dict[str, Any], settings: Settings, now: datetime | None = None
) -> RunRequest:
    """The body of POST /scripts/{id}/runs, checked field by field (422 names the field).
    With ``now``, a ``deadline_at`` already past is refused."""
    unknown = sorted(set(body) - RUN_REQUEST_FIELDS)
    if unknown:
        raise _bad(unknown[0], f"unknown fields: {', '.join(unknown)}")
    return RunRequest(
        args=_args(body.get("args", [])),
        config=_config(body.get("config", {})),
        inputs=parse_inputs(body.get("inputs", [])),
        timeout_s=_int_field(
            body, "timeout_s", settings.run_timeout_s, 1, settings.max_run_timeout_s
        ),
        priority=_int_field(body, "priority", 0, *PRIORITY_RANGE),
        deadline_at=parse_deadline_at(body.get("deadline_at"), now),
        retry=parse_retry(body.get("retry")),
        channels=parse_channels(body.get("channels")),
        parameters=_parameters(body.get("parameters", {})),
    )


def input_file_names(specs: list[InputSpec]) -> list[str]:
    names: list[str] = []
    for spec in specs:
        name = f"{spec.kind}.csv"
        n = 2
        while name in names:
            name = f"{spec.kind}-{n}.csv"
            n += 1
        names.append(name)
    return names


def write_inputs(session: Session, specs: list[InputSpec], input_dir: Path) -> list[str]:
    """One CSV per input with the rows of that date range, ordered by date and block.
    Blocking (a reader thread). Returns a line per file for the run's log."""
    written = []
    for spec, name in zip(specs, input_file_names(specs), strict=True):
        model: Any = DATASET_MODELS[spec.kind]
        columns = [c for c in model.__table__.columns if c.name not in SKIP_COLUMNS]
        query = (
            select(*columns)
            .where(model.date >= spec.start, model.date <= spec.end)
            .order_by(*model.__table__.primary_key.columns)  # date, block, the other keys
        )
        rows = 0
        with (input_dir / name).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([c.name for c in columns])
            for row in session.execute(query.execution_options(yield_per=5000)):
                writer.writerow(["" if v is None else _cell(v) for v in row])
                rows += 1
        written.append(f"input {name}: {rows} rows of {spec.kind} {spec.start} to {spec.end}")
    return written


def _cell(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
