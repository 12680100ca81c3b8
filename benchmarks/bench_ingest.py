"""Ingest and market analytics against their raw baselines, on SQLite and PostgreSQL.

- upload: a year of 15-minute blocks (35,040 rows x 13 columns) as xlsx and csv, and a
  financial year of exchange prices laid out as the exchange's own download (FY 2023-24,
  35,136 blocks: title rows, a merged ``Date | Hour | Time Block`` header over a units row,
  Date and Hour merged down, range labels, a summary table), through the service to committed
  rows into an empty table. Baselines, measured interleaved with ours in each repetition:
  xlsx - a bare python_calamine read of the same bytes; csv - a bare pandas ``read_csv`` plus
  the raw bulk insert of the same rows into the same table (sqlite3 executemany of ready-made
  tuples / psycopg binary COPY of the ready-made stream, the drivers' fastest paths);
- stats: p99 of /market/stats queries (a day, a month) over three years, vs the same aggregate
  as raw driver SQL;
- export: a year as csv through the streaming exporter vs pandas ``to_csv`` of the same rows.

PostgreSQL: a scratch database is created on ENERGYOPS_TEST_PG_URL (default
``postgresql+psycopg:///test``) and dropped afterwards.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from openpyxl import Workbook
from python_calamine import CalamineWorkbook
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from energyops_ext.config import Settings
from energyops_ext.db import Database, upgrade
from energyops_ext.db.base import UTCDateTime, utcnow
from energyops_ext.db.models import Upload as UploadRecord
from energyops_ext.events import EventHub
from energyops_ext.ingest import demo, market, store
from energyops_ext.ingest.parse import block_label
from energyops_ext.ingest.schemas import get_kind
from energyops_ext.ingest.service import IngestService, UploadRequest
from energyops_ext.storage import LocalStorage

from .harness import Figure, Result, benchmark, percentile, timed

YEAR_START = date(2024, 1, 1)
PG_ADMIN_URL = os.environ.get("ENERGYOPS_TEST_PG_URL", "postgresql+psycopg:///test")
COLUMNS = {
    "TimePeriod": None,
    "Timeblock": None,
    "DAMprice": "dam_price",
    "RTMprice": "rtm_price",
    "GDAMprice": "gdam_price",
    "ScheduleMW": "scheduled_mw",
    "ModelresultMW": "model_result_mw",
    "PurchaseBidMW": "purchase_bid_mw",
    "SellBidMW": "sell_bid_mw",
    "State": "state",
    "PlantName": "plant_name",
    "Region": "region",
    "ContractName": "contract_name",
}


UPLOAD_REPEAT = 5
FY_START = date(2023, 4, 1)  # FY 2023-24: 366 days (29 February 2024), 35,136 blocks
EXCHANGE_HEADER = [
    "Date | Hour | Time Block",
    None,
    None,
    "Purchase Bid",
    "Sell Bid",
    "MCV",
    "Final Scheduled Volume",
    "MCP",
]


def year_frame() -> pd.DataFrame:
    days = (date(2025, 1, 1) - YEAR_START).days - 1  # 365 days: 35,040 rows
    snap = demo.generate(YEAR_START, days)["market-snapshot"]
    full = demo._blocks_frame(YEAR_START, days).merge(snap, on=["date", "block"], how="left")
    full = full.ffill()
    stamp = full["date"] + pd.to_timedelta((full["block"] - 1) * 15, unit="min")
    out = pd.DataFrame(
        {"TimePeriod": stamp.dt.strftime("%Y-%m-%d %H:%M:%S"), "Timeblock": full["block"]}
    )
    for header, column in COLUMNS.items():
        if column is not None:
            out[header] = full[column]
    return out


def write_files(frame: pd.DataFrame, directory: Path) -> dict[str, Path]:
    csv_path = directory / "year.csv"
    frame.to_csv(csv_path, index=False)
    xlsx_path = directory / "year.xlsx"
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Market Data")
    sheet.append(list(frame.columns))
    for row in frame.itertuples(index=False):
        sheet.append(list(row))
    book.save(xlsx_path)
    return {"csv": csv_path, "xlsx": xlsx_path}


def write_exchange_year(path: Path) -> Path:
    """FY 2023-24 of DAM prices as the exchange's download lays them out (see the module)."""
    days = (FY_START.replace(year=FY_START.year + 1) - FY_START).days
    prices = demo.generate(FY_START, days)["market-snapshot"].set_index(["date", "block"])
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Market Snapshot")
    sheet.append(["Indian Energy Exchange - Day Ahead Market"])
    sheet.append([f"Market Snapshot from {FY_START:%d-%m-%Y} for {days} days"])
    sheet.append([])
    sheet.append(EXCHANGE_HEADER)
    sheet.append([None, None, None, "(MW)", "(MW)", "(MW)", "(MW)", "(Rs/MWh) *"])
    mcp = prices["dam_price"].to_dict()
    for offset in range(days):
        day = pd.Timestamp(FY_START + timedelta(days=offset))
        for block in range(1, 97):
            price = float(mcp.get((day, block), 4000.0))
            sell = 9000.0 + 20 * block + offset
            purchase = 16000.0 - price
            sheet.append(
                [
                    day.strftime("%d-%m-%Y") if block == 1 else None,
                    (block - 1) // 4 + 1 if block % 4 == 1 else None,
                    block_label(block).replace("-", " - "),
                    round(purchase, 2),
                    round(sell, 2),
                    round(min(purchase, sell) * 0.8, 2),
                    round(min(purchase, sell) * 0.79, 2),
                    round(price, 2),
                ]
            )
    sheet.append(["Total", None, None, 1.0e8, 1.0e8, 8.0e7, 7.9e7, None])
    sheet.append([])
    sheet.append(["Period", "Avg MCP"])
    for name in ("RTC", "Day", "Night", "Peak"):
        sheet.append([name, 5000.0])
    book.save(path)
    return path


