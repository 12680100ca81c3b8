"""Bulk writes of normalized rows, inside the caller's transaction.

When the table holds no row in the file's range (a new period, or ``replace`` after its
delete), the rows go straight into the dataset table with the driver's fastest path (sqlite3
executemany, psycopg COPY): nothing can conflict, so nothing needs an upsert. Otherwise they go
into a temporary staging table the same way, then one ``INSERT ... SELECT ... ON CONFLICT (key)
DO UPDATE`` moves them into the dataset table; the staging table also tells how many rows
already existed (updated vs inserted) without loading anything into Python.

SQLite writes hold the database's write lock from ``BEGIN IMMEDIATE``, so the range cannot fill
between the look and the insert. On PostgreSQL another server can commit rows of the range in
between; the direct COPY runs under a savepoint and falls back to the staged upsert when a key
turns out to exist.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from psycopg.errors import UniqueViolation
from sqlalchemy import BindParameter, Connection, Date, bindparam, text

from ..db.base import UTCDateTime, utcnow
from ..db.models import DATASET_MODELS
from . import pgbinary
from .schemas import DatasetKind


@dataclass
class StoreResult:
    inserted: int
    updated: int
    deleted: int


def _columns(kind: DatasetKind) -> list[str]:
    return ["date", "block", *(c.name for c in kind.columns)]


class Rows:
    """A frame's rows in ``columns`` order, each followed by the constant values of
    ``extra`` (column → value: the upload id and stamp), in the shapes the drivers' bulk
    paths take. The column types are those of ``table`` (a dataset table)."""

    def __init__(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        table: str,
        extra: dict[str, Any] | None = None,
    ):
        self.frame = frame
        self.columns = columns
        self.table = table
        self.extra = extra or {}

    @property
    def names(self) -> list[str]:
        """Every column the rows fill, in order."""
        return [*self.columns, *self.extra]

    def tuples(self) -> list[tuple[Any, ...]]:
        """Plain Python tuples (None for missing), dates as ISO text: for executemany."""
        data = [_values(self.frame[name], name) for name in self.columns]
        constants = [itertools.repeat(value, len(self.frame)) for value in self.extra.values()]
        return list(zip(*data, *constants, strict=True))

    def copy_binary(self) -> Iterator[bytes]:
        """The rows as PostgreSQL's binary COPY stream (``pgbinary``)."""
        types = _pg_types(self.table)
        cells = [pgbinary.encode(self.frame[name], types[name]) for name in self.columns]
        for name, value in self.extra.items():
            one = pgbinary.encode([value], types[name])
            cells.append(
                pgbinary.Cells(
                    np.broadcast_to(one.cells, (len(self.frame), one.cells.shape[1])),
                    np.broadcast_to(one.used, (len(self.frame),)),
                )
            )
        return pgbinary.rows(cells)


@functools.cache
def _pg_types(table: str) -> dict[str, str]:
    """Column → binary layout of a dataset table; a column type without one is a bug here,
    caught by the tests that write every dataset kind."""
    (model,) = (m for m in DATASET_MODELS.values() if m.__tablename__ == table)
    types: dict[str, str] = {}
    for column in model.__table__.columns:
        layout = pgbinary.pg_type(column.type)
        if layout is None:
            raise TypeError(f"{table}.{column.name}: no binary COPY layout for {column.type}")
        types[column.name] = layout
    return types


def _values(col: pd.Series, name: str) -> Any:
    if name == "date":
        days = pd.to_datetime(col).to_numpy(dtype="datetime64[D]")
        return np.datetime_as_string(days, unit="D").astype(object)
    if name == "block":
        return col.astype("int64").to_numpy(dtype=object)
    if pd.api.types.is_float_dtype(col.dtype):
        values = col.to_numpy(dtype=object)
        values[np.isnan(col.to_numpy(dtype=float))] = None
        return values
    values = col.astype(object).to_numpy(copy=True)
    values[pd.isna(values)] = None
    return values


def _bulk_insert(conn: Connection, table: str, rows: Rows) -> None:
    """``rows`` into ``table`` with the driver's bulk path: binary COPY or executemany."""
    raw = conn.connection.driver_connection
    assert raw is not None
    names = rows.names
    listed = ", ".join(names)
    if conn.dialect.name == "postgresql":
        statement = f"COPY {table} ({listed}) FROM STDIN (FORMAT BINARY)"
        with raw.cursor() as cur, cur.copy(statement) as copy:
            for block in rows.copy_binary():
                copy.write(block)
        return
    marks = ", ".join("?" for _ in names)
    cur = raw.cursor()
    try:
        cur.executemany(f"INSERT INTO {table} ({listed}) VALUES ({marks})", rows.tuples())
    finally:
        cur.close()


