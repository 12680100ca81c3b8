"""Dataset uploads over HTTP on both databases: fixtures, bad input, modes, limits, CLI."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session
from tornado.httpclient import HTTPResponse

from energyops_ext.errors import format_size
from energyops_ext.events import DATASETS, Event
from energyops_ext.ingest.queries import encode_cursor as encode
from energyops_ext.services import Services
from tests.ingest_files import (
    SNAPSHOT_HEADER,
    csv_bytes,
    days_from,
    exchange_xlsx,
    lying_zip_bomb,
    snapshot_csv,
    snapshot_rows,
    zip_bomb,
)

from .conftest import Fetch, assert_error, body

REPO = Path(__file__).resolve().parents[2]
DAY = date(2024, 4, 13)


def multipart(fields: dict[str, str], file: tuple[str, bytes] | None) -> tuple[bytes, str]:
    boundary = "----ingest" + secrets.token_hex(8)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    if file is not None:
        name, data = file
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


async def upload(
    api: Fetch, kind: str, name: str, data: bytes | None, **fields: str
) -> HTTPResponse:
    payload, content_type = multipart(fields, (name, data) if data is not None else None)
    return await api(
        "POST", f"datasets/{kind}/uploads", body=payload, headers={"Content-Type": content_type}
    )


async def count_rows(services: Services, table: str) -> int:
    from sqlalchemy import text

    def count(session: Session) -> int:
        return int(session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())

    return await services.db.read(count)


async def test_fixture_files_are_read(api: Fetch, services: Services, fixtures_dir: Path) -> None:
    events: list[Event] = []
    services.hub.add_listener(events.append)

    r = await upload(
        api,
        "market-snapshot",
        "snap.xlsx",
        (fixtures_dir / "sample_market_snapshot.xlsx").read_bytes(),
    )
    assert r.code == 201, r.body
    report = body(r)
    assert report["rows_inserted"] == 96 and report["rows_rejected"] == 0
    assert report["status"] == "stored" and report["sheet"] == "Market Data"
    assert {c["column"] for c in report["conversions"]} == {"dam_price", "rtm_price", "gdam_price"}
    assert report["columns"]["dam_price"] == "DAMprice"
    rows = body(await api("GET", "datasets/market-snapshot/rows", params={"limit": "2"}))
    assert rows["items"][0]["dam_price"] == pytest.approx(3100.0)
    assert rows["items"][0]["plant"] == "Plant1" and rows["items"][0]["block"] == 1

    r = await upload(
        api,
        "generator-schedule",
        "gen.xlsx",
        (fixtures_dir / "sample_dmo_generator_scheduling.xlsx").read_bytes(),
    )
    report = body(r)
    assert r.code == 201 and report["rows_inserted"] == 144 * 4, report
    assert report["hourly_rows_expanded"] == 144
    assert any("hourly" in n for n in report["notes"])

    r = await upload(
        api,
        "storage-schedule",
        "storage.csv",
        (fixtures_dir / "sample_storage_data.csv").read_bytes(),
    )
    report = body(r)
    assert r.code == 201 and report["rows_inserted"] == 84 * 4, report
    assert report["errors"] == [] and report["rows_rejected"] == 0, report
    assert {w["rule"] for w in report["warnings"]} == {"incomplete_day"}
    assert await count_rows(services, "storage_schedule") == 336

    before = body(await api("GET", "datasets"))
    files_before = sorted(p.name for p in services.settings.files_dir.rglob("*"))
    r = await upload(
        api, "market-snapshot", "dummy.xlsx", (fixtures_dir / "dummy.xlsx").read_bytes()
    )
    assert_error(r, 422, "unreadable_file", "not a readable xlsx file")
    assert body(await api("GET", "datasets")) == before
    assert sorted(p.name for p in services.settings.files_dir.rglob("*")) == files_before
    counts = {k["kind"]: k["rows"] for k in before["items"]}
    assert counts["market-snapshot"] == 96 and counts["generator-schedule"] == 576

    history = body(await api("GET", "datasets/market-snapshot/uploads"))
    assert history["total"] == 1
    one = body(await api("GET", f"uploads/{history['items'][0]['id']}"))
    assert one["report"]["rows_inserted"] == 96 and one["uploaded_by"]
    uploaded = [e for e in events if e.topic == DATASETS and e.type == "dataset.uploaded"]
    assert [e.data["kind"] for e in uploaded] == [
        "market-snapshot",
        "generator-schedule",
        "storage-schedule",
    ]
    updated = [e for e in events if e.type == "market.updated"]
    assert updated[0].data == {"kind": "market-snapshot", "dates": ["2025-10-08"]}


async def test_rows_paging_and_filters(api: Fetch) -> None:
    r = await upload(api, "market-snapshot", "two.csv", snapshot_csv([DAY], ("P1", "P2")))
    assert body(r)["rows_inserted"] == 192
    seen: list[tuple[str, int, str]] = []
    cursor = None
    while True:
        params = {"limit": "50", "plant": "P2", **({"cursor": cursor} if cursor else {})}
        page = body(await api("GET", "datasets/market-snapshot/rows", params=params))
        seen += [(i["date"], i["block"], i["plant"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [(DAY.isoformat(), b, "P2") for b in range(1, 97)]

    # pages of 7 end between the two plants of a block as often as between blocks
    seen, cursor = [], None
    while True:
        params = {"limit": "7", **({"cursor": cursor} if cursor else {})}
        page = body(await api("GET", "datasets/market-snapshot/rows", params=params))
        seen += [(i["date"], i["block"], i["plant"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [(DAY.isoformat(), b, p) for b in range(1, 97) for p in ("P1", "P2")]
    assert "id" not in page["items"][0] and page["items"][0]["contract"] == ""

    # a kind whose key is not written date first: exchange prices are keyed market, date, ...
    for market in ("RTM", "DAM"):
        r = await upload(api, "exchange-prices", "iex.xlsx", exchange_xlsx(DAY), market=market)
        assert body(r)["rows_inserted"] == 96, body(r)
    prices: list[tuple[str, int, str]] = []
    cursor = None
    while True:
        params = {"limit": "7", **({"cursor": cursor} if cursor else {})}
        page = body(await api("GET", "datasets/exchange-prices/rows", params=params))
        prices += [(i["date"], i["block"], i["market"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert prices == [(DAY.isoformat(), b, m) for b in range(1, 97) for m in ("DAM", "RTM")]
    for wrong in ([DAY.isoformat(), 5], [DAY.isoformat(), 5, "P1"], [DAY.isoformat(), 5, 1, 2]):
        r = await api("GET", "datasets/market-snapshot/rows", params={"cursor": encode(wrong)})
        assert_error(r, 400, "invalid_parameter", "cursor")
    page = body(
        await api(
            "GET",
            "datasets/market-snapshot/rows",
            params={"from": "2024-04-14", "to": "2024-04-20"},
        )
    )
    assert page["items"] == []
    assert_error(
        await api("GET", "datasets/market-snapshot/rows", params={"from": "13-04-2024"}),
        400,
        "invalid_parameter",
        "from",
    )
    assert_error(
        await api("GET", "datasets/market-snapshot/rows", params={"cursor": "xyz"}),
        400,
        "invalid_parameter",
        "cursor",
    )
    assert_error(await api("GET", "datasets/nope/rows"), 404, "unknown_kind")
    assert_error(await api("GET", "uploads/999999"), 404, "not_found")


def _bad(rows: list[list[Any]]) -> bytes:
    return csv_bytes(SNAPSHOT_HEADER, rows)


def _with(row_changes: dict[int, dict[int, Any]]) -> bytes:
    rows = snapshot_rows(DAY)
    for index, changes in row_changes.items():
        for col, value in changes.items():
            rows[index][col] = value
    return _bad(rows)


# (name, file name, bytes, fields, status, code, fragment: in the message, or a rule of the
# report's errors for 201)
BAD_INPUTS: list[tuple[str, str, bytes, dict[str, str], int, str, str]] = [
    ("empty file", "a.csv", b"", {}, 422, "empty_file", "empty"),
    ("wrong extension", "a.pdf", b"%PDF-1.4", {}, 415, "unsupported_media_type", "'a.pdf'"),
    (
        "not a spreadsheet",
        "a.xlsx",
        b"<html>hello</html>",
        {},
        422,
        "unreadable_file",
        "not a readable xlsx file",
    ),
    (
        "header matches no kind",
        "a.csv",
        b"Name,Colour\nx,red\n",
        {},
        422,
        "header_not_recognized",
        "columns found: Name, Colour; required: a date",
    ),
    ("month-first date", "a.csv", _with({0: {0: "04-13-2024"}}), {}, 201, "", "invalid_date"),
    ("duplicate block", "a.csv", _with({5: {1: 5}}), {}, 201, "", "repeated_block"),
    ("MW out of range", "a.csv", _with({3: {6: 250_000}}), {}, 201, "", "mw_out_of_range"),
    ("negative price", "a.csv", _with({2: {3: -5}}), {}, 201, "", "price_out_of_range"),
    ("text in a number column", "a.csv", _with({1: {6: "lots"}}), {}, 201, "", "not_a_number"),
    (
        "97th block",
        "a.csv",
        _bad([*snapshot_rows(DAY), [DAY.strftime("%d-%m-%Y"), 97, "P1", 1, 1, 1, 1, 1, 1, 1, "x"]]),
        {},
        201,
        "",
        "block_out_of_range",
    ),
    (
        "unknown field",
        "a.csv",
        snapshot_csv([DAY]),
        {"colour": "red"},
        400,
        "unknown_field",
        "colour",
    ),
    ("bad mode", "a.csv", snapshot_csv([DAY]), {"mode": "merge"}, 400, "invalid_parameter", "mode"),
    ("dots in filename", "..x.csv", snapshot_csv([DAY]), {}, 400, "invalid_name", "filename"),
    (
        "slash in sheet",
        "a.xlsx",
        exchange_xlsx(DAY),
        {"sheet": "a/b"},
        400,
        "invalid_name",
        "sheet",
    ),
    (
        "unknown sheet",
        "a.xlsx",
        exchange_xlsx(DAY),
        {"sheet": "Nope", "market": "DAM"},
        422,
        "unknown_sheet",
        "Nope",
    ),
    (
        "exchange file without market",
        "a.xlsx",
        exchange_xlsx(DAY),
        {},
        422,
        "missing_column",
        "market=DAM",
    ),
]


async def test_bad_input_table(api: Fetch, services: Services) -> None:
    for name, filename, data, fields, status, code, fragment in BAD_INPUTS:
        kind = (
            "exchange-prices" if filename == "a.xlsx" and b"PK" in data[:2] else "market-snapshot"
        )
        r = await upload(api, kind, filename, data, **fields)
        if status != 201:
            assert_error(r, status, code, fragment)
            continue
        assert r.code == 201, (name, r.body)
        report = body(r)
        if fragment:
            assert fragment in {e["rule"] for e in report["errors"]}, (name, report["errors"])
            assert report["rows_rejected"] == 1, (name, report)
            error = next(e for e in report["errors"] if e["rule"] == fragment)
            assert error["row"] >= 2 and error["column"] in SNAPSHOT_HEADER, (name, error)
    r = await upload(api, "market-snapshot", "a/b.csv", snapshot_csv([DAY]))
    assert_error(r, 400, "invalid_name", "filename")
    r = await upload(api, "market-snapshot", "x.csv", None)
    assert_error(r, 400, "missing_file", "file")
    assert_error(await upload(api, "nope", "x.csv", b"a"), 404, "unknown_kind", "nope")


async def test_exchange_file_and_semicolon_bom_csv(api: Fetch) -> None:
    r = await upload(api, "exchange-prices", "iex.xlsx", exchange_xlsx(DAY), market="DAM")
    report = body(r)
    assert r.code == 201 and report["rows_inserted"] == 96 and report["errors_total"] == 0, report
    assert report["summary_rows_left_out"] == 8 and report["header_row"] == 5
    assert report["columns"]["mcp"] == "MCP (Rs/MWh) *"
    rows = body(
        await api("GET", "datasets/exchange-prices/rows", params={"market": "DAM", "block": "96"})
    )["items"]
    assert len(rows) == 1
    assert rows[0]["purchase_bid_mw"] == 9960 and rows[0]["mcp"] == 7300
    assert rows[0]["area"] == "system" and rows[0]["date"] == DAY.isoformat()

    data = snapshot_csv([DAY], delimiter=";", bom=True)
    report = body(await upload(api, "market-snapshot", "semi.csv", data))
    assert report["rows_inserted"] == 96 and report["errors_total"] == 0, report
    assert report["columns"]["date"] == "Date"


async def test_nul_in_a_text_cell_rejects_its_row(api: Fetch, services: Services) -> None:
    """A NUL no database text column can hold, past the part of a csv sniffed for binary
    content: in a key (Plant) and in a descriptive column (Plant Name)."""
    days = [date(2024, 4, d) for d in range(1, 13)]
    rows = [r for d in days for r in snapshot_rows(d)]
    rows[-1][10] = "P1\x00name"
    rows[-2][2] = "P\x001"
    data = csv_bytes(SNAPSHOT_HEADER, rows)
    assert data.index(b"\x00") > 64 * 1024
    r = await upload(api, "market-snapshot", "nul.csv", data)
    report = body(r)
    assert r.code == 201, report
    assert (report["rows_inserted"], report["rows_rejected"]) == (len(rows) - 2, 2), report
    errors = {(e["row"], e["column"], e["rule"]) for e in report["errors"]}
    assert errors == {
        (len(rows) + 1, "Plant Name", "nul_in_text"),
        (len(rows), "Plant", "nul_in_text"),
    }, report["errors"]
    assert all("\x00" not in (e["value"] or "") for e in report["errors"])
    assert await count_rows(services, "market_snapshot") == len(rows) - 2

    r = await upload(api, "exchange-prices", "iex.xlsx", exchange_xlsx(DAY), market="D\x00AM")
    assert_error(r, 422, "nul_in_text", "market")
    r = await api("GET", "datasets/market-snapshot/rows", params={"plant": "P\x001"})
    assert r.code == 200 and body(r)["items"] == []  # Tornado reads a query's NUL as a space
    assert await count_rows(services, "exchange_prices") == 0


async def test_modes(api: Fetch, services: Services) -> None:
    days = [DAY, date(2024, 4, 14)]
    data = snapshot_csv(days)
    first = body(await upload(api, "market-snapshot", "m.csv", data))
    again = body(await upload(api, "market-snapshot", "m.csv", data))
    assert (first["rows_inserted"], again["rows_inserted"], again["rows_updated"]) == (192, 0, 192)
    assert await count_rows(services, "market_snapshot") == 192

    other = snapshot_csv([DAY], ("P9",))
    replaced = body(await upload(api, "market-snapshot", "r.csv", other, mode="replace"))
    assert replaced["rows_deleted"] == 96 and replaced["rows_inserted"] == 96
    plants = body(
        await api(
            "GET", "datasets/market-snapshot/rows", params={"to": DAY.isoformat(), "limit": "500"}
        )
    )["items"]
    assert {p["plant"] for p in plants} == {"P9"}
    assert await count_rows(services, "market_snapshot") == 192

    uploads_before = body(await api("GET", "datasets/market-snapshot/uploads"))["total"]
    dry = body(
        await upload(
            api, "market-snapshot", "d.csv", snapshot_csv([date(2024, 5, 1)]), dry_run="true"
        )
    )
    assert dry["status"] == "dry_run" and dry["upload_id"] is None
    assert dry["preview"][0]["date"] == "2024-05-01" and dry["preview"][0]["dam_price"] == 3001
    assert await count_rows(services, "market_snapshot") == 192
    assert body(await api("GET", "datasets/market-snapshot/uploads"))["total"] == uploads_before

    bad = _with({4: {6: -1}})
    r = await upload(api, "market-snapshot", "s.csv", bad, strict="true")
    error = assert_error(r, 422, "upload_rejected", "strict")
    assert error["message"] == "strict upload rejected: 1 row error, 1 incomplete day"
    assert {e["rule"] for e in error["details"]["errors"]} == {"mw_out_of_range"}
    assert {w["rule"] for w in error["details"]["warnings"]} == {"incomplete_day"}
    assert await count_rows(services, "market_snapshot") == 192
    notes = body(await api("GET", "notifications"))["items"]
    assert notes[0]["type"] == "upload_rejected" and notes[0]["severity"] == "error"


@pytest.fixture
def energyops_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.node.name.startswith("test_limits"):
        return {"max_unpacked_bytes": 2_000_000, "max_upload_bytes": 200_000}
    return {}


async def test_limits(api: Fetch, services: Services) -> None:
    for make in (zip_bomb, lying_zip_bomb):
        r = await upload(api, "market-snapshot", "bomb.xlsx", make(6_000_000))
        assert_error(r, 413, "archive_too_large", "the limit is 2 MB")
    big = snapshot_csv(days_from(DAY, 36))
    assert 200_000 < len(big) < 250_000
    r = await upload(api, "market-snapshot", "big.csv", big)
    assert_error(r, 413, "too_large", f"the file is {format_size(len(big))}; the limit is 200 KB")
    r = await upload(api, "market-snapshot", "bigger.csv", big * 2)
    assert_error(r, 413, "too_large", "the limit is 200 KB")
    assert await count_rows(services, "market_snapshot") == 0
    spool = services.settings.data_dir / "tmp"
    assert not list(spool.glob("upload-*"))


def _cli(db_url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENERGYOPS_DB_URL": db_url, "ENERGYOPS_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [str(Path(sys.executable).parent / "jupyter"), "energyops", "ingest", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_cli_ingest(db_url: str, tmp_path: Path, fixtures_dir: Path) -> None:
    good = _cli(
        db_url,
        tmp_path,
        str(fixtures_dir / "sample_market_snapshot.xlsx"),
        "--kind",
        "market-snapshot",
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["rows_inserted"] == 96
    wrong = _cli(
        db_url,
        tmp_path,
        str(fixtures_dir / "sample_dmo_generator_scheduling.xlsx"),
        "--kind",
        "market-snapshot",
        "--mode",
        "replace",
    )
    assert wrong.returncode == 1 and wrong.stdout == "", wrong.stdout
    error = json.loads(wrong.stderr[wrong.stderr.index("{") :])["error"]
    assert (error["code"], error["details"]["suggested_kind"]) == (
        "wrong_kind",
        "generator-schedule",
    )
    again = _cli(
        db_url,
        tmp_path,
        str(fixtures_dir / "sample_market_snapshot.xlsx"),
        "--kind",
        "market-snapshot",
    )
    assert json.loads(again.stdout)["rows_updated"] == 96  # the refused replace took nothing
    bad = _cli(db_url, tmp_path, str(fixtures_dir / "dummy.xlsx"), "--kind", "market-snapshot")
    assert bad.returncode == 1 and "not a readable xlsx file" in bad.stderr
    path = tmp_path / "strict.csv"
    path.write_bytes(_with({4: {6: -1}}))
    strict = _cli(db_url, tmp_path, str(path), "--kind", "market-snapshot", "--strict")
    assert strict.returncode == 1 and "mw_out_of_range" in strict.stderr
    dry = _cli(db_url, tmp_path, str(path), "--kind", "market-snapshot", "--dry-run")
    assert dry.returncode == 1 and json.loads(dry.stdout)["rows_rejected"] == 1