@contextmanager
def databases(tmp: Path) -> Iterator[dict[str, str]]:
    name = f"energyops_bench_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    pg = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield {"sqlite": f"sqlite:///{tmp / 'bench.db'}", "postgresql": pg}
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _service(url: str, tmp: Path) -> IngestService:
    db = Database(url)
    upgrade(db.write_engine)
    settings = Settings.for_data_dir(tmp, db_url=url)
    return IngestService(
        settings, db, LocalStorage(tmp / "files"), EventHub(), logging.getLogger("bench")
    )


def _empty(service: IngestService, table: str = "market_snapshot") -> None:
    """An empty table, as a new period's upload meets its range: on PostgreSQL a DELETE would
    leave the deleted rows' index entries, which the next COPY of the same keys checks one by
    one until a vacuum (SQLite's DELETE of every row empties the table)."""
    empty = "TRUNCATE" if service.db.kind == "postgresql" else "DELETE FROM"
    with service.db.write_engine.begin() as conn:
        conn.execute(text(f"{empty} {table}"))


@dataclass
class Upload:
    """One file of the upload figures: what it is, its kind and request fields."""

    label: str
    path: Path
    kind: str
    defaults: dict[str, str] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return get_kind(self.kind).table

    def request(self) -> UploadRequest:
        return UploadRequest(self.kind, self.path, self.path.name, defaults=self.defaults)


def _upload_record(session: Session, kind: str) -> int:
    record = UploadRecord(
        kind=kind, filename="baseline", size=0, sha256="", mode="upsert", status="stored"
    )
    session.add(record)
    session.flush()
    return int(record.id)


@dataclass
class RawRows:
    """The rows an upload stores, made ready outside any timing for the raw insert baseline:
    the same values, the same ``upload_id`` (a real upload record) and ``updated_at`` as our
    path binds them, as the binary COPY stream (PostgreSQL) or tuples (SQLite executemany)."""

    columns: list[str]
    blocks: list[bytes]
    tuples: list[tuple[Any, ...]]

    def insert(self, service: IngestService, table: str) -> None:
        with service.db.write_engine.begin() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            names = ", ".join(self.columns)
            if conn.dialect.name == "postgresql":
                statement = f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)"
                with raw.cursor() as cur, cur.copy(statement) as cp:
                    for block in self.blocks:
                        cp.write(block)
                return
            marks = ", ".join("?" for _ in self.columns)
            raw.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", self.tuples)


def _raw_rows(service: IngestService, upload: Upload) -> RawRows:
    kind = get_kind(upload.kind)
    frame = service.prepare(UploadRequest(**{**upload.request().__dict__, "dry_run": True})).rows
    columns = store._columns(kind)
    dialect = service.db.write_engine.dialect
    stamp = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    now = utcnow()
    upload_id = service.db.write_sync(functools.partial(_upload_record, kind=kind.name))
    extra = {"upload_id": upload_id, "updated_at": stamp(now) if stamp else now}
    rows = store.Rows(frame, columns, kind.table, extra)
    if dialect.name == "postgresql":
        return RawRows(rows.names, list(rows.copy_binary()), [])
    return RawRows(rows.names, [], rows.tuples())


def _bare_read(upload: Upload) -> Callable[[], object]:
    if upload.path.suffix == ".csv":
        return lambda: pd.read_csv(upload.path)
    return lambda: CalamineWorkbook.from_path(upload.path).get_sheet_by_index(0).to_python()


def _median_spread(samples: list[float]) -> tuple[float, str]:
    return statistics.median(samples), f"{min(samples):.3f}-{max(samples):.3f}"


