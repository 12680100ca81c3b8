"""Market stats, snapshot and exports, checked against the uploaded data on both databases."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta

import openpyxl
import pytest

from tests.ingest_files import SNAPSHOT_HEADER, csv_bytes, snapshot_rows

from .conftest import Fetch, assert_error, body
from .test_datasets import upload

DAY = date(2024, 4, 13)
NEXT = DAY + timedelta(days=1)
EVIL = "=cmd|' /C calc'!A0"


def market_file() -> bytes:
    """Two plants on DAY (P2's prices 1,000 higher, its name a formula), one plant on NEXT
    with blocks 1-4 only."""
    p2 = snapshot_rows(DAY, "P2", base=4000.0)
    for row in p2:
        row[-1] = EVIL
    rows = snapshot_rows(DAY, "P1") + p2 + snapshot_rows(NEXT, "P1")[:4]
    return csv_bytes(SNAPSHOT_HEADER, rows)


BLOCKS = range(1, 97)


async def test_stats_snapshot_and_export(api: Fetch) -> None:
    r = await upload(api, "market-snapshot", "m.csv", market_file())
    assert r.code == 201 and body(r)["rows_inserted"] == 196, r.body

    stats = body(await api("GET", "market/stats", params={"date": DAY.isoformat()}))
    assert stats["count"] == 192
    assert stats["avg_dam_price"] == pytest.approx(3500 + 48.5)
    assert stats["avg_rtm_price"] == pytest.approx(3600 + 48.5)
    assert stats["avg_gdam_price"] == pytest.approx(3400 + 48.5)
    assert stats["total_scheduled_mw"] == pytest.approx(2 * sum(100 + b for b in BLOCKS))
    assert stats["total_model_result_mw"] == pytest.approx(2 * sum(90 + b for b in BLOCKS))
    assert stats["total_purchase_bid_mw"] == pytest.approx(2 * sum(50 + b for b in BLOCKS))
    assert stats["total_sell_bid_mw"] == pytest.approx(2 * sum(40 + b for b in BLOCKS))
    assert datetime.fromisoformat(stats["last_updated"]).tzinfo is not None
    everything = body(await api("GET", "market/stats"))
    assert everything["count"] == 196
    ranged = body(await api("GET", "market/stats", params={"from": NEXT.isoformat()}))
    assert ranged["count"] == 4 and ranged["avg_dam_price"] == pytest.approx(3002.5)
    empty = body(await api("GET", "market/stats", params={"date": "2020-01-01"}))
    assert empty["count"] == 0 and empty["avg_dam_price"] is None

    snap = body(await api("GET", "market/snapshot", params={"date": DAY.isoformat()}))
    assert len(snap["rows"]) == 96
    first = snap["rows"][0]
    assert first["timeblock"] == "00:00-00:15" and first["dam_price"] == pytest.approx(3501)
    assert first["scheduled_mw"] == pytest.approx(2 * 101)
    assert snap["rows"][-1]["timeblock"] == "23:45-24:00"
    latest = body(await api("GET", "market/snapshot"))
    assert latest["from"] == NEXT.isoformat() and len(latest["rows"]) == 96
    assert latest["rows"][3]["dam_price"] == pytest.approx(3004)
    assert latest["rows"][4]["dam_price"] is None

    r = await api("GET", "market/export", params={"date": DAY.isoformat()})
    assert r.code == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert r.headers["Content-Disposition"] == 'attachment; filename="market-2024-04-13.csv"'
    table = list(csv.reader(io.StringIO(r.body.decode())))
    assert table[0] == [
        "Timeblock",
        "DAM",
        "RTM",
        "GDAM",
        "Purchase Bid MW",
        "Sell Bid MW",
        "Scheduled MW",
        "Model Result MW",
    ]
    assert len(table) == 97
    assert table[1][0] == "00:00-00:15"
    assert [float(v) for v in table[1][1:]] == [3501, 3601, 3401, 102, 82, 202, 182]

    r = await api(
        "GET",
        "market/export",
        params={"from": DAY.isoformat(), "to": NEXT.isoformat(), "group": "plant"},
    )
    table = list(csv.reader(io.StringIO(r.body.decode())))
    assert table[0][:4] == ["Date", "Timeblock", "Plant", "Contract"]
    assert len(table) == 1 + 196
    assert "'" + EVIL in {row[2] for row in table[1:]}
    assert EVIL not in {row[2] for row in table[1:]}

    r = await api(
        "GET", "market/export", params={"date": DAY.isoformat(), "format": "xlsx", "group": "plant"}
    )
    assert r.code == 200 and r.headers["Content-Disposition"].endswith('.xlsx"')
    sheet = openpyxl.load_workbook(io.BytesIO(r.body), read_only=True).active
    assert sheet is not None
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert cells[0][:3] == ["Timeblock", "Plant", "Contract"] and len(cells) == 193
    assert cells[2][1] == "'" + EVIL and cells[2][0] == "00:00-00:15"
    assert cells[1][3] == pytest.approx(3001)


BAD_PARAMETERS: list[tuple[str, dict[str, str], str]] = [
    ("market/stats", {"date": "2024-13-01"}, "date"),
    ("market/stats", {"date": "13-04-2024"}, "date"),
    ("market/stats", {"from": "2024-04-14", "to": "2024-04-13"}, "from"),
    ("market/stats", {"date": "2024-04-13", "from": "2024-04-01"}, "date"),
    ("market/snapshot", {"from": "2020-01-01", "to": "2024-01-01"}, "limit for a snapshot"),
    ("market/export", {"format": "pdf"}, "format"),
    ("market/export", {"group": "region"}, "group"),
    ("market/export", {"to": "yesterday"}, "to"),
]


async def test_bad_market_parameters(api: Fetch) -> None:
    for path, params, field in BAD_PARAMETERS:
        assert_error(await api("GET", path, params=params), 400, "invalid_parameter", field)


async def test_stats_give_energy_and_average_mw_per_block(api: Fetch) -> None:
    await upload(api, "market-snapshot", "m.csv", market_file())

    day = body(await api("GET", "market/stats", params={"date": DAY.isoformat()}))
    # two plants: a block's position is their sum, 2 * (100 + b) MW for a quarter hour
    assert day["blocks"] == 96
    assert day["energy_scheduled_mwh"] == pytest.approx(0.25 * day["total_scheduled_mw"])
    assert day["energy_scheduled_mwh"] == pytest.approx(sum(2 * (100 + b) * 0.25 for b in BLOCKS))
    assert day["avg_scheduled_mw"] == pytest.approx(2 * (100 + 48.5))
    assert day["avg_model_result_mw"] == pytest.approx(2 * (90 + 48.5))
    assert day["energy_purchase_bid_mwh"] == pytest.approx(sum(2 * (50 + b) / 4 for b in BLOCKS))
    assert day["avg_sell_bid_mw"] == pytest.approx(2 * (40 + 48.5))
    assert day["total_scheduled_mw"] == pytest.approx(2 * sum(100 + b for b in BLOCKS))  # kept

    partial = body(await api("GET", "market/stats", params={"date": NEXT.isoformat()}))
    assert partial["blocks"] == 4  # the average is over the blocks that have data
    assert partial["avg_scheduled_mw"] == pytest.approx(102.5)
    assert partial["energy_scheduled_mwh"] == pytest.approx((101 + 102 + 103 + 104) / 4)

    empty = body(await api("GET", "market/stats", params={"date": "2020-01-01"}))
    assert empty["blocks"] == 0
    assert empty["energy_scheduled_mwh"] is None and empty["avg_scheduled_mw"] is None


async def test_an_export_names_the_blocks_without_data(api: Fetch) -> None:
    gap = DAY - timedelta(days=1)
    rows = [r for r in snapshot_rows(gap) if r[1] not in (37, 50, 51, 52)]
    await upload(api, "market-snapshot", "m.csv", market_file())
    await upload(api, "market-snapshot", "gap.csv", csv_bytes(SNAPSHOT_HEADER, rows))

    full = await api("GET", "market/export", params={"date": DAY.isoformat()})
    assert full.headers["X-EnergyOps-Missing-Block-Count"] == "0"
    assert "X-EnergyOps-Missing-Blocks" not in full.headers

    r = await api("GET", "market/export", params={"date": gap.isoformat()})
    assert r.code == 200
    assert r.headers["X-EnergyOps-Missing-Block-Count"] == "4"
    assert r.headers["X-EnergyOps-Missing-Blocks"] == "2024-04-12:37,50-52"
    assert len(list(csv.reader(io.StringIO(r.body.decode())))) == 1 + 92

    after = NEXT + timedelta(days=1)
    params = {"from": gap.isoformat(), "to": after.isoformat(), "format": "xlsx"}
    r = await api("GET", "market/export", params=params)
    assert r.headers["X-EnergyOps-Missing-Block-Count"] == str(4 + 92 + 96)
    assert r.headers["X-EnergyOps-Missing-Blocks"] == (
        "2024-04-12:37,50-52 2024-04-14:5-96 2024-04-15:1-96"
    )
    book = openpyxl.load_workbook(io.BytesIO(r.body), read_only=True)
    assert book.sheetnames == ["Market Data", "Missing blocks"]
    note = [list(row) for row in book["Missing blocks"].iter_rows(values_only=True)]
    assert note == [
        ["From", "To", "Blocks", "Timeblocks"],
        ["2024-04-12", "2024-04-12", "37,50-52", "09:00-09:15, 12:15-13:00"],
        ["2024-04-14", "2024-04-14", "5-96", "01:00-24:00"],
        ["2024-04-15", "2024-04-15", "1-96", "00:00-24:00"],
    ]

    # days without any row fold into one entry, so a range from antiquity costs nothing more
    r = await api("GET", "market/export", params={"from": "0106-07-27", "to": DAY.isoformat()})
    assert r.code == 200
    days_before = (gap - date(106, 7, 27)).days
    assert r.headers["X-EnergyOps-Missing-Block-Count"] == str(days_before * 96 + 4)
    assert (
        r.headers["X-EnergyOps-Missing-Blocks"] == "0106-07-27..2024-04-11:1-96 2024-04-12:37,50-52"
    )

    nothing = await api("GET", "market/export", params={"date": "2020-01-01"})
    assert (
        nothing.code == 200 and nothing.headers["X-EnergyOps-Missing-Blocks"] == "2020-01-01:1-96"
    )
