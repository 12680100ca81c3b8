"""Cell parsers: blocks, dates (day first), numbers, hours; property tests for round trips."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from energyops_ext.ingest.parse import (
    block_label,
    parse_blocks,
    parse_datetimes,
    parse_hours,
    parse_numbers,
    per_distinct,
)
from energyops_ext.ingest.schemas import KINDS, alias_table, normalize_header


def series(*values: object) -> pd.Series:
    return pd.Series(list(values), dtype=object)


@pytest.mark.parametrize(
    ("cell", "block"),
    [
        (1, 1),
        (96.0, 96),
        ("17", 17),
        ("00:00 - 00:15", 1),
        ("00:00-00:15", 1),
        ("23:45 - 24:00", 96),
        ("14:15", 58),
        ("14:15:00", 58),
        (dt.time(14, 15), 58),
        ("2025-10-08 14:15:00", 58),
        (dt.datetime(2025, 10, 8, 23, 45), 96),
        (97, 97),  # range checks belong to validation
    ],
)
def test_blocks(cell: object, block: int) -> None:
    assert parse_blocks(series(cell)).iloc[0] == block


@pytest.mark.parametrize("cell", ["14:10", "soon", "1.5", None])
def test_unusable_blocks_are_nan(cell: object) -> None:
    assert np.isnan(parse_blocks(series(cell)).iloc[0])


@given(st.integers(min_value=1, max_value=96), st.sampled_from(["-", " - "]))
def test_block_label_round_trip(block: int, separator: str) -> None:
    label = block_label(block).replace("-", separator)
    assert parse_blocks(series(label)).iloc[0] == block


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("05-04-2024", dt.datetime(2024, 4, 5)),
        ("05/04/2024", dt.datetime(2024, 4, 5)),
        ("2024-04-05", dt.datetime(2024, 4, 5)),
        ("13-04-2024", dt.datetime(2024, 4, 13)),
        ("05-Apr-2024", dt.datetime(2024, 4, 5)),
        ("08-10-2025 14:15", dt.datetime(2025, 10, 8, 14, 15)),
        (45573, dt.datetime(2024, 10, 8)),
        (45573.59375000001, dt.datetime(2024, 10, 8, 14, 15)),
        (dt.datetime(2024, 4, 5, 0, 14, 59, 999000), dt.datetime(2024, 4, 5, 0, 15)),
        (dt.date(2024, 4, 5), dt.datetime(2024, 4, 5)),
    ],
)
def test_dates_are_day_first(cell: object, expected: dt.datetime) -> None:
    assert parse_datetimes(series(cell))[0].iloc[0] == pd.Timestamp(expected)


@pytest.mark.parametrize("cell", ["04-13-2024", "31-02-2024", "tomorrow", "2024-13-01"])
def test_impossible_dates_are_nat(cell: str) -> None:
    assert pd.isna(parse_datetimes(series(cell))[0].iloc[0])


@given(
    st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2090, 12, 31)),
    st.sampled_from(["%d-%m-%Y", "%d/%m/%Y", "%Y-%m-%d", "%d-%b-%Y", "%d.%m.%Y"]),
)
def test_date_round_trip(day: dt.date, fmt: str) -> None:
    parsed, timed = parse_datetimes(series(day.strftime(fmt)))
    assert parsed.iloc[0] == pd.Timestamp(day) and not timed.iloc[0]


@given(st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2090, 1, 1)))
def test_excel_serial_round_trip(moment: dt.datetime) -> None:
    moment = moment.replace(second=0, microsecond=0)
    serial = (moment - dt.datetime(1899, 12, 30)).total_seconds() / 86400
    assert parse_datetimes(series(serial))[0].iloc[0] == pd.Timestamp(moment)


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("1,234.5", 1234.5),
        ("1,23,456", 123456.0),
        (" 42 ", 42.0),
        (7, 7.0),
        ("(12.5)", -12.5),
        ("-3", -3.0),
    ],
)
def test_numbers(cell: object, value: float) -> None:
    values, bad = parse_numbers(series(cell))
    assert values.iloc[0] == value and not bad.iloc[0]


@pytest.mark.parametrize("cell", ["-", "", "NA", "n/a", None])
def test_missing_numbers(cell: object) -> None:
    values, bad = parse_numbers(series(cell))
    assert np.isnan(values.iloc[0]) and not bad.iloc[0]


@given(st.lists(st.floats(allow_nan=False), min_size=1, max_size=50))
def test_a_column_of_number_text_reads_as_float_reads_it(values: list[float]) -> None:
    texts = [repr(v) for v in values] + [f"{v:.3g}" for v in values]
    parsed, bad = parse_numbers(pd.Series(texts, dtype=object))
    assert parsed.tolist() == [float(t) for t in texts] and not bad.any()


def test_error_markers_beside_number_text_are_not_numbers() -> None:
    values, bad = parse_numbers(series("12.5", "#N/A", "<NA>", "None", "1_000", "-NaN"))
    assert bad.tolist() == [False, True, True, False, False, True]
    assert values.iloc[0] == 12.5 and values.iloc[4] == 1000 and values.iloc[1:4].isna().all()


def test_text_is_not_a_number() -> None:
    values, bad = parse_numbers(series("lots", "1.2.3", "5"))
    assert bad.tolist() == [True, True, False]
    assert values.iloc[2] == 5


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False).map(lambda v: round(v, 2)))
def test_number_round_trip_with_thousands_separators(value: float) -> None:
    text = f"{value:,.2f}"
    values, bad = parse_numbers(pd.Series([text]))
    assert values.iloc[0] == pytest.approx(value) and not bad.iloc[0]


def test_hours() -> None:
    assert parse_hours(series(1, 24, "3")).tolist() == [1, 24, 3]
    assert parse_hours(series(0, 23)).tolist() == [1, 24]
    assert parse_hours(series("13:00")).tolist() == [14]


@pytest.mark.parametrize(
    ("header", "canonical"),
    [
        ("TimeBlock", "block"),
        ("Time Block", "block"),
        ("time_block", "block"),
        ("Block", "block"),
        ("DAM Price", "dam_price"),
        ("DAMprice", "dam_price"),
        ("DAM_Price (Rs/MWh)", "dam_price"),
        ("Scheduled MW", "scheduled_mw"),
        ("ScheduleMW", "scheduled_mw"),
        ("Time Period", "timestamp"),
        ("TimePeriod", "timestamp"),
        ("Delivery Date", "date"),
        ("PurchaseBidMW", "purchase_bid_mw"),
    ],
)
def test_snapshot_aliases(header: str, canonical: str) -> None:
    assert alias_table(KINDS["market-snapshot"])[normalize_header(header)] == canonical


def test_exchange_aliases() -> None:
    table = alias_table(KINDS["exchange-prices"])
    assert table[normalize_header("MCP (Rs/MWh) *")] == "mcp"
    assert table[normalize_header("Final Scheduled Volume (MW)")] == "fsv_mw"
    assert table[normalize_header("MCV (MW)")] == "mcv_mw"


# a column as a year of blocks holds it: few distinct cells, repeated, some missing, mixed kinds
REPEATED = [
    "01-04-2023", "00:00 - 00:15", 5, 5.0, None, "  ", "23:45-24:00", "2024-02-29 09:15:00",
    dt.datetime(2023, 4, 1, 0, 15), dt.time(9, 15), "1,234.5", "-", 0, 23, "x", float("nan"),
]  # fmt: skip


def assert_parsed_alike(parse: object, cells: pd.Series) -> None:
    """Parsing each distinct cell once gives what parsing every cell gives."""
    assert callable(parse)
    whole, once = parse(cells), per_distinct(parse, cells)
    for got, expected in zip(
        once if isinstance(once, tuple) else (once,),
        whole if isinstance(whole, tuple) else (whole,),
        strict=True,
    ):
        pd.testing.assert_series_equal(got, expected)


@pytest.mark.parametrize("parse", [parse_blocks, parse_hours, parse_datetimes, parse_numbers])
def test_parsing_each_distinct_cell_once_gives_what_parsing_every_cell_gives(parse: object) -> None:
    cells = pd.Series(REPEATED * 200, dtype=object, index=range(7, 7 + len(REPEATED) * 200))
    assert_parsed_alike(parse, cells)


@pytest.mark.parametrize("parse", [parse_blocks, parse_hours, parse_datetimes, parse_numbers])
def test_text_columns_are_parsed_once_per_distinct_cell_too(parse: object) -> None:
    labels = [block_label(b).replace("-", " - ") for b in range(1, 97)] + ["1,5", None, " "]
    cells = pd.Series(labels * 50, dtype="str")
    assert_parsed_alike(parse, cells)
