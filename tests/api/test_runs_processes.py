"""Process lifecycle over real subprocesses: kill, timeout, leftovers, setsid escapees, stop,
the queue, and a 200,000-line run. Every test counts surviving processes: zero.

Each runs on the linux process backend (with and without bubblewrap) and on the portable one
(psutil: what macOS and Windows run), forced here on Linux."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from energyops_ext.runs import registry
from energyops_ext.runs.sandbox import RunPaths, process_marker
from energyops_ext.services import Services

from .conftest import Fetch, assert_error, body
from .runs_helpers import FAST_RUNS, live_pids, script_id, start_run, wait_for, wait_until

# Writes the pid of every process it starts to output/pids, then waits.
FAMILY = """
import os, subprocess, sys, time
out = os.environ["ENERGYOPS_OUTPUT_DIR"] + "/pids"
def note(pid):
    with open(out, "a") as fh:
        fh.write(f"{pid}\\n")
note(os.getpid())
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
note(child.pid)
if os.fork() == 0:
    os.setsid()
    note(os.getpid())
    time.sleep(60)
    os._exit(0)
time.sleep(0.3)
print("family ready", flush=True)
if sys.argv[1:] == ["exit"]:
    sys.exit(0)
time.sleep(60)
"""


# (process_backend, sandbox_mode)
LINUX_BWRAP = ("linux", "bwrap")
LINUX_NONE = ("linux", "none")
PORTABLE = ("portable", "none")


@pytest.fixture(params=[LINUX_BWRAP, LINUX_NONE, PORTABLE], ids="-".join)
def energyops_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    backend, sandbox = request.param
    return {**FAST_RUNS, "process_backend": backend, "sandbox_mode": sandbox}


def survivors(services: Services, run_id: int, pid_file: Path) -> set[int]:
    """Live processes of a run: seen from the host through the run's environment marker,
    and (without a pid namespace, where the pids the script wrote are host pids) by pid.
    Read from /proc whatever the backend under test."""
    found = registry.with_marker(
        process_marker(RunPaths.for_run(services.settings.sandbox_dir, run_id))
    )
    if services.runs.engine.sandbox and services.runs.engine.sandbox.mode != "bwrap":
        found |= set(live_pids(pid_file))
    return found


async def _family(api: Fetch, services: Services, **payload: Any) -> tuple[dict[str, Any], Any]:
    sid = await script_id(api, "test_family.py", FAMILY)
    run = await start_run(api, sid, **payload)
    pid_file = services.settings.sandbox_dir / str(run["id"]) / "output" / "pids"

    async def ready() -> bool:
        lines = body(await api("GET", f"runs/{run['id']}/logs"))["items"]
        return any(line["text"] == "family ready" for line in lines)

    await wait_until(ready)
    return run, pid_file


async def test_kill_timeout_and_exit_leave_no_process(api: Fetch, services: Services) -> None:
    backend = services.settings.process_backend
    sandbox = body(await api("GET", "health"))["sandbox"]
    assert sandbox["processes"] == backend
    if backend == "portable":
        assert (
            sandbox["mode"] == "none" and "process_backend portable" in sandbox["fallback_reason"]
        )
    run, pids = await _family(api, services)
    first = body(await api("GET", f"runs/{run['id']}/logs"))["items"][0]["text"]
    assert first.startswith("isolation: ") and (backend == "linux") != ("portable" in first)
    assert len(survivors(services, run["id"], pids)) >= 3
    killed = await api("DELETE", f"runs/{run['id']}")
    assert killed.code == 202
    done = await wait_for(api, run["id"])
    assert done["status"] == "killed" and "killed by quant" in done["status_reason"]
    assert survivors(services, run["id"], pids) == set()
    assert_error(await api("DELETE", f"runs/{run['id']}"), 409)

    run, pids = await _family(api, services, timeout_s=2)
    done = await wait_for(api, run["id"])
    assert done["status"] == "timed_out" and done["runtime_ms"] >= 2000
    assert survivors(services, run["id"], pids) == set()

    run, pids = await _family(api, services, args=["exit"])
    done = await wait_for(api, run["id"], timeout_s=10)
    assert done["status"] == "succeeded" and done["exit_code"] == 0
    assert survivors(services, run["id"], pids) == set()
    notifications = body(await api("GET", "notifications"))["items"]
    assert {n["type"] for n in notifications} >= {"run_killed", "run_timed_out"}


async def test_queue_priority_and_cancel(api: Fetch, services: Services) -> None:
    sleeper = await script_id(api, "test_wait.py", "import time\nprint('up')\ntime.sleep(60)\n")
    quick = await script_id(api, "test_quick.py", "print('quick')\n")
    blockers = [await start_run(api, sleeper) for _ in range(2)]
    for blocker in blockers:
        await wait_for(api, blocker["id"], {"running"})
    low = await start_run(api, quick, priority=0)
    high = await start_run(api, quick, priority=10)
    cancelled = await start_run(api, quick, priority=20)
    assert low["status"] == high["status"] == cancelled["status"] == "queued"
    health = body(await api("GET", "health"))["queue"]
    assert health == {"running": 2, "queued": 3, "max_concurrent": 2}
    response = await api("DELETE", f"runs/{cancelled['id']}")
    assert response.code == 202 and body(response)["status"] == "killed"
    await api("DELETE", f"runs/{blockers[0]['id']}")
    high_done = await wait_for(api, high["id"])
    await api("DELETE", f"runs/{blockers[1]['id']}")
    low_done = await wait_for(api, low["id"])
    assert high_done["started_at"] < low_done["started_at"]
    assert body(await api("GET", f"runs/{cancelled['id']}"))["started_at"] is None
    statuses = body(await api("GET", "runs", params={"script_id": str(quick)}))["items"]
    assert sorted(r["status"] for r in statuses) == ["killed", "succeeded", "succeeded"]


LOUD = """
import sys
out, err = sys.stdout, sys.stderr
for i in range(100_000):
    out.write(f"out {i}\\n")
    err.write(f"err {i}\\n")
