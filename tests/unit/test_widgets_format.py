"""Times, missing values and the market chart's pure parts: no kernel, no server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from traitlets import TraitError

from energyops_ext.config import EnergyOps
from energyops_ext.ingest.coverage import MissingRun, block_ranges, block_times, missing_headers
from energyops_ext.widgets.buffer import html_table
from energyops_ext.widgets.charts import (
    blocks_without_data,
    chart_note,
    hover_html,
    nice_ceiling,
    scale_bounds,
    stat_cards_html,
)
from energyops_ext.widgets.format import (
    DEFAULT_ZONE,
    block_runs,
    block_span,
    blocks_text,
    display_zone,
    format_cell,
    format_instant,
    hour_ticks,
    is_missing,
    parse_instant,
    use_display_zone,
    zone_from_health,
)

IST = ZoneInfo("Asia/Kolkata")
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(autouse=True)
def default_zone() -> Iterator[None]:
    use_display_zone(DEFAULT_ZONE)
    yield None
    use_display_zone(DEFAULT_ZONE)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("2026-12-03T15:13:58.123456+00:00", "2026-12-03 20:43 IST"),
        ("2026-12-03T15:13:58.123456", "2026-12-03 20:43 IST"),  # naive is UTC
        ("2026-12-03 18:30:00Z", "2026-12-04 00:00 IST"),
        ("2026-12-03T10:00+05:30", "2026-12-03 10:00 IST"),
        (datetime(2026, 12, 3, 15, 13, 59, 999999, tzinfo=UTC), "2026-12-03 20:43 IST"),
        (pd.Timestamp("2026-12-03T15:13:00Z"), "2026-12-03 20:43 IST"),
        (None, "—"),
        (float("nan"), "—"),
        (pd.NaT, "—"),
        ("2026-12-03", "2026-12-03"),  # a day is not an instant
        ("soon", "soon"),
    ],
)
def test_format_instant_in_the_display_zone_to_the_minute(value: Any, text: str) -> None:
    assert format_instant(value) == text


def test_the_display_zone_is_configurable_and_checked() -> None:
    moment = "2026-07-01T12:00:00+00:00"
    assert format_instant(moment, ZoneInfo("Europe/London")) == "2026-07-01 13:00 BST"
    use_display_zone("America/New_York")
    assert display_zone() == ZoneInfo("America/New_York")
    assert format_instant(moment) == "2026-07-01 08:00 EDT"
    assert format_cell(moment) == "2026-07-01 08:00 EDT"
    with pytest.raises(ValueError, match="'Mars/Olympus' is not a known IANA time zone"):
        use_display_zone("Mars/Olympus")
    assert display_zone() == ZoneInfo("America/New_York")  # a bad name changes nothing


def test_the_zone_comes_from_health_and_defaults_for_an_older_server() -> None:
    assert zone_from_health({"display": {"timezone": "Europe/Berlin"}}) == ZoneInfo("Europe/Berlin")
    assert zone_from_health({"status": "ok"}) == IST
    assert zone_from_health({"display": None}) == IST


def test_display_timezone_setting_refuses_an_unknown_zone() -> None:
    assert EnergyOps().to_settings().display_timezone == "Asia/Kolkata"
    assert EnergyOps(display_timezone="UTC").to_settings().display_timezone == "UTC"
    with pytest.raises(TraitError, match="'Asia/Bombay!' is not a known IANA time zone"):
        EnergyOps(display_timezone="Asia/Bombay!")


@pytest.mark.parametrize(
    ("value", "missing"),
    [
        (None, True),
        ("", True),
        (float("nan"), True),
        (np.float64("nan"), True),
        (pd.NaT, True),
        (pd.NA, True),
        (0, False),
        (0.0, False),
        ("nan-bar", False),
        (False, False),
    ],
)
def test_is_missing(value: Any, missing: bool) -> None:
    assert is_missing(value) is missing


def test_parse_instant_takes_only_timestamps() -> None:
    assert parse_instant("2026-12-03T15:13:58Z") == datetime(2026, 12, 3, 15, 13, 58, tzinfo=UTC)
    assert parse_instant(datetime(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)
    for value in ("2026-12-03", "12:30", "2026-13-45T99:99", 1733238838, date(2026, 1, 1)):
        assert parse_instant(value) is None, value


def test_html_table_shows_dashes_and_minutes_in_the_display_zone() -> None:
    frame = pd.DataFrame(
        {
            "id": [1, 2],
            "objective_value": [12.5, np.nan],
            "created_at": ["2026-12-03T15:13:58.123456+00:00", None],
            "finished_at": [pd.Timestamp("2026-12-03T15:20:00Z"), pd.NaT],
            "name": [XSS, "plain"],
        }
    )
    rows = [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]
    columns = [(c, c) for c in (*frame.columns, "absent")]
    table = html_table(rows, columns)
    assert "nan" not in table.lower() and "NaT" not in table and "None" not in table
    assert "<td>2026-12-03 20:43 IST</td><td>2026-12-03 20:50 IST</td>" in table
    assert "<td>12.5</td>" in table
    assert table.count("<td>—</td>") == 5  # objective, created, finished of row 2; absent x2
    assert XSS not in table and "&lt;img" in table


def test_blocks_as_times_of_day() -> None:
    assert block_span(1) == "00:00-00:15"
    assert block_span(37) == "09:00-09:15"
    assert block_span(96) == "23:45-24:00"
    assert hour_ticks(6) == {
        "0": "00:00",
        "6": "06:00",
        "12": "12:00",
        "18": "18:00",
        "24": "24:00",
    }
    assert block_runs([9, 3, 4, 5, 4]) == [(3, 5), (9, 9)]
    assert blocks_text([37]) == "block 37 (09:00-09:15)"
    assert blocks_text([5, 6, 7, 8, 37]) == "blocks 5-8 (01:00-02:00), 37 (09:00-09:15)"
    assert blocks_text([]) == ""


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [
        (0.0, 1.0),
        (float("nan"), 1.0),
        (0.7, 0.7),
        (657 * 1.05, 700.0),
        (10_500, 12_000),
        (205.8, 250.0),
        (1.0, 1.0),
        (1001, 1200),
    ],
)
def test_nice_ceiling(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_scale_bounds_start_at_zero_and_hold_the_data() -> None:
    assert scale_bounds(np.array([[100.0, 657.0], [np.nan, 3.0]])) == (0.0, 700.0)
    assert scale_bounds(np.full((2, 96), np.nan)) == (0.0, 1.0)  # an empty day
    low, high = scale_bounds(np.array([-40.0, 90.0]))  # negative prices go below zero
    assert low == -50.0 and high == 100.0


def day_frame(day: date, blocks: range | list[int]) -> pd.DataFrame:
    """Snapshot rows as the API gives them: 96 per day, nulls where a block has no data."""
    rows = []
    for b in range(1, 97):
        value = float(b) if b in blocks else None
        rows.append({"date": day.isoformat(), "block": b, "dam_price": value, "sell_bid_mw": value})
    return pd.DataFrame(rows)


def test_chart_note_for_an_empty_day_missing_blocks_and_a_full_day() -> None:
    day = date(2026, 12, 1)
    assert chart_note(day_frame(day, [])) == "No market data for 2026-12-01."
    assert chart_note(pd.DataFrame()) == "No market data for this day."
    gap = [b for b in range(1, 97) if b not in (37, 50, 51)]
    assert blocks_without_data(day_frame(day, gap)) == [37, 50, 51]
    assert chart_note(day_frame(day, gap)) == (
        "No data for blocks 37 (09:00-09:15), 50-51 (12:15-12:45): "
        "the chart has a gap and the export no row."
    )
    assert chart_note(day_frame(day, range(1, 97))) == ""
    only_bids = day_frame(day, range(1, 97)).assign(dam_price=None)
    assert blocks_without_data(only_bids) == []  # a block with any value is not missing


def test_hover_shows_block_time_and_values() -> None:
    series = {
        c: np.full(96, np.nan)
        for c in ("dam_price", "rtm_price", "gdam_price", "scheduled_mw", "model_result_mw")
    }
    series["dam_price"][36] = 4559.7
    series["scheduled_mw"][36] = 474.94
    text = hover_html(37, series)
    assert "<b>block 37</b> · 09:00-09:15 IST" in text
    assert "DAM 4,559.70 Rs/MWh" in text and "RTM —" in text
    assert "Scheduled 474.9 MW" in text and "Model result — MW" in text


def test_stat_cards_show_energy_average_mw_and_local_time() -> None:
    stats = {
        "avg_dam_price": 5616.314,
        "energy_scheduled_mwh": 11010.04,
        "avg_scheduled_mw": 458.751,
        "count": 96,
        "last_updated": "2026-12-03T15:27:41.402197+00:00",
    }
    html = stat_cards_html(stats)
    assert '<div class="eo-card-value">5,616.31</div>' in html
    assert (
        '<div class="eo-card" data-stat="energy_scheduled_mwh"><div class="eo-card-label">'
        'Scheduled</div><div class="eo-card-value">11,010.0</div>'
        '<div class="eo-card-unit">MWh · avg 458.8 MW</div></div>'
    ) in html
    assert 'data-stat="total_scheduled_mw"' not in html  # a sum of MW is not shown as MW
    assert "last updated 2026-12-03 20:57 IST" in html
    assert "last updated 2026-12-03 15:27 UTC" in stat_cards_html(stats, ZoneInfo("UTC"))
    empty = stat_cards_html({"count": 0})
    assert "nan" not in empty and "MWh · avg —" in empty and "last updated —" in empty


def test_export_headers_list_missing_blocks_and_stay_bounded() -> None:
    day = date(2024, 4, 12)
    assert block_ranges([52, 37, 50, 51]) == "37,50-52"
    assert block_times([5, 6, 96]) == "01:00-01:30, 23:45-24:00"
    assert missing_headers([]) == {"X-EnergyOps-Missing-Block-Count": "0"}
    week = MissingRun(day + timedelta(days=1), day + timedelta(days=7), tuple(range(1, 97)))
    assert missing_headers([MissingRun(day, day, (37,)), week]) == {
        "X-EnergyOps-Missing-Block-Count": str(1 + 7 * 96),
        "X-EnergyOps-Missing-Blocks": "2024-04-12:37 2024-04-13..2024-04-19:1-96",
    }
    # every other block missing for a year: the count is exact, the list is cut
    odd = tuple(range(1, 97, 2))
    year = [MissingRun(day + timedelta(i), day + timedelta(i), odd) for i in range(366)]
    headers = missing_headers(year)
    assert headers["X-EnergyOps-Missing-Block-Count"] == str(366 * 48)
    listed = headers["X-EnergyOps-Missing-Blocks"]
    assert listed.endswith(" ...") and len(listed) <= 4000 + 4
    assert listed.startswith("2024-04-12:1,3,5,")
