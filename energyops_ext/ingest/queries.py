"""Read side of datasets: kinds with row counts, upload history, rows with keyset paging."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from ..db.models import Upload
from ..errors import BadRequest, NotFound
from .market import DateRange
from .schemas import KINDS, DatasetKind

UPLOAD_SUMMARY = (
    "id",
    "kind",
    "filename",
    "sheet",
    "size",
    "sha256",
    "mode",
    "rows_read",
    "rows_inserted",
    "rows_updated",
    "rows_rejected",
    "status",
    "uploaded_by",
)


def list_kinds(session: Session) -> dict[str, Any]:
    items = []
    for kind in KINDS.values():
        count = session.scalar(select(func.count()).select_from(kind.model)) or 0
        items.append({**kind.describe(), "rows": int(count)})
    return {"items": items}


def upload_json(upload: Upload, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {name: getattr(upload, name) for name in UPLOAD_SUMMARY}
    data["created_at"] = upload.created_at.isoformat()
    if full:
        data["report"] = upload.report
    return data


def list_uploads(session: Session, kind: DatasetKind, limit: int, offset: int) -> dict[str, Any]:
    where = Upload.kind == kind.name
    total = session.scalar(select(func.count()).select_from(Upload).where(where)) or 0
    rows = session.scalars(
        select(Upload).where(where).order_by(Upload.id.desc()).limit(limit).offset(offset)
    ).all()
    return {"items": [upload_json(u) for u in rows], "total": int(total)}


def get_upload(session: Session, upload_id: int) -> dict[str, Any]:
    upload = session.get(Upload, upload_id)
    if upload is None:
        raise NotFound(f"upload {upload_id} does not exist")
    return upload_json(upload, full=True)


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: DatasetKind) -> tuple[Any, ...]:
    """The key of the last row of a page, in ``kind.stored_key`` order."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        day, block, *rest = json.loads(base64.urlsafe_b64decode(padded))
        if len(rest) != len(kind.extra_keys) or not all(isinstance(v, str) for v in rest):
            raise ValueError("not this kind's key")
        return (date.fromisoformat(day), int(block), *rest)
    except (ValueError, TypeError, binascii.Error):
        raise BadRequest(
            "cursor is not a cursor this API returned",
            code="invalid_parameter",
            details={"field": "cursor"},
        ) from None


def list_rows(
    session: Session,
    kind: DatasetKind,
    span: DateRange,
    filters: dict[str, Any],
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """Rows in key order (``kind.stored_key``); ``next_cursor`` continues after the last one."""
    model: Any = kind.model
    key = [getattr(model, name) for name in kind.stored_key]
    query = select(model)
    if span.start is not None:
        query = query.where(model.date >= span.start)
    if span.end is not None:
        query = query.where(model.date <= span.end)
    for name, value in filters.items():
        query = query.where(getattr(model, name) == value)
    if cursor:
        query = query.where(tuple_(*key) > decode_cursor(cursor, kind))
    rows = session.scalars(query.order_by(*key).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    columns = ["upload_id", "date", "block", *(c.name for c in kind.columns), "updated_at"]
    items = [{c: _json_value(getattr(r, c)) for c in columns} for r in rows]
    next_cursor = None
    if more:
        last = [_json_value(getattr(rows[-1], name)) for name in kind.stored_key]
        next_cursor = encode_cursor(last)
    return {"items": items, "next_cursor": next_cursor, "limit": limit}


def _json_value(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
