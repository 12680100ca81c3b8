"""The upload report in the upload panel: readable rows and sentences, no Python reprs;
rejected rows (not stored) apart from warnings (stored)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from energyops_ext.widgets.actions import report_html

REPORT: dict[str, Any] = {
    "kind": "market-snapshot",
    "status": "partial",
    "dry_run": False,
    "sheet": "Market Data",
    "sheet_choice": "first sheet",
    "columns": {"date": "TimePeriod", "dam_price": "DAMprice"},
    "kind_check": {"looks_like": "market-snapshot", "columns_read": {}, "columns_left_out": []},
    "conversions": [
        {
            "column": "dam_price",
            "from": "Rs/kWh",
            "to": "Rs/MWh",
            "factor": 1000,
            "reason": "every value is below 50",
        }
    ],
    "notes": ["columns not read: Remarks"],
    "rows_read": 96,
    "rows_inserted": 95,
    "rows_updated": 0,
    "rows_deleted": 0,
    "rows_rejected": 1,
    "errors_total": 1,
    "warnings_total": 2,
    "errors": [
        {
            "row": 4,
            "column": "ScheduleMW",
            "value": "lots",
            "rule": "not_a_number",
            "message": "not a number",
        }
    ],
    "warnings": [
        {
            "row": 1,
            "column": "ActualMW",
            "value": "ActualMW",
            "rule": "column_left_out",
            "message": "ActualMW is left out: a market-snapshot has no such column",
        },
        {
            "row": 2,
            "column": "Timeblock",
            "value": "95 blocks",
            "rule": "incomplete_day",
            "message": "2025-10-08 has 95 of 96 blocks; missing 3",
        },
    ],
}


class _Text(HTMLParser):
    """The text of each block and table row, in order (what a reader sees); table cells are
    joined with `` | ``."""

    BLOCKS = ("div", "tr", "table")

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self._cells: list[str] = [""]

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.BLOCKS:
            self.flush()
        elif tag in ("td", "th") and self._cells[-1].strip():
            self._cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCKS:
            self.flush()

    def handle_data(self, data: str) -> None:
        self._cells[-1] += data

    def flush(self) -> None:
        cells = [" ".join(c.split()) for c in self._cells if c.strip()]
        if cells:
            self.lines.append(" | ".join(cells))
        self._cells = [""]


def text_of(html: str) -> list[str]:
    parser = _Text()
    parser.feed(html)
    parser.close()
    parser.flush()
    return parser.lines


def section(lines: list[str], title: str) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(("Rejected", "Warnings"))),
        len(lines),
    )
    return lines[start + 1 : end]


def test_the_report_reads_as_rows_and_sentences() -> None:
    html = report_html(REPORT)
    assert not re.search(r"\{'|'\}|': ", html), "a Python repr in the report"
    lines = text_of(html)
    assert lines[:2] == [
        "partial (stored): read 96 · inserted 95 · updated 0 · deleted 0 · rejected 1 · warnings 2",
        "sheet: Market Data (first sheet)",
    ]
    assert "dam_price: Rs/kWh → Rs/MWh, multiplied by 1000 (every value is below 50)" in lines
    assert "columns not read: Remarks" in lines
    assert section(lines, "Rejected rows (not stored)") == [
        "row | column | value | rule | message",
        "4 | ScheduleMW | lots | not_a_number | not a number",
    ]
    assert section(lines, "Warnings (rows stored)") == [
        "row | column | value | rule | message",
        "1 | ActualMW | ActualMW | column_left_out | "
        "ActualMW is left out: a market-snapshot has no such column",
        "2 | Timeblock | 95 blocks | incomplete_day | 2025-10-08 has 95 of 96 blocks; missing 3",
    ]


def test_a_refused_or_dry_run_report_says_nothing_was_stored() -> None:
    rejected = text_of(report_html({**REPORT, "status": "rejected"}))
    assert rejected[0].startswith("rejected (nothing stored):")
    dry = text_of(report_html({**REPORT, "status": "dry_run", "dry_run": True}))
    assert dry[0].startswith("dry_run (dry run, nothing stored):")


def test_a_clean_report_says_none_and_a_long_one_says_how_many_are_shown() -> None:
    clean = text_of(report_html({**REPORT, "errors": [], "warnings": [], "errors_total": 0}))
    assert section(clean, "Rejected rows (not stored)") == ["none"]
    many = {**REPORT, "errors": REPORT["errors"] * 100, "errors_total": 1234}
    assert "Rejected rows (not stored) (the first 100 of 1,234)" in text_of(report_html(many))


def test_the_file_looking_like_another_kind_is_said() -> None:
    report = {**REPORT, "kind": "generator-schedule"}
    report["kind_check"] = {**REPORT["kind_check"], "looks_like": "contract-schedule"}
    assert "the file looks more like contract-schedule than generator-schedule" in text_of(
        report_html(report)
    )
