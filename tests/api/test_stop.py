"""Stop and keep the best: POST /runs/{id}/stop on a deliberately long MILP (real HiGHS) ends
``succeeded`` with ``stopped_early`` and the incumbent it had; solver figures arrive as
run.progress events; a model that does not stop is killed; a queued run is cancelled; a stop
through another server reaches the owner."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.websocket import WebSocketClientConnection

from energyops_ext.events import run_topic

from .cluster import Node, cluster, owner_and_other
from .conftest import Fetch, assert_error, body
from .models_helpers import log_texts, notebook
from .runs_helpers import FAST_RUNS, script_id, start_run, upload, wait_for, wait_until
from .wsclient import EventsClient

WsFetch = Callable[..., Awaitable[WebSocketClientConnection]]

# A multi-dimensional knapsack HiGHS does not prove optimal in minutes, with incumbents at once.
LONG_MILP = """
import csv, random, sys
import highspy
from energyops_ext import sdk

stop = sdk.stop_handler()
rng = random.Random(3)
n, m = 120, 8
h = highspy.Highs()
h.silent()
h.setOptionValue("time_limit", 120.0)
x = [h.addBinary() for _ in range(n)]
w = [[rng.randint(20, 100) for _ in range(n)] for _ in range(m)]
v = [sum(w[k][j] for k in range(m)) / m + rng.randint(0, 10) for j in range(n)]
for k in range(m):
    h.addConstr(sum(w[k][j] * x[j] for j in range(n)) <= sum(w[k]) / 2)
h.setObjective(sum(v[j] * x[j] for j in range(n)), sense=highspy.ObjSense.kMaximize)
print("solving", flush=True)
sdk.solve_highs(h, stop, every_s=0.2)
info = h.getInfo()
values = h.getSolution().col_value
with open(sdk.output_dir() / "solution.csv", "w", newline="") as fh:
    out = csv.writer(fh)
    out.writerow(["item", "take"])
    out.writerows([j, round(values[j])] for j in range(n))
for k in range(m):
    assert sum(w[k][j] * round(values[j]) for j in range(n)) <= sum(w[k]) / 2, "infeasible"
print("model status", h.modelStatusToString(h.getModelStatus()), "stopped", stop.requested)
print(f"gap {info.mip_gap:.6f}")
sdk.objective(info.objective_function_value)
sdk.results(n)
"""

STUBBORN = """
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("up", flush=True)
time.sleep(120)
"""

EXITS_NONZERO = """
import sys, time
from energyops_ext import sdk
stop = sdk.stop_handler()
print("up", flush=True)
while not stop.requested:
    time.sleep(0.05)
