"""Pure parts of the schedule panels: countdowns, deadline outcomes, today's rows, escaping,
and the create form's body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from energyops_ext.widgets.schedules import (
    attempts_text,
    countdown,
    deadline_outcome,
    fires_html,
    schedule_body,
    schedules_html,
    today_html,
    today_rows,
)

IST = ZoneInfo("Asia/Kolkata")
XSS = "<img src=x onerror=alert(1)>"
NOW = datetime(2030, 1, 7, 4, 0, tzinfo=UTC)  # 09:30 IST


@pytest.mark.parametrize(
    ("offset_s", "text"),
    [
        (42, "in 42 s"),
        (125, "in 2 min 05 s"),
        (1800, "in 30 min"),
        (3900, "in 1 h 05 min"),
        (-180, "3 min 00 s ago"),
        (-7200, "2 h 00 min ago"),
    ],
)
def test_countdown(offset_s: int, text: str) -> None:
    assert countdown(NOW + timedelta(seconds=offset_s), NOW) == text
    assert countdown(None, NOW) == "—"


def fire(**fields: Any) -> dict[str, Any]:
    return {"status": "fired", "deadline_at": None, "attempts": [], **fields}


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        ({}, "—"),
        ({"deadline_at": "2030-01-07T06:30:00+00:00"}, "waiting"),
        ({"deadline_at": "2030-01-07T04:20:00+00:00"}, "at risk"),
        ({"deadline_at": "2030-01-07T03:59:00+00:00"}, "missed"),
        ({"deadline_at": "2030-01-07T06:30:00+00:00", "deadline_missed": True}, "missed"),
        (
            {
                "deadline_at": "2030-01-07T03:59:00+00:00",
                "attempts": [
                    {"attempt": 1, "status": "failed"},
                    {"attempt": 2, "status": "succeeded"},
                ],
            },
            "met",
        ),
        ({"status": "missed"}, "missed"),
        ({"status": "skipped"}, "skipped"),
    ],
)
def test_deadline_outcome(fields: dict[str, Any], outcome: str) -> None:
    assert deadline_outcome(fire(**fields), NOW) == outcome


def test_attempts_text() -> None:
    assert attempts_text(
        [{"attempt": 1, "status": "failed"}, {"attempt": 2, "status": "running"}]
    ) == ("1 failed → 2 running")
    assert attempts_text([]) == "—"


def schedule(**fields: Any) -> dict[str, Any]:
    return {
        "id": 1,
        "title": "DMO",
        "script_name": "dmo.py",
        "cron": "0 9,15 * * *",
        "timezone": "Asia/Kolkata",
        "enabled": True,
        "deadline": "+60",
        "next_fires": ["2030-01-07T09:30:00+00:00", "2030-01-08T03:30:00+00:00"],
        "next_deadlines": ["2030-01-07T10:30:00+00:00", "2030-01-08T04:30:00+00:00"],
        "last_outcome": "succeeded",
        **fields,
    }


def test_today_rows_merge_what_came_and_what_is_to_come() -> None:
    fires = {
        1: [
            fire(
                slot="2030-01-07T03:30:00+00:00",
                run_id=7,
                deadline_at="2030-01-07T04:30:00+00:00",
                attempts=[{"attempt": 1, "status": "failed"}, {"attempt": 2, "status": "running"}],
            ),
            fire(slot="2030-01-06T09:30:00+00:00", run_id=5),  # yesterday in IST
        ]
    }
    rows = today_rows([schedule()], fires, NOW, IST)
    assert [(r["slot"].isoformat(), r["status"], r["outcome"]) for r in rows] == [
        ("2030-01-07T03:30:00+00:00", "running", "at risk"),
        ("2030-01-07T09:30:00+00:00", "upcoming", "waiting"),
    ]
    html = today_html(rows, NOW, IST)
    assert "09:00" in html and "15:00" in html and "in 30 min" in html and "in 6 h 30 min" in html
    assert today_html([], NOW, IST) == (
        '<div class="eo-empty eo-no-schedule">nothing scheduled today</div>'
    )


def test_names_and_reasons_are_escaped() -> None:
    html = schedules_html([schedule(title=XSS, cron=XSS)], NOW)
    assert XSS not in html and "&lt;img" in html
    assert "in 5 h 30 min" in html
    paused = schedules_html([schedule(enabled=False, next_fires=[])], NOW)
    assert 'data-outcome="paused"' in paused
    fires = fires_html([fire(slot="2030-01-07T03:30:00+00:00", reason=XSS)], IST, NOW)
    assert XSS not in fires and "&lt;img" in fires
    rows = today_rows([schedule(title=XSS)], {}, NOW, IST)
    assert XSS not in today_html(rows, NOW, IST)


def test_the_create_form_body() -> None:
    assert schedule_body(script="12", cron=" 0 9 * * * ", timezone="") == {
        "script_id": 12,
        "cron": "0 9 * * *",
        "timezone": "Asia/Kolkata",
        "missed": {"max_lateness_s": 300},
        "channels": [],
    }
    body = schedule_body(
        script="dmo.py",
        cron="0 9 * * *",
        timezone="Europe/London",
        name="DMO",
        deadline="12:00",
        max_attempts=3,
        backoff_s=30,
        channels="json://127.0.0.1:9/a\n\n mailto://x@example.com ",
    )
    assert body["script_name"] == "dmo.py" and "script_id" not in body
    assert body["retry"] == {"max_attempts": 3, "backoff_s": 30}
    assert body["deadline"] == "12:00" and body["name"] == "DMO"
    assert body["channels"] == ["json://127.0.0.1:9/a", "mailto://x@example.com"]
