"""Deadlines and retries of runs: warnings at T-30 and T-10 and deadline_missed on a moved
clock (once with two sweepers racing), retries with exponential back-off and jitter up to
max_attempts, killed runs left alone, and attempts that could not end by the deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from energyops_ext.db.models import Run
from energyops_ext.events import Event
from energyops_ext.services import Services

from .conftest import Fetch, assert_error, body
from .runs_helpers import FAST_RUNS, script_id, start_run, wait_for
from .schedules_helpers import (
    SCHEDULE_CONFIG,
    Clock,
    Fleet,
    count_runs,
    notifications,
    three_servers,
)

IST = ZoneInfo("Asia/Kolkata")
FAILING = "import sys\nprint('trying')\nsys.exit(3)\n"
SLEEPING = "import time\nprint('working', flush=True)\ntime.sleep(30)\n"


@pytest.fixture
def energyops_config() -> dict[str, Any]:
    return {**FAST_RUNS, **SCHEDULE_CONFIG}


@pytest.fixture
def clock(services: Services) -> Clock:
    moving = Clock(datetime.now(UTC))
    assert services.schedules is not None
    services.schedules.clock = moving
    return moving


@pytest.fixture
def fleet(services: Services, clock: Clock) -> Iterator[Fleet]:
    made = three_servers(services, clock)
    yield made
    made.close()


@pytest.fixture
def events(services: Services) -> list[Event]:
    seen: list[Event] = []
    services.hub.add_listener(seen.append)
    return seen


def ist(moment: datetime) -> str:
    return moment.astimezone(IST).strftime("%Y-%m-%d %H:%M IST")


def at(moment: str | None) -> datetime:
    assert moment is not None
    return datetime.fromisoformat(moment)


async def run_until(services: Services, check: Any, timeout_s: float = 30.0) -> None:
    """Tick the test server's own schedule service (real clock) until ``check()`` holds."""
    assert services.schedules is not None
    services.schedules.clock = lambda: datetime.now(UTC)
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await services.schedules.tick()
        await asyncio.sleep(0.05)


# --- run requests ---


async def test_a_run_request_carries_deadline_retry_and_channels(api: Fetch) -> None:
    sid = await script_id(api, "test_fields.py", "print('ok')\n")
    deadline = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    run = await start_run(
        api,
        sid,
        deadline_at=deadline.astimezone(IST).isoformat(),
        retry={"max_attempts": 2, "backoff_s": 5},
        channels=["json://127.0.0.1:9/hook?token=secret"],
    )
    assert run["deadline_at"] == deadline.isoformat()
    assert run["retry"] == {"max_attempts": 2, "backoff_s": 5.0, "jitter": 0.1}
    assert run["attempt"] == 1 and run["first_run_id"] == run["id"]
    assert run["deadline_missed"] is False and run["not_before"] is None
    assert "secret" not in str(run["channels"])
    assert run["attempts"] == [{"id": run["id"], "attempt": 1, "status": run["status"]}]


@pytest.mark.parametrize(
    ("payload", "field", "fragment"),
    [
        ({"deadline_at": "2020-01-01T10:00:00+05:30"}, "deadline_at", "is in the past"),
        ({"deadline_at": "2099-01-01T10:00:00"}, "deadline_at", "must carry a time zone"),
        ({"deadline_at": 1700000000}, "deadline_at", "must be an ISO 8601"),
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts", "between 1 and 20"),
        ({"retry": {"max_attempts": 2, "backoff_s": []}}, "retry.backoff_s", "must be a number"),
        ({"channels": ["bogus"]}, "channels[0]", "channels[0]"),
    ],
)
async def test_bad_run_fields_are_422_naming_the_field(
    api: Fetch, payload: dict[str, Any], field: str, fragment: str
) -> None:
    sid = await script_id(api, "test_fields.py", "print('ok')\n")
    response = await api("POST", f"scripts/{sid}/runs", json=payload)
    error = assert_error(response, 422, fragment=fragment)
    assert error["details"]["field"] == field


# --- deadlines ---


