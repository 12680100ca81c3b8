"""Schedules over the API: CRUD and bad input, exactly one run per slot with three servers
racing, downtime and missed slots, pause/resume, fire history, and runs that really run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from energyops_ext.events import Event
from energyops_ext.services import Services

from .conftest import Fetch, assert_error, body
from .runs_helpers import FAST_RUNS, script_id, wait_for
from .schedules_helpers import (
    SCHEDULE_CONFIG,
    START,
    Clock,
    Fleet,
    count_runs,
    create_schedule,
    fire_rows,
    notifications,
    three_servers,
    use_clock,
)

SCRIPT = "print('scheduled run')\n"
DAILY_9 = {"cron": "0 9 * * *"}  # 09:00 IST = 03:30 UTC


@pytest.fixture
def energyops_config() -> dict[str, Any]:
    return {**FAST_RUNS, **SCHEDULE_CONFIG}


@pytest.fixture
def clock(services: Services) -> Clock:
    return use_clock(services)


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


async def a_script(api: Fetch, name: str = "test_scheduled.py", source: str = SCRIPT) -> int:
    return await script_id(api, name, source)


# --- CRUD ---


async def test_create_show_list_change_and_delete(api: Fetch, clock: Clock) -> None:
    sid = await a_script(api)
    schedule = await create_schedule(
        api,
        script_id=sid,
        name="DMO day-ahead",
        deadline="10:00",
        retry={"max_attempts": 3, "backoff_s": 30},
        channels=["json://127.0.0.1:9/hook?token=abc"],
        args=["--day", "tomorrow"],
        **DAILY_9,
    )
    assert schedule["timezone"] == "Asia/Kolkata"
    assert schedule["enabled"] is True
    assert schedule["missed"] == {"max_lateness_s": 300}
    assert schedule["retry"] == {"max_attempts": 3, "backoff_s": 30.0, "jitter": 0.1}
    assert schedule["next_fires"] == [
        "2030-01-07T03:30:00+00:00",
        "2030-01-08T03:30:00+00:00",
        "2030-01-09T03:30:00+00:00",
        "2030-01-10T03:30:00+00:00",
        "2030-01-11T03:30:00+00:00",
    ]
    assert schedule["next_fires_local"][0] == "2030-01-07T09:00:00+05:30"
    assert schedule["next_deadlines"][0] == "2030-01-07T04:30:00+00:00"
    assert schedule["last_fire"] is None and schedule["last_outcome"] is None
    assert "abc" not in json.dumps(schedule["channels"])

    shown = body(await api("GET", f"schedules/{schedule['id']}"))
    assert shown == schedule
    listed = body(await api("GET", "schedules"))
    assert listed["total"] == 1 and listed["items"][0]["id"] == schedule["id"]

    paused = body(await api("PATCH", f"schedules/{schedule['id']}", json={"enabled": False}))
    assert paused["enabled"] is False and paused["next_fires"] == []
    assert body(await api("GET", "schedules", params={"enabled": "true"}))["total"] == 0
    changed = body(
        await api(
            "PATCH",
            f"schedules/{schedule['id']}",
            json={"enabled": True, "cron": "30 10 * * 1-5", "deadline": None},
        )
    )
    assert changed["next_fires"][:2] == ["2030-01-07T05:00:00+00:00", "2030-01-08T05:00:00+00:00"]
    assert changed["deadline"] is None and changed["next_deadlines"][0] is None
    assert changed["args"] == ["--day", "tomorrow"]  # untouched fields stay

    response = await api("DELETE", f"schedules/{schedule['id']}")
    assert response.code == 204
    assert_error(await api("GET", f"schedules/{schedule['id']}"), 404, "schedule_not_found")
    assert_error(await api("GET", f"schedules/{schedule['id']}/fires"), 404, "schedule_not_found")


async def test_a_schedule_by_name_and_other_zones(api: Fetch, clock: Clock) -> None:
    await a_script(api, "test_named.py")
    schedule = await create_schedule(
        api, script_name="test_named.py", cron="0 10 * * *", timezone="Europe/London"
    )
    assert schedule["script_id"] is None and schedule["script_name"] == "test_named.py"
    assert schedule["next_fires"][0] == "2030-01-07T10:00:00+00:00"
    assert schedule["next_fires_local"][0] == "2030-01-07T10:00:00+00:00"


BAD_INPUT = [
    ({"cron": "61 * * * *"}, "cron", "is not a valid cron expression"),
    ({"cron": "* * *"}, "cron", "must have 5 fields"),
    ({"cron": None}, "cron", "must be a cron expression"),
    ({"timezone": "Asia/Mumbai"}, "timezone", "must be an IANA time zone name"),
    ({"timezone": 5}, "timezone", "must be an IANA time zone name"),
    ({"deadline": "-15"}, "deadline", "deadline -15 is not after the slot"),
    ({"deadline": "+0"}, "deadline", "deadline +0 is not after the slot"),
    ({"deadline": "10am"}, "deadline", 'deadline must be "HH:MM"'),
    ({"retry": {"max_attempts": 0}}, "retry.max_attempts", "between 1 and 20; got 0"),
    ({"retry": {"max_attempts": "two"}}, "retry.max_attempts", "must be an integer"),
    ({"retry": {"max_attempts": 2, "backoff_s": "1m"}}, "retry.backoff_s", "must be a number"),
    ({"retry": 3}, "retry", "must be an object"),
    ({"script_id": 999}, "script_id", "script_id 999 does not exist"),
    ({"script_id": "1"}, "script_id", "script_id must be a positive integer"),
    ({"script_name": "test_scheduled.py"}, "script_id", "not both"),
    ({"script_id": None, "script_name": "nope.py"}, "script_name", "has no active version"),
    ({"priority": "high"}, "priority", "priority must be an integer between -1000 and 1000"),
    ({"timeout_s": "60"}, "timeout_s", "timeout_s must be an integer"),
    ({"timeout_s": 0}, "timeout_s", "timeout_s must be between 1 and"),
    ({"missed": {"max_lateness_s": "5"}}, "missed.max_lateness_s", "must be an integer"),
    ({"missed": {"lateness": 5}}, "missed.lateness", "unknown fields: lateness"),
    ({"enabled": "yes"}, "enabled", "enabled must be true or false"),
    ({"channels": ["nope://x"]}, "channels[0]", "channels[0]"),
    ({"channels": "json://x"}, "channels", "must be a list"),
    ({"args": "--day"}, "args", "args must be a list of strings"),
    ({"inputs": [{"kind": "prices"}]}, "inputs[0].kind", "inputs[0].kind must be one of"),
    ({"deadline_at": "2030-01-01T00:00:00Z"}, "deadline_at", "unknown fields: deadline_at"),
]


@pytest.mark.parametrize(("change", "field", "fragment"), BAD_INPUT)
async def test_bad_input_is_422_naming_the_field(
    api: Fetch, clock: Clock, change: dict[str, Any], field: str, fragment: str
) -> None:
    sid = await a_script(api)
    payload = {"script_id": sid, **DAILY_9, **change}
    error = assert_error(await api("POST", "schedules", json=payload), 422, fragment=fragment)
    assert error["details"]["field"] == field
    if "script_id" not in change or change["script_id"] is not None:
        schedule = await create_schedule(api, script_id=sid, **DAILY_9)
        patched = await api("PATCH", f"schedules/{schedule['id']}", json=change)
        if change.keys() <= {"script_id", "script_name"}:
            return  # a patch naming the script one way drops the other way
        error = assert_error(patched, 422, fragment=fragment)
        assert error["details"]["field"] == field


async def test_non_finite_numbers_and_empty_patches(api: Fetch, clock: Clock) -> None:
    sid = await a_script(api)
    raw = '{"script_id": %d, "cron": "0 9 * * *", "retry": {"max_attempts": 2, "backoff_s": NaN}}'
    response = await api("POST", "schedules", body=raw % sid)
    error = assert_error(response, 422, "non_finite_number")
    assert error["details"]["field"] == "retry.backoff_s"
    schedule = await create_schedule(api, script_id=sid, **DAILY_9)
    assert_error(await api("PATCH", f"schedules/{schedule['id']}", json={}), 422, "invalid_field")
    assert_error(
        await api("GET", "schedules/1/fires", params={"status": "late"}), 400, "invalid_parameter"
    )
    assert_error(
        await api("GET", "schedules/1/fires", params={"since": "yesterday"}),
        400,
        "invalid_parameter",
    )


# --- exactly once across servers ---


async def test_three_servers_racing_fire_each_slot_once(
    api: Fetch, services: Services, fleet: Fleet, events: list[Event]
) -> None:
    sid = await a_script(api)
    schedule = await create_schedule(api, script_id=sid, cron="*/30 9-11 * * *", deadline="12:00")
    slots = schedule["next_fires"][:3]
    for number, slot in enumerate(slots, start=1):
        fleet.clock.at(slot, plus_s=0.2)
        reports = await fleet.race()
        assert sorted(len(r.fired) for r in reports) == [0, 0, 1]
        assert await fleet.race() == [r.__class__() for r in reports]  # a second look: nothing
        assert count_runs(services, schedule_id=schedule["id"]) == number

    rows = fire_rows(services, schedule["id"])
    assert [(slot, status) for slot, status, _run in rows] == [(s, "fired") for s in slots]
    fires = body(await api("GET", f"schedules/{schedule['id']}/fires"))
    assert fires["total"] == 3
    assert [f["slot"] for f in fires["items"]] == slots[::-1]  # newest first
    assert {f["server_id"] for f in fires["items"]} <= {m.me.id for m in fleet.members}
    first = fires["items"][-1]
    assert first["deadline_at"] == "2030-01-07T06:30:00+00:00"  # 12:00 IST
    assert first["attempts"][0]["id"] == first["run_id"]
    fired = [e for e in events if e.type == "schedule.fired"]
    assert [e.data["slot"] for e in fired] == slots
    run = body(await api("GET", f"runs/{first['run_id']}"))
    assert run["schedule_id"] == schedule["id"] and run["attempt"] == 1
    assert run["deadline_at"] == "2030-01-07T06:30:00+00:00"


async def test_downtime_across_two_slots_runs_the_latest_and_reports_the_other(
    api: Fetch, services: Services, fleet: Fleet, events: list[Event]
) -> None:
    sid = await a_script(api)
    schedule = await create_schedule(api, script_id=sid, name="RTM", cron="0,30 10 * * *")
    first, second = schedule["next_fires"][:2]  # 10:00 and 10:30 IST
    fleet.clock.at(second, plus_s=120)  # every server was down for both; 2 min late
    await fleet.race()
    rows = fire_rows(services, schedule["id"])
    assert [(slot, status) for slot, status, _run in rows] == [(first, "missed"), (second, "fired")]
    notes = notifications(services, "schedule_missed")
    assert notes == [
        (
            "RTM: 1 slot missed",
            "2030-01-07 10:00 IST: no server fired it: it was 32 min late when one looked, "
            "and after a downtime only the latest due slot (2030-01-07 10:30 IST) runs",
        )
    ]
    assert [e.data["slot"] for e in events if e.type == "schedule.missed"] == [first]
    await fleet.race()
    assert len(notifications(services, "schedule_missed")) == 1

    fires = body(await api("GET", f"schedules/{schedule['id']}/fires", params={"status": "missed"}))
    assert fires["total"] == 1
    missed = fires["items"][0]
    assert missed["run_id"] is None and missed["attempts"] == []
    assert missed["reason"].startswith("no server fired it: it was 32 min late")
    shown = body(await api("GET", f"schedules/{schedule['id']}"))
    assert shown["last_fire"]["slot"] == second


async def test_a_downtime_past_max_lateness_runs_nothing(
    api: Fetch, services: Services, fleet: Fleet
) -> None:
    sid = await a_script(api)
    schedule = await create_schedule(
        api, script_id=sid, name="RTM", cron="0,30 10 * * *", missed={"max_lateness_s": 60}
    )
    second = schedule["next_fires"][1]
    fleet.clock.at(second, plus_s=120)
    await fleet.race()
    assert [status for _slot, status, _run in fire_rows(services, schedule["id"])] == [
        "missed",
        "missed",
    ]
    assert count_runs(services, schedule_id=schedule["id"]) == 0
    (note,) = notifications(services, "schedule_missed")
    assert note[0] == "RTM: 2 slots missed"
    assert note[1].splitlines()[1] == (
        "2030-01-07 10:30 IST: no server fired it: it was 2 min late when one looked, "
        "past missed.max_lateness_s (60 s)"
    )
    shown = body(await api("GET", f"schedules/{schedule['id']}"))
    assert shown["last_outcome"] == "missed"


async def test_pause_and_resume(api: Fetch, services: Services, fleet: Fleet) -> None:
    sid = await a_script(api)
    schedule = await create_schedule(api, script_id=sid, cron="0 * * * *")
    path = f"schedules/{schedule['id']}"
    first, second, third = schedule["next_fires"][:3]
    await api("PATCH", path, json={"enabled": False})
    fleet.clock.at(first, plus_s=1)
    await fleet.race()
    assert fire_rows(services, schedule["id"]) == []
    fleet.clock.at(second, plus_s=30)
    resumed = body(await api("PATCH", path, json={"enabled": True}))
    assert resumed["next_fires"][0] == third  # slots of the pause are neither run nor missed
    await fleet.race()
    assert fire_rows(services, schedule["id"]) == []
    fleet.clock.at(third, plus_s=1)
    await fleet.race()
    assert [(slot, status) for slot, status, _ in fire_rows(services, schedule["id"])] == [
        (third, "fired")
    ]


async def test_slots_run_and_the_schedule_shows_the_outcome(
    api: Fetch, services: Services, fleet: Fleet
) -> None:
    sid = await a_script(api)
    schedule = await create_schedule(api, script_id=sid, cron="*/15 * * * *", config={"k": 1})
    fleet.clock.at(schedule["next_fires"][0], plus_s=0.5)
    await fleet.race()
    (fire,) = body(await api("GET", f"schedules/{schedule['id']}/fires"))["items"]
    done = await wait_for(api, fire["run_id"])  # claimed by the test server's engine
    assert done["status"] == "succeeded", done
    assert done["config"] == {"k": 1} and done["script_id"] == sid
    lines = body(await api("GET", f"runs/{done['id']}/logs"))["items"]
    assert "scheduled run" in [line["text"] for line in lines]
    shown = body(await api("GET", f"schedules/{schedule['id']}"))
    assert shown["last_outcome"] == "succeeded"
    assert shown["last_fire"]["attempts"] == [
        {
            "id": done["id"],
            "attempt": 1,
            "status": "succeeded",
            "not_before": None,
            "finished_at": done["finished_at"],
        }
    ]


async def test_by_name_the_latest_active_version_runs(
    api: Fetch, services: Services, fleet: Fleet
) -> None:
    await a_script(api, "test_versions.py", "print('v1')\n")
    v2 = await a_script(api, "test_versions.py", "print('v2')\n")
    schedule = await create_schedule(api, script_name="test_versions.py", cron="0 * * * *")
    slots = schedule["next_fires"]
    fleet.clock.at(slots[0], plus_s=1)
    await fleet.race()
    await api("PATCH", f"scripts/{v2}", json={"status": "archived"})
    fleet.clock.at(slots[1], plus_s=1)
    await fleet.race()
    fires = body(await api("GET", f"schedules/{schedule['id']}/fires"))["items"]
    versions = [body(await api("GET", f"runs/{f['run_id']}"))["script_version"] for f in fires]
    assert versions == [1, 2]  # newest first: the second slot ran v1 once v2 was archived


async def test_a_slot_whose_script_is_archived_is_skipped_and_notified(
    api: Fetch, services: Services, fleet: Fleet
) -> None:
    sid = await a_script(api)
    schedule = await create_schedule(api, script_id=sid, name="SO", cron="0 * * * *")
    await api("PATCH", f"scripts/{sid}", json={"status": "archived"})
    fleet.clock.at(schedule["next_fires"][0], plus_s=1)
    await fleet.race()
    (fire,) = body(await api("GET", f"schedules/{schedule['id']}/fires"))["items"]
    assert fire["status"] == "skipped" and fire["run_id"] is None
    assert fire["reason"] == f"not run: script {sid} (test_scheduled.py v1) is archived"
    assert notifications(services, "schedule_skipped") == [
        ("SO: the 2030-01-07 08:00 IST slot did not run", fire["reason"])
    ]


async def test_fires_history_pages_and_filters(
    api: Fetch, services: Services, fleet: Fleet
) -> None:
    sid = await a_script(api)
    schedule = await create_schedule(api, script_id=sid, cron="*/5 * * * *")
    for slot in schedule["next_fires"][:4]:
        fleet.clock.at(slot, plus_s=1)
        await fleet.race()
    path = f"schedules/{schedule['id']}/fires"
    page = body(await api("GET", path, params={"limit": "2", "offset": "1"}))
    assert page["total"] == 4
    assert [f["slot"] for f in page["items"]] == schedule["next_fires"][1:3][::-1]
    since = body(await api("GET", path, params={"since": schedule["next_fires"][2]}))
    assert since["total"] == 2
    assert all(f["status"] == "fired" and f["server_id"] for f in since["items"])
    assert datetime.fromisoformat(since["items"][0]["fired_at"]) > START


async def test_a_scheduled_run_that_fails_is_retried_with_the_schedule_carried(
    api: Fetch, services: Services, fleet: Fleet, events: list[Event]
) -> None:
    sid = await a_script(api, "test_flaky.py", "import sys\nsys.exit(2)\n")
    schedule = await create_schedule(
        api, script_id=sid, cron="0 * * * *", retry={"max_attempts": 2, "backoff_s": 0}
    )
    fleet.clock.at(schedule["next_fires"][0], plus_s=1)
    await fleet.race()
    (fire,) = body(await api("GET", f"schedules/{schedule['id']}/fires"))["items"]
    assert (await wait_for(api, fire["run_id"]))["status"] == "failed"
    fired = next(e for e in events if e.type == "schedule.fired")
    assert fired.data["server_id"] in {m.me.id for m in fleet.members}
    await fleet.race()  # one of the servers queues attempt 2
    (fire,) = body(await api("GET", f"schedules/{schedule['id']}/fires"))["items"]
    first, second = fire["attempts"]
    assert (first["attempt"], second["attempt"]) == (1, 2)
    retried = await wait_for(api, second["id"])
    assert retried["status"] == "failed" and retried["schedule_id"] == schedule["id"]
    assert retried["first_run_id"] == fire["run_id"]
    shown = body(await api("GET", f"schedules/{schedule['id']}"))
    assert shown["last_outcome"] == "failed"
    assert [a["status"] for a in shown["last_fire"]["attempts"]] == ["failed", "failed"]


async def test_deleting_the_script_of_a_fixed_version_deletes_its_schedules(
    api: Fetch, services: Services, fleet: Fleet
) -> None:
    sid = await a_script(api)
    await a_script(api, "test_other.py")
    fixed = await create_schedule(api, script_id=sid, cron="0 * * * *")
    by_name = await create_schedule(api, script_name="test_other.py", cron="0 * * * *")
    fleet.clock.at(fixed["next_fires"][0], plus_s=1)
    await fleet.race()
    (fire,) = body(await api("GET", f"schedules/{fixed['id']}/fires"))["items"]
    await wait_for(api, fire["run_id"])
    assert (await api("DELETE", f"scripts/{sid}")).code == 204
    assert_error(await api("GET", f"schedules/{fixed['id']}"), 404, "schedule_not_found")
    assert fire_rows(services, fixed["id"]) == []
    assert body(await api("GET", f"schedules/{by_name['id']}"))["script_name"] == "test_other.py"


PARAMETERIZED = """import json, os
PARAMETERS = {"capacity_mw": {"type": "float", "default": 50, "min": 0, "max": 500}}
print("capacity", json.loads(os.environ["ENERGYOPS_PARAMETERS"])["capacity_mw"])
"""


async def test_parameters_are_checked_at_creation_and_against_the_version_that_fires(
    api: Fetch, services: Services, fleet: Fleet
) -> None:
    await a_script(api, "test_param.py", PARAMETERIZED)
    bad = await api(
        "POST",
        "schedules",
        json={"script_name": "test_param.py", "parameters": {"capacity_mw": 600}, **DAILY_9},
    )
    error = assert_error(bad, 422, "invalid_parameter")
    assert error["message"] == "parameter 'capacity_mw' must be between 0 and 500; got 600"
    schedule = await create_schedule(
        api, script_name="test_param.py", parameters={"capacity_mw": 120}, cron="0 * * * *"
    )
    assert schedule["parameters"] == {"capacity_mw": 120}
    fleet.clock.at(schedule["next_fires"][0], plus_s=1)
    await fleet.race()
    (fire,) = body(await api("GET", f"schedules/{schedule['id']}/fires"))["items"]
    done = await wait_for(api, fire["run_id"])
    assert done["status"] == "succeeded" and done["parameters"] == {"capacity_mw": 120.0}
    lines = body(await api("GET", f"runs/{done['id']}/logs"))["items"]
    assert "capacity 120.0" in [line["text"] for line in lines]

    await a_script(api, "test_param.py", "print('no parameters any more')\n")  # v2
    fleet.clock.at(schedule["next_fires"][1], plus_s=1)
    await fleet.race()
    latest = body(await api("GET", f"schedules/{schedule['id']}/fires"))["items"][0]
    assert latest["status"] == "skipped" and latest["run_id"] is None
    assert latest["reason"] == (
        "not run: test_param.py v2: unknown parameter 'capacity_mw' "
        "(the script declares no parameters)"
    )
