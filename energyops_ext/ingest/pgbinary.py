"""Columns → PostgreSQL's binary COPY format, built with numpy a block of rows at a time.

Text COPY makes Python format every float (``repr``, half a microsecond each: a year of blocks
holds a quarter of a million) and the server parse each back. In the binary format a double is
its 8 bytes, a date 4, a smallint 2. Each column becomes a matrix of fixed-width cells (a
4-byte length, then the value, or -1 for NULL; text padded to the column's longest distinct
value), the columns are laid side by side, and one boolean mask drops the padding: what is
left, read row by row, is the COPY stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # flags and header extension: none
TRAILER = b"\xff\xff"
PG_EPOCH = np.datetime64(date(2000, 1, 1), "D")
PG_EPOCH_TIME = datetime(2000, 1, 1, tzinfo=UTC)
# fixed-width PostgreSQL types: the numpy dtype of the value
FIXED = {"float8": ">f8", "int2": ">i2", "int4": ">i4", "int8": ">i8"}
ROWS_PER_BLOCK = 8192


@dataclass
class Cells:
    """One column as fixed-width cells: ``cells[i]`` holds row i's field, of which the first
    ``used[i]`` bytes count."""

    cells: npt.NDArray[np.uint8]
    used: npt.NDArray[np.int64]


def pg_type(sql_type: Any) -> str | None:
    """The binary layout for a SQLAlchemy column type, None when this module has none."""
    name = type(sql_type).__name__.lower()
    impl = getattr(sql_type, "impl", None)
    if impl is not None:
        name = type(impl).__name__.lower()
        if name == "datetime" and getattr(impl, "timezone", False):
            return "timestamptz"
    return {
        "float": "float8",
        "double": "float8",
        "smallinteger": "int2",
        "integer": "int4",
        "biginteger": "int8",
        "date": "date",
        "string": "text",
        "text": "text",
    }.get(name)


def encode(values: pd.Series | Sequence[Any], kind: str) -> Cells:
    """A column's cells. ``values``: floats with NaN for NULL, integers, datetime64 dates,
    aware datetimes, or objects (text; None for NULL)."""
    if kind in FIXED:
        array = pd.Series(values)
        null = array.isna().to_numpy()
        filled = array.fillna(0).to_numpy()
        return _fixed(filled.astype(FIXED[kind]), null)
    if kind == "date":
        days = pd.to_datetime(pd.Series(values)).to_numpy(dtype="datetime64[D]")
        null = np.isnat(days)
        offsets = np.where(null, PG_EPOCH, days) - PG_EPOCH
        return _fixed(offsets.astype(">i4"), null)
    if kind == "timestamptz":
        stamps = list(values)
        null = np.array([v is None for v in stamps], dtype=bool)
        micros = [0 if v is None else (v - PG_EPOCH_TIME) // _MICROSECOND for v in stamps]
        return _fixed(np.array(micros, dtype=">i8"), null)
    if kind == "text":
        return _text(values)
    raise ValueError(f"no binary COPY layout for {kind!r}")


_MICROSECOND = datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - PG_EPOCH_TIME


def _fixed(values: npt.NDArray[Any], null: npt.NDArray[np.bool_]) -> Cells:
    n, size = len(values), values.dtype.itemsize
    record = np.empty(n, dtype=[("len", ">i4"), ("value", values.dtype)])
    record["len"] = np.where(null, -1, size)
    record["value"] = values
    used = np.where(null, 4, 4 + size).astype(np.int64)
    return Cells(record.view(np.uint8).reshape(n, 4 + size), used)


def _text(values: pd.Series | Sequence[Any]) -> Cells:
    """Each distinct value encoded once, rows taken from the table of them by code."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    encoded = [str(v).encode() for v in uniques]
    width = max((len(b) for b in encoded), default=0)
    table = np.zeros((len(encoded) + 1, 4 + width), dtype=np.uint8)
    used = np.empty(len(encoded) + 1, dtype=np.int64)
    for i, raw in enumerate(encoded):
        table[i, :4] = np.frombuffer(len(raw).to_bytes(4, "big"), dtype=np.uint8)
        table[i, 4 : 4 + len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        used[i] = 4 + len(raw)
    table[-1, :4] = 0xFF  # code -1: NULL
    used[-1] = 4
    return Cells(table[codes], used[codes])


def rows(columns: list[Cells], block: int = ROWS_PER_BLOCK) -> Iterator[bytes]:
    """The COPY stream of ``columns`` (all of one length), a block of rows at a time:
    signature, then per row the field count and its fields, then the trailer."""
    n = len(columns[0].cells) if columns else 0
    count = np.frombuffer(len(columns).to_bytes(2, "big"), dtype=np.uint8)
    yield SIGNATURE
    for start in range(0, n, block):
        stop = min(start + block, n)
        parts = [np.broadcast_to(count, (stop - start, 2))]
        keep = [np.ones((stop - start, 2), dtype=bool)]
        for column in columns:
            cells = column.cells[start:stop]
            parts.append(cells)
            keep.append(np.arange(cells.shape[1]) < column.used[start:stop, None])
        matrix = np.concatenate(parts, axis=1)
        yield matrix[np.concatenate(keep, axis=1)].tobytes()
    yield TRAILER