async def test_warnings_at_30_and_10_minutes_then_missed_once_across_servers(
    api: Fetch, services: Services, fleet: Fleet, events: list[Event]
) -> None:
    sid = await script_id(api, "test_failing.py", FAILING)
    deadline = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
    run = await start_run(api, sid, deadline_at=deadline.isoformat())
    assert (await wait_for(api, run["id"]))["status"] == "failed"
    fleet.members.pop()  # two sweepers

    seen: list[tuple[str, str]] = []
    for minutes_before in (31, 30, 29.5, 10, 5, 0, -1):
        fleet.clock.at(deadline, plus_s=-60 * minutes_before)
        await fleet.race()
        seen = notifications(services, "run_deadline_warning")
        if minutes_before == 31:
            assert seen == []
    title = f"Run {run['id']} of test_failing.py v1"
    assert seen == [
        (f"{title}: deadline in 30 min", f"deadline {ist(deadline)}; attempt 1 is failed"),
        (f"{title}: deadline in 10 min", f"deadline {ist(deadline)}; attempt 1 is failed"),
    ]
    assert notifications(services, "run_deadline_missed") == [
        (
            f"{title} missed its deadline",
            f"the deadline {ist(deadline)} passed without success; attempt 1 is failed",
        )
    ]
    shown = body(await api("GET", f"runs/{run['id']}"))
    assert shown["deadline_missed"] is True
    kinds = [e.type for e in events if e.type.startswith("run.deadline")]
    assert kinds == ["run.deadline_warning", "run.deadline_warning", "run.deadline_missed"]
    warning = next(e for e in events if e.type == "run.deadline_warning")
    assert warning.data["minutes_left"] == 30 and warning.data["warning_min"] == 30


async def test_a_run_that_succeeded_gets_no_warning(
    api: Fetch, services: Services, fleet: Fleet
) -> None:
    sid = await script_id(api, "test_quick.py", "print('done')\n")
    deadline = datetime.now(UTC) + timedelta(hours=2)
    run = await start_run(api, sid, deadline_at=deadline.isoformat())
    assert (await wait_for(api, run["id"]))["status"] == "succeeded"
    for minutes_before in (30, 10, 0, -5):
        fleet.clock.at(deadline, plus_s=-60 * minutes_before)
        await fleet.race()
    assert notifications(services, "run_deadline_warning") == []
    assert body(await api("GET", f"runs/{run['id']}"))["deadline_missed"] is False


async def test_a_late_run_is_marked_missed_and_goes_on(
    api: Fetch, services: Services, fleet: Fleet
) -> None:
    sid = await script_id(api, "test_sleeping.py", SLEEPING)
    deadline = datetime.now(UTC) + timedelta(minutes=20)  # created past the 30-min warning
    run = await start_run(api, sid, deadline_at=deadline.isoformat())
    await wait_for(api, run["id"], {"running"})
    fleet.clock.at(deadline, plus_s=-15 * 60)
    await fleet.race()
    (warning,) = notifications(services, "run_deadline_warning")
    assert warning[0].endswith("deadline in 15 min")
    assert warning[1].endswith("attempt 1 is running")
    fleet.clock.at(deadline, plus_s=1)
    await fleet.race()
    shown = body(await api("GET", f"runs/{run['id']}"))
    assert shown["deadline_missed"] is True and shown["status"] == "running"
    (missed,) = notifications(services, "run_deadline_missed")
    assert missed[1].endswith("attempt 1 is running and goes on")
    await api("DELETE", f"runs/{run['id']}")
    assert (await wait_for(api, run["id"]))["status"] == "killed"


# --- retries ---


