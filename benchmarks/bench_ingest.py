"""Ingest and market analytics against their raw baselines, on SQLite and PostgreSQL.

- upload: a year of 15-minute blocks (35,040 rows x 13 columns) as xlsx and csv, through the
  service to committed rows, vs a bare pandas read of the same file;
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
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from openpyxl import Workbook
from sqlalchemy import create_engine, text

from energyops_ext.config import Settings
from energyops_ext.db import Database, upgrade
from energyops_ext.events import EventHub
from energyops_ext.ingest import demo, market
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


def _empty(service: IngestService) -> None:
    with service.db.write_engine.begin() as conn:
        conn.execute(text("DELETE FROM market_snapshot"))


def _median_with_reset(fn: Callable[[], object], reset: Callable[[], object], n: int = 3) -> float:
    samples = []
    for _ in range(n):
        reset()
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return sorted(samples)[n // 2]


def upload_figures(service: IngestService, files: dict[str, Path], backend: str) -> list[Figure]:
    figures = []
    for fmt, path in files.items():

        def bare(path: Path = path, fmt: str = fmt) -> object:
            if fmt == "xlsx":
                return pd.read_excel(path, engine="calamine")
            return pd.read_csv(path)

        def ours(path: Path = path) -> object:
            report = service.upload_sync(UploadRequest("market-snapshot", path, path.name))
            assert report["rows_inserted"] == 35_040, report
            return report

        baseline = timed(bare, repeat=3)
        value = _median_with_reset(ours, lambda: _empty(service))
        goal = "<= 2x bare read" + ("; <= 2 s" if fmt == "xlsx" else "")
        figures.append(
            Figure(
                f"upload year {fmt} ({backend})",
                value,
                "s",
                baseline=baseline,
                baseline_name=f"pandas read_{'excel calamine' if fmt == 'xlsx' else 'csv'}",
                goal=goal,
            )
        )
    return figures


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
        sizes = ", ".join(f"{k} {p.stat().st_size / 1e6:.1f} MB" for k, p in files.items())
        with databases(tmp) as urls:
            for backend, url in urls.items():
                service = _service(url, tmp / backend)
                try:
                    figures += upload_figures(service, files, backend)
                    figures += stats_figures(service, backend)
                    figures.append(export_figure(service, backend))
                finally:
                    service.db.close()
    return Result("ingest", figures, notes=f"a year = 35,040 rows x 13 columns ({sizes})")
