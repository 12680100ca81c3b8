"""Cron slots in a zone, deadlines of slots, back-off and the deadline cut: pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from energyops_ext.errors import Invalid
from energyops_ext.schedules.cron import (
    deadline_of,
    due_slots,
    next_fires,
    parse_cron,
    parse_deadline,
    zone,
)
from energyops_ext.schedules.policy import (
    RetryPolicy,
    can_finish_by,
    parse_deadline_at,
    parse_lateness,
    parse_retry,
    retry_delay_s,
)

IST = ZoneInfo("Asia/Kolkata")
LONDON = ZoneInfo("Europe/London")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def hm(slots: list[datetime]) -> list[str]:
    return [s.strftime("%m-%d %H:%M") for s in slots]


# --- next fires ---


def test_next_fires_in_kolkata_come_back_in_utc() -> None:
    cron = parse_cron("0 9 * * *", IST)
    now = datetime(2025, 10, 8, 8, 0, tzinfo=IST)
    fires = next_fires(cron, now, 3)
    assert fires == [utc(2025, 10, 8, 3, 30), utc(2025, 10, 9, 3, 30), utc(2025, 10, 10, 3, 30)]
    assert all(f.tzinfo is UTC for f in fires)


def test_next_fires_are_strictly_after_now_and_the_zone_of_now_does_not_matter() -> None:
    cron = parse_cron("*/30 10-11 * * 1-5", IST)  # the DAM bid window, on weekdays
    at_slot = utc(2025, 10, 10, 4, 30)  # Friday 10:00 IST
    assert hm(next_fires(cron, at_slot, 4)) == [
        "10-10 05:00",
        "10-10 05:30",
        "10-10 06:00",
        "10-13 04:30",
    ]
    assert next_fires(cron, at_slot.astimezone(LONDON), 4) == next_fires(cron, at_slot, 4)


def test_seconds_field_and_aliases() -> None:
    every_5s = parse_cron("* * * * * */5", IST)
    assert next_fires(every_5s, utc(2025, 1, 1, 0, 0, 1), 2) == [
        utc(2025, 1, 1, 0, 0, 5),
        utc(2025, 1, 1, 0, 0, 10),
    ]
    daily = parse_cron("@daily", IST)
    assert next_fires(daily, utc(2025, 1, 1, 12), 1) == [utc(2025, 1, 1, 18, 30)]


@pytest.mark.parametrize(
    ("expr", "instants"),
    [
        # hourly: 01:00 GMT is 02:00 BST; every UTC hour fires once
        ("0 * * * *", ["03-30 00:00", "03-30 01:00", "03-30 02:00", "03-30 03:00"]),
        # 01:30 does not exist on 30 March: it fires at the change (02:00 BST = 01:00 UTC)
        ("30 1 * * *", ["03-30 01:00", "03-31 00:30", "04-01 00:30", "04-02 00:30"]),
        ("0 10 * * *", ["03-30 09:00", "03-31 09:00", "04-01 09:00", "04-02 09:00"]),
    ],
)
def test_europe_london_in_march(expr: str, instants: list[str]) -> None:
    cron = parse_cron(expr, LONDON)
    assert hm(next_fires(cron, utc(2025, 3, 29, 23, 59), 4)) == instants


@pytest.mark.parametrize(
    ("expr", "instants"),
    [
        # the hour 01:00-02:00 comes twice; an hourly cron fires in both (UTC 00:00, 01:00)
        ("0 * * * *", ["10-26 00:00", "10-26 01:00", "10-26 02:00", "10-26 03:00"]),
        # a fixed-hour slot in the repeated hour fires once, at its first occurrence (BST)
        ("30 1 * * *", ["10-26 00:30", "10-27 01:30", "10-28 01:30", "10-29 01:30"]),
        ("*/30 1 * * *", ["10-26 00:00", "10-26 00:30", "10-27 01:00", "10-27 01:30"]),
        ("0 10 * * *", ["10-26 10:00", "10-27 10:00", "10-28 10:00", "10-29 10:00"]),
    ],
)
def test_europe_london_in_october(expr: str, instants: list[str]) -> None:
    cron = parse_cron(expr, LONDON)
    assert hm(next_fires(cron, utc(2025, 10, 25, 23, 30), 4)) == instants


def test_the_october_repeat_is_not_due_twice_walking_back() -> None:
    cron = parse_cron("30 1 * * *", LONDON)
    due = due_slots(cron, utc(2025, 10, 25, 12), utc(2025, 10, 26, 12))
    assert due.slots == [utc(2025, 10, 26, 0, 30)]


# --- due slots ---


def test_due_slots_are_after_the_last_look_up_to_and_including_now() -> None:
    cron = parse_cron("0 * * * *", IST)  # IST hours start at :30 UTC
    after = utc(2025, 10, 8, 3, 30)  # the 09:00 IST slot, already handled
    due = due_slots(cron, after, utc(2025, 10, 8, 6, 30))
    assert due.slots == [utc(2025, 10, 8, 4, 30), utc(2025, 10, 8, 5, 30), utc(2025, 10, 8, 6, 30)]
    assert not due.more
    assert due_slots(cron, after, utc(2025, 10, 8, 4, 29, 59)).slots == []
    assert due_slots(cron, after, after).slots == []
    assert due_slots(cron, after, after - timedelta(hours=1)).slots == []


def test_due_slots_after_a_long_downtime_keep_the_latest() -> None:
    cron = parse_cron("* * * * *", IST)
    due = due_slots(cron, utc(2025, 1, 1), utc(2025, 2, 1), limit=3)
    assert due.slots == [utc(2025, 1, 31, 23, 58), utc(2025, 1, 31, 23, 59), utc(2025, 2, 1)]
    assert due.more


# --- deadlines ---


def test_deadline_of_a_slot() -> None:
    slot = utc(2025, 10, 8, 3, 30)  # 09:00 IST
    assert deadline_of(slot, "12:00", IST) == utc(2025, 10, 8, 6, 30)  # DAM window closes
    assert deadline_of(slot, "08:00", IST) == utc(2025, 10, 9, 2, 30)  # the next 08:00
    assert deadline_of(slot, "09:00", IST) == utc(2025, 10, 9, 3, 30)  # never the slot itself
    assert deadline_of(slot, "+90", IST) == utc(2025, 10, 8, 5, 0)
    assert deadline_of(slot, None, IST) is None


def test_deadline_time_of_day_across_the_october_change_in_london() -> None:
    slot = utc(2025, 10, 25, 22, 0)  # 23:00 BST
    assert deadline_of(slot, "10:00", LONDON) == utc(2025, 10, 26, 10, 0)  # 10:00 GMT


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("-30", "deadline -30 is not after the slot"),
        ("+0", "deadline +0 is not after the slot"),
        ("+20000", "more than 10080 minutes"),
        ("24:00", 'deadline must be "HH:MM"'),
        ("9:00", 'deadline must be "HH:MM"'),
        ("soon", 'deadline must be "HH:MM"'),
        (30, 'deadline must be "HH:MM"'),
    ],
)
def test_bad_deadlines_name_the_field(spec: Any, fragment: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_deadline(spec)
    assert caught.value.details == {"field": "deadline"}
    assert fragment in caught.value.message


def test_good_deadlines_are_normalized() -> None:
    assert parse_deadline("12:00") == "12:00"
    assert parse_deadline(" +045 ") == "+45"
    assert parse_deadline(None) is None


# --- cron and zone input ---


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("61 * * * *", "is not a valid cron expression"),
        ("* * * *", "must have 5 fields"),
        ("* * * * * * *", "must have 5 fields"),
        ("@reboot", "must have 5 fields"),
        ("0 0 30 2 *", "never fires"),
        ("", "must be a cron expression"),
        (5, "must be a cron expression"),
    ],
)
def test_bad_crons_name_the_field(expr: Any, fragment: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_cron(expr, IST)
    assert caught.value.details == {"field": "cron"}
    assert fragment in caught.value.message


@pytest.mark.parametrize("name", ["Mars/Olympus", "IST", "../etc/passwd", "", None, 5])
def test_unknown_zones_are_refused(name: Any) -> None:
    with pytest.raises(Invalid) as caught:
        zone(name)
    assert caught.value.message == (
        f"timezone must be an IANA time zone name such as Asia/Kolkata; got {name!r}"
    )


# --- back-off and the deadline cut ---


def test_backoff_doubles_and_jitter_spreads_it() -> None:
    policy = RetryPolicy(max_attempts=4, backoff_s=60, jitter=0.2)
    assert [retry_delay_s(policy, n, 0.5) for n in (1, 2, 3)] == [60.0, 120.0, 240.0]
    assert retry_delay_s(policy, 2, 0.0) == pytest.approx(96.0)  # 120 x 0.8
    assert retry_delay_s(policy, 2, 1.0) == pytest.approx(144.0)  # 120 x 1.2
    assert retry_delay_s(RetryPolicy(3, 10, 0.0), 3, 0.9) == 40.0


def test_an_attempt_starts_only_if_it_can_end_by_the_deadline() -> None:
    deadline = utc(2025, 10, 8, 6, 30)  # 12:00 IST
    assert can_finish_by(utc(2025, 10, 8, 6, 0), 1800, deadline)  # ends exactly at 12:00
    assert not can_finish_by(utc(2025, 10, 8, 6, 0, 1), 1800, deadline)
    assert can_finish_by(utc(2030, 1, 1), 10**6, None)


@pytest.mark.parametrize(
    ("value", "field", "fragment"),
    [
        ({"max_attempts": 0}, "retry.max_attempts", "between 1 and 20; got 0"),
        ({"max_attempts": 21}, "retry.max_attempts", "between 1 and 20; got 21"),
        ({"max_attempts": "3"}, "retry.max_attempts", "must be an integer"),
        ({"max_attempts": True}, "retry.max_attempts", "must be an integer"),
        ({}, "retry.max_attempts", "must be an integer"),
        ({"max_attempts": 3, "backoff_s": "60"}, "retry.backoff_s", "must be a number"),
        ({"max_attempts": 3, "backoff_s": -1}, "retry.backoff_s", "must be a number"),
        ({"max_attempts": 3, "backoff_s": float("nan")}, "retry.backoff_s", "must be a number"),
        ({"max_attempts": 3, "jitter": 2}, "retry.jitter", "between 0 and 1"),
        ({"max_attempts": 3, "delay": 2}, "retry.delay", "unknown fields: delay"),
        ([3], "retry", "must be an object"),
    ],
)
def test_bad_retry_policies_name_the_field(value: Any, field: str, fragment: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_retry(value)
    assert caught.value.details == {"field": field}
    assert fragment in caught.value.message


def test_retry_policy_defaults() -> None:
    assert parse_retry({"max_attempts": 3}) == RetryPolicy(3, 60.0, 0.1)
    assert parse_retry(None) is None
    assert RetryPolicy.from_json(RetryPolicy(2, 5, 0).to_json()) == RetryPolicy(2, 5.0, 0.0)


def test_deadline_at_needs_a_zone_and_the_future() -> None:
    now = utc(2025, 10, 8, 4, 0)
    assert parse_deadline_at("2025-10-08T12:00:00+05:30", now) == utc(2025, 10, 8, 6, 30)
    assert parse_deadline_at("2025-10-08T06:30:00Z", now) == utc(2025, 10, 8, 6, 30)
    with pytest.raises(Invalid, match="must carry a time zone"):
        parse_deadline_at("2025-10-08T12:00:00", now)
    with pytest.raises(Invalid, match="is in the past"):
        parse_deadline_at("2025-10-08T09:00:00+05:30", now)
    with pytest.raises(Invalid, match="ISO 8601"):
        parse_deadline_at("tomorrow noon", now)


def test_lateness() -> None:
    assert parse_lateness(None, 300) == 300
    assert parse_lateness({"max_lateness_s": 0}, 300) == 0
    with pytest.raises(Invalid, match=r"missed\.max_lateness_s must be an integer"):
        parse_lateness({"max_lateness_s": 1.5}, 300)