async def test_a_failing_run_is_retried_with_backoff_up_to_max_attempts(
    api: Fetch, services: Services, events: list[Event]
) -> None:
    assert services.schedules is not None
    services.schedules.spread = lambda: 0.75  # jitter 0.5 at 0.75: x1.25
    sid = await script_id(api, "test_failing.py", FAILING)
    first = await start_run(api, sid, retry={"max_attempts": 3, "backoff_s": 0.4, "jitter": 0.5})

    async def exhausted() -> bool:
        runs = body(await api("GET", "runs", params={"script_id": str(sid)}))["items"]
        return any(r["retry_outcome"] == "exhausted" for r in runs)

    await run_until(services, exhausted)
    chain = body(await api("GET", f"runs/{first['id']}"))["attempts"]
    assert [(a["attempt"], a["status"]) for a in chain] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
    ]
    runs = [body(await api("GET", f"runs/{a['id']}")) for a in chain]
    for before, after, delay_s in ((runs[0], runs[1], 0.5), (runs[1], runs[2], 1.0)):
        assert after["first_run_id"] == first["id"]
        assert at(after["not_before"]) - at(before["finished_at"]) == timedelta(seconds=delay_s)
        assert at(after["started_at"]) >= at(after["not_before"])
        assert before["retry_outcome"] == "scheduled"
    assert runs[2]["attempts"] == chain
    scheduled = [e.data for e in events if e.type == "run.retry_scheduled"]
    assert [(d["attempt"], d["delay_s"], d["previous_run_id"]) for d in scheduled] == [
        (2, 0.5, runs[0]["id"]),
        (3, 1.0, runs[1]["id"]),
    ]
    assert notifications(services, "run_retries_exhausted") == [
        (
            f"Run {runs[2]['id']} of test_failing.py v1 failed after 3 attempts",
            "attempt 3 of 3 ended failed (exit code 3); no attempts left",
        )
    ]


async def test_timed_out_and_lost_attempts_are_retried(api: Fetch, services: Services) -> None:
    sid = await script_id(api, "test_sleeping.py", SLEEPING)
    run = await start_run(api, sid, timeout_s=1, retry={"max_attempts": 2, "backoff_s": 0.1})
    assert (await wait_for(api, run["id"]))["status"] == "timed_out"

    async def second_started() -> bool:
        return count_runs(services, first_run_id=run["id"]) == 1

    await run_until(services, second_started)
    retry = body(await api("GET", f"runs/{run['id']}"))["attempts"][1]
    assert (await wait_for(api, retry["id"]))["status"] == "timed_out"

    quick = await script_id(api, "test_quick.py", "print('done')\n")
    lost = await start_run(api, quick, retry={"max_attempts": 2, "backoff_s": 0})
    await wait_for(api, lost["id"])
    services.db.write_sync(  # as a reaper marks the run of a dead server
        lambda s: s.execute(update(Run).where(Run.id == lost["id"]).values(status="lost"))
    )

    async def lost_retried() -> bool:
        return count_runs(services, first_run_id=lost["id"]) == 1

    await run_until(services, lost_retried)


async def test_two_servers_racing_create_one_next_attempt(
    api: Fetch, services: Services, fleet: Fleet
) -> None:
    sid = await script_id(api, "test_failing.py", FAILING)
    run = await start_run(api, sid, retry={"max_attempts": 2, "backoff_s": 600})
    finished = at((await wait_for(api, run["id"]))["finished_at"])
    fleet.clock.at(finished, plus_s=1)
    reports = await fleet.race()
    assert sorted(len(r.retries) for r in reports) == [0, 0, 1]
    await fleet.race()
    assert count_runs(services, first_run_id=run["id"]) == 1
    (retry,) = body(await api("GET", f"runs/{run['id']}"))["attempts"][1:]
    queued = body(await api("GET", f"runs/{retry['id']}"))
    assert queued["status"] == "queued" and queued["attempt"] == 2
    assert at(queued["not_before"]) == finished + timedelta(seconds=600)  # spread 0.5: x1


async def test_a_killed_run_is_not_retried(api: Fetch, services: Services, fleet: Fleet) -> None:
    sid = await script_id(api, "test_sleeping.py", SLEEPING)
    run = await start_run(api, sid, retry={"max_attempts": 3, "backoff_s": 0})
    await wait_for(api, run["id"], {"running"})
    await api("DELETE", f"runs/{run['id']}")
    assert (await wait_for(api, run["id"]))["status"] == "killed"
    fleet.clock.at(datetime.now(UTC), plus_s=5)
    await fleet.race()
    assert count_runs(services, first_run_id=run["id"]) == 0
    assert body(await api("GET", f"runs/{run['id']}"))["retry_outcome"] is None


