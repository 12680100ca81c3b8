"""The alert state machine as pure functions over tables of series: exact transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from energyops_ext.alerts.rules import (
    Outcome,
    RuleState,
    advance,
    is_breached,
    is_muted,
    notification_for,
    parse_hhmm,
    scope_date,
    step,
)

T0 = datetime(2025, 10, 6, 6, 30, tzinfo=UTC)  # 12:00 IST, a Monday
MINUTE = timedelta(minutes=1)


def run_series(
    values: list[float | None],
    *,
    operator: str = ">",
    threshold: float = 9000,
    recovery: float | None = None,
    pending_evaluations: int = 1,
    mute: list[dict[str, Any]] | None = None,
    throttle_s: float = 900,
    start: datetime = T0,
    every: timedelta = MINUTE,
) -> list[Outcome]:
    """Evaluate a rule once per value, ``every`` apart, as the evaluation service does."""
    current = RuleState()
    outcomes = []
    for index, value in enumerate(values):
        breached = is_breached(
            operator, threshold, recovery, value, firing=current.state == "firing"
        )
        outcome = advance(
            current,
            breached,
            now=start + index * every,
            pending_evaluations=pending_evaluations,
            mute=mute,
            throttle_s=throttle_s,
        )
        outcomes.append(outcome)
        current = RuleState(
            outcome.state, outcome.breaches, outcome.since, outcome.last_notified_at
        )
    return outcomes


def transitions(outcomes: list[Outcome]) -> list[str | None]:
    return [o.transition for o in outcomes]


def notified(outcomes: list[Outcome]) -> list[str | None]:
    return [o.notify for o in outcomes]


def states(outcomes: list[Outcome]) -> list[str]:
    return [o.state for o in outcomes]


# --- breached or not ---


@pytest.mark.parametrize(
    ("operator", "threshold", "recovery", "value", "firing", "expected"),
    [
        (">", 9000, None, 9001, False, True),
        (">", 9000, None, 9000, False, False),
        (">", 9000, None, 8999, True, False),
        (">", 9000, 8500, 8800, False, False),  # not firing: the threshold decides
        (">", 9000, 8500, 8800, True, True),  # firing: holds until below 8500
        (">", 9000, 8500, 8500, True, True),
        (">", 9000, 8500, 8499, True, False),
        ("<", 100, None, 99, False, True),
        ("<", 100, None, 100, False, False),
        ("<", 100, 150, 120, True, True),  # firing: holds until above 150
        ("<", 100, 150, 151, True, False),
        (">", 9000, None, None, False, None),  # no data
        ("<", 100, 150, None, True, None),
    ],
)
def test_breached(
    operator: str,
    threshold: float,
    recovery: float | None,
    value: float | None,
    firing: bool,
    expected: bool | None,
) -> None:
    assert is_breached(operator, threshold, recovery, value, firing=firing) is expected


# --- the state machine, one step ---


@pytest.mark.parametrize(
    ("state", "breaches", "breached", "n", "expected"),
    [
        ("normal", 0, False, 1, ("normal", 0, None)),
        ("normal", 0, True, 1, ("firing", 1, "firing")),
        ("normal", 0, True, 3, ("pending", 1, "pending")),
        ("pending", 1, True, 3, ("pending", 2, None)),
        ("pending", 2, True, 3, ("firing", 3, "firing")),
        ("pending", 2, False, 3, ("normal", 0, "normal")),
        ("firing", 3, True, 3, ("firing", 4, None)),
        ("firing", 4, False, 3, ("normal", 0, "resolved")),
        ("firing", 4, None, 3, ("firing", 4, None)),
        ("pending", 1, None, 3, ("pending", 1, None)),
    ],
)
def test_step(
    state: str, breaches: int, breached: bool | None, n: int, expected: tuple[Any, ...]
) -> None:
    moved = step(state, breaches, breached, n)
    assert (moved.state, moved.breaches, moved.transition) == expected


# --- series through the machine ---

SERIES_TABLE: list[tuple[str, dict[str, Any], list[float | None], list[str | None]]] = [
    (
        "fires at once with one evaluation",
        {},
        [8000, 9100, 9200, 8000],
        [None, "firing", None, "resolved"],
    ),
    (
        "pending for two evaluations, then firing",
        {"pending_evaluations": 3},
        [9100, 9200, 9300, 9400, 8000],
        ["pending", None, "firing", None, "resolved"],
    ),
    (
        "a breach that stops before N goes back to normal",
        {"pending_evaluations": 3},
        [9100, 9200, 8000, 9100, 9100, 9100],
        ["pending", None, "normal", "pending", None, "firing"],
    ),
    (
        "without a recovery threshold a value around the threshold flaps",
        {},
        [9100, 8990, 9010, 8990, 9010],
        ["firing", "resolved", "firing", "resolved", "firing"],
    ),
    (
        "the recovery threshold holds it firing until the value goes below 8500",
        {"recovery": 8500},
        [9100, 8990, 9010, 8600, 8500, 8499, 8990],
        ["firing", None, None, None, None, "resolved", None],
    ),
    (
        "below a threshold, recovery above it",
        {"operator": "<", "threshold": 100, "recovery": 150},
        [120, 90, 130, 149, 151, 140],
        [None, "firing", None, None, "resolved", None],
    ),
    (
        "no data keeps the state",
        {"pending_evaluations": 2},
        [9100, None, 9100, None, 8000],
        ["pending", None, "firing", None, "resolved"],
    ),
]


@pytest.mark.parametrize(
    ("values", "options", "expected"),
    [(values, options, expected) for _, options, values, expected in SERIES_TABLE],
    ids=[name for name, *_ in SERIES_TABLE],
)
def test_series(
    values: list[float | None], options: dict[str, Any], expected: list[str | None]
) -> None:
    outcomes = run_series(values, **options)
    assert transitions(outcomes) == expected


def test_firing_and_resolved_are_notified_pending_is_not() -> None:
    outcomes = run_series([9100, 9200, 9300, 8000], pending_evaluations=2)
    assert states(outcomes) == ["pending", "firing", "firing", "normal"]
    assert notified(outcomes) == [None, "firing", None, "resolved"]
    assert [o.breaches for o in outcomes] == [1, 2, 3, 0]
    assert outcomes[1].since == T0 + MINUTE
    assert outcomes[3].since == T0 + 3 * MINUTE


# --- throttle ---


def test_throttle_drops_a_flapping_rules_messages_in_pairs() -> None:
    # one evaluation a minute, throttle 5 minutes: the first firing and its resolution are
    # told; refirings within 5 minutes of the last message are not, nor their resolutions
    outcomes = run_series(
        [9100, 8000, 9100, 8000, 9100, 8000, 9100, 9100, 9100, 8000], throttle_s=300
    )
    assert transitions(outcomes) == [
        "firing",
        "resolved",
        "firing",
        "resolved",
        "firing",
        "resolved",
        "firing",
        None,
        None,
        "resolved",
    ]
    assert notified(outcomes) == [
        "firing",
        "resolved",
        None,
        None,
        None,
        None,
        "firing",  # 6 minutes after T0 + 1 min (the last message)
        None,
        None,
        "resolved",
    ]


def test_a_throttled_firing_is_told_when_the_throttle_ends_if_it_still_fires() -> None:
    outcomes = run_series([9100, 8000, 9100, 9100, 9100, 9100], throttle_s=240)
    assert notified(outcomes) == ["firing", "resolved", None, None, None, "firing"]
    assert transitions(outcomes)[5] is None  # told without a transition


def test_throttle_zero_tells_everything() -> None:
    outcomes = run_series([9100, 8000, 9100, 8000], throttle_s=0)
    assert notified(outcomes) == ["firing", "resolved", "firing", "resolved"]


# --- mute windows ---

# Asia/Kolkata is UTC+05:30: 18:00 IST = 12:30 UTC
MON = datetime(2025, 10, 6, tzinfo=UTC)  # a Monday


def ist(day: datetime, hhmm: str) -> datetime:
    minutes = parse_hhmm(hhmm)
    return day + timedelta(minutes=minutes) - timedelta(hours=5, minutes=30)


OVERNIGHT = [{"start": "22:00", "end": "06:00", "days": []}]
WEEKDAY_EVENINGS = [{"start": "18:00", "end": "24:00", "days": ["mon", "tue"]}]
FRIDAY_NIGHT = [{"start": "23:00", "end": "02:00", "days": ["fri"]}]


@pytest.mark.parametrize(
    ("windows", "when", "expected"),
    [
        (OVERNIGHT, ist(MON, "21:59"), False),
        (OVERNIGHT, ist(MON, "22:00"), True),
        (OVERNIGHT, ist(MON, "23:59"), True),
        (OVERNIGHT, ist(MON + timedelta(days=1), "00:00"), True),
        (OVERNIGHT, ist(MON + timedelta(days=1), "05:59"), True),
        (OVERNIGHT, ist(MON + timedelta(days=1), "06:00"), False),
        (OVERNIGHT, ist(MON, "12:00"), False),
        (WEEKDAY_EVENINGS, ist(MON, "17:59"), False),
        (WEEKDAY_EVENINGS, ist(MON, "18:00"), True),
        (WEEKDAY_EVENINGS, ist(MON, "23:59"), True),
        (WEEKDAY_EVENINGS, ist(MON + timedelta(days=2), "18:30"), False),  # Wednesday
        # a Friday window past midnight covers Saturday morning, not Friday morning
        (FRIDAY_NIGHT, ist(MON + timedelta(days=4), "23:30"), True),
        (FRIDAY_NIGHT, ist(MON + timedelta(days=5), "01:59"), True),
        (FRIDAY_NIGHT, ist(MON + timedelta(days=5), "02:00"), False),
        (FRIDAY_NIGHT, ist(MON + timedelta(days=4), "01:00"), False),
        ([], ist(MON, "12:00"), False),
    ],
)
def test_mute_windows(windows: list[dict[str, Any]], when: datetime, expected: bool) -> None:
    assert is_muted(windows, when) is expected


def test_mute_windows_in_another_zone() -> None:
    window = [{"start": "09:00", "end": "17:00", "days": []}]
    assert is_muted(window, datetime(2025, 7, 1, 8, 30, tzinfo=UTC), "Europe/London")
    assert not is_muted(window, datetime(2025, 7, 1, 7, 30, tzinfo=UTC), "Europe/London")


def test_a_firing_inside_a_mute_window_changes_state_and_is_told_when_the_window_ends() -> None:
    # evaluations every 4 hours from 21:00 IST; muted 22:00-06:00
    outcomes = run_series(
        [8000, 8000, 9100, 9100, 9100],
        mute=OVERNIGHT,
        start=ist(MON, "21:00"),
        every=timedelta(hours=4),
    )
    # 21:00 normal; 01:00 normal (muted); 05:00 firing (muted); 09:00 told; 13:00 nothing
    assert transitions(outcomes) == [None, None, "firing", None, None]
    assert [o.muted for o in outcomes] == [False, True, True, False, False]
    assert notified(outcomes) == [None, None, None, "firing", None]


def test_resolved_inside_a_mute_window_is_not_told() -> None:
    outcomes = run_series(
        [9100, 8000], mute=OVERNIGHT, start=ist(MON, "21:50"), every=timedelta(minutes=20)
    )
    assert transitions(outcomes) == ["firing", "resolved"]
    assert notified(outcomes) == ["firing", None]


def test_a_firing_muted_and_resolved_before_the_window_ends_is_never_told() -> None:
    outcomes = run_series(
        [9100, 8000], mute=OVERNIGHT, start=ist(MON, "23:00"), every=timedelta(hours=1)
    )
    assert transitions(outcomes) == ["firing", "resolved"]
    assert notified(outcomes) == [None, None]


# --- notification_for, directly ---


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"state": "firing", "transition": "firing"}, "firing"),
        ({"state": "pending", "transition": "pending"}, None),
        ({"state": "firing", "transition": "firing", "muted": True}, None),
        ({"state": "firing", "transition": None, "last": T0 + MINUTE}, None),  # told
        ({"state": "normal", "transition": "resolved", "last": T0 + MINUTE}, "resolved"),
        ({"state": "normal", "transition": "resolved", "last": T0 - MINUTE}, None),
        ({"state": "normal", "transition": "resolved"}, None),
        ({"state": "firing", "transition": "firing", "last": T0 - MINUTE}, None),  # throttled
        ({"state": "firing", "transition": "firing", "last": T0 - 20 * MINUTE}, "firing"),
    ],
)
def test_notification_for(args: dict[str, Any], expected: str | None) -> None:
    assert (
        notification_for(
            state=args["state"],
            transition=args["transition"],
            episode_since=T0,
            last_notified_at=args.get("last"),
            now=T0 + 2 * MINUTE,
            muted=args.get("muted", False),
            throttle_s=900,
        )
        == expected
    )


# --- scope dates in IST ---


@pytest.mark.parametrize(
    ("scope", "now", "expected"),
    [
        ({"date": "any"}, T0, None),
        ({}, T0, None),
        ({"date": "2025-10-08"}, T0, "2025-10-08"),
        ({"date": "today"}, datetime(2025, 10, 6, 18, 29, tzinfo=UTC), "2025-10-06"),
        # 18:30 UTC is midnight in India: the market day has turned
        ({"date": "today"}, datetime(2025, 10, 6, 18, 30, tzinfo=UTC), "2025-10-07"),
        ({"date": "tomorrow"}, datetime(2025, 10, 6, 18, 30, tzinfo=UTC), "2025-10-08"),
    ],
)
def test_scope_date(scope: dict[str, Any], now: datetime, expected: str | None) -> None:
    day = scope_date(scope, now)
    assert (day.isoformat() if day else None) == expected


@pytest.mark.parametrize(
    ("text", "minutes"), [("00:00", 0), ("06:30", 390), ("23:59", 1439), ("24:00", 1440)]
)
def test_parse_hhmm(text: str, minutes: int) -> None:
    assert parse_hhmm(text) == minutes


@pytest.mark.parametrize("text", ["6:30", "24:01", "12:60", "ab:cd", "1230", "", "12:3"])
def test_parse_hhmm_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hhmm(text)
