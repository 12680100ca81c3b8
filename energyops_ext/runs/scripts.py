"""Scripts and their versions: upload validation (pure) and the queries behind /scripts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..config import Settings
from ..db.models import Run, Script
from ..errors import (
    Conflict,
    Invalid,
    NotFound,
    TooLarge,
    UnsupportedMediaType,
    check_name,
    format_size,
)
from ..feed import add_activity
from ..storage import sha256_hex
from . import parameters as params
from .notebooks import check_notebook

KINDS = ("test", "model")
MODEL_TYPES = ("DMO", "RMO", "SO")
STATUSES = ("active", "archived")
TEST_NAME = re.compile(r"^(test|experiment)_.+\.(py|ipynb)$")
FORMATS = {".py": "py", ".ipynb": "ipynb"}
MAX_DESCRIPTION = 2000


@dataclass(frozen=True)
class ScriptUpload:
    """A validated upload, ready to store."""

    name: str
    kind: str
    model_type: str | None
    description: str | None
    data: bytes
    sha256: str
    format: str = "py"
    parameters: tuple[params.Parameter, ...] = ()


def _field_error(field: str, message: str, code: str = "invalid_field") -> Invalid:
    return Invalid(message, code=code, details={"field": field})


def check_kind(kind: str | None, model_type: str | None) -> tuple[str, str | None]:
    if kind not in KINDS:
        raise _field_error("kind", f"kind must be one of test, model; got {kind!r}")
    model_type = (model_type or "").strip().upper() or None
    if kind == "model":
        if model_type is None:
            raise _field_error("model_type", "model_type is required for models (DMO, RMO or SO)")
        if model_type not in MODEL_TYPES:
            raise _field_error(
                "model_type", f"model_type must be one of DMO, RMO, SO; got {model_type!r}"
            )
    elif model_type is not None:
        raise _field_error("model_type", "model_type applies to models only, not test scripts")
    return kind, model_type


def _text(data: bytes) -> str:
    """Non-empty UTF-8 text (422 otherwise)."""
    if not data.strip():
        raise Invalid("file is empty", code="invalid_script", details={"field": "file"})
    if b"\x00" in data:
        raise Invalid(
            "file is binary (it contains NUL bytes); upload Python source text",
            code="invalid_script",
            details={"field": "file"},
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(
            f"file is not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}",
            code="invalid_script",
            details={"field": "file", "offset": exc.start},
        ) from None
    return text


def check_source(data: bytes, name: str) -> list[params.Parameter]:
    """Non-empty, text, UTF-8, and ``compile()`` passes (422 with line and column); returns
    the parameters its ``PARAMETERS`` literal declares."""
    text = _text(data)
    try:
        compile(text, name, "exec", dont_inherit=True)
    except SyntaxError as exc:
        line, column = exc.lineno or 0, exc.offset or 0
        raise Invalid(
            f"syntax error at line {line}, column {column}: {exc.msg}",
            code="invalid_script",
            details={"field": "file", "line": line, "column": column},
        ) from None
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid_script", details={"field": "file"}) from None
    try:
        return params.script_parameters(text)
    except params.DeclarationError as exc:
        where = f"line {exc.line}: " if exc.line else ""
        raise Invalid(
            f"{where}{exc.message}",
            code="invalid_parameters",
            details={"field": "file", "line": exc.line},
        ) from None


def check_file(data: bytes, name: str, fmt: str) -> list[params.Parameter]:
    """The checks of a script (``py``) or a notebook (``ipynb``); its declared parameters."""
    if fmt == "ipynb":
        return check_notebook(_text(data), name)
    return check_source(data, name)


def validate_upload(
    settings: Settings,
    filename: str,
    data: bytes,
    kind: str | None,
    model_type: str | None,
    description: str | None,
) -> ScriptUpload:
    """Every rule of an upload, in the order a client can fix them."""
    name = check_name(filename, "file name")
    fmt = next((f for ext, f in FORMATS.items() if name.lower().endswith(ext)), None)
    if fmt is None:
        raise UnsupportedMediaType(
            f"only Python files (.py) and notebooks (.ipynb) can be uploaded; got {name!r}",
            code="unsupported_file_type",
            details={"field": "file"},
        )
    kind, model_type = check_kind(kind, model_type)
    if kind == "test" and settings.enforce_test_script_names and not TEST_NAME.match(name):
        raise _field_error(
            "file",
            f"test scripts must be named test_*.py or experiment_*.py (or .ipynb); got {name!r}",
            code="invalid_name",
        )
    limit = settings.max_test_script_bytes if kind == "test" else settings.max_model_bytes
    if len(data) > limit:
        what = "test scripts" if kind == "test" else "models"
        raise TooLarge(
            f"file is {format_size(len(data))}; the limit for {what} is {format_size(limit)}",
            details={"field": "file", "size": len(data), "limit": limit},
        )
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise _field_error(
            "description", f"description is {len(description)} characters; the limit is 2000"
        )
    declared = check_file(data, name, fmt)
    return ScriptUpload(
        name,
        kind,
        model_type,
        description or None,
        data,
        sha256_hex(data),
        fmt,
        tuple(declared),
    )


# --- storing a version ---


def store_version(
    session: Session, upload: ScriptUpload, key: str, user: str
) -> tuple[dict[str, Any], bool, list[Any]]:
    """A new version of ``upload.name`` stored under ``key``, or the latest version when its
    content is the same (created False). Returns (script JSON, created, activities)."""
    latest = latest_version(session, upload.name)
    if latest is not None and latest.kind != upload.kind:
        raise Conflict(
            f"{upload.name} is already a {latest.kind} script; "
            f"upload it with kind={latest.kind} or rename it",
            details={"field": "kind"},
        )
    if latest is not None and latest.sha256 == upload.sha256:
        return script_json(latest), False, []
    script = Script(
        kind=upload.kind,
        model_type=upload.model_type,
        name=upload.name,
        version=(latest.version + 1) if latest else 1,
        sha256=upload.sha256,
        size=len(upload.data),
        storage_key=key,
        status="active",
        description=upload.description,
        uploaded_by=user,
        format=upload.format,
        parameters=params.to_json(list(upload.parameters)),
    )
    session.add(script)
    session.flush()
    activity = add_activity(
        session,
        type="script",
        action="uploaded",
        title=f"{script.name} v{script.version} uploaded",
        entity_type="script",
        entity_id=script.id,
        user=user,
    )
    return script_json(script), True, [activity]


# --- queries ---


def script_json(script: Script, last_run: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": script.id,
        "name": script.name,
        "kind": script.kind,
        "model_type": script.model_type,
        "version": script.version,
        "sha256": script.sha256,
        "size": script.size,
        "format": script.format or "py",
        "parameters": script.parameters or [],
        "status": script.status,
        "description": script.description,
        "uploaded_by": script.uploaded_by,
        "created_at": script.created_at.isoformat(),
        "last_run": last_run,
    }


def latest_version(session: Session, name: str) -> Script | None:
    return session.scalars(
        select(Script).where(Script.name == name).order_by(Script.version.desc()).limit(1)
    ).first()


def get_script(session: Session, script_id: int) -> Script:
    script = session.get(Script, script_id)
    if script is None:
        raise NotFound(f"script {script_id} does not exist", code="script_not_found")
    return script


def _latest_ids() -> Any:
    newest = (
        select(Script.name, func.max(Script.version).label("version"))
        .group_by(Script.name)
        .subquery()
    )
    return select(Script.id).join(
        newest, (Script.name == newest.c.name) & (Script.version == newest.c.version)
    )


def list_scripts(
    session: Session,
    *,
    kind: str | None,
    model_type: str | None,
    status: str | None,
    q: str | None,
    limit: int,
    offset: int,
    run_json: Any,
) -> dict[str, Any]:
    """Latest version of each script name, filtered and paged, with counts and last runs."""
    latest = _latest_ids().scalar_subquery()
    base = select(Script).where(Script.id.in_(latest))
    query = base
    if kind:
        query = query.where(Script.kind == kind)
    if model_type:
        query = query.where(Script.model_type == model_type)
    if status:
        query = query.where(Script.status == status)
    if q:
        pattern = f"%{q.lower()}%"
        query = query.where(
            or_(func.lower(Script.name).like(pattern), func.lower(Script.description).like(pattern))
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Script.created_at.desc(), Script.id.desc()).limit(limit).offset(offset)
    ).all()
    last_runs = _last_runs(session, [s.id for s in rows], run_json)
    return {
        "items": [script_json(s, last_runs.get(s.id)) for s in rows],
        "total": total,
        "counts": _counts(session, latest),
    }


def _counts(session: Session, latest: Any) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {
        "kind": dict.fromkeys(KINDS, 0),
        "model_type": dict.fromkeys(MODEL_TYPES, 0),
        "status": dict.fromkeys(STATUSES, 0),
    }
    for column, key in (
        (Script.kind, "kind"),
        (Script.model_type, "model_type"),
        (Script.status, "status"),
    ):
        rows = session.execute(
            select(column, func.count()).where(Script.id.in_(latest)).group_by(column)
        ).all()
        for value, n in rows:
            if value is not None:
                counts[key][value] = n
    return counts


def _last_runs(session: Session, script_ids: list[int], run_json: Any) -> dict[int, Any]:
    if not script_ids:
        return {}
    newest = (
        select(func.max(Run.id)).where(Run.script_id.in_(script_ids)).group_by(Run.script_id)
    ).scalar_subquery()
    runs = session.scalars(select(Run).where(Run.id.in_(newest))).all()
    return {run.script_id: run_json(run) for run in runs}


def script_detail(session: Session, script_id: int, run_json: Any) -> dict[str, Any]:
    script = get_script(session, script_id)
    versions = session.scalars(
        select(Script).where(Script.name == script.name).order_by(Script.version.desc())
    ).all()
    recent = session.scalars(
        select(Run).where(Run.script_id == script.id).order_by(Run.id.desc()).limit(20)
    ).all()
    detail = script_json(script, run_json(recent[0]) if recent else None)
    detail["versions"] = [
        {
            "id": v.id,
            "version": v.version,
            "sha256": v.sha256,
            "size": v.size,
            "status": v.status,
            "uploaded_by": v.uploaded_by,
            "created_at": v.created_at.isoformat(),
        }
        for v in versions
    ]
    detail["recent_runs"] = [run_json(r) for r in recent]
    return detail
