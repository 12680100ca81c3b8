"""Migration 0009 (dataset rows keyed by their key, no id): rows stored at 0008 read the same
after it, uploads upsert into them, and a downgrade gives every row an id again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import inspect

from energyops_ext.db import Database, upgrade
from energyops_ext.db.migrate import alembic_config
from energyops_ext.ingest.schemas import KINDS
from energyops_ext.ingest.store import store_rows

from .test_datasets import DAY

STAMP = datetime(2026, 3, 1, 4, 30, tzinfo=UTC)
KEY_VALUES = {"plant": "P1", "contract": "", "market": "DAM", "area": "system"}
KEY_VALUES |= {"plant_id": "G1", "region": "WR", "state": "MH", "storage_type": "battery"}


@pytest.fixture
def at_0008(empty_db_url: str) -> Iterator[Database]:
    db = Database(empty_db_url)
    upgrade(db.write_engine, "0008")
    yield db
    db.close()


def old_rows(table: str) -> list[dict[str, object]]:
    kind = next(k for k in KINDS.values() if k.table == table)
    return [
        {
            "date": DAY,
            "block": block,
            **{key: KEY_VALUES[key] for key in kind.extra_keys},
            kind.value_columns[0].name: float(block),
            "upload_id": 7,
            "updated_at": STAMP,
        }
        for block in (3, 1, 2)
    ]


def table_of(bind: sa.Engine | sa.Connection, name: str) -> sa.Table:
    return sa.Table(name, sa.MetaData(), autoload_with=bind)


def contents(engine: sa.Engine, name: str) -> list[tuple[object, ...]]:
    table = table_of(engine, name)
    columns = [c for c in table.columns if c.name != "id"]
    with engine.connect() as conn:
        return sorted((tuple(row) for row in conn.execute(sa.select(*columns))), key=repr)


def key_order(engine: sa.Engine, name: str) -> list[str]:
    """The primary key's columns in index order (date first, as readers scan)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.execute(sa.text(f"PRAGMA index_list({name})")).all()
            (index,) = [r.name for r in rows if r.origin == "pk"]
            return [r.name for r in conn.execute(sa.text(f"PRAGMA index_info({index})"))]
        query = sa.text(
            "SELECT a.attname FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(n, pos) "
            "JOIN pg_attribute a ON a.attnum = k.n "
            "WHERE i.indrelid = CAST(:t AS regclass) AND i.indisprimary "
            "AND a.attrelid = i.indrelid ORDER BY k.pos"
        )
        return list(conn.execute(query, {"t": name}).scalars())


def test_rows_survive_the_migration_both_ways(at_0008: Database) -> None:
    engine = at_0008.write_engine
    tables = [k.table for k in KINDS.values()]
    with engine.begin() as conn:
        for name in tables:
            conn.execute(table_of(conn, name).insert(), old_rows(name))
    before = {name: contents(engine, name) for name in tables}

    upgrade(engine)
    found = inspect(engine)
    for name, kind in ((k.table, k) for k in KINDS.values()):
        assert contents(engine, name) == before[name]
        assert "id" not in {c["name"] for c in found.get_columns(name)}
        assert set(found.get_pk_constraint(name)["constrained_columns"]) == set(kind.key)
        assert found.get_unique_constraints(name) == []
        assert key_order(engine, name) == list(kind.stored_key)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            sql = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = 'uploads'"))
            assert "WITHOUT ROWID" not in sql.scalar_one()
            sql = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = 'market_bids'"))
            assert sql.scalar_one().rstrip().endswith("WITHOUT ROWID")

    kind = KINDS["exchange-prices"]
    frame = pd.DataFrame(
        {"date": [DAY, date(2024, 4, 14)], "block": [1, 1], "market": "DAM", "area": "system"}
    )
    for col in kind.columns:
        if col.name not in frame:
            frame[col.name] = 9.0 if col.numeric else None
    with engine.begin() as conn:
        result = store_rows(conn, kind, frame, upload_id=8)
    assert (result.inserted, result.updated) == (1, 1)

    command.downgrade(alembic_config(engine), "0008")
    found = inspect(engine)
    for name in tables:
        assert found.get_pk_constraint(name)["constrained_columns"] == ["id"]
        expected = 4 if name == kind.table else 3
        with engine.connect() as conn:
            ids = conn.execute(sa.select(table_of(engine, name).c.id)).scalars().all()
        assert sorted(ids) == list(range(1, expected + 1))
    assert contents(engine, "market_bids") == before["market_bids"]
    with engine.begin() as conn:
        extra = {**old_rows("market_bids")[0], "block": 9}
        conn.execute(table_of(conn, "market_bids").insert(), [extra])
        new_id = conn.execute(sa.text("SELECT max(id) FROM market_bids")).scalar_one()
    assert new_id == 4
