"""Factories for realistic dataset files (exchange downloads, desk csv files, zip bombs)."""

from __future__ import annotations

import io
import zipfile
from datetime import date, timedelta
from typing import Any

import openpyxl

from energyops_ext.ingest.parse import block_label

SNAPSHOT_HEADER = [
    "Date",
    "Time Block",
    "Plant",
    "DAM Price (Rs/MWh)",
    "RTM Price",
    "GDAM_Price",
    "Scheduled MW",
    "Model Result MW",
    "Purchase Bid MW",
    "Sell Bid MW",
    "Plant Name",
]


def snapshot_rows(day: date, plant: str = "P1", *, base: float = 3000.0) -> list[list[Any]]:
    """96 rows of one plant-day with values derived from the block (easy to check)."""
    return [
        [
            day.strftime("%d-%m-%Y"),
            b,
            plant,
            base + b,
            base + 100 + b,
            base - 100 + b,
            100 + b,
            90 + b,
            50 + b,
            40 + b,
            f"{plant} name",
        ]
        for b in range(1, 97)
    ]


def csv_bytes(
    header: list[str], rows: list[list[Any]], *, delimiter: str = ",", bom: bool = False
) -> bytes:
    lines = [delimiter.join(header)]
    lines += [delimiter.join("" if v is None else str(v) for v in row) for row in rows]
    data = ("\r\n".join(lines) + "\r\n").encode()
    return (b"\xef\xbb\xbf" + data) if bom else data


def snapshot_csv(days: list[date], plants: tuple[str, ...] = ("P1",), **kw: Any) -> bytes:
    rows = [r for d in days for p in plants for r in snapshot_rows(d, p)]
    return csv_bytes(SNAPSHOT_HEADER, rows, **kw)


def exchange_xlsx(day: date, *, hourly_merge: bool = True) -> bytes:
    """An exchange-style DAM market snapshot: title rows, a ``Date | Hour | Time Block`` cell
    merged over three columns above a units row, Date and Hour merged down over their blocks,
    and a trailing summary table."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Market Snapshot"
    sheet.append(["Indian Energy Exchange - Day Ahead Market"])
    sheet.append([f"Market Snapshot from {day:%d-%m-%Y} to {day:%d-%m-%Y}"])
    sheet.append([])
    sheet.append(
        [
            "Date | Hour | Time Block",
            None,
            None,
            "Purchase Bid",
            "Sell Bid",
            "MCV",
            "Final Scheduled Volume",
            "MCP",
        ]
    )
    sheet.append([None, None, None, "(MW)", "(MW)", "(MW)", "(MW)", "(Rs/MWh) *"])
    sheet.merge_cells(start_row=4, start_column=1, end_row=4, end_column=3)
    first = 6
    for block in range(1, 97):
        hour = (block - 1) // 4 + 1
        new_hour = (block - 1) % 4 == 0
        sheet.append(
            [
                day.strftime("%d-%m-%Y") if block == 1 else None,
                hour if new_hour else None,
                block_label(block).replace("-", " - "),
                f"{9000 + block * 10:,}",
                8000 + block * 10,
                7000 + block,
                6990 + block,
                2500 + block * 50,
            ]
        )
    if hourly_merge:
        sheet.merge_cells(start_row=first, start_column=1, end_row=first + 95, end_column=1)
        for h in range(24):
            sheet.merge_cells(
                start_row=first + 4 * h, start_column=2, end_row=first + 4 * h + 3, end_column=2
            )
    sheet.append(["Total", None, None, 1_000_000, 900_000, 700_000, 690_000, None])
    sheet.append(["Max", None, None, 9960, 8960, 7096, 7086, 7300])
    sheet.append([])
    sheet.append(["Summary"])
    sheet.append(["Period", "Avg MCP"])
    for name, value in (("RTC", 4925.0), ("Day", 4000.0), ("Night", 5500.0), ("Peak", 7000.0)):
        sheet.append([name, value])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def xlsx_bytes(header: list[str], rows: list[list[Any]], *, title: str = "Data") -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = title
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def zip_bomb(unpacked_bytes: int) -> bytes:
    """A workbook-shaped zip whose sheet XML inflates to ``unpacked_bytes`` of repeated
    bytes (a few KB on disk), with its sizes declared honestly."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("xl/worksheets/sheet1.xml", "w") as entry:
            chunk = b"<c>0</c>" * 131072
            for _ in range(unpacked_bytes // len(chunk) + 1):
                entry.write(chunk)
    return out.getvalue()


def lying_zip_bomb(unpacked_bytes: int) -> bytes:
    """Like ``zip_bomb`` but the central directory and local header claim 100 bytes."""
    data = bytearray(zip_bomb(unpacked_bytes))
    name = b"xl/worksheets/sheet1.xml"
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (pos := data.find(signature, start)) >= 0:
            name_at = pos + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(name)] == name:
                data[pos + offset : pos + offset + 4] = (100).to_bytes(4, "little")
            start = pos + 4
    return bytes(data)


def days_from(start: date, count: int) -> list[date]:
    return [start + timedelta(days=i) for i in range(count)]