def _stage(conn: Connection, kind: DatasetKind, frame: pd.DataFrame) -> str:
    columns = _columns(kind)
    stage = f"_stage_{kind.table}"
    names = ", ".join(columns)
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {stage}")
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE {stage} ON COMMIT DROP AS "
            f"SELECT {names} FROM {kind.table} WITH NO DATA"
        )
    else:
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE {stage} AS SELECT {names} FROM {kind.table} WHERE 0"
        )
    _bulk_insert(conn, stage, Rows(frame, columns, kind.table))
    return stage


def _insert_new(
    conn: Connection, kind: DatasetKind, frame: pd.DataFrame, upload_id: int | None, now: datetime
) -> bool:
    """Insert ``frame`` straight into the table when none of its range is there yet; False
    (and nothing written) when some of it is, or turned out to be (PostgreSQL, see above)."""
    where, params = _range_filter(kind, frame)
    probe = text(f"SELECT 1 FROM {kind.table} WHERE {where} LIMIT 1").bindparams(*_binds(kind))
    if conn.execute(probe, params).first() is not None:
        return False
    stamp = UTCDateTime().dialect_impl(conn.dialect).bind_processor(conn.dialect)
    extra = {"upload_id": upload_id, "updated_at": stamp(now) if stamp else now}
    rows = Rows(frame, _columns(kind), kind.table, extra)
    if conn.dialect.name != "postgresql":
        _bulk_insert(conn, kind.table, rows)
        return True
    conn.exec_driver_sql("SAVEPOINT energyops_insert_new")
    try:
        _bulk_insert(conn, kind.table, rows)
    except UniqueViolation:
        conn.exec_driver_sql("ROLLBACK TO SAVEPOINT energyops_insert_new")
        return False
    conn.exec_driver_sql("RELEASE SAVEPOINT energyops_insert_new")
    return True


def store_rows(
    conn: Connection,
    kind: DatasetKind,
    frame: pd.DataFrame,
    *,
    upload_id: int | None,
    mode: str = "upsert",
    now: datetime | None = None,
) -> StoreResult:
    """Upsert (by the kind's key) or replace (the file's date range) ``frame``'s rows."""
    if frame.empty:
        return StoreResult(0, 0, 0)
    now = now or utcnow()
    deleted = _delete_range(conn, kind, frame) if mode == "replace" else 0
    if _insert_new(conn, kind, frame, upload_id, now):
        return StoreResult(len(frame), 0, deleted)
    columns = _columns(kind)
    stage = _stage(conn, kind, frame)
    if mode == "replace":
        updated = 0
    else:
        join = " AND ".join(f"t.{k} = s.{k}" for k in kind.key)
        updated = int(
            conn.exec_driver_sql(
                f"SELECT count(*) FROM {stage} s JOIN {kind.table} t ON {join}"
            ).scalar_one()
        )
    names = ", ".join(columns)
    assignments = ", ".join(
        f"{c} = excluded.{c}" for c in [*columns, "upload_id", "updated_at"] if c not in kind.key
    )
    statement = text(
        f"INSERT INTO {kind.table} ({names}, upload_id, updated_at) "
        f"SELECT {names}, :upload_id, :now FROM {stage} WHERE true "
        f"ON CONFLICT ({', '.join(kind.key)}) DO UPDATE SET {assignments}"
    ).bindparams(bindparam("now", type_=UTCDateTime()))
    conn.execute(statement, {"upload_id": upload_id, "now": now})
    conn.exec_driver_sql(f"DROP TABLE {stage}")
    return StoreResult(len(frame) - updated, updated, deleted)


def _range_filter(kind: DatasetKind, frame: pd.DataFrame) -> tuple[str, dict[str, Any]]:
    """The file's date range (for kinds keyed by market, only the markets the file holds)."""
    dates = pd.to_datetime(frame["date"])
    params: dict[str, Any] = {"lo": dates.min().date(), "hi": dates.max().date()}
    where = "date >= :lo AND date <= :hi"
    if "market" in kind.key:
        where += " AND market IN :markets"
        params["markets"] = sorted(frame["market"].dropna().unique())
    return where, params


def _binds(kind: DatasetKind) -> list[BindParameter[Any]]:
    binds = [bindparam("lo", type_=Date()), bindparam("hi", type_=Date())]
    if "market" in kind.key:
        binds.append(bindparam("markets", expanding=True))
    return binds


def _delete_range(conn: Connection, kind: DatasetKind, frame: pd.DataFrame) -> int:
    """``replace``: every row of the file's range goes."""
    where, params = _range_filter(kind, frame)
    statement = text(f"DELETE FROM {kind.table} WHERE {where}").bindparams(*_binds(kind))
    result = conn.execute(statement, params)
    return int(result.rowcount)
