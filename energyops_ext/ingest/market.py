"""Market snapshot statistics, per-block series and exports, computed by the database.

All three read ``market_snapshot``. When several plants or contracts share a block, a block's
prices are the average over its rows and its MW figures are the sum (the desk's position);
``stats`` averages prices and sums MW over all rows of the range.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, func, select
from sqlalchemy.orm import Session

from ..db.models import MarketSnapshot as M
from ..errors import BadRequest
from .coverage import MissingRun, block_ranges, block_times
from .parse import block_label

PRICE_FIELDS = ("dam_price", "rtm_price", "gdam_price")
MW_FIELDS = ("scheduled_mw", "model_result_mw", "purchase_bid_mw", "sell_bid_mw")
EXPORT_HEADER = (
    "Timeblock",
    "DAM",
    "RTM",
    "GDAM",
    "Purchase Bid MW",
    "Sell Bid MW",
    "Scheduled MW",
    "Model Result MW",
)
EXPORT_FIELDS = (*PRICE_FIELDS, "purchase_bid_mw", "sell_bid_mw", "scheduled_mw", "model_result_mw")
MAX_SNAPSHOT_DAYS = 366
HOURS_PER_BLOCK = 0.25  # a block is 15 minutes: MWh = MW x 0.25
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class DateRange:
    start: date | None
    end: date | None

    @property
    def days(self) -> int | None:
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).days + 1

    def json(self) -> dict[str, str | None]:
        return {
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
        }


def parse_date(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise BadRequest(
            f"{field} must be a date YYYY-MM-DD, got {value!r}",
            code="invalid_parameter",
            details={"field": field},
        ) from None


def date_range(day: str | None, start: str | None, end: str | None) -> DateRange:
    """``date`` alone, or ``from`` and/or ``to``; neither means everything."""
    if day and (start or end):
        raise BadRequest(
            "give either date or from/to, not both",
            code="invalid_parameter",
            details={"field": "date"},
        )
    if day:
        one = parse_date(day, "date")
        return DateRange(one, one)
    lo = parse_date(start, "from") if start else None
    hi = parse_date(end, "to") if end else None
    if lo and hi and lo > hi:
        raise BadRequest(
            f"from ({lo}) is after to ({hi})", code="invalid_parameter", details={"field": "from"}
        )
    return DateRange(lo, hi)


def _where(query: Any, span: DateRange) -> Any:
    if span.start is not None:
        query = query.where(M.date >= span.start)
    if span.end is not None:
        query = query.where(M.date <= span.end)
    return query


def stats(session: Session, span: DateRange) -> dict[str, Any]:
    """Row count, average prices and MW totals over the rows of the range; per MW figure, the
    energy in MWh (each row's MW held for its 15-minute block) and the average MW of a block
    (a block being the sum over its rows, the desk's position) over the blocks that have a
    value; ``blocks`` counts the (date, block) pairs with any row."""
    query = _where(
        select(
            func.count(),
            *(func.avg(getattr(M, f)) for f in PRICE_FIELDS),
            *(func.sum(getattr(M, f)) for f in MW_FIELDS),
            func.max(M.updated_at),
        ),
        span,
    )
    row = session.execute(query).one()
    result: dict[str, Any] = {**span.json(), "count": int(row[0])}
    for i, name in enumerate(PRICE_FIELDS, start=1):
        result[f"avg_{name}"] = _round(row[i])
    for i, name in enumerate(MW_FIELDS, start=1 + len(PRICE_FIELDS)):
        result[f"total_{name}"] = _round(row[i])
        result[f"energy_{name.removesuffix('_mw')}_mwh"] = _round(energy_mwh(row[i]))
    last = row[-1]
    result["last_updated"] = _as_utc_iso(last)
    result.update(_block_averages(session, span))
    return result


def _block_averages(session: Session, span: DateRange) -> dict[str, Any]:
    """``blocks`` and each MW figure's average over the blocks that have a value (AVG skips a
    block whose rows all lack it)."""
    blocks = _per_block(span).order_by(None).subquery()
    row = session.execute(
        select(func.count(), *(func.avg(blocks.c[f]) for f in MW_FIELDS)).select_from(blocks)
    ).one()
    averages: dict[str, Any] = {"blocks": int(row[0])}
    for i, name in enumerate(MW_FIELDS, start=1):
        averages[f"avg_{name}"] = _round(row[i])
    return averages


def energy_mwh(total_block_mw: Any) -> float | None:
    """MWh from a sum of block MW: each block holds its MW for a quarter of an hour."""
    return None if total_block_mw is None else float(total_block_mw) * HOURS_PER_BLOCK


def _as_utc_iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite aggregates come back as text
        return value.replace(" ", "T") + ("" if "+" in value else "+00:00")
    iso: str = value.isoformat()
    return iso if value.tzinfo else iso + "+00:00"


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def _per_block(span: DateRange) -> Any:
    columns = [
        *(func.avg(getattr(M, f)).label(f) for f in PRICE_FIELDS),
        *(func.sum(getattr(M, f)).label(f) for f in MW_FIELDS),
    ]
    query = select(M.date, M.block, *columns).group_by(M.date, M.block)
    return _where(query, span).order_by(M.date, M.block)


def latest_date(session: Session) -> date | None:
    value: date | None = session.scalar(select(func.max(M.date)))
    return value


def snapshot(session: Session, span: DateRange) -> dict[str, Any]:
    """96 rows per day of the range (nulls where a block has no data)."""
    if span.start is None or span.end is None:
        last = latest_date(session)
        span = DateRange(span.start or span.end or last, span.end or span.start or last)
    if span.start is None or span.end is None:
        return {"from": None, "to": None, "rows": []}
    days = span.days or 0
    if days > MAX_SNAPSHOT_DAYS:
        raise BadRequest(
            f"the range has {days} days; the limit for a snapshot is {MAX_SNAPSHOT_DAYS}",
            code="invalid_parameter",
            details={"field": "to"},
        )
    found = {(r.date, r.block): r for r in session.execute(_per_block(span))}
    rows = []
    for offset in range(days):
        day = span.start + timedelta(days=offset)
        for block in range(1, 97):
            r = found.get((day, block))
            item: dict[str, Any] = {
                "date": day.isoformat(),
                "block": block,
                "timeblock": block_label(block),
            }
            for name in (*PRICE_FIELDS, *MW_FIELDS):
                item[name] = _round(getattr(r, name)) if r is not None else None
            rows.append(item)
    return {**span.json(), "rows": rows}


def neutralize(text: str) -> str:
    """Text a spreadsheet could run as a formula gets a leading quote."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _export_query(span: DateRange, by_plant: bool) -> Any:
    if not by_plant:
        return _per_block(span)
    query = select(
        M.date,
        M.block,
        M.plant_name,
        M.contract_name,
        *(getattr(M, f).label(f) for f in (*PRICE_FIELDS, *MW_FIELDS)),
    )
    return _where(query, span).order_by(M.date, M.block, M.plant, M.contract)


def export_header(span: DateRange, by_plant: bool) -> list[str]:
    header = list(EXPORT_HEADER)
    if by_plant:
        header[1:1] = ["Plant", "Contract"]
    if span.days != 1:
        header.insert(0, "Date")
    return header


def export_rows(conn: Connection, span: DateRange, by_plant: bool) -> Iterator[list[Any]]:
    """Export rows (text cells already neutralized), streamed from the database."""
    with_date = span.days != 1
    result = conn.execution_options(stream_results=True, yield_per=2000).execute(
        _export_query(span, by_plant)
    )
    for r in result:
        yield _export_row(r, with_date, by_plant)


def _export_row(r: Row[Any], with_date: bool, by_plant: bool) -> list[Any]:
    row: list[Any] = [r.date.isoformat()] if with_date else []
    row.append(block_label(r.block))
    if by_plant:
        row += [neutralize(r.plant_name or ""), neutralize(r.contract_name or "")]
    row += [_round(getattr(r, f)) for f in EXPORT_FIELDS]
    return row


def csv_chunks(
    engine: Engine, span: DateRange, by_plant: bool, rows: int = 5000
) -> Iterator[bytes]:
    """The csv export in chunks of ``rows`` lines (call from a worker thread)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(export_header(span, by_plant))
    count = 0
    with engine.connect() as conn:
        for row in export_rows(conn, span, by_plant):
            writer.writerow(["" if v is None else v for v in row])
            count += 1
            if count % rows == 0:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue().encode()


def write_xlsx(
    engine: Engine,
    span: DateRange,
    by_plant: bool,
    target: Any,
    missing: list[MissingRun] | None = None,
) -> None:
    """The xlsx export, written with openpyxl's write-only mode to ``target`` (a path); a
    second sheet, "Missing blocks", lists the blocks without a row when there are any."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Market Data")
    sheet.append(export_header(span, by_plant))
    with engine.connect() as conn:
        for row in export_rows(conn, span, by_plant):
            sheet.append(row)
    if missing:
        note = book.create_sheet("Missing blocks")
        note.append(["From", "To", "Blocks", "Timeblocks"])
        for run in missing:
            first, last = run.first.isoformat(), run.last.isoformat()
            note.append([first, last, block_ranges(run.blocks), block_times(run.blocks)])
    book.save(target)