async def test_an_attempt_that_could_not_end_by_the_deadline_is_not_started(
    api: Fetch, services: Services, fleet: Fleet
) -> None:
    sid = await script_id(api, "test_failing.py", FAILING)
    deadline = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    run = await start_run(
        api,
        sid,
        timeout_s=600,
        deadline_at=deadline.isoformat(),
        retry={"max_attempts": 3, "backoff_s": 60, "jitter": 0},
    )
    finished = at((await wait_for(api, run["id"]))["finished_at"])
    fleet.clock.at(finished, plus_s=2)
    await fleet.race()
    assert count_runs(services, first_run_id=run["id"]) == 0
    assert body(await api("GET", f"runs/{run['id']}"))["retry_outcome"] == "cut"
    assert notifications(services, "run_retry_cut") == [
        (
            f"Run {run['id']} of test_failing.py v1: attempt 2 not started",
            f"attempt 2 could start at {ist(finished + timedelta(seconds=60))} at the earliest "
            f"and may run 10 min (timeout_s 600), past the deadline {ist(deadline)}; "
            "attempt 1 ended failed",
        )
    ]

    # the same run with room before its deadline is retried
    roomy = await start_run(
        api,
        sid,
        timeout_s=60,
        deadline_at=(deadline + timedelta(minutes=10)).isoformat(),
        retry={"max_attempts": 2, "backoff_s": 60, "jitter": 0},
    )
    finished = at((await wait_for(api, roomy["id"]))["finished_at"])
    fleet.clock.at(finished, plus_s=2)
    await fleet.race()
    assert count_runs(services, first_run_id=roomy["id"]) == 1


async def test_a_retry_still_queued_when_it_could_no_longer_end_by_the_deadline_is_cut(
    api: Fetch, services: Services, fleet: Fleet, events: list[Event]
) -> None:
    sid = await script_id(api, "test_failing.py", FAILING)
    deadline = (datetime.now(UTC) + timedelta(minutes=15)).replace(microsecond=0)
    run = await start_run(
        api,
        sid,
        timeout_s=120,
        deadline_at=deadline.isoformat(),
        retry={"max_attempts": 3, "backoff_s": 600, "jitter": 0},
    )
    finished = at((await wait_for(api, run["id"]))["finished_at"])
    fleet.clock.at(finished, plus_s=1)
    await fleet.race()
    (retry,) = body(await api("GET", f"runs/{run['id']}"))["attempts"][1:]
    assert retry["status"] == "queued"  # it could end by the deadline when it was made

    # the queue stayed full: two minutes before the deadline it could still end in time
    fleet.clock.at(deadline, plus_s=-120)
    await fleet.race()
    assert body(await api("GET", f"runs/{retry['id']}"))["status"] == "queued"

    # a second later it could not: one of the racing servers cuts it, once
    fleet.clock.at(deadline, plus_s=-119)
    await fleet.race()
    await fleet.race()
    cut = body(await api("GET", f"runs/{retry['id']}"))
    assert cut["status"] == "killed"
    assert (
        cut["status_reason"]
        == f"not started: it could no longer end by the deadline {ist(deadline)}"
    )
    assert cut["finished_at"] is not None and cut["started_at"] is None
    assert notifications(services, "run_retry_cut") == [
        (
            f"Run {retry['id']} of test_failing.py v1: attempt 2 not started",
            f"attempt 2 was still queued at {ist(deadline - timedelta(seconds=119))} and may run "
            f"2 min (timeout_s 120), past the deadline {ist(deadline)}",
        )
    ]
    finished_events = [
        e for e in events if e.type == "run.finished" and e.data["run_id"] == retry["id"]
    ]
    assert [e.data["status"] for e in finished_events] == ["killed"]
    assert count_runs(services, first_run_id=run["id"]) == 1  # a cut retry is not retried
