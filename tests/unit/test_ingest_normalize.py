"""Header detection, summaries, fill-down, hourly expansion, units, and validation rules."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from energyops_ext.errors import Invalid, TooLarge
from energyops_ext.ingest.normalize import find_header, normalize, summary_start
from energyops_ext.ingest.read import open_workbook
from energyops_ext.ingest.schemas import KINDS
from energyops_ext.ingest.validate import complete_keys, price_ceiling, validate
from tests.ingest_files import (
    SNAPSHOT_HEADER,
    csv_bytes,
    exchange_xlsx,
    lying_zip_bomb,
    snapshot_rows,
    xlsx_bytes,
    zip_bomb,
)

SNAP = KINDS["market-snapshot"]
EXCHANGE = KINDS["exchange-prices"]
DAY = date(2024, 4, 13)


def raw(rows: list[Any]) -> pd.DataFrame:
    width = max(len(r) for r in rows)
    return pd.DataFrame([r + [None] * (width - len(r)) for r in rows], dtype=object)


def run(rows: list[Any], kind: str = "market-snapshot", **defaults: str) -> Any:
    n = normalize(raw(rows), KINDS[kind], "Sheet1")
    complete_keys(n.frame, KINDS[kind], n.mapping, defaults)
    return n, validate(n.frame, KINDS[kind], n.mapping)


def test_header_below_title_rows() -> None:
    rows = [["Report"], ["From 01-04-2024"], [None], SNAPSHOT_HEADER, *snapshot_rows(DAY)]
    header = find_header(raw(rows), SNAP)
    assert header is not None and header.row == 3
    assert header.mapping["dam_price"] == 3 and header.mapping["block"] == 1


def test_merged_date_hour_block_cell_and_units_row() -> None:
    rows = [
        ["Date | Hour | Time Block", None, None, "MCP", "MCV"],
        [None, None, None, "(Rs/MWh)", "(MW)"],
        ["13-04-2024", 1, "00:00 - 00:15", "3,100", 5000],
    ]
    header = find_header(raw(rows), EXCHANGE)
    assert header is not None and header.row == 1
    assert header.mapping == {"date": 0, "hour": 1, "block": 2, "mcp": 3, "mcv_mw": 4}
    assert header.names[3] == "MCP (Rs/MWh)"


def test_header_matching_no_kind_names_columns_found() -> None:
    with pytest.raises(Invalid, match="columns found: Name, Colour; required: a date"):
        normalize(raw([["Name", "Colour"], ["x", "red"]]), SNAP, "Sheet1")


def test_summary_start_moves_over_blank_and_title_rows() -> None:
    data = raw(
        [["13-04-2024", 1, 5], [None, 2, 6], [None], ["Summary"], ["Period", "Avg"], ["RTC", 5.5]]
    )
    assert summary_start(data) == 2
    assert summary_start(raw([["13-04-2024", 1, 5], ["Total", None, 5]])) == 1
    assert summary_start(raw([["13-04-2024", 1, 5]])) is None


def test_exchange_file_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "iex.xlsx"
    path.write_bytes(exchange_xlsx(DAY))
    book = open_workbook(path, "iex.xlsx", 10_000_000)
    n = normalize(book.sheet(book.sheet_names[0]), EXCHANGE, book.sheet_names[0])
    complete_keys(n.frame, EXCHANGE, n.mapping, {"market": "dam"})
    checked = validate(n.frame, EXCHANGE, n.mapping)
    assert checked.errors == [] and len(checked.frame) == 96
    assert n.summary_rows_left_out == 8 and n.header_row == 5
    assert (checked.frame["date"] == pd.Timestamp(DAY)).all()  # filled down from merged cells
    assert checked.frame["block"].tolist() == list(range(1, 97))
    assert checked.frame["purchase_bid_mw"].iloc[0] == 9010  # "9,010" as text
    assert set(checked.frame["market"]) == {"DAM"}


def test_hourly_rows_expand_to_four_blocks() -> None:
    rows = [["Date", "Hour", "DAM Price"]] + [["13-04-2024", h, 3000 + h] for h in range(1, 25)]
    n, checked = run(rows)
    assert n.hourly_rows_expanded == 24 and len(checked.frame) == 96
    assert checked.frame["block"].tolist()[:5] == [1, 2, 3, 4, 5]
    assert checked.frame["dam_price"].tolist()[4:8] == [3002.0] * 4
    assert any("hourly" in note for note in n.notes)


def test_hourly_timestamps_expand() -> None:
    rows = [["TimePeriod", "DAMprice"]] + [[f"2025-10-08 {h:02d}:00:00", 3.2] for h in range(24)]
    n, checked = run(rows)
    assert n.hourly_rows_expanded == 24 and checked.frame["block"].tolist()[-1] == 96


def test_timestamp_wins_over_a_disagreeing_block() -> None:
    rows = [
        ["Time Period", "Block", "DAM Price"],
        ["2025-10-08 14:15:00", 3, 3000],
        ["2025-10-08 14:30:00", 59, 3000],
    ]
    n, checked = run(rows)
    assert n.timestamp_overrides == 1
    assert checked.frame["block"].tolist() == [58, 59]


def test_kwh_prices_are_converted_per_column() -> None:
    rows = [
        ["Date", "Block", "DAM Price", "RTM Price"],
        ["13-04-2024", 1, 3.1, 3100],
        ["13-04-2024", 2, 12.5, 3200],
    ]
    n, checked = run(rows)
    assert [c["column"] for c in n.conversions] == ["dam_price"]
    assert checked.frame["dam_price"].tolist() == [3100.0, 12500.0]
    assert checked.frame["rtm_price"].tolist() == [3100.0, 3200.0]


def test_row_errors_carry_row_column_value_rule() -> None:
    rows = [SNAPSHOT_HEADER, *snapshot_rows(DAY)]
    rows[3][0] = "04-13-2024"
    rows[10][6] = "lots"
    rows[20][1] = 19  # a repeat of block 19
    _, checked = run(rows)
    found = {(e["row"], e["column"], e["value"], e["rule"]) for e in checked.errors}
    assert (4, "Date", "04-13-2024", "invalid_date") in found
    assert (11, "Scheduled MW", "lots", "not_a_number") in found
    assert (21, "Time Block", "19", "repeated_block") in found
    # errors are the rows not stored; the day they leave incomplete is a warning
    assert len(checked.errors) == checked.rows_rejected == 3 and len(checked.frame) == 93
    incomplete = [w for w in checked.warnings if w["rule"] == "incomplete_day"]
    assert len(incomplete) == 1 and "missing 3, 10, 20" in incomplete[0]["message"]
    assert checked.strict_failures == [*checked.errors, *incomplete]


def test_price_ceiling_warning_depends_on_the_date() -> None:
    assert [
        price_ceiling(date(2023, 4, 1)),
        price_ceiling(date(2022, 6, 1)),
        price_ceiling(date(2021, 1, 1)),
    ] == [10_000, 12_000, 20_000]
    rows = [["Date", "Block", "DAM Price"], ["13-04-2024", 1, 11000], ["13-04-2021", 1, 11000]]
    _, checked = run(rows)
    assert [w["row"] for w in checked.warnings if w["rule"] == "above_ceiling"] == [2]
    assert checked.rows_rejected == 0


def test_exchange_volume_order_is_a_warning() -> None:
    rows = [
        ["Date", "Block", "Purchase Bid", "Sell Bid", "MCV", "FSV", "MCP"],
        ["13-04-2024", 1, 100, 90, 95, 96, 3000],
    ]
    _, checked = run(rows, "exchange-prices", market="DAM")
    rules = {w["rule"] for w in checked.warnings}  # a one-block day is incomplete, too
    assert rules == {"mcv_above_bids", "fsv_above_mcv", "incomplete_day"}
    assert len(checked.frame) == 1 and checked.errors == []


def test_missing_key_column_names_the_form_field() -> None:
    rows = [["Date", "Block", "MCP"], ["13-04-2024", 1, 3000]]
    with pytest.raises(Invalid, match="market=DAM"):
        run(rows, "exchange-prices")


def test_csv_delimiters_and_bom(tmp_path: Path) -> None:
    for delimiter, bom in ((",", False), (";", True), ("\t", True)):
        path = tmp_path / "f.csv"
        path.write_bytes(
            csv_bytes(SNAPSHOT_HEADER, snapshot_rows(DAY), delimiter=delimiter, bom=bom)
        )
        book = open_workbook(path, "f.csv", 0)
        assert book.csv_delimiter == delimiter
        n = normalize(book.sheet("csv"), SNAP, "csv")
        assert n.mapping["date"] == "Date" and len(n.frame) == 96


def test_workbooks_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "b.xlsx"
    for make in (zip_bomb, lying_zip_bomb):
        path.write_bytes(make(3_000_000))
        with pytest.raises(TooLarge, match="the limit is 1 MB"):
            open_workbook(path, "b.xlsx", 1_000_000)
    path.write_bytes(b"dummy content\n")
    with pytest.raises(Invalid, match="not a readable xlsx file"):
        open_workbook(path, "b.xlsx", 1_000_000)
    path.write_bytes(xlsx_bytes(["Date"], [["x"]]))
    assert open_workbook(path, "b.xlsx", 1_000_000).sheet_names == ["Data"]
