"""Vectorized cell parsers: dates (day first), times, blocks, hours and numbers.

Every parser takes a column of raw cells (strings from csv; numbers, strings, datetimes and
times from spreadsheets) and returns parsed values with NaN / NaT where a cell is unusable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

P = TypeVar("P", pd.Series, tuple[pd.Series, pd.Series])
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


def cell_kind(value: Any) -> str:
    """'none' | 'datetime' | 'time' | 'number' | 'str' of one cell."""
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


# pandas' names for a column whose present cells all have one type → our kind of cell
_INFERRED_KINDS = {
    "string": "str",
    "floating": "number",
    "integer": "number",
    "mixed-integer-float": "number",
    "datetime": "datetime",
    "datetime64": "datetime",
    "date": "datetime",
    "time": "time",
    "empty": "none",
}


def cell_kinds(cells: pd.Series) -> pd.Series:
    """'none' | 'datetime' | 'time' | 'number' | 'str' per cell. A column whose cells share
    one type (the common case) is classified at once; only mixed columns go cell by cell."""
    if pd.api.types.is_string_dtype(cells.dtype) and cells.dtype != object:
        kind: str | None = "str"
    elif pd.api.types.is_bool_dtype(cells.dtype):
        kind = "str"
    elif pd.api.types.is_numeric_dtype(cells.dtype):
        kind = "number"
    elif pd.api.types.is_datetime64_any_dtype(cells.dtype):
        kind = "datetime"
    else:
        kind = _INFERRED_KINDS.get(pd.api.types.infer_dtype(cells, skipna=True))
    if kind is None:
        return cells.map(cell_kind)
    return pd.Series(np.where(cells.isna(), "none", kind), index=cells.index)


def _distinct(text: pd.Series) -> tuple[npt.NDArray[np.intp], pd.Series]:
    """(codes, distinct values) of text cells without missing ones. Text is parsed once per
    distinct value: a year of blocks holds 35,136 block labels but 96 distinct ones."""
    codes, uniques = pd.factorize(text.to_numpy(dtype=object))
    return codes, pd.Series(uniques, dtype=object)


def _spread(parsed: pd.Series, codes: npt.NDArray[np.intp], index: pd.Index) -> pd.Series:
    """The values parsed per distinct cell, back in the order and index of the cells."""
    return pd.Series(parsed.to_numpy()[codes], index=index, dtype=parsed.dtype)


def per_distinct(parse: Callable[[pd.Series], P], cells: pd.Series) -> P:
    """``parse(cells)`` with each distinct cell parsed once, when cells repeat: a year of
    blocks holds 366 dates and 96 block labels in 35,136 rows, each through several parsers.
    ``parse`` must read cells one by one (a column-wide choice such as a format or a shift
    comes out the same over the distinct cells); it returns a Series or a tuple of them."""
    text = pd.api.types.is_string_dtype(cells.dtype)  # object, or pandas' str
    if not text or len(cells) < _DISTINCT_MIN_ROWS:
        return parse(cells)
    found: npt.NDArray[np.intp]
    uniques: pd.Series
    found, uniques = _distinct(cells)
    if len(uniques) * 4 > len(cells):
        return parse(cells)
    # a missing cell (code -1) parses as one more distinct cell
    codes: npt.NDArray[np.intp] = np.where(found < 0, len(uniques), found)
    values: list[Any] = [*uniques, None]
    parsed = parse(pd.Series(values, dtype=object))
    if isinstance(parsed, pd.Series):
        return _spread(parsed, codes, cells.index)
    return cast(P, tuple(_spread(part, codes, cells.index) for part in parsed))


_DISTINCT_MIN_ROWS = 1000


def blank_to_na(cells: pd.Series) -> pd.Series:
    """Whitespace-only text cells become missing (spreadsheets hold ``" "`` in empty cells)."""
    if pd.api.types.is_numeric_dtype(cells.dtype) or pd.api.types.is_datetime64_any_dtype(
        cells.dtype
    ):
        return cells
    text = cells.astype(object)
    is_str = cell_kinds(text) == "str"
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
    codes, distinct = _distinct(text)
    parsed, timed = _from_distinct_text(distinct)
    return _spread(parsed, codes, text.index), _spread(timed, codes, text.index)


def _from_distinct_text(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Whole columns in one common format take a vectorized path; the rest go through the
    patterns (and impossible dates such as 31-02 or a month 13 end up NaT either way)."""
    stripped = text.str.strip()
    for fmt, with_time in _FAST_FORMATS[:1]:  # the common case: every cell in one format
        whole = pd.to_datetime(stripped, format=fmt, errors="coerce")
        if whole.notna().all():
            return whole.astype("datetime64[ns]"), pd.Series(with_time, index=text.index)
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
        text = cells[mask].astype(str)
        codes, distinct = _distinct(text)
        found = distinct.str.extract(_CLOCK)
        hh = pd.to_numeric(found["hh"], errors="coerce")
        mi = pd.to_numeric(found["mi"], errors="coerce")
        out[mask] = _spread((hh * 60 + mi).where((hh <= 24) & (mi < 60)), codes, text.index)
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
        return _all_numbers(cells), pd.Series(False, index=cells.index)
    except (ValueError, TypeError):
        pass
    numbers = (cell_kinds(cells) == "number").to_numpy()
    values = pd.Series(np.nan, index=cells.index)
    values[numbers] = cells[numbers].astype(float)
    pending = ~numbers & cells.notna().to_numpy()
    if not pending.any():
        return values, pd.Series(pending, index=cells.index)
    text = cells[pending].astype(str)
    codes, distinct = _distinct(text)
    parsed = _spread(_numbers_from_text(distinct), codes, text.index)
    values[text.index] = parsed
    bad = pd.Series(False, index=cells.index)
    bad[text.index] = parsed.isna() & ~_spread(_is_missing(distinct), codes, text.index)
    return values, bad


def _all_numbers(cells: pd.Series) -> pd.Series:
    """Every cell as a float at once, or ValueError / TypeError. A column of text alone (csv)
    goes through pandas' C parser, which reads decimal text to the same double as ``float`` at
    less than half its cost; it reads markers such as ``#N/A`` as missing where ``float``
    refuses them, so a column in which it finds a missing value goes through ``float``."""
    if pd.api.types.infer_dtype(cells, skipna=False) == "string":
        numbers = pd.to_numeric(cells, errors="raise")
        if not numbers.isna().any():
            return numbers.astype("float64")
    return cells.astype("float64")


def _is_missing(text: pd.Series) -> pd.Series:
    return text.str.strip().str.lower().isin(_MISSING)


def _numbers_from_text(text: pd.Series) -> pd.Series:
    """``1,234.5`` / ``1,23,456`` / ``(12)`` → floats; anything else (``-``, NA, words) NaN."""
    cleaned = text.str.strip().str.replace(r"(?<=\d)[,\s_](?=\d)", "", regex=True)
    cleaned = cleaned.str.replace(r"^\((.*)\)$", r"-\1", regex=True)
    numbers = pd.to_numeric(cleaned.where(cleaned.str.fullmatch(_NUM)), errors="coerce")
    return numbers.astype(float).where(~_is_missing(text))


def block_label(block: int) -> str:
    """``00:00-00:15`` for block 1 ... ``23:45-24:00`` for block 96."""
    start = (block - 1) * MINUTES_PER_BLOCK
    end = start + MINUTES_PER_BLOCK
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
