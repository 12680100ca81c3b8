"""Which kind a file is (``ingest.kinds``): pure verdicts on header rows, no I/O."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from energyops_ext.errors import Invalid
from energyops_ext.ingest.kinds import (
    NEEDS,
    check_sheet,
    header_names,
    judge,
    read_header,
)
from energyops_ext.ingest.normalize import find_header
from energyops_ext.ingest.read import open_workbook
from energyops_ext.ingest.schemas import KINDS, TIME_ALIASES

# The header rows of the real fixture files, as they are in the files.
SNAPSHOT = [
    "TimePeriod",
    "Timeblock",
    "DAMprice",
    "RTMprice",
    "GDAMprice",
    "ScheduleMW",
    "ModelresultMW",
    "PurchaseBidMW",
    "SellBidMW",
    "State",
    "PlantName",
    "Region",
    "ContractName",
]
GENERATOR = [
    "TimePeriod",
    "Region",
    "State",
    "PlantID",
    "PlantName",
    "TechnologyType",
    "ContractName",
    "ScheduledMW",
    "ActualMW",
]
STORAGE = [
    "TimePeriod",
    "Region",
    "State",
    "StorageType",
    "CapacityMW",
    "ChargeMW",
    "DischargeMW",
    "StateOfCharge",
    "Efficiency",
    "Cycles",
]
EXCHANGE = [
    "Date",
    "Hour",
    "Time Block",
    "Purchase Bid (MW)",
    "Sell Bid (MW)",
    "MCV (MW)",
    "Final Scheduled Volume (MW)",
    "MCP (Rs/MWh) *",
]
CONTRACTS = [
    "Date",
    "Block",
    "Contract",
    "Contract Name",
    "Contract Type",
    "Counterparty",
    "Scheduled MW",
]
HEADERS = {
    "snapshot": SNAPSHOT,
    "generator": GENERATOR,
    "storage": STORAGE,
    "exchange": EXCHANGE,
    "contracts": CONTRACTS,
    "snapshot + ActualMW": [*SNAPSHOT, "ActualMW"],
    "snapshot + Remarks": [*SNAPSHOT, "Remarks"],
    "plant MW": ["Date", "Block", "Plant", "Scheduled MW"],
    "bids only": ["Date", "Block", "Purchase Bid MW", "Sell Bid MW"],
}


def sheet_of(names: list[str]) -> pd.DataFrame:
    """A raw sheet: the header and one row of numbers."""
    return pd.DataFrame([names, ["2025-10-08 00:00:00", *([1] * (len(names) - 1))]], dtype=object)


def verdict(file: str, kind: str, provided: tuple[str, ...] = ()) -> tuple[str, object, object]:
    """("kept", looks_like, warning rules) or ("refused", code, suggested kind)."""
    raw = sheet_of(HEADERS[file])
    try:
        check = check_sheet(raw, KINDS[kind], "Sheet1", provided)
    except Invalid as exc:
        return "refused", exc.code, exc.details.get("suggested_kind")
    return "kept", check.looks_like, sorted({f.rule for f in check.warnings})


# (file, declared kind, provided columns, verdict)
TABLE: list[tuple[str, str, tuple[str, ...], tuple[str, object, object]]] = [
    ("snapshot", "market-snapshot", (), ("kept", "market-snapshot", [])),
    ("snapshot", "exchange-prices", (), ("refused", "wrong_kind", "market-snapshot")),
    ("snapshot", "generator-schedule", (), ("refused", "wrong_kind", "market-snapshot")),
    ("snapshot", "contract-schedule", (), ("refused", "wrong_kind", "market-snapshot")),
    ("snapshot", "market-bids", (), ("refused", "wrong_kind", "market-snapshot")),
    ("snapshot", "storage-schedule", (), ("refused", "wrong_kind", "market-snapshot")),
    ("generator", "market-snapshot", (), ("refused", "wrong_kind", "generator-schedule")),
    ("generator", "exchange-prices", ("market",), ("refused", "wrong_kind", "generator-schedule")),
    ("generator", "generator-schedule", (), ("kept", "generator-schedule", [])),
    ("generator", "contract-schedule", (), ("refused", "wrong_kind", "generator-schedule")),
    ("generator", "market-bids", (), ("refused", "wrong_kind", "generator-schedule")),
    ("generator", "storage-schedule", (), ("refused", "wrong_kind", "generator-schedule")),
    ("storage", "market-snapshot", (), ("refused", "wrong_kind", "storage-schedule")),
    ("storage", "generator-schedule", (), ("refused", "wrong_kind", "storage-schedule")),
    ("storage", "storage-schedule", (), ("kept", "storage-schedule", [])),
    ("exchange", "exchange-prices", ("market",), ("kept", "exchange-prices", [])),
    ("exchange", "market-snapshot", (), ("refused", "wrong_kind", "exchange-prices")),
    # weaker mismatches: kept, with a warning
    (
        "snapshot + ActualMW",
        "market-snapshot",
        (),
        ("kept", "market-snapshot", ["column_left_out"]),
    ),
    (
        "snapshot + ActualMW",
        "generator-schedule",
        (),
        ("refused", "wrong_kind", "market-snapshot"),
    ),
    ("snapshot + Remarks", "market-snapshot", (), ("kept", "market-snapshot", [])),
    (
        "contracts",
        "generator-schedule",
        ("plant_id",),
        ("kept", "contract-schedule", ["looks_like_other_kind"]),
    ),
    ("contracts", "contract-schedule", (), ("kept", "contract-schedule", [])),
    # what the declared kind needs: from the file, or from the request
    ("plant MW", "market-snapshot", (), ("refused", "wrong_kind", "generator-schedule")),
    ("plant MW", "market-snapshot", ("dam_price",), ("kept", "market-snapshot", [])),
    ("plant MW", "generator-schedule", (), ("kept", "generator-schedule", [])),
    ("bids only", "market-snapshot", (), ("refused", "kind_columns_missing", None)),
    ("bids only", "generator-schedule", (), ("refused", "header_not_recognized", None)),
]


@pytest.mark.parametrize(
    ("file", "kind", "provided", "expected"),
    TABLE,
    ids=[f"{f}-as-{k}{'+' + ','.join(p) if p else ''}" for f, k, p, _ in TABLE],
)
def test_verdict_table(
    file: str, kind: str, provided: tuple[str, ...], expected: tuple[str, object, object]
) -> None:
    assert verdict(file, kind, provided) == expected


def test_the_generator_schedule_as_a_market_snapshot_names_the_kind_and_what_it_lacks() -> None:
    with pytest.raises(Invalid) as caught:
        judge(KINDS["market-snapshot"], header_names(sheet_of(GENERATOR), KINDS["market-snapshot"]))
    assert caught.value.status == 422
    assert caught.value.message == (
        "this file looks like a generator-schedule (columns PlantID, PlantName, TechnologyType, "
        "ContractName, ScheduledMW and ActualMW); it lacks the prices a market-snapshot file "
        "needs (DAM Price, RTM Price or GDAM Price); upload it as generator-schedule"
    )
    assert caught.value.details["suggested_kind"] == "generator-schedule"
    assert caught.value.details["kind"] == "market-snapshot"


def test_a_market_file_as_a_generator_schedule_names_the_columns_it_would_drop() -> None:
    with pytest.raises(Invalid) as caught:
        judge(
            KINDS["generator-schedule"],
            header_names(sheet_of(SNAPSHOT), KINDS["generator-schedule"]),
        )
    assert caught.value.code == "wrong_kind"
    assert (
        "as a generator-schedule upload its DAMprice, RTMprice, GDAMprice, ModelresultMW, "
        "PurchaseBidMW and SellBidMW would be left out; upload it as market-snapshot"
    ) in caught.value.message


def test_warnings_and_notes_say_which_column_is_left_out_and_who_reads_it() -> None:
    check = check_sheet(sheet_of([*SNAPSHOT, "ActualMW", "Remarks"]), KINDS["market-snapshot"], "S")
    assert [(f.rule, f.column, f.message) for f in check.warnings] == [
        (
            "column_left_out",
            "ActualMW",
            "ActualMW is left out: a market-snapshot has no such column "
            "(a generator-schedule reads it as actual_mw)",
        )
    ]
    assert check.notes == ["columns not read: Remarks"]
    assert check.report()["columns_left_out"] == ["ActualMW", "Remarks"]
    assert check.warning_rows(1) == [
        {
            "row": 1,
            "column": "ActualMW",
            "value": "ActualMW",
            "rule": "column_left_out",
            "message": check.warnings[0].message,
        }
    ]


def test_a_weaker_match_warns_with_the_kind_it_may_be() -> None:
    names = {k: CONTRACTS for k in ("generator-schedule", "contract-schedule")}
    check = judge(KINDS["generator-schedule"], names, provided={"plant_id"})
    assert check.looks_like == "contract-schedule"
    assert check.columns_read == {"generator-schedule": 3, "contract-schedule": 5}
    assert [f.message for f in check.warnings] == [
        "this file may be a contract-schedule: a contract-schedule also reads Contract Type "
        "and Counterparty, which a generator-schedule upload leaves out"
    ]


def test_no_kind_at_all_keeps_the_message_with_the_columns_found() -> None:
    with pytest.raises(Invalid) as caught:
        check_sheet(sheet_of(["Date", "Block", "Name", "Colour"]), KINDS["market-snapshot"], "S")
    assert caught.value.code == "header_not_recognized"
    assert "columns found: Date, Block, Name, Colour; required: a date" in caught.value.message
    with pytest.raises(Invalid) as direct:
        judge(KINDS["market-snapshot"], {})
    assert direct.value.code == "header_not_recognized"


@pytest.mark.parametrize("names", list(HEADERS.values()), ids=list(HEADERS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_reading_matches_what_normalize_maps(names: list[str], kind: str) -> None:
    header = find_header(sheet_of(names), KINDS[kind])
    reading = read_header(names, KINDS[kind])
    assert reading.is_header == (header is not None)
    if header is not None:
        expected = {c: p for c, p in header.mapping.items() if c not in TIME_ALIASES}
        assert reading.columns == expected


def test_every_kind_says_what_it_needs_with_columns_it_has() -> None:
    assert set(NEEDS) == set(KINDS)
    for name, need in NEEDS.items():
        assert {c.name for c in KINDS[name].value_columns} >= set(need.columns)


def test_the_fixture_files_are_told_apart(fixtures_dir: Path) -> None:
    found = {}
    for file in (
        "sample_market_snapshot.xlsx",
        "sample_dmo_generator_scheduling.xlsx",
        "sample_storage_data.csv",
    ):
        book = open_workbook(fixtures_dir / file, file, 10**8)
        raw = book.sheet(book.sheet_names[0])
        found[file] = check_sheet(raw, KINDS[_kind_of(file)], book.sheet_names[0]).looks_like
    assert found == {
        "sample_market_snapshot.xlsx": "market-snapshot",
        "sample_dmo_generator_scheduling.xlsx": "generator-schedule",
        "sample_storage_data.csv": "storage-schedule",
    }


def _kind_of(file: str) -> str:
    if "snapshot" in file:
        return "market-snapshot"
    return "generator-schedule" if "generator" in file else "storage-schedule"


def test_a_file_no_kind_fits_that_lacks_what_the_kind_needs_lists_its_columns() -> None:
    with pytest.raises(Invalid) as caught:
        check_sheet(sheet_of(HEADERS["bids only"]), KINDS["market-snapshot"], "S")
    assert caught.value.message == (
        "the file lacks the prices a market-snapshot file needs (DAM Price, RTM Price or "
        "GDAM Price); columns found: Date, Block, Purchase Bid MW, Sell Bid MW"
    )
    assert caught.value.details["missing"] == ["dam_price", "rtm_price", "gdam_price"]
