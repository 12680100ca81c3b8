"""A model's block results back on the market chart.

A model that writes ``model_results.csv`` (columns ``date``, ``block``, ``model_result_mw``,
optionally ``plant`` and ``contract``) to its output directory gets those values written as
``model_result_mw`` of ``market_snapshot`` when it succeeds (also after a stop that kept its
best). The engine does it where the run ran (this server or a Dask worker: both reach the
database), so the run needs no network. An upload record (kind ``market-snapshot``, with a
report like an upload's) says what was written; the other columns of a row are kept.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from ..db import utcnow
from ..db.models import Activity, MarketSnapshot, Upload
from ..feed import add_activity
from ..storage import sha256_hex

RESULTS_FILE = "model_results.csv"
MAX_ROWS = 100_000
MAX_ERRORS = 100
MW_LIMIT = 100_000.0  # storage charges below zero: -limit .. +limit
REQUIRED = ("date", "block", "model_result_mw")


@dataclass
class ParsedResults:
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    rows_read: int = 0
    errors_total: int = 0
    missing: list[str] = field(default_factory=list)

    def error(self, row: int, column: str, value: Any, rule: str) -> None:
        self.errors_total += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"row": row, "column": column, "value": value, "rule": rule})


def parse_results(text: str) -> ParsedResults:
    """Rows of ``model_results.csv``, each checked (row errors like an upload's)."""
    parsed = ParsedResults()
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    parsed.missing = [c for c in REQUIRED if c not in header]
    if parsed.missing:
        return parsed
    seen: set[tuple[str, int, str, str]] = set()
    for number, raw in enumerate(reader, start=2):
        parsed.rows_read += 1
        if parsed.rows_read > MAX_ROWS:
            parsed.error(number, "", "", f"more than {MAX_ROWS} rows; the rest is not read")
            break
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        item = _row(parsed, number, row)
        if item is None:
            continue
        key = (item["date"].isoformat(), item["block"], item["plant"], item["contract"])
        if key in seen:
            parsed.error(number, "block", item["block"], "repeated date and block")
            continue
        seen.add(key)
        parsed.rows.append(item)
    return parsed


def _row(parsed: ParsedResults, number: int, row: dict[str, str]) -> dict[str, Any] | None:
    try:
        day = date.fromisoformat(row["date"])
    except ValueError:
        parsed.error(number, "date", row["date"], "a date YYYY-MM-DD")
        return None
    try:
        block = int(row["block"])
    except ValueError:
        block = 0
    if not 1 <= block <= 96:
        parsed.error(number, "block", row["block"], "a block 1-96")
        return None
    try:
        mw = float(row["model_result_mw"])
    except ValueError:
        mw = math.nan
    if not math.isfinite(mw) or abs(mw) > MW_LIMIT:
        parsed.error(number, "model_result_mw", row["model_result_mw"], "MW -100000 to 100000")
        return None
    return {
        "date": day,
        "block": block,
        "plant": row.get("plant", ""),
        "contract": row.get("contract", ""),
        "model_result_mw": mw,
    }


def write_results(
    session: Session,
    run_id: int,
    title: str,
    data: bytes,
    user: str | None,
) -> tuple[dict[str, Any], Activity]:
    """Upsert the model results of run ``run_id`` into market_snapshot and record the upload.
    Returns the report (the upload's) and its activity."""
    parsed = parse_results(data.decode("utf-8", "replace"))
    filename = f"run-{run_id}/{RESULTS_FILE}"
    report: dict[str, Any] = {
        "kind": "market-snapshot",
        "filename": filename,
        "source": {"run_id": run_id, "script": title, "file": RESULTS_FILE},
        "columns": ["model_result_mw"],
        "rows_read": parsed.rows_read,
        "rows_inserted": 0,
        "rows_updated": 0,
        "rows_rejected": parsed.errors_total,
        "errors_total": parsed.errors_total,
        "errors": parsed.errors,
        "dates": sorted({r["date"].isoformat() for r in parsed.rows}),
    }
    if parsed.missing:
        report["status"] = "rejected"
        report["message"] = f"{RESULTS_FILE} lacks the columns {', '.join(parsed.missing)}"
    upload = Upload(
        kind="market-snapshot",
        filename=filename,
        sheet=None,
        size=len(data),
        sha256=sha256_hex(data),
        mode="upsert",
        rows_read=parsed.rows_read,
        rows_rejected=parsed.errors_total,
        status="rejected",
        report={},
        uploaded_by=user,
    )
    session.add(upload)
    session.flush()
    now = utcnow()
    model_id = f"run-{run_id}"
    for item in parsed.rows:
        values = {
            "model_result_mw": item["model_result_mw"],
            "model_id": model_id,
            "upload_id": upload.id,
            "updated_at": now,
        }
        changed = session.execute(
            update(MarketSnapshot)
            .where(
                MarketSnapshot.date == item["date"],
                MarketSnapshot.block == item["block"],
                MarketSnapshot.plant == item["plant"],
                MarketSnapshot.contract == item["contract"],
            )
            .values(**values)
        )
        if getattr(changed, "rowcount", 0):
            report["rows_updated"] += 1
        else:
            session.execute(insert(MarketSnapshot).values(**{**item, **values}))
            report["rows_inserted"] += 1
    if not parsed.missing:
        report["status"] = "partial" if parsed.errors_total else "stored"
        if not parsed.rows:
            report["status"] = "rejected"
    upload.status = report["status"]
    upload.rows_inserted = report["rows_inserted"]
    upload.rows_updated = report["rows_updated"]
    report["upload_id"] = upload.id
    upload.report = dict(report)
    activity = add_activity(
        session,
        type="upload",
        action="uploaded" if upload.status != "rejected" else "rejected",
        title=f"{filename} (model results of {title}): {report['rows_inserted']} inserted, "
        f"{report['rows_updated']} updated, {report['rows_rejected']} rejected",
        entity_type="upload",
        entity_id=upload.id,
        status=upload.status,
        user=user,
    )
    return report, activity


def block_results(text: str) -> dict[tuple[str, int], float]:
    """(date, block) → model_result_mw of a results file, summed over plants and contracts
    (for comparing runs)."""
    totals: dict[tuple[str, int], float] = {}
    for row in parse_results(text).rows:
        key = (row["date"].isoformat(), row["block"])
        totals[key] = totals.get(key, 0.0) + row["model_result_mw"]
    return totals
