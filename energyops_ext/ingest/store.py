"""Bulk writes of normalized rows, inside the caller's transaction.

Rows go into a temporary staging table with the driver's fastest path (sqlite3 executemany,
psycopg COPY), then one ``INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE`` moves them into
the dataset table. The staging table also tells how many rows already existed (updated vs
inserted) without loading anything into Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Date, bindparam, text

from ..db.base import UTCDateTime, utcnow
from .schemas import DatasetKind


@dataclass
class StoreResult:
    inserted: int
    updated: int
    deleted: int


def _columns(kind: DatasetKind) -> list[str]:
    return ["date", "block", *(c.name for c in kind.columns)]


def _records(frame: pd.DataFrame, columns: list[str]) -> list[tuple[Any, ...]]:
    """Plain Python tuples (None for missing) in ``columns`` order, dates as ISO text."""
    data: dict[str, Any] = {}
    for name in columns:
        col = frame[name]
        if name == "date":
            data[name] = pd.to_datetime(col).dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
        elif name == "block":
            data[name] = col.astype("int64").to_numpy(dtype=object)
        elif pd.api.types.is_float_dtype(col.dtype):
            values = col.to_numpy(dtype=object)
            values[np.isnan(col.to_numpy(dtype=float))] = None
            data[name] = values
        else:
            values = col.astype(object).to_numpy(copy=True)
            values[pd.isna(values)] = None
            data[name] = values
    return list(zip(*(data[name] for name in columns), strict=True))


def _stage(conn: Connection, kind: DatasetKind, frame: pd.DataFrame) -> str:
    columns = _columns(kind)
    stage = f"_stage_{kind.table}"
    names = ", ".join(columns)
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {stage}")
    raw = conn.connection.driver_connection
    assert raw is not None
    rows = _records(frame, columns)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE {stage} ON COMMIT DROP AS "
            f"SELECT {names} FROM {kind.table} WITH NO DATA"
        )
        with raw.cursor() as cur, cur.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE {stage} AS SELECT {names} FROM {kind.table} WHERE 0"
        )
        marks = ", ".join("?" for _ in columns)
        cur = raw.cursor()
        try:
            cur.executemany(f"INSERT INTO {stage} ({names}) VALUES ({marks})", rows)
        finally:
            cur.close()
    return stage


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
    columns = _columns(kind)
    stage = _stage(conn, kind, frame)
    deleted = 0
    if mode == "replace":
        deleted = _delete_range(conn, kind, frame)
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
    conn.execute(statement, {"upload_id": upload_id, "now": now or utcnow()})
    conn.exec_driver_sql(f"DROP TABLE {stage}")
    return StoreResult(len(frame) - updated, updated, deleted)


def _delete_range(conn: Connection, kind: DatasetKind, frame: pd.DataFrame) -> int:
    """``replace``: every row of the file's date range goes (for kinds keyed by market, only
    the markets the file holds)."""
    dates = pd.to_datetime(frame["date"])
    params: dict[str, Any] = {"lo": dates.min().date(), "hi": dates.max().date()}
    binds = [bindparam("lo", type_=Date()), bindparam("hi", type_=Date())]
    where = "date >= :lo AND date <= :hi"
    if "market" in kind.key:
        where += " AND market IN :markets"
        params["markets"] = sorted(set(frame["market"].dropna()))
        binds.append(bindparam("markets", expanding=True))
    statement = text(f"DELETE FROM {kind.table} WHERE {where}").bindparams(*binds)
    result = conn.execute(statement, params)
    return int(result.rowcount)
