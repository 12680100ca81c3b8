"""Every fixture file uploaded as every kind over HTTP, on both databases: stored, stored with
warnings, or refused with the kind the file looks like, and a refusal leaves what is stored
exactly as it was."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import openpyxl
import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.orm import Session

from energyops_ext.ingest.schemas import KINDS
from energyops_ext.services import Services
from energyops_ext.widgets.actions import report_html
from tests.unit.test_widgets_report import section, text_of

from .conftest import Fetch, assert_error, body
from .test_datasets import upload

SNAPSHOT = "sample_market_snapshot.xlsx"
GENERATOR = "sample_dmo_generator_scheduling.xlsx"
STORAGE = "sample_storage_data.csv"
DUMMY = "dummy.xlsx"
OPENAPI = "energyops_ext/static/openapi.yaml"
WITH_ACTUAL = "sample_market_snapshot.xlsx + ActualMW"


def with_actual_mw(fixtures: Path) -> bytes:
    """The snapshot fixture with one more column, ActualMW (a generator-schedule's column)."""
    book = openpyxl.load_workbook(fixtures / SNAPSHOT)
    sheet = book.active
    assert sheet is not None
    column = sheet.max_column + 1
    sheet.cell(row=1, column=column, value="ActualMW")
    for row in range(2, sheet.max_row + 1):
        sheet.cell(row=row, column=column, value=100 + row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def file_bytes(fixtures: Path, name: str) -> tuple[str, bytes]:
    if name == WITH_ACTUAL:
        return "snapshot-actual.xlsx", with_actual_mw(fixtures)
    return name, (fixtures / name).read_bytes()


# Which kind each file is; uploaded as any other kind it is refused with that kind suggested.
FILE_KIND = {
    SNAPSHOT: "market-snapshot",
    GENERATOR: "generator-schedule",
    STORAGE: "storage-schedule",
    WITH_ACTUAL: "market-snapshot",
}
# (file, kind) uploaded as its own kind: rows stored, warning rules
STORED = {
    (SNAPSHOT, "market-snapshot"): (96, set()),
    (GENERATOR, "generator-schedule"): (576, set()),
    (STORAGE, "storage-schedule"): (336, {"incomplete_day"}),
    (WITH_ACTUAL, "market-snapshot"): (96, {"column_left_out"}),
}


def expected(file: str, kind: str) -> tuple[str, Any, Any]:
    """("stored", rows, warning rules) or ("refused", code, suggested kind)."""
    if file == DUMMY:
        return "refused", "unreadable_file", None
    if (file, kind) in STORED:
        rows, warnings = STORED[(file, kind)]
        return "stored", rows, warnings
    return "refused", "wrong_kind", FILE_KIND[file]


CASES = [
    (file, kind, *expected(file, kind))
    for file in (SNAPSHOT, GENERATOR, STORAGE, DUMMY)
    for kind in KINDS
] + [(WITH_ACTUAL, kind, *expected(WITH_ACTUAL, kind)) for kind in KINDS]


async def everything_stored(services: Services) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every dataset table and of the upload history."""
    tables = [k.table for k in KINDS.values()] + ["uploads"]

    def read(session: Session) -> dict[str, list[tuple[Any, ...]]]:
        return {
            t: sorted((tuple(r) for r in session.execute(text(f"SELECT * FROM {t}"))), key=repr)
            for t in tables
        }

    return await services.db.read(read)


def kept_files(services: Services) -> list[Path]:
    root = services.settings.files_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize(
    ("file", "kind", "outcome", "first", "second"),
    CASES,
    ids=[f"{f}-as-{k}" for f, k, *_ in CASES],
)
async def test_file_as_kind(
    api: Fetch,
    services: Services,
    fixtures_dir: Path,
    file: str,
    kind: str,
    outcome: str,
    first: Any,
    second: Any,
) -> None:
    # what is already stored: the day of the snapshot fixture, which a replace would swap out
    seeded = await upload(api, "market-snapshot", SNAPSHOT, (fixtures_dir / SNAPSHOT).read_bytes())
    assert seeded.code == 201, seeded.body
    before, files_before = await everything_stored(services), kept_files(services)
    name, data = file_bytes(fixtures_dir, file)
    fields = {"mode": "replace", **({"market": "DAM"} if kind == "exchange-prices" else {})}

    r = await upload(api, kind, name, data, **fields)

    if outcome == "refused":
        error = assert_error(r, 422, first)
        assert error.get("details", {}).get("suggested_kind") == second, error
        if second is not None:
            assert error["message"].startswith(f"this file looks like a {second} (columns ")
            assert error["message"].endswith(f"; upload it as {second}")
        assert await everything_stored(services) == before
        assert kept_files(services) == files_before
        return
    assert r.code == 201, r.body
    report = body(r)
    assert report["rows_inserted"] == first and report["status"] == "stored", report
    assert report["rows_rejected"] == 0 and report["errors"] == [], report
    assert {w["rule"] for w in report["warnings"]} == second
    assert report["warnings_total"] == len(report["warnings"])
    assert report["kind_check"]["looks_like"] == kind
    table = KINDS[kind].table
    stored = await everything_stored(services)
    assert len(stored[table]) == first
    notes = body(await api("GET", "notifications"))["items"]
    assert not [n for n in notes if n["type"] == "upload_rejected"], notes


async def test_a_left_out_column_is_a_warning_on_the_header_row(
    api: Fetch, fixtures_dir: Path
) -> None:
    name, data = file_bytes(fixtures_dir, WITH_ACTUAL)
    report = body(await upload(api, "market-snapshot", name, data))
    assert report["warnings"] == [
        {
            "row": 1,
            "column": "ActualMW",
            "value": "ActualMW",
            "rule": "column_left_out",
            "message": "ActualMW is left out: a market-snapshot has no such column "
            "(a generator-schedule reads it as actual_mw)",
        }
    ]
    assert report["kind_check"]["columns_left_out"] == ["ActualMW"]
    history = body(await api("GET", f"uploads/{report['upload_id']}"))
    assert history["report"]["warnings"] == report["warnings"]


async def test_incomplete_days_are_warnings_and_strict_still_refuses_them(
    api: Fetch, services: Services, fixtures_dir: Path
) -> None:
    data = (fixtures_dir / STORAGE).read_bytes()
    report = body(await upload(api, "storage-schedule", STORAGE, data, dry_run="true"))
    days = [w for w in report["warnings"] if w["rule"] == "incomplete_day"]
    assert report["errors"] == [] and report["errors_total"] == 0 and days
    assert report["rows_rejected"] == 0 and report["rows_valid"] == 336
    shown = text_of(report_html(report))  # as the upload panel shows it
    assert section(shown, "Rejected rows (not stored)") == ["none"]
    assert [line.split(" | ")[3] for line in section(shown, "Warnings (rows stored)")[1:]] == [
        "incomplete_day"
    ] * len(days)

    r = await upload(api, "storage-schedule", STORAGE, data, strict="true")
    error = assert_error(r, 422, "upload_rejected")
    count = len(days)
    assert error["message"] == f"strict upload rejected: {count} incomplete day" + "s" * (
        count != 1
    )
    assert error["details"]["rows_rejected"] == 336 and error["details"]["rows_inserted"] == 0
    assert (await everything_stored(services))["storage_schedule"] == []
    notes = body(await api("GET", "notifications"))["items"]
    assert notes[0]["type"] == "upload_rejected" and days[0]["message"] in notes[0]["message"]


async def test_a_workbook_uses_the_first_sheet_the_kind_fits(
    api: Fetch, fixtures_dir: Path
) -> None:
    """A generator sheet first, the market sheet second: a market-snapshot upload takes the
    second, a generator-schedule upload the first."""
    book = openpyxl.load_workbook(fixtures_dir / GENERATOR)
    market = openpyxl.load_workbook(fixtures_dir / SNAPSHOT).active
    assert market is not None
    copy = book.create_sheet("Market Data")
    for row in market.iter_rows(values_only=True):
        copy.append(row)
    out = io.BytesIO()
    book.save(out)
    report = body(await upload(api, "market-snapshot", "both.xlsx", out.getvalue()))
    assert report["sheet"] == "Market Data" and report["rows_inserted"] == 96, report
    assert report["sheet_choice"] == "first sheet whose header matches"
    report = body(await upload(api, "generator-schedule", "both.xlsx", out.getvalue()))
    assert report["sheet"] == "Generator Scheduling" and report["rows_inserted"] == 576
    r = await upload(
        api, "market-snapshot", "both.xlsx", out.getvalue(), sheet="Generator Scheduling"
    )
    assert_error(r, 422, "wrong_kind", "looks like a generator-schedule")


async def test_the_reports_match_the_openapi_document(api: Fetch, fixtures_dir: Path) -> None:
    spec = yaml.safe_load((Path(__file__).parents[2] / OPENAPI).read_text())
    schema = {**spec["components"]["schemas"]["UploadReport"], "components": spec["components"]}
    validator = jsonschema.Draft202012Validator(schema)
    for kind, file in (("market-snapshot", WITH_ACTUAL), ("storage-schedule", STORAGE)):
        name, data = file_bytes(fixtures_dir, file)
        for fields in ({"dry_run": "true"}, {}):
            report = body(await upload(api, kind, name, data, **fields))
            errors = [e.message for e in validator.iter_errors(report)]
            assert errors == [], (file, fields, errors)
            assert report["warnings"], report
