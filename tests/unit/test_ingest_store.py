"""Bulk writes on both databases: a new range goes straight in, an existing one is upserted,
both leave the same rows and timestamps; on PostgreSQL a key committed by another writer
between the look and the insert falls back to the upsert."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import Connection, select, text

from energyops_ext.db import Database
from energyops_ext.db.models import DATASET_MODELS, MarketSnapshot
from energyops_ext.ingest.schemas import get_kind
from energyops_ext.ingest.store import StoreResult, _pg_types, store_rows

KIND = get_kind("market-snapshot")
DAY = date(2024, 4, 13)
NOW = datetime(2024, 4, 14, 6, 30, 15, 250000, tzinfo=UTC)
M = MarketSnapshot


def rows(days: int = 1, price: float = 3000.0) -> pd.DataFrame:
    frame = pd.DataFrame(
        [
            {"date": pd.Timestamp(DAY + timedelta(days=d)), "block": b, "dam_price": price + b}
            for d in range(days)
            for b in range(1, 97)
        ]
    )
    for col in KIND.columns:
        if col.name not in frame:
            frame[col.name] = "" if col.name in ("plant", "contract") else None
    return frame


def store(db: Database, frame: pd.DataFrame, mode: str = "upsert") -> StoreResult:
    def write(conn: Connection) -> StoreResult:
        return store_rows(conn, KIND, frame, upload_id=None, mode=mode, now=NOW)

    with db.write_engine.begin() as conn:
        return write(conn)


def stored(db: Database) -> list[tuple[date, int, float, datetime]]:
    with db.read_engine.connect() as conn:
        result = conn.execute(
            select(M.date, M.block, M.dam_price, M.updated_at).order_by(M.date, M.block)
        )
        return [tuple(r) for r in result]


def raw_stamps(db: Database) -> set[str]:
    with db.read_engine.connect() as conn:
        return {str(v) for v in conn.execute(text("SELECT updated_at FROM market_snapshot"))}


def test_new_and_existing_ranges_store_the_same_rows(database: Database) -> None:
    assert store(database, rows(2)) == StoreResult(192, 0, 0)  # straight into the table
    direct_rows, direct_stamps = stored(database), raw_stamps(database)
    assert len(direct_rows) == 192 and {r[3] for r in direct_rows} == {NOW}
    assert store(database, rows(2)) == StoreResult(0, 192, 0)  # staged upsert
    assert stored(database) == direct_rows and raw_stamps(database) == direct_stamps
    assert store(database, rows(3, price=4000.0)) == StoreResult(96, 192, 0)
    assert store(database, rows(1, price=5000.0), mode="replace") == StoreResult(96, 0, 96)
    prices = {(r[0], r[1]): r[2] for r in stored(database)}
    assert prices[(DAY, 1)] == 5001.0 and prices[(DAY + timedelta(days=2), 1)] == 4001.0
    assert len(prices) == 288


def test_a_key_committed_between_look_and_insert_is_upserted(
    database: Database, db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite holds its write lock from BEGIN IMMEDIATE: no writer in between")
    other = database.write_engine.connect()
    other_tx = other.begin()
    # Another writer has inserted block 5 of the same day and not committed yet: the look
    # sees nothing, the COPY waits on that key.
    other.execute(
        text(
            "INSERT INTO market_snapshot (date, block, plant, contract, dam_price, updated_at) "
            "VALUES (:d, 5, '', '', 1.0, :t)"
        ),
        {"d": DAY, "t": NOW},
    )
    result: list[StoreResult] = []
    writer = threading.Thread(target=lambda: result.append(store(database, rows())))
    writer.start()
    deadline = time.monotonic() + 30
    with database.read_engine.connect() as conn:
        query = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        while conn.execute(query).scalar_one() == 0:
            assert time.monotonic() < deadline, "the insert never waited on the other writer"
            conn.rollback()
            time.sleep(0.01)
    other_tx.commit()
    other.close()
    writer.join(30)
    assert result == [StoreResult(95, 1, 0)]
    prices = {r[1]: r[2] for r in stored(database)}
    assert len(prices) == 96 and prices[5] == 3005.0


AWKWARD = ["tab\there", "line\nbreak", "cr\rreturn", "back\\slash", "\\N", "\\.", "ünï €", ""]


def test_every_value_reads_back_as_written_through_the_bulk_path(database: Database) -> None:
    """COPY's text format escapes tab, newline, CR and backslash; a literal ``\\N`` is text,
    not NULL; floats come back as the same doubles; missing stays NULL."""
    frame = rows()
    n = len(AWKWARD)
    frame.loc[: n - 1, "plant_name"] = AWKWARD
    frame.loc[n, "plant_name"] = None
    frame.loc[: n - 1, "state"] = AWKWARD[::-1]
    frame["rtm_price"] = [0.1 + 0.2, 1e-300, 12345678.123456789, -0.0, float("nan")] * 19 + [7.0]
    assert store(database, frame) == StoreResult(96, 0, 0)
    with database.read_engine.connect() as conn:
        got = conn.execute(
            select(M.block, M.plant_name, M.state, M.rtm_price, M.updated_at).order_by(M.block)
        ).all()
    assert [r.plant_name for r in got[:n]] == AWKWARD
    assert got[n].plant_name is None
    assert [r.state for r in got[:n]] == AWKWARD[::-1]
    for row, expected in zip(got, frame["rtm_price"], strict=True):
        if expected != expected:
            assert row.rtm_price is None
        else:
            assert row.rtm_price == expected
    assert {r.updated_at for r in got} == {NOW}


def test_every_dataset_column_has_a_binary_copy_layout() -> None:
    for model in DATASET_MODELS.values():
        types = _pg_types(model.__tablename__)
        assert set(types) == {c.name for c in model.__table__.columns}