sys.exit(3)
"""


@pytest.fixture
def energyops_config() -> dict[str, Any]:
    return {**FAST_RUNS, "kill_grace_s": 2.0}


async def _seen(api: Fetch, run_id: int, text: str) -> bool:
    return any(text in t for t in await log_texts(api, run_id))


async def test_stop_keeps_the_best_solution_of_a_long_milp(
    api: Fetch, jp_ws_fetch: WsFetch
) -> None:
    sid = await script_id(api, "test_long_milp.py", LONG_MILP)
    run = await start_run(api, sid)
    events = EventsClient(await jp_ws_fetch("energyops", "api", "events"))
    try:
        await events.subscribe(run_topic(run["id"]))

        async def solving() -> bool:
            return await _seen(api, run["id"], '::energyops {"incumbent"')

        await wait_until(solving, timeout_s=30)
        frames = await events.until(
            lambda f: f["type"] == "run.progress" and "gap" in f["data"], within=10
        )
        progress = frames[-1]["data"]
        assert {"incumbent", "bound", "gap", "elapsed_s"} <= set(progress)
        assert progress["bound"] >= progress["incumbent"] > 0
    finally:
        events.close()
    asked = time.monotonic()
    response = await api("POST", f"runs/{run['id']}/stop")
    assert response.code == 202, response.body
    answer = body(response)
    assert answer["stop_requested_by"] == "quant" and answer["stop_requested_at"]
    done = await wait_for(api, run["id"], timeout_s=30)
    assert time.monotonic() - asked < 5
    assert done["status"] == "succeeded" and done["stopped_early"] is True, done
    assert done["exit_code"] == 0
    assert done["status_reason"] == "stopped early by quant; the model kept its best"
    texts = await log_texts(api, run["id"])
    assert "model status Interrupted by user stopped True" in texts
    gap = float(next(t for t in texts if t.startswith("gap "))[4:])
    assert gap > 0
    assert done["solver"]["gap"] == pytest.approx(gap, abs=1e-6)
    assert done["objective_value"] == pytest.approx(done["solver"]["incumbent"])
    assert done["objective_value"] > 3000 and done["results_count"] == 120
    artifacts = [a["name"] for a in body(await api("GET", f"runs/{run['id']}/artifacts"))["items"]]
    assert artifacts == ["solution.csv"]
    assert_error(await api("POST", f"runs/{run['id']}/stop"), 409, "run_finished")


async def test_a_model_that_does_not_stop_is_killed(api: Fetch) -> None:
    for name, source, fragment in (
        ("test_stubborn.py", STUBBORN, "exit code -9"),
        ("test_exit3.py", EXITS_NONZERO, "exit code 3"),
    ):
        sid = await script_id(api, name, source)
        run = await start_run(api, sid)

        async def up(run_id: int = run["id"]) -> bool:
            return await _seen(api, run_id, "up")

        await wait_until(up)
        assert (await api("POST", f"runs/{run['id']}/stop")).code == 202
        done = await wait_for(api, run["id"], timeout_s=30)
        assert done["status"] == "killed" and done["stopped_early"] is False
        assert done["status_reason"] == (
            f"stopped by quant; the model did not stop cleanly in time ({fragment})"
        )


async def test_stop_of_a_queued_run_cancels_it(api: Fetch, services: Any) -> None:
    sleeper = await script_id(api, "test_sleep.py", "import time\nprint('up')\ntime.sleep(60)\n")
    blockers = [await start_run(api, sleeper) for _ in range(services.settings.max_concurrent_runs)]
    queued = await start_run(api, sleeper)
    assert queued["status"] == "queued"
    response = await api("POST", f"runs/{queued['id']}/stop")
    assert response.code == 202 and body(response)["status"] == "killed"
    assert body(response)["status_reason"] == "stopped by quant before it started"
    for blocker in blockers:
        await api("DELETE", f"runs/{blocker['id']}")
    assert_error(await api("POST", "runs/9999/stop"), 404, "run_not_found")


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workdir: Path = tmp_path_factory.mktemp(f"stop-{request.param}")
    with cluster(workdir, request.param, 2, energyops={"kill_grace_s": 2.0}) as nodes:
        yield nodes


@pytest.mark.slow
def test_a_stop_through_another_server_reaches_the_owner(pair: list[Node]) -> None:
    script = pair[0].upload_script("test_long_milp.py", LONG_MILP)
    run = pair[0].wait_run(
        pair[0].run(script["id"])["id"],
        lambda r: r["status"] == "running" and r["solver"] is not None,
    )
    _owner, other = owner_and_other(pair, run)
    answer = other.post(f"runs/{run['id']}/stop")
    assert answer["stop_requested_by"] == "quant"
    ended = other.finished(run["id"], within=15)
    assert ended["status"] == "succeeded" and ended["stopped_early"] is True
    assert ended["server_id"] == run["server_id"]


# the kernel finishes the interrupted cell, runs the rest and papermill writes the notebook
# within the SIGINT grace: on a loaded machine that takes seconds, not the 2 s of the module
@pytest.mark.parametrize("energyops_config", [{**FAST_RUNS, "kill_grace_s": 15.0}], ids=["grace"])
async def test_stop_of_a_notebook_interrupts_its_solver_and_runs_the_rest(api: Fetch) -> None:
    solve, report = LONG_MILP.split('print("solving", flush=True)\n')
    source = notebook(
        solve + 'print("solving", flush=True)\nsdk.solve_highs(h, stop, every_s=0.2)',
        report.replace("sdk.solve_highs(h, stop, every_s=0.2)\n", ""),
    )
    response = await upload(api, "test_long_milp.ipynb", source)
    assert response.code == 201, response.body
    run = await start_run(api, body(response)["id"])

    async def solving() -> bool:
        return await _seen(api, run["id"], '[cell 2] ::energyops {"incumbent"')

    await wait_until(solving, timeout_s=30)
    assert (await api("POST", f"runs/{run['id']}/stop")).code == 202
    done = await wait_for(api, run["id"], timeout_s=30)
    assert done["status"] == "succeeded" and done["stopped_early"] is True, done
    texts = await log_texts(api, run["id"])
    assert "[cell 3] model status Interrupted by user stopped True" in texts
    assert done["results_count"] == 120 and done["objective_value"] > 3000


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_a_stop_reaches_a_run_on_a_dask_worker(tmp_path: Path, backend: str) -> None:
    from .dask_cluster import dask_cluster

    with (
        dask_cluster(tmp_path / "dask", workers=1) as (scheduler, _addresses),
        cluster(
            tmp_path / "servers",
            backend,
            1,
            energyops={
                "executor": "dask",
                "dask_scheduler": scheduler.address,
                "kill_grace_s": 2.0,
            },
        ) as (a,),
    ):
        script = a.upload_script("test_long_milp.py", LONG_MILP)
        run = a.wait_run(
            a.run(script["id"])["id"],
            lambda r: r["status"] == "running" and r["solver"] is not None,
            within=60,
        )
        assert run["executor"] == "dask" and run["worker"]
        a.post(f"runs/{run['id']}/stop")
        ended = a.finished(run["id"], within=20)
        assert ended["status"] == "succeeded" and ended["stopped_early"] is True
        assert ended["objective_value"] > 3000