def upload_figure(service: IngestService, upload: Upload, backend: str) -> tuple[Figure, str]:
    """Ours and the baselines, interleaved in each repetition so that a burst of load on the
    machine falls on both; the figure is the median of each, the note their spread and, for
    xlsx, ours against the read plus the raw insert too (what no upload can go below)."""
    read = _bare_read(upload)
    raw = _raw_rows(service, upload)
    ours: list[float] = []
    reads: list[float] = []
    inserts: list[float] = []
    for _ in range(UPLOAD_REPEAT):
        _empty(service, upload.table)
        start = time.perf_counter()
        read()
        reads.append(time.perf_counter() - start)
        start = time.perf_counter()
        raw.insert(service, upload.table)
        inserts.append(time.perf_counter() - start)
        _empty(service, upload.table)
        start = time.perf_counter()
        report = service.upload_sync(upload.request())
        ours.append(time.perf_counter() - start)
        assert report["rows_inserted"] in (35_040, 35_136) and not report["errors_total"], report
    csv = upload.path.suffix == ".csv"
    both = [r + i for r, i in zip(reads, inserts, strict=True)]
    value, value_spread = _median_spread(ours)
    baseline, baseline_spread = _median_spread(both if csv else reads)
    figure = Figure(
        f"upload {upload.label} ({backend})",
        value,
        "s",
        baseline=baseline,
        baseline_name="read_csv + raw bulk insert" if csv else "bare python_calamine read",
        goal="<= 3x" if csv else "<= 2x",
    )
    note = f"{figure.name}: ours {value_spread} s, baseline {baseline_spread} s"
    if not csv:
        floor = statistics.median(both)
        note += f", read + raw insert {floor:.3f} s (ours {value / floor:.2f}x)"
    return figure, note


def upload_figures(
    service: IngestService, uploads: list[Upload], backend: str
) -> tuple[list[Figure], list[str]]:
    results = [upload_figure(service, upload, backend) for upload in uploads]
    _empty(service, "exchange_prices")
    return [f for f, _ in results], [n for _, n in results]


RAW_STATS = (
    "SELECT count(*), avg(dam_price), avg(rtm_price), avg(gdam_price), sum(scheduled_mw), "
    "sum(model_result_mw), sum(purchase_bid_mw), sum(sell_bid_mw), max(updated_at) "
    "FROM market_snapshot WHERE date >= {p} AND date <= {p}"
)


def stats_figures(service: IngestService, backend: str) -> list[Figure]:
    _empty(service)
    demo.load(service.db, YEAR_START - timedelta(days=365 * 2), 365 * 3)
    rng = random.Random(3)
    spans = []
    for i in range(300):
        start = YEAR_START - timedelta(days=rng.randrange(0, 365 * 3 - 31))
        spans.append(market.DateRange(start, start + timedelta(days=0 if i % 2 else 30)))
    ours: list[float] = []
    raw: list[float] = []
    for span in spans:
        t = time.perf_counter()
        service.db.read_sync(functools.partial(market.stats, span=span))
        ours.append(time.perf_counter() - t)
    mark = "%s" if backend == "postgresql" else "?"
    sql = RAW_STATS.format(p=mark)
    with service.db.read_engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        for span in spans:
            assert span.start is not None and span.end is not None
            t = time.perf_counter()
            cur = driver.cursor()
            cur.execute(sql, (span.start.isoformat(), span.end.isoformat()))
            cur.fetchall()
            cur.close()
            raw.append(time.perf_counter() - t)
    return [
        Figure(
            f"stats p99, 3 years ({backend})",
            percentile(ours, 99) * 1000,
            "ms",
            baseline=percentile(raw, 99) * 1000,
            baseline_name="raw driver SQL aggregate",
            goal="<= 20 ms",
        )
    ]


def export_figure(service: IngestService, backend: str) -> Figure:
    span = market.DateRange(YEAR_START, YEAR_START + timedelta(days=364))

    def ours() -> int:
        return sum(len(c) for c in market.csv_chunks(service.db.read_engine, span, False))

    frame = service.db.read_sync(
        lambda s: pd.DataFrame(s.execute(market._per_block(span)).mappings().all())
    )

    def bare() -> object:
        return frame.to_csv(index=False)

    return Figure(
        f"export year csv ({backend})",
        timed(ours, repeat=3),
        "s",
        baseline=timed(bare, repeat=3),
        baseline_name="pandas to_csv of the same rows",
    )


@benchmark("ingest")
def ingest() -> Result:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = write_files(year_frame(), tmp)
        uploads = [
            Upload("year xlsx", files["xlsx"], "market-snapshot"),
            Upload("year csv", files["csv"], "market-snapshot"),
            Upload(
                "exchange FY24 xlsx",
                write_exchange_year(tmp / "FY24.xlsx"),
                "exchange-prices",
                {"market": "DAM"},
            ),
        ]
        sizes = ", ".join(f"{u.path.name} {u.path.stat().st_size / 1e6:.1f} MB" for u in uploads)
        notes = [f"a year = 35,040 rows x 13 columns, FY24 = 35,136 rows x 8 ({sizes})"]
        with databases(tmp) as urls:
            for backend, url in urls.items():
                service = _service(url, tmp / backend)
                try:
                    upload_results, spreads = upload_figures(service, uploads, backend)
                    figures += upload_results
                    notes += spreads
                    figures += stats_figures(service, backend)
                    figures.append(export_figure(service, backend))
                finally:
                    service.db.close()
    return Result("ingest", figures, notes="; ".join(notes))
