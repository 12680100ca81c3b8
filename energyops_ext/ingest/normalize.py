"""A raw sheet (cells, no header) → a frame of canonical columns, with what was done to it.

Finds the header (below title rows, two-row headers, ``Date | Hour | Time Block`` merged
cells), leaves out trailing summary tables, fills merged Date/Hour cells down, derives date and
block from whichever time columns the file has, expands hourly rows to four blocks, parses
numbers and converts Rs/kWh price columns. Everything here is vectorized with pandas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import Invalid
from .parse import (
    blank_to_na,
    block_of_minutes,
    cell_kind,
    parse_blocks,
    parse_datetimes,
    parse_hours,
    parse_numbers,
    per_distinct,
)
from .schemas import SUMMARY_WORDS, DatasetKind, alias_table, normalize_header

HEADER_SCAN_ROWS = 30
KWH_PRICE_LIMIT = 50.0
_NUMBERISH = re.compile(r"^\s*[-+(]?[\d.,:/\s-]+\)?\s*$")


@dataclass
class Header:
    row: int  # index of the last header row
    names: list[str]  # header text per column (merged / two-row headers combined)
    mapping: dict[str, int]  # canonical column → column position

    @property
    def has_time(self) -> bool:
        m = self.mapping
        return ("date" in m or "timestamp" in m) and (
            "block" in m or "timestamp" in m or "hour" in m
        )


@dataclass
class Normalized:
    frame: pd.DataFrame
    mapping: dict[str, str]  # canonical → header text in the file
    header_row: int  # 1-based
    notes: list[str] = field(default_factory=list)
    conversions: list[dict[str, Any]] = field(default_factory=list)
    summary_rows_left_out: int = 0
    hourly_rows_expanded: int = 0
    timestamp_overrides: int = 0


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def _expand_merged(cells: list[str]) -> list[str]:
    """``Date | Hour | Time Block`` in one cell merged over three columns → three names."""
    names = list(cells)
    for i, cell in enumerate(cells):
        if "|" not in cell:
            continue
        parts = [p.strip() for p in cell.split("|") if p.strip()]
        if all(i + k < len(names) and not cells[i + k] for k in range(1, len(parts))):
            for k, part in enumerate(parts):
                names[i + k] = part
    return names


def _match(names: list[str], aliases: dict[str, str], kind: DatasetKind) -> dict[str, int]:
    mapping: dict[str, int] = {}
    for pos, name in enumerate(names):
        canonical = aliases.get(normalize_header(name))
        if canonical and canonical not in mapping:
            mapping[canonical] = pos
    return mapping


def _is_data_like(cells: list[Any]) -> bool:
    for cell in cells:
        kind = cell_kind(cell)
        if kind in ("number", "datetime", "time"):
            return True
        if kind == "str" and _NUMBERISH.match(str(cell)) and any(ch.isdigit() for ch in str(cell)):
            return True
    return False


def find_header(raw: pd.DataFrame, kind: DatasetKind) -> Header | None:
    """The first of the top rows that names a date and a block/period column and at least one
    value column of ``kind``; with the row below when that one continues the header."""
    aliases = alias_table(kind)
    values = {c.name for c in kind.value_columns}
    top = raw.head(HEADER_SCAN_ROWS + 1).astype(object)
    rows = [[_text(v) for v in row] for row in top.itertuples(index=False)]
    for r in range(min(HEADER_SCAN_ROWS, len(rows))):
        names = _expand_merged(rows[r])
        header = Header(r, names, _match(names, aliases, kind))
        if r + 1 < len(rows) and any(rows[r + 1]) and not _is_data_like(list(top.iloc[r + 1])):
            below = rows[r + 1]
            filled = pd.Series([n or None for n in names], dtype=object).ffill().fillna("")
            combined = [
                f"{filled[i] if below[i] else names[i]} {below[i]}".strip()
                for i in range(len(names))
            ]
            two = Header(r + 1, combined, _match(combined, aliases, kind))
            if len(two.mapping) >= len(header.mapping) and two.has_time:
                header = two
        if header.has_time and values & set(header.mapping):
            return header
    return None


def header_failure(raw: pd.DataFrame, kind: DatasetKind, sheet: str) -> Invalid:
    top = raw.head(HEADER_SCAN_ROWS).astype(object)
    best: list[str] = []
    for row in top.itertuples(index=False):
        names = [n for n in (_text(v) for v in row) if n and not _NUMBERISH.match(n)]
        if len(names) > len(best):
            best = names
    values = ", ".join(c.name for c in kind.value_columns)
    return Invalid(
        f"no header row in sheet {sheet!r} matches {kind.name}: columns found: "
        f"{', '.join(best) or 'none'}; required: a date (Date) and a time block (Time Block) "
        f"or a timestamp (Time Period), and at least one of: {values}",
        code="header_not_recognized",
        details={"columns_found": best, "kind": kind.name},
    )


def summary_start(data: pd.DataFrame, width: int = 3) -> int | None:
    """Position of the first row of a trailing summary (Total / Max / Avg rows, an RTC / Day /
    Night / Peak table), moved up over the blank and title rows that introduce it."""
    flags = np.zeros(len(data), dtype=bool)
    for col in list(data.columns)[:width]:
        cells = data[col]
        if pd.api.types.is_numeric_dtype(cells.dtype):
            continue
        # each distinct cell once: only those that start with a letter can name a summary
        codes, distinct = pd.factorize(cells.to_numpy(dtype=object))
        summary = [
            isinstance(v, str) and v[:1].isalpha() and normalize_header(v) in SUMMARY_WORDS
            for v in distinct
        ]
        if any(summary):
            flags |= np.array([*summary, False])[codes]  # code -1 (missing) is not
    hits = np.flatnonzero(flags)
    if not len(hits):
        return None
    pos = int(hits[0])
    while pos > 0 and not _is_data_like(list(data.iloc[pos - 1])):
        pos -= 1
    return pos


def _blank_rows(data: pd.DataFrame) -> np.ndarray:
    """Rows without a value; rows filled for more than half their width are taken as
    non-blank without looking for whitespace-only cells (the common case, and fast)."""
    filled = data.notna().sum(axis=1).to_numpy()
    blank: np.ndarray = np.asarray(filled == 0, dtype=bool)
    check = (filled > 0) & (filled <= data.shape[1] / 2)
    if not check.any():
        return blank
    sparse = data[check]
    strict = np.ones(len(sparse), dtype=bool)
    for col in sparse.columns:
        cells = sparse[col]
        missing = cells.isna().to_numpy()
        empty = missing.copy()
        if not missing.all() and not pd.api.types.is_numeric_dtype(cells.dtype):
            text = cells[~missing].astype(str).str.strip() == ""
            empty[~missing] = text.to_numpy()
        strict &= empty
    blank[check] = strict
    return blank


def normalize(raw: pd.DataFrame, kind: DatasetKind, sheet: str) -> Normalized:
    header = find_header(raw, kind)
    if header is None:
        raise header_failure(raw, kind, sheet)
    data = raw.iloc[header.row + 1 :]
    result = Normalized(
        pd.DataFrame(),
        {c: header.names[p] for c, p in header.mapping.items()},
        header.row + 1,
    )
    cut = summary_start(data)
    if cut is not None:
        rest = data.iloc[cut:]
        result.summary_rows_left_out = int((~_blank_rows(rest)).sum())
        data = data.iloc[:cut]
        result.notes.append(
            f"left out a summary of {result.summary_rows_left_out} rows "
            f"from row {header.row + 2 + cut}"
        )
    data = data[~_blank_rows(data)]
    result.frame = _assemble(data, header.mapping, kind, result)
    return result


def clean_text(cells: pd.Series) -> pd.Series:
    """Text cells stripped, empty ones missing. A column of text is cleaned once per distinct
    value (plant, state and region names repeat on every row of a year)."""
    if pd.api.types.infer_dtype(cells, skipna=True) == "string":
        codes, distinct = pd.factorize(cells.to_numpy(dtype=object))
        cleaned = [str(v).strip() or None for v in distinct]
        values = np.array([*cleaned, None], dtype=object)  # code -1 (missing) takes the last
        return pd.Series(values[codes], index=cells.index, dtype=object)
    text = cells.astype("str")
    present = text.notna().to_numpy()
    values = text[present].to_numpy(dtype=str)
    padded = np.char.startswith(values, " ") | np.char.endswith(values, " ")
    if padded.any():
        index = text.index[present][padded]
        text[index] = text[index].str.strip()
    return text.astype(object).where(text.notna() & (text != ""), None)


def _column(data: pd.DataFrame, mapping: dict[str, int], name: str) -> pd.Series | None:
    pos = mapping.get(name)
    return None if pos is None else data.iloc[:, pos]


def _assemble(
    data: pd.DataFrame, mapping: dict[str, int], kind: DatasetKind, result: Normalized
) -> pd.DataFrame:
    frame = pd.DataFrame(index=data.index)
    frame["_row"] = data.index.to_numpy() + 1
    for name in ("date", "hour"):
        cells = _column(data, mapping, name)
        if cells is not None:
            frame[f"raw:{name}"] = blank_to_na(cells).ffill()
    for name in ("block", "timestamp"):
        cells = _column(data, mapping, name)
        if cells is not None:
            frame[f"raw:{name}"] = cells
    _derive_time(frame, kind, result)
    for col in kind.columns:
        cells = _column(data, mapping, col.name)
        if cells is None:
            continue
        if col.numeric:
            frame[f"raw:{col.name}"] = cells
            values, bad = parse_numbers(cells)
            frame[col.name] = values
            if bad.any():
                frame[f"bad:{col.name}"] = bad
        else:
            frame[col.name] = clean_text(cells)
    _convert_units(frame, kind, result)
    return _expand_hourly(frame, result)


def _derive_time(frame: pd.DataFrame, kind: DatasetKind, result: Normalized) -> None:
    """date and block (and ``_hour`` for hourly rows) from date / block / timestamp / hour."""
    stamp = stamp_timed = None
    if "raw:timestamp" in frame:
        stamp, stamp_timed = per_distinct(parse_datetimes, frame["raw:timestamp"])
        if stamp.isna().all() and frame["raw:timestamp"].notna().any() and "raw:block" not in frame:
            frame["raw:block"] = frame.pop("raw:timestamp")  # a "Time Period" of ranges
            stamp = stamp_timed = None
    if "raw:date" in frame:
        frame["date"] = per_distinct(parse_datetimes, frame["raw:date"])[0].dt.normalize()
    elif stamp is not None:
        frame["date"] = stamp.dt.normalize()
    else:
        frame["date"] = pd.NaT
    timed = stamp is not None and stamp_timed is not None and bool(stamp_timed.any())
    if "raw:block" in frame:
        blocks = per_distinct(parse_blocks, frame["raw:block"])
        if frame["date"].isna().all():
            frame["date"] = per_distinct(parse_datetimes, frame["raw:block"])[0].dt.normalize()
        if timed and stamp is not None and stamp_timed is not None:
            from_stamp = block_of_minutes(stamp.dt.hour * 60 + stamp.dt.minute).where(stamp_timed)
            disagree = from_stamp.notna() & (from_stamp != blocks)
            result.timestamp_overrides = int(disagree.sum())
            if result.timestamp_overrides:
                blocks = blocks.where(~disagree, from_stamp)
                result.notes.append(
                    f"{result.timestamp_overrides} rows had a block number that disagrees with "
                    "their timestamp; the timestamp decided"
                )
        frame["block"] = blocks
        return
    if stamp is not None and timed:
        minutes = stamp.dt.hour * 60 + stamp.dt.minute
        hourly = bool((minutes.dropna() % 60 == 0).all()) and minutes.nunique() > 1
        if hourly:
            frame["_hour"] = minutes // 60 + 1
        else:
            frame["block"] = block_of_minutes(minutes)
        return
    if "raw:hour" in frame:
        frame["_hour"] = per_distinct(parse_hours, frame["raw:hour"])
        return
    frame["block"] = 1.0 if stamp is not None else np.nan


def _convert_units(frame: pd.DataFrame, kind: DatasetKind, result: Normalized) -> None:
    for col in kind.value_columns:
        if col.type != "price" or col.name not in frame:
            continue
        values = frame[col.name].dropna()
        if len(values) and values.max() < KWH_PRICE_LIMIT and values.max() > 0:
            frame[col.name] = frame[col.name] * 1000.0
            result.conversions.append(
                {
                    "column": col.name,
                    "from": "Rs/kWh",
                    "to": "Rs/MWh",
                    "factor": 1000,
                    "reason": f"every value is below {KWH_PRICE_LIMIT:g}",
                }
            )


def _expand_hourly(frame: pd.DataFrame, result: Normalized) -> pd.DataFrame:
    if "_hour" not in frame:
        return frame
    hours = frame.pop("_hour")
    rows = len(frame)
    expanded = frame.loc[frame.index.repeat(4)].copy()
    offsets = np.tile(np.arange(1, 5), rows)
    expanded["block"] = (hours.loc[expanded.index].to_numpy() - 1) * 4 + offsets
    expanded["raw:block"] = hours.loc[expanded.index].to_numpy()
    result.hourly_rows_expanded = rows
    result.notes.append(f"hourly data: {rows} rows expanded to {rows * 4} blocks (4 per hour)")
    return expanded.reset_index(drop=True)
