"""Vectorized cell parsers: dates (day first), times, blocks, hours and numbers.

Every parser takes a column of raw cells (strings from csv; numbers, strings, datetimes and
times from spreadsheets) and returns parsed values with NaN / NaT where a cell is unusable.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

EXCEL_EPOCH = pd.Timestamp("1899-12-30")
BLOCKS_PER_DAY = 96
MINUTES_PER_BLOCK = 15

_NUM = r"[-+]?\d+(?:\.\d+)?"
_TIME = r"(?:[T\s]+(?P<hh>\d{1,2}):(?P<mi>\d{2})(?::\d{2}(?:\.\d+)?)?)?"
_ISO = rf"^\s*(?P<y>\d{{4}})[-/.](?P<m>\d{{1,2}})[-/.](?P<d>\d{{1,2}}){_TIME}\s*$"
_DMY = rf"^\s*(?P<d>\d{{1,2}})[-/.](?P<m>\d{{1,2}})[-/.](?P<y>\d{{4}}){_TIME}\s*$"
_DMONY = rf"^\s*(?P<d>\d{{1,2}})[-/\s](?P<mon>[A-Za-z]{{3,9}})[-/\s,]+(?P<y>\d{{4}}){_TIME}\s*$"
_CLOCK = r"(?P<hh>\d{1,2})[:.](?P<mi>\d{2})"
_MONTHS = {
    m: str(i)
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_MISSING = frozenset({"", "-", "--", "\u2014", "\u2013", "na", "n/a", "nan", "null", "none", "nil"})


def _cell_kind(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return "none"
    if isinstance(value, dt.datetime | dt.date | np.datetime64):
        return "datetime"
    if isinstance(value, dt.time):
        return "time"
    if isinstance(value, bool):
        return "str"
    if isinstance(value, int | float | np.integer | np.floating):
        return "number"
    return "str"


def cell_kinds(cells: pd.Series) -> pd.Series:
    """'none' | 'datetime' | 'time' | 'number' | 'str' per cell."""
    if pd.api.types.is_string_dtype(cells.dtype) and cells.dtype != object:
        return pd.Series(np.where(cells.isna(), "none", "str"), index=cells.index)
    if pd.api.types.is_numeric_dtype(cells.dtype):
        return pd.Series(np.where(cells.isna(), "none", "number"), index=cells.index)
    if pd.api.types.is_datetime64_any_dtype(cells.dtype):
        return pd.Series(np.where(cells.isna(), "none", "datetime"), index=cells.index)
    return cells.map(_cell_kind)


def blank_to_na(cells: pd.Series) -> pd.Series:
    """Whitespace-only text cells become missing (spreadsheets hold ``" "`` in empty cells)."""
    if pd.api.types.is_numeric_dtype(cells.dtype) or pd.api.types.is_datetime64_any_dtype(
        cells.dtype
    ):
        return cells
    text = cells.astype(object)
    is_str = text.map(lambda v: isinstance(v, str))
    if not is_str.any():
        return text
    stripped = text[is_str].astype(str).str.strip()
    text = text.copy()
    text[stripped[stripped == ""].index] = None
    return text


def parse_datetimes(cells: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(timestamps rounded to the minute, has_time) for date / timestamp cells. Text is read
    day first (DD-MM-YYYY, DD/MM/YYYY, DD-Mon-YYYY) unless it starts with a 4-digit year;
    numbers are Excel serial dates."""
    kinds = cell_kinds(cells)
    out = pd.Series(pd.NaT, index=cells.index, dtype="datetime64[ns]")
    has_time = pd.Series(False, index=cells.index)
    mask = kinds == "datetime"
    if mask.any():
        values = pd.to_datetime(cells[mask].astype(object), errors="coerce")
        out[mask] = values.dt.round("min").astype("datetime64[ns]")
    mask = kinds == "number"
    if mask.any():
        out[mask] = _from_serial(pd.to_numeric(cells[mask], errors="coerce"))
    mask = kinds == "str"
    if mask.any():
        parsed, timed = _from_text(cells[mask].astype(str))
        out[mask] = parsed
        has_time[mask] = timed
    minutes = out.dt.hour * 60 + out.dt.minute
    has_time |= (kinds.isin(["datetime", "number"])) & (minutes > 0)
    return out, has_time


def _from_serial(serial: pd.Series) -> pd.Series:
    ok = (serial >= 1) & (serial < 2_958_466)
    minutes = (serial.where(ok) * 1440).round()
    return EXCEL_EPOCH + pd.to_timedelta(minutes, unit="min")


_FAST_FORMATS = (
    ("%Y-%m-%d %H:%M:%S", True),
    ("%Y-%m-%d", False),
    ("%d-%m-%Y", False),
    ("%d/%m/%Y", False),
    ("%d-%m-%Y %H:%M", True),
    ("%d/%m/%Y %H:%M", True),
)


