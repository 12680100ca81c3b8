"""The landing page's pure parts: dashboard lines read from the notebooks, the status cards at
an injected time (the uptime ticks on from the last report), HTML escaping."""

from __future__ import annotations

import json
from pathlib import Path

from energyops_ext.widgets.overview import (
    HealthReading,
    dashboard_links,
    dashboards_html,
    describe_notebook,
    format_uptime,
    status_cards,
    status_html,
)

REPO = Path(__file__).resolve().parents[2]
REPORT = {
    "status": "ok",
    "version": "0.1.0",
    "uptime_s": 100.4,
    "database": {"kind": "sqlite", "reachable": True, "migration": {"up_to_date": True}},
    "queue": {"running": 2, "queued": 5},
}


def md(source: str | list[str]) -> dict[str, object]:
    return {"cell_type": "markdown", "source": source}


def test_title_and_description_come_from_the_first_markdown_cell() -> None:
    nb = {"cells": [{"cell_type": "code", "source": "x"}, md(["# Market\n", "\n", "Prices.\n"])]}
    assert describe_notebook(nb, "market") == ("Market", "Prices.")
    assert describe_notebook({"cells": [md("## Ops\n### sub\nLive runs.")]}, "o") == (
        "Ops",
        "Live runs.",
    )
    assert describe_notebook({"cells": [md("no heading")]}, "fallback") == ("fallback", "")
    assert describe_notebook({}, "empty") == ("empty", "")


def test_the_repository_dashboards_each_have_a_title_and_a_line() -> None:
    links = dashboard_links(REPO / "dashboards")
    names = {link.path for link in links}
    assert {"market.ipynb", "operations.ipynb"} <= names
    assert "overview.ipynb" not in names
    for link in links:
        assert link.title and link.title != link.path.removesuffix(".ipynb"), link
        assert link.description, link


def test_dashboard_lines_are_escaped_and_unreadable_notebooks_still_listed(tmp_path: Path) -> None:
    evil = "<img src=x onerror=alert(1)>"
    (tmp_path / "a.ipynb").write_text(json.dumps({"cells": [md(f"# {evil}\n{evil}")]}))
    (tmp_path / "broken.ipynb").write_text("{not json")
    html = dashboards_html(dashboard_links(tmp_path))
    assert evil not in html and "&lt;img" in html
    assert 'data-dashboard="broken.ipynb"' in html
    assert "no other dashboard" in dashboards_html([])


def test_uptime_is_whole_seconds() -> None:
    assert format_uptime(9.9) == "9 s"
    assert format_uptime(61) == "1 min 01 s"
    assert format_uptime(3 * 3600 + 62) == "3 h 01 min 02 s"
    assert format_uptime(2 * 86400 + 3600) == "2 d 01 h 00 min"
    assert format_uptime(-5) == "0 s"


def test_the_uptime_ticks_on_from_the_last_report_and_an_old_report_is_stale() -> None:
    reading = HealthReading(REPORT, at=1000.0)
    first = dict((k, v) for k, _label, v in status_cards(reading, now=1000.0, stale_after=45))
    later = dict((k, v) for k, _label, v in status_cards(reading, now=1003.0, stale_after=45))
    assert first["uptime"] == "1 min 40 s" and later["uptime"] == "1 min 43 s"
    assert later["status"] == "ok" and later["running"] == "2" and later["queued"] == "5"
    assert later["database"] == "sqlite ok" and later["schema"] == "up to date"
    stale = dict((k, v) for k, _label, v in status_cards(reading, now=1050.0, stale_after=45))
    assert stale["status"] == "no report for 50 s"


def test_before_any_report_the_card_says_why() -> None:
    assert status_cards(HealthReading(), 0, 45) == [("status", "Server", "waiting for the server")]
    failed = status_cards(HealthReading(error="connection refused"), 0, 45)
    assert failed[0][2] == "unreachable: connection refused"
    html = status_html(failed, stale=True, foot="<b>")
    assert "eo-stale" in html and "&lt;b&gt;" in html