"""


# The line path does not depend on the sandbox, but on the backend's pipe reader (a selector
# on linux, a thread per pipe on portable, as on Windows).
@pytest.mark.parametrize("energyops_config", [LINUX_BWRAP, PORTABLE], indirect=True, ids="-".join)
async def test_200k_lines_land_complete_and_ordered(api: Fetch, services: Services) -> None:
    sid = await script_id(api, "test_loud.py", LOUD)
    run = await start_run(api, sid)
    done = await wait_for(api, run["id"], timeout_s=120)
    assert done["status"] == "succeeded"
    lines: list[dict[str, Any]] = []
    after = 0
    while True:
        page = body(
            await api(
                "GET", f"runs/{run['id']}/logs", params={"after": str(after), "limit": "10000"}
            )
        )
        if not page["items"]:
            break
        lines.extend(page["items"])
        after = page["next_after"]
    output = [line for line in lines if line["stream"] != "system"]
    assert len(output) == 200_000
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert done["line_count"] == len(lines)
    for stream in ("stdout", "stderr"):
        texts = [line["text"] for line in output if line["stream"] == stream]
        prefix = "out" if stream == "stdout" else "err"
        assert texts == [f"{prefix} {i}" for i in range(100_000)]
    log_file = services.settings.logs_dir / f"{run['id']}.log"
    file_lines = await asyncio.to_thread(log_file.read_text)
    assert [line.split(" ", 2)[2] for line in file_lines.splitlines()] == [
        line["text"] for line in lines
    ]


# Stops at SIGINT with exit 0 when asked ("stop"), else ignores SIGINT and SIGTERM with a child
# that ignores them too: the stop's last step (SIGKILL) must take both.
STUBBORN = """
import os, signal, subprocess, sys, time
out = os.environ["ENERGYOPS_OUTPUT_DIR"] + "/pids"
if sys.argv[1:] == ["stop"]:
    signal.signal(signal.SIGINT, lambda *_: (print("keeping the best", flush=True), sys.exit(0)))
else:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
child = subprocess.Popen([sys.executable, "-c", code])
with open(out, "w") as fh:
    fh.write(f"{os.getpid()}\\n{child.pid}\\n")
print("solving", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("energyops_config", [LINUX_NONE, PORTABLE], indirect=True, ids="-".join)
async def test_stop_steps_keep_the_best_or_kill_the_tree(api: Fetch, services: Services) -> None:
    sid = await script_id(api, "test_stubborn.py", STUBBORN)
    for args, status, stopped_early in ((["stop"], "succeeded", True), ([], "killed", False)):
        run = await start_run(api, sid, args=args)
        pid_file = services.settings.sandbox_dir / str(run["id"]) / "output" / "pids"

        async def solving(run_id: int = run["id"]) -> bool:
            lines = body(await api("GET", f"runs/{run_id}/logs"))["items"]
            return any(line["text"] == "solving" for line in lines)

        await wait_until(solving)
        assert (await api("POST", f"runs/{run['id']}/stop")).code == 202
        done = await wait_for(api, run["id"])
        assert (done["status"], done["stopped_early"]) == (status, stopped_early), done
        assert survivors(services, run["id"], pid_file) == set()
