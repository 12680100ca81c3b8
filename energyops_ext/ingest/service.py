"""The upload pipeline: file → rows of a dataset kind, with a row-level report.

``prepare`` (a worker thread) reads, checks that the file is of the declared kind (``kinds``:
a file of another kind is refused before anything is stored), normalizes and validates;
``commit`` (the writer thread,
one transaction) records the upload, stores the rows, and adds the activity and notification;
events go out after the commit. A failure anywhere leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from ..config import Settings
from ..db import Database
from ..db.models import Upload
from ..errors import BadRequest, Invalid
from ..events import DATASETS, Event, EventHub
from ..feed import Pending, add_activity, add_notification, announce
from ..gcpause import cyclic_gc_paused
from ..storage import Storage
from .kinds import KindCheck, check_sheet
from .normalize import Normalized, normalize
from .read import Workbook, open_workbook
from .schemas import DatasetKind, get_kind
from .store import store_rows
from .validate import complete_keys, validate

MODES = ("upsert", "replace")
# Refusals of a sheet by kind, most telling first (a workbook's other sheets are tried).
REFUSAL_RANK = ("wrong_kind", "kind_columns_missing", "header_not_recognized")
REPORT_ERRORS = 100
PREVIEW_ROWS = 20


@dataclass
class UploadRequest:
    kind: str
    path: Path
    filename: str
    user: str | None = None
    sheet: str | None = None
    mode: str = "upsert"
    dry_run: bool = False
    strict: bool = False
    defaults: dict[str, str] = field(default_factory=dict)


@dataclass
class Prepared:
    kind: DatasetKind
    request: UploadRequest
    report: dict[str, Any]
    rows: pd.DataFrame
    errors: list[dict[str, Any]]
    warnings: list[dict[str, Any]]
    strict_failures: list[dict[str, Any]] = field(default_factory=list)
    storage_key: str | None = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_defaults(kind: DatasetKind, defaults: dict[str, str]) -> dict[str, str]:
    """Request values for columns: only columns of the kind, numbers where numbers go."""
    names = {c.name for c in kind.columns}
    for name, value in defaults.items():
        if name not in names:
            raise BadRequest(
                f"unknown field {name!r}; {kind.name} columns are: {', '.join(sorted(names))}",
                code="unknown_field",
                details={"field": name},
            )
        if kind.column(name).numeric:
            try:
                float(value)
            except ValueError:
                raise BadRequest(
                    f"{name} must be a number, got {value!r}",
                    code="invalid_field",
                    details={"field": name},
                ) from None
    return defaults


def _normalize_book(
    book: Workbook, kind: DatasetKind, sheet: str | None, provided: Collection[str]
) -> tuple[Normalized, KindCheck, str, str]:
    """The named sheet, else the first sheet ``kind`` fits (``kinds.check_sheet``). When no
    sheet fits, the most telling refusal: one that names the kind the file looks like."""
    if sheet is not None:
        if sheet not in book.sheet_names:
            raise Invalid(
                f"sheet {sheet!r} is not in the workbook; sheets: {', '.join(book.sheet_names)}",
                code="unknown_sheet",
                details={"field": "sheet"},
            )
        raw = book.sheet(sheet)
        check = check_sheet(raw, kind, sheet, provided)
        return normalize(raw, kind, sheet), check, sheet, "named in the request"
    refusals: list[Invalid] = []
    for index, name in enumerate(book.sheet_names):
        raw = book.sheet(name)
        try:
            check = check_sheet(raw, kind, name, provided)
        except Invalid as exc:
            if exc.code not in REFUSAL_RANK:
                raise
            refusals.append(exc)
            continue
        reason = "first sheet" if index == 0 else "first sheet whose header matches"
        return normalize(raw, kind, name), check, name, reason
    raise min(refusals, key=lambda exc: REFUSAL_RANK.index(exc.code))


class IngestService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        storage: Storage,
        hub: EventHub,
        log: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.storage = storage
        self.hub = hub
        self.log = log or logging.getLogger(__name__)

    # --- the pipeline ---

    async def upload(self, request: UploadRequest) -> dict[str, Any]:
        prepared = await asyncio.to_thread(self.prepare, request)
        try:
            if prepared.report["status"] == "dry_run":
                return self._response(prepared.report)
            committed = await self.db.write(lambda s: self.commit(s, prepared))
        except BaseException:
            await asyncio.to_thread(self._discard, prepared)
            raise
        return self._finish(prepared, committed)

    def upload_sync(self, request: UploadRequest) -> dict[str, Any]:
        prepared = self.prepare(request)
        if prepared.report["status"] == "dry_run":
            return self._response(prepared.report)
        try:
            committed = self.db.write_sync(lambda s: self.commit(s, prepared))
        except BaseException:
            self._discard(prepared)
            raise
        return self._finish(prepared, committed)

    def prepare(self, request: UploadRequest) -> Prepared:
        """Read, normalize and validate (no database); keep the file unless it is a dry run."""
        with cyclic_gc_paused():
            return self._prepare(request)

    def _prepare(self, request: UploadRequest) -> Prepared:
        kind = get_kind(request.kind)
        if request.mode not in MODES:
            raise BadRequest(
                f"mode must be one of {', '.join(MODES)}, got {request.mode!r}",
                code="invalid_parameter",
                details={"field": "mode"},
            )
        defaults = check_defaults(kind, request.defaults)
        size = request.path.stat().st_size
        if size == 0:
            raise Invalid("the file is empty", code="empty_file")
        book = open_workbook(request.path, request.filename, self.settings.max_unpacked_bytes)
        normalized, kind_check, sheet, reason = _normalize_book(book, kind, request.sheet, defaults)
        notes = normalized.notes + kind_check.notes
        notes += complete_keys(normalized.frame, kind, normalized.mapping, defaults)
        checked = validate(normalized.frame, kind, normalized.mapping)
        warnings = kind_check.warning_rows(normalized.header_row) + checked.warnings
        failures = checked.strict_failures
        status = self._status(checked.rows_rejected, len(checked.frame), len(failures), request)
        report: dict[str, Any] = {
            "upload_id": None,
            "kind": kind.name,
            "filename": request.filename,
            "format": book.format,
            "sheet": sheet if book.format != "csv" else None,
            "sheet_choice": reason if book.format != "csv" else None,
            "sheets": book.sheet_names if book.format != "csv" else [],
            "size": size,
            "sha256": _sha256(request.path),
            "mode": request.mode,
            "dry_run": request.dry_run,
            "strict": request.strict,
            "status": status,
            "header_row": normalized.header_row,
            "columns": normalized.mapping,
            "kind_check": kind_check.report(),
            "conversions": normalized.conversions,
            "notes": notes,
            "rows_read": len(normalized.frame),
            "rows_valid": len(checked.frame),
            "rows_inserted": 0,
            "rows_updated": 0,
            "rows_deleted": 0,
            "rows_rejected": checked.rows_rejected,
            "summary_rows_left_out": normalized.summary_rows_left_out,
            "hourly_rows_expanded": normalized.hourly_rows_expanded,
            "timestamp_overrides": normalized.timestamp_overrides,
            "dates": _date_span(checked.frame),
            "errors_total": len(checked.errors),
            "warnings_total": len(warnings),
            "errors": checked.errors,
            "warnings": warnings,
        }
        prepared = Prepared(
            kind, request, report, checked.frame, checked.errors, warnings, failures
        )
        if request.dry_run:
            report["preview"] = _preview(checked.frame)
        elif status != "rejected" or request.strict:
            prepared.storage_key = self.storage.new_key("uploads", f".{book.format}")
            with request.path.open("rb") as fh:
                self.storage.put_stream(prepared.storage_key, fh)
            report["storage_key"] = prepared.storage_key
        return prepared

    def _status(
        self, rejected: int, valid: int, strict_failures: int, request: UploadRequest
    ) -> str:
        if request.dry_run:
            return "dry_run"
        if request.strict and strict_failures:
            return "rejected"
        if valid == 0:
            return "rejected"
        return "partial" if rejected else "stored"

    def commit(self, session: Session, prepared: Prepared) -> tuple[dict[str, Any], Pending]:
        """Record the upload and store its rows in the caller's transaction."""
        with cyclic_gc_paused():
            return self._commit(session, prepared)

    def _commit(self, session: Session, prepared: Prepared) -> tuple[dict[str, Any], Pending]:
        report, request, kind = prepared.report, prepared.request, prepared.kind
        if request.strict and prepared.strict_failures:
            report["status"] = "rejected"
        upload = Upload(
            kind=kind.name,
            filename=request.filename,
            sheet=report["sheet"],
            size=report["size"],
            sha256=report["sha256"],
            mode=request.mode,
            rows_read=report["rows_read"],
            rows_rejected=report["rows_rejected"],
            status=report["status"],
            report={},
            uploaded_by=request.user,
        )
        session.add(upload)
        session.flush()
        report["upload_id"] = upload.id
        if report["status"] != "rejected":
            result = store_rows(
                session.connection(), kind, prepared.rows, upload_id=upload.id, mode=request.mode
            )
            report["rows_inserted"] = result.inserted
            report["rows_updated"] = result.updated
            report["rows_deleted"] = result.deleted
        else:
            report["rows_rejected"] = report["rows_read"]
        upload.rows_inserted = report["rows_inserted"]
        upload.rows_updated = report["rows_updated"]
        upload.rows_rejected = report["rows_rejected"]
        upload.report = dict(report)
        return report, self._feed(session, prepared, upload)

    def _feed(self, session: Session, prepared: Prepared, upload: Upload) -> Pending:
        report = prepared.report
        activity = add_activity(
            session,
            type="upload",
            action="uploaded" if report["status"] != "rejected" else "rejected",
            title=f"{upload.filename} ({upload.kind}): {report['rows_inserted']} inserted, "
            f"{report['rows_updated']} updated, {report['rows_rejected']} rejected",
            entity_type="upload",
            entity_id=upload.id,
            status=report["status"],
            user=upload.uploaded_by,
        )
        pending = Pending([activity], [])
        if report["rows_rejected"] or report["status"] == "rejected":
            cause = prepared.errors or prepared.strict_failures
            first = cause[0]["message"] if cause else ""
            pending.notifications.append(
                add_notification(
                    session,
                    type="upload_rejected",
                    category="upload",
                    severity="error" if report["status"] == "rejected" else "warning",
                    title=f"{report['rows_rejected']} rows rejected in {upload.filename}",
                    message=f"{report['errors_total']} errors in {upload.kind} upload "
                    f"{upload.id}; first: {first}",
                    entity_type="upload",
                    entity_id=upload.id,
                    user=upload.uploaded_by,
                )
            )
        return pending

    def _finish(
        self, prepared: Prepared, committed: tuple[dict[str, Any], Pending]
    ) -> dict[str, Any]:
        report, pending = committed
        announce(self.hub, pending.activities, pending.notifications)
        counts = {
            k: report[k] for k in ("rows_read", "rows_inserted", "rows_updated", "rows_rejected")
        }
        self.hub.publish(
            Event(
                DATASETS,
                "dataset.uploaded",
                {"kind": report["kind"], "upload_id": report["upload_id"], **counts},
            )
        )
        changed = report["rows_inserted"] + report["rows_updated"] + report["rows_deleted"]
        if changed:
            days = np.unique(pd.to_datetime(prepared.rows["date"]).to_numpy(dtype="datetime64[D]"))
            dates = [str(day) for day in days]
            self.hub.publish(
                Event(DATASETS, "market.updated", {"kind": report["kind"], "dates": dates})
            )
        self.log.info(
            "upload %s %s (%s): %s", report["upload_id"], report["filename"], report["kind"], counts
        )
        if report["status"] == "rejected" and prepared.request.strict:
            raise Invalid(
                f"strict upload rejected: {_strict_reason(prepared.strict_failures)}",
                code="upload_rejected",
                details=self._response(report),
            )
        return self._response(report)

    def _discard(self, prepared: Prepared) -> None:
        if prepared.storage_key:
            self.storage.delete(prepared.storage_key)

    @staticmethod
    def _response(report: dict[str, Any]) -> dict[str, Any]:
        shown = dict(report)
        shown["errors"] = report["errors"][:REPORT_ERRORS]
        shown["warnings"] = report["warnings"][:REPORT_ERRORS]
        return shown


def _strict_reason(failures: list[dict[str, Any]]) -> str:
    days = sum(1 for f in failures if f["rule"] == "incomplete_day")
    errors = len(failures) - days
    parts = [f"{errors} row error{'s' * (errors != 1)}"] if errors else []
    if days:
        parts.append(f"{days} incomplete day{'s' * (days != 1)}")
    return ", ".join(parts)


def _date_span(frame: pd.DataFrame) -> dict[str, Any]:
    if frame.empty:
        return {"from": None, "to": None, "days": 0}
    dates = pd.to_datetime(frame["date"])
    return {
        "from": dates.min().date().isoformat(),
        "to": dates.max().date().isoformat(),
        "days": int(dates.nunique()),
    }


def _preview(frame: pd.DataFrame) -> list[dict[str, Any]]:
    head = frame.head(PREVIEW_ROWS).copy()
    head["date"] = pd.to_datetime(head["date"]).dt.strftime("%Y-%m-%d")
    head = head.astype(object).where(head.notna(), None)
    return [{str(k): v for k, v in row.items()} for row in head.to_dict(orient="records")]