def _from_text(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Whole columns in one common format take a vectorized path; the rest go through the
    patterns (and impossible dates such as 31-02 or a month 13 end up NaT either way)."""
    stripped = text.str.strip()
    result = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    timed = pd.Series(False, index=text.index)
    for fmt, with_time in _FAST_FORMATS:
        todo = result.isna()
        if not todo.any():
            return result, timed
        parsed = pd.to_datetime(stripped[todo], format=fmt, errors="coerce")
        if parsed.notna().any():
            hit = parsed.dropna().index
            result[hit] = parsed[hit].astype("datetime64[ns]")
            timed[hit] = with_time
    todo = result.isna()
    if todo.any():
        rest, rest_timed = _from_patterns(text[todo])
        result[todo] = rest
        timed[todo] = rest_timed
    return result, timed


def _from_patterns(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    parts = text.str.extract(_ISO)
    for pattern in (_DMY, _DMONY):
        missing = parts["y"].isna()
        if not missing.any():
            break
        found = text[missing].str.extract(pattern)
        if "mon" in found:
            found["m"] = found.pop("mon").str[:3].str.lower().map(_MONTHS)
        parts.loc[missing, ["y", "m", "d", "hh", "mi"]] = found[["y", "m", "d", "hh", "mi"]]
    nums = parts[["y", "m", "d", "hh", "mi"]].apply(pd.to_numeric, errors="coerce")
    dates = pd.to_datetime(
        pd.DataFrame({"year": nums["y"], "month": nums["m"], "day": nums["d"]}), errors="coerce"
    )
    timed = nums["hh"].notna()
    minutes = (nums["hh"].fillna(0) * 60 + nums["mi"].fillna(0)).where(
        (nums["hh"].fillna(0) <= 24) & (nums["mi"].fillna(0) < 60)
    )
    result = dates + pd.to_timedelta(minutes, unit="min")
    serial = pd.to_numeric(text.where(parts["y"].isna()), errors="coerce")
    if serial.notna().any():
        result = result.fillna(_from_serial(serial))
    return result.astype("datetime64[ns]"), timed


def parse_clock_minutes(cells: pd.Series) -> pd.Series:
    """Minutes after midnight of a time of day: ``14:15``, ``14:15:00``, the start of a range
    ``14:15 - 14:30``, a time cell, or the time part of a datetime cell."""
    kinds = cell_kinds(cells)
    out = pd.Series(np.nan, index=cells.index)
    mask = kinds == "time"
    if mask.any():
        out[mask] = cells[mask].map(lambda t: t.hour * 60 + t.minute + round(t.second / 60))
    mask = kinds == "datetime"
    if mask.any():
        stamps = pd.to_datetime(cells[mask].astype(object), errors="coerce").dt.round("min")
        out[mask] = (stamps.dt.hour * 60 + stamps.dt.minute).astype(float)
    mask = kinds == "str"
    if mask.any():
        found = cells[mask].astype(str).str.extract(_CLOCK)
        hh = pd.to_numeric(found["hh"], errors="coerce")
        mi = pd.to_numeric(found["mi"], errors="coerce")
        out[mask] = (hh * 60 + mi).where((hh <= 24) & (mi < 60))
    return out


def parse_blocks(cells: pd.Series) -> pd.Series:
    """Block numbers 1-96 from numbers, ranges (``00:00 - 00:15``), start times or
    timestamps. A time that is not on a 15-minute boundary is NaN; range checks are
    validation's job."""
    numbers = parse_numbers(cells)[0]
    integral = numbers.where(numbers == numbers.round())
    rest = integral.isna() & cells.notna()
    if rest.any():
        minutes = parse_clock_minutes(cells[rest])
        on_grid = minutes % MINUTES_PER_BLOCK == 0
        integral[rest] = (minutes // MINUTES_PER_BLOCK + 1).where(on_grid)
    return integral


def block_of_minutes(minutes: pd.Series) -> pd.Series:
    return (minutes // MINUTES_PER_BLOCK + 1).where(minutes % MINUTES_PER_BLOCK == 0)


def parse_hours(cells: pd.Series) -> pd.Series:
    """Hour numbers 1-24 (an ``Hour`` column; 0-23 and ``HH:MM`` starts are shifted)."""
    numbers = parse_numbers(cells)[0]
    hours = numbers.where(numbers == numbers.round())
    if hours.notna().any() and hours.min() == 0 and hours.max() <= 23:
        hours = hours + 1
    rest = hours.isna() & cells.notna()
    if rest.any():
        minutes = parse_clock_minutes(cells[rest])
        hours[rest] = (minutes // 60 + 1).where(minutes % 60 == 0)
    return hours


def parse_numbers(cells: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(floats, bad) where bad marks cells that hold something but not a number. Text with
    thousands separators (``1,234.5``, ``1,23,456``) is read; ``-``, blank, NA are missing."""
    if pd.api.types.is_numeric_dtype(cells.dtype) and cells.dtype != bool:
        return cells.astype(float), pd.Series(False, index=cells.index)
    try:
        return cells.astype("float64"), pd.Series(False, index=cells.index)
    except (ValueError, TypeError):
        values = pd.to_numeric(cells, errors="coerce").astype(float)
    pending = values.isna() & cells.notna()
    if not pending.any():
        return values, pending
    text = cells[pending].astype(str).str.strip()
    missing = text.str.lower().isin(_MISSING)
    cleaned = text[~missing].str.replace(r"(?<=\d)[,\s_](?=\d)", "", regex=True)
    cleaned = cleaned.str.replace(r"^\((.*)\)$", r"-\1", regex=True)
    parsed = pd.to_numeric(cleaned.where(cleaned.str.fullmatch(_NUM)), errors="coerce")
    values[parsed.index] = parsed
    bad = pd.Series(False, index=cells.index)
    bad[parsed.index] = parsed.isna()
    return values, bad


def block_label(block: int) -> str:
    """``00:00-00:15`` for block 1 ... ``23:45-24:00`` for block 96."""
    start = (block - 1) * MINUTES_PER_BLOCK
    end = start + MINUTES_PER_BLOCK
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
