"""What a run tells through notifications and activities, over real subprocesses on both
databases: one notification for a failed run, folded and throttled errors while it runs, a
traceback that names the script, one activity for a kill."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Fetch, body
from .runs_helpers import FAST_RUNS, script_id, start_run, wait_for

BAD_BID = """
def price(bid):
    raise ValueError("bad bid")

print("pricing", flush=True)
price(3)
"""

# Eight errors, each a whole traceback (caught and printed), while the run goes on long enough
# for them to be told (run_errors.ERROR_HOLD_S); then it fails or ends well.
MANY_ERRORS = """
import sys, time, traceback

def price(bid):
    raise KeyError(f"bid {bid}")

for bid in range(8):
    try:
        price(bid)
    except KeyError:
        traceback.print_exc()
time.sleep(3)
if sys.argv[1:] == ["fail"]:
    price("last")
"""

THREE_UNTOLD = "3 more errors (see the run's log)"
SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"


@pytest.fixture
def energyops_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Fast runs, in the sandbox a test names (``auto`` by default)."""
    return {**FAST_RUNS, "sandbox_mode": getattr(request, "param", "auto")}


async def run_notes(api: Fetch, run_id: int) -> list[dict[str, Any]]:
    items = body(await api("GET", "notifications", params={"limit": "100"}))["items"]
    mine = [n for n in items if n["entity_type"] == "run" and n["entity_id"] == run_id]
    return sorted(mine, key=lambda n: n["id"])


async def run_activities(api: Fetch, run_id: int) -> list[dict[str, Any]]:
    items = body(await api("GET", "activities", params={"type": "run", "limit": "100"}))["items"]
    return [a for a in items if a["entity_type"] == "run" and a["entity_id"] == run_id]


async def test_a_failed_run_is_one_notification_with_its_last_error(api: Fetch) -> None:
    sid = await script_id(api, "test_bad_bid.py", BAD_BID)
    run = await start_run(api, sid)
    done = await wait_for(api, run["id"])
    assert (done["status"], done["exit_code"]) == ("failed", 1)
    assert done["error_count"] >= 3  # the traceback's error lines are still counted
    notes = await run_notes(api, run["id"])
    assert [(n["type"], n["title"], n["message"]) for n in notes] == [
        (
            "run_failed",
            f"Run {run['id']} of test_bad_bid.py v1 failed",
            "exit code 1: ValueError: bad bid",
        )
    ]


@pytest.mark.parametrize(
    ("ending", "status", "end_notes"),
    [
        (
            "fail",
            "failed",
            [("run_failed", f"exit code 1: KeyError: 'bid last'; {THREE_UNTOLD}")],
        ),
        ("succeed", "succeeded", [("run_error", THREE_UNTOLD)]),
    ],
)
async def test_errors_while_running_are_one_notification_each_and_throttled(
    api: Fetch, ending: str, status: str, end_notes: list[tuple[str, str]]
) -> None:
    sid = await script_id(api, "test_many_errors.py", MANY_ERRORS)
    run = await start_run(api, sid, args=[ending])
    done = await wait_for(api, run["id"])
    assert done["status"] == status
    notes = await run_notes(api, run["id"])
    told = [n for n in notes if n["title"].endswith(": error")]
    assert [n["message"] for n in told] == [f"KeyError: 'bid {bid}'" for bid in range(5)]
    assert all(n["type"] == "run_error" for n in told)
    rest = [(n["type"], n["message"]) for n in notes if n not in told]
    assert rest == end_notes


@pytest.mark.parametrize("energyops_config", ["bwrap", "none"], indirect=True)
async def test_a_traceback_names_the_script(api: Fetch) -> None:
    sid = await script_id(api, "test_bad_bid.py", BAD_BID)
    run = await start_run(api, sid)
    await wait_for(api, run["id"])
    texts = [line["text"] for line in body(await api("GET", f"runs/{run['id']}/logs"))["items"]]
    frames = [t for t in texts if t.lstrip().startswith("File ")]
    assert frames and all('test_bad_bid.py", line' in t for t in frames), frames
    assert not any("script.py" in t for t in texts)


async def test_a_kill_is_one_activity(api: Fetch) -> None:
    sid = await script_id(api, "test_sleeper.py", SLEEPER)
    run = await start_run(api, sid)
    await wait_for(api, run["id"], {"running"})
    assert (await api("DELETE", f"runs/{run['id']}")).code == 202
    done = await wait_for(api, run["id"])
    assert done["status"] == "killed"
    activities = await run_activities(api, run["id"])
    assert [(a["action"], a["status"], a["user"]) for a in activities] == [
        ("killed", "killed", "quant"),
        ("queued", "queued", "quant"),
    ]
    assert activities[0]["title"] == f"Run {run['id']} of test_sleeper.py v1 killed"
