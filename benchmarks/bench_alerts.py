"""Alert evaluation: 100 rules after an upload of a day of blocks (goal ≤ 100 ms), against the
raw SQL aggregate of one rule run 100 times on the driver's own connection.

The database holds 30 days of 96 blocks for 5 plants; the upload is one more day. The rules
mix the five series, both operators, per block and daily average, ``any``, a date and
blocks; about a third breach. "first" is the evaluation right after the upload (every
breaching rule makes a transition: history, notification, event); "steady" is the next one
(no transitions, every rule still written).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, insert, text, update
from sqlalchemy.engine import make_url

from energyops_ext.alerts import AlertService
from energyops_ext.alerts.store import create_rule
from energyops_ext.db import Database, upgrade
from energyops_ext.db.models import AlertHistory, AlertRule, MarketSnapshot
from energyops_ext.events import EventHub

from .harness import Figure, Result, benchmark

PG_ADMIN_URL = os.environ.get("ENERGYOPS_TEST_PG_URL", "postgresql+psycopg:///test")
DAYS = 30
PLANTS = 5
RULES = 100
REPEAT = 7
DAY = date(2025, 10, 31)
NOW = datetime(2025, 10, 31, 6, 30, tzinfo=UTC)

# one rule's aggregate, as a person would write it by hand for the driver
RAW_SQL = (
    "SELECT max(v) FROM (SELECT avg(dam_price) AS v FROM market_snapshot "
    "WHERE date = {day} AND block BETWEEN 1 AND 96 GROUP BY block) AS b"
)


def _day_rows(day: date) -> list[dict[str, Any]]:
    rows = []
    for plant in range(PLANTS):
        for block in range(1, 97):
            peak = 6000.0 if 69 <= block <= 84 else 0.0
            rows.append(
                {
                    "date": day,
                    "block": block,
                    "plant": f"P{plant}",
                    "contract": "",
                    "dam_price": 3000.0 + block * 10 + peak + plant,
                    "rtm_price": 3100.0 + block * 9 + peak,
                    "gdam_price": 2900.0 + block * 8,
                    "scheduled_mw": 100.0 + block,
                    "model_result_mw": 95.0 + block + (plant % 3),
                    "updated_at": NOW,
                }
            )
    return rows


def _rules() -> list[dict[str, Any]]:
    series = ["dam_price", "rtm_price", "gdam_price", "dam_rtm_spread", "schedule_deviation"]
    rules = []
    for i in range(RULES):
        name = series[i % len(series)]
        operator = ">" if i % 4 else "<"
        scope: dict[str, Any] = {"date": "any" if i % 3 else DAY.isoformat()}
        if i % 5 == 0:
            scope["blocks"] = [69, 84]
        base = {"dam_price": 9000, "rtm_price": 9000, "gdam_price": 3500}.get(name, 50)
        threshold = base * (0.6 + (i % 10) * 0.1)
        rules.append(
            {
                "name": f"rule {i}",
                "series": name,
                "operator": operator,
                "threshold": threshold if operator == ">" else threshold / 4,
                "aggregate": "daily_avg" if i % 7 == 0 else "block",
                "scope": scope,
                "pending_evaluations": 1 + i % 2,
                "unit": "pct" if name == "schedule_deviation" and i % 2 else "mw",
            }
        )
    return rules


def _seed(db: Database) -> None:
    def write(session: Any) -> None:
        conn = session.connection()
        for offset in range(DAYS, 0, -1):
            conn.execute(insert(MarketSnapshot), _day_rows(DAY - timedelta(days=offset)))
        for body in _rules():
            create_rule(session, body, "bench", NOW)

    db.write_sync(write)


def _upload_day(db: Database) -> None:
    db.write_sync(lambda s: s.connection().execute(insert(MarketSnapshot), _day_rows(DAY)))


def _reset(db: Database) -> None:
    def write(session: Any) -> None:
        session.execute(
            update(AlertRule).values(
                state="normal", breaches=0, last_notified_at=None, last_evaluated_at=None
            )
        )
        session.execute(delete(AlertHistory))

    db.write_sync(write)


def _measure(db: Database) -> tuple[list[float], list[float], int]:
    service = AlertService(db, EventHub(), "bench", logging.getLogger("bench"), clock=lambda: NOW)

    async def one(reset: bool) -> tuple[float, int]:
        if reset:
            await asyncio.to_thread(_reset, db)
        start = time.perf_counter()
        report = await service.evaluate("data")
        elapsed = (time.perf_counter() - start) * 1000
        assert report.evaluated == RULES and report.dropped == 0, report
        return elapsed, len(report.transitions)

    async def run() -> tuple[list[float], list[float], int]:
        await one(True)  # warm up
        firsts, steadies, transitions = [], [], 0
        for _ in range(REPEAT):
            first, transitions = await one(True)
            firsts.append(first)
            steadies.append((await one(False))[0])
        return firsts, steadies, transitions

    return asyncio.run(run())


def _raw_baseline(db: Database) -> float:
    """100 x one rule's aggregate on the driver's connection, in ms (median of REPEAT)."""
    raw = db.read_engine.raw_connection()
    try:
        day = f"'{DAY.isoformat()}'"
        sql = RAW_SQL.format(day=day)
        samples = []
        for _ in range(REPEAT):
            cursor = raw.cursor()
            start = time.perf_counter()
            for _ in range(RULES):
                cursor.execute(sql)
                cursor.fetchall()
            samples.append((time.perf_counter() - start) * 1000)
            cursor.close()
        return statistics.median(samples)
    finally:
        raw.close()


@contextmanager
def _database(kind: str, tmp: Path) -> Iterator[Database]:
    if kind == "sqlite":
        db = Database(f"sqlite:///{tmp / 'alerts.db'}")
        try:
            yield db
        finally:
            db.close()
        return
    admin_url = make_url(PG_ADMIN_URL)
    name = f"energyops_bench_alerts_{secrets.token_hex(3)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db = Database(admin_url.set(database=name))
    try:
        yield db
    finally:
        db.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _postgres_reachable() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # PostgreSQL is optional for the benchmark
        return str(exc).splitlines()[0]
    return None


@benchmark("alerts")
def alerts_benchmark() -> Result:
    figures: list[Figure] = []
    notes = [
        f"{RULES} rules over {DAYS + 1} days x 96 blocks x {PLANTS} plants; median of {REPEAT}"
    ]
    skipped = _postgres_reachable()
    kinds = ["sqlite"] if skipped else ["sqlite", "postgresql"]
    if skipped:
        notes.append(f"postgresql skipped: {skipped}")
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp:
        for kind in kinds:
            with _database(kind, Path(tmp)) as db:
                upgrade(db.write_engine)
                _seed(db)
                _upload_day(db)
                firsts, steadies, transitions = _measure(db)
                raw = _raw_baseline(db)
            baseline = f"raw SQL aggregate of one rule x {RULES}"
            figures += [
                Figure(
                    f"{RULES} rules, first evaluation after the upload ({kind})",
                    statistics.median(firsts),
                    "ms",
                    baseline=raw,
                    baseline_name=baseline,
                    goal="≤ 100 ms",
                ),
                Figure(
                    f"{RULES} rules, steady evaluation ({kind})",
                    statistics.median(steadies),
                    "ms",
                    baseline=raw,
                    baseline_name=baseline,
                    goal="≤ 100 ms",
                ),
            ]
            notes.append(f"{kind}: {transitions} transitions in the first evaluation")
    return Result("alerts", figures, "; ".join(notes))
