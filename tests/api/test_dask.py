"""Runs on a real Dask cluster (a ``dask scheduler`` and ``dask worker`` processes on
loopback): the same sandboxed run, live logs through any server, kills that kill, worker
crashes and server restarts survived, an unreachable scheduler waited out."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .cluster import Node, cluster
from .dask_cluster import DaskCluster, dask_cluster
from .servers import LiveServer, _database, free_port
from .test_cluster import PRINTER, QUICK, SLEEPER
from .wsclient import all_seqs

pytestmark = pytest.mark.slow

BACKENDS = ["postgresql", "sqlite"]
# a child, and a grandchild that leaves the session: both must die with the run
FAMILY = """import os, subprocess, sys, time
token = os.environ["ENERGYOPS_RUN_ID"] + "-" + sys.argv[1]
nap = [sys.executable, "-c", "import time; time.sleep(300)", token]
subprocess.Popen(nap)
subprocess.Popen(["setsid", *nap])
print("family up", flush=True)
time.sleep(300)
"""
WRITER = """import os
with open(os.path.join(os.environ["ENERGYOPS_OUTPUT_DIR"], "bids.csv"), "w") as fh:
    fh.write("block,mw\\n1,10\\n")
print("bids written", flush=True)
"""


@pytest.fixture(scope="module")
def workers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DaskCluster, dict[str, str]]]:
    with dask_cluster(tmp_path_factory.mktemp("dask"), workers=2) as found:
        yield found


@pytest.fixture(scope="module", params=BACKENDS)
def node(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    workers: tuple[DaskCluster, dict[str, str]],
) -> Iterator[Node]:
    """One server on the shared Dask cluster, per database, for the tests that need no server
    of their own (each of them makes its own scripts and runs and reads only those)."""
    scheduler, _ = workers
    workdir = tmp_path_factory.mktemp(f"dask-server-{request.param}")
    with cluster(workdir, request.param, 1, energyops=dask_settings(scheduler.address)) as (a,):
        yield a


def dask_settings(address: str, **more: Any) -> dict[str, Any]:
    return {"executor": "dask", "dask_scheduler": address, "max_concurrent_runs": 4, **more}


def survivors(token: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", token], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def connected_health(node: Node, within: float = 30) -> dict[str, Any]:
    """/health once the server has connected to the scheduler (a loaded machine can make it
    miss its first connect timeout and reconnect; the run queue waits meanwhile)."""
    deadline = time.monotonic() + within
    while True:
        health: dict[str, Any] = node.get("health")
        if health["executor"]["connected"]:
            return health
        assert time.monotonic() < deadline, health["executor"]
        time.sleep(0.2)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_run_on_a_worker_is_the_same_run(
    tmp_path: Path, backend: str, workers: tuple[DaskCluster, dict[str, str]]
) -> None:
    scheduler, addresses = workers
    with cluster(tmp_path, backend, 2, energyops=dask_settings(scheduler.address)) as (a, b):
        health = connected_health(a)
        assert health["executor"]["name"] == "dask" and health["executor"]["workers"] == 2
        printer = await asyncio.to_thread(a.upload_script, "test_printer.py", PRINTER)
        run = await asyncio.to_thread(a.run, printer["id"], args=["5000", "2000"])
        topic = f"run:{run['id']}"
        client = await b.events()
        seqs = all_seqs(await client.subscribe(topic, since={topic: 0}), topic)
        total = 1 + 5000 + 1
        assert await client.collect_lines(topic, total, seqs=seqs, within=60) == list(
            range(1, total + 1)
        )
        client.close()
        done = await asyncio.to_thread(a.finished, run["id"])
        assert done["status"] == "succeeded" and done["exit_code"] == 0
        assert done["executor"] == "dask" and done["worker"] in addresses.values()
        assert done["line_count"] == total
        lines = await asyncio.to_thread(b.lines, run["id"])
        assert lines[0]["text"].startswith("isolation: bubblewrap")
        assert [line["text"] for line in lines[1:-1]] == [f"line {i}" for i in range(1, 5001)]
        text = await asyncio.to_thread(_text_log, b, run["id"])
        assert len(text.splitlines()) == total

        writer = await asyncio.to_thread(a.upload_script, "test_writer.py", WRITER)
        wrote = await asyncio.to_thread(lambda: a.finished(a.run(writer["id"])["id"]))
        assert wrote["status"] == "succeeded"
        artifacts = await asyncio.to_thread(b.get, f"runs/{wrote['id']}/artifacts")
        assert artifacts["items"] == [{"name": "bids.csv", "size": len("block,mw\n1,10\n")}]


def _text_log(node: Node, run_id: int) -> str:
    response = requests.get(
        node.server.url(f"runs/{run_id}/logs"),
        headers=node.server.headers,
        params={"format": "text"},
        timeout=30,
    )
    assert response.status_code == 200
    return response.text


def test_runs_spread_over_the_workers(
    node: Node, workers: tuple[DaskCluster, dict[str, str]]
) -> None:
    _, addresses = workers
    a = node
    quick = a.upload_script("test_quick.py", QUICK.replace("0.5", "1.0"))
    runs = [a.run(quick["id"]) for _ in range(4)]
    done = [a.finished(run["id"]) for run in runs]
    assert {d["status"] for d in done} == {"succeeded"}
    assert {d["worker"] for d in done} == set(addresses.values())


@pytest.mark.parametrize("end", ["kill", "timeout"])
def test_kill_and_timeout_leave_no_process_on_the_worker(node: Node, end: str) -> None:
    a = node
    family = a.upload_script("test_family.py", FAMILY)
    token = f"{end}-{time.time_ns()}"
    timeout = {"timeout_s": 3} if end == "timeout" else {}
    run = a.run(family["id"], args=[token], **timeout)
    a.wait_run(run["id"], lambda r: r["line_count"] >= 2)
    run_token = f"{run['id']}-{token}"
    assert len(survivors(run_token)) == 2
    if end == "kill":
        asked = time.monotonic()
        a.delete(f"runs/{run['id']}")
        ended = a.finished(run["id"], within=10)
        assert time.monotonic() - asked < 2.0
        assert ended["status"] == "killed"
    else:
        assert a.finished(run["id"], within=20)["status"] == "timed_out"
    assert survivors(run_token) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sigkilled_worker_leaves_its_run_lost_and_never_reruns_it(
    tmp_path: Path, backend: str
) -> None:
    lone = DaskCluster(tmp_path / "dask")
    lone.start_scheduler()
    try:
        lone.start_worker("victim")
        (victim,) = lone.wait_workers(1).values()
        with cluster(tmp_path, backend, 1, energyops=dask_settings(lone.address)) as (a,):
            sleeper = a.upload_script("test_sleeper.py", SLEEPER)
            run = a.wait_run(a.run(sleeper["id"])["id"], lambda r: r["line_count"] >= 2)
            assert run["worker"] == victim
            lone.start_worker("spare")  # Dask would hand the task to this one
            lone.wait_workers(2)
            lone.kill_worker("victim")
            killed_at = time.monotonic()
            lost = a.wait_run(run["id"], lambda r: r["status"] == "lost", within=60)
            assert time.monotonic() - killed_at < 60
            assert f"Dask worker {victim}" in lost["status_reason"]
            time.sleep(1.5)  # time enough for Dask to try the task again on the spare
            lines = a.lines(run["id"])
            assert sum(line["text"] == "up" for line in lines) == 1
            assert a.get(f"runs/{run['id']}")["started_at"] == run["started_at"]
    finally:
        lone.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_server_restart_does_not_cost_a_dask_run(
    tmp_path: Path, backend: str, workers: tuple[DaskCluster, dict[str, str]]
) -> None:
    scheduler, _ = workers
    settings = dask_settings(scheduler.address)
    with _database(tmp_path, backend) as db_url:
        first = Node(LiveServer(tmp_path / "a", db_url, energyops=_shared(tmp_path, settings)))
        first.server.start()
        try:
            printer = first.upload_script("test_printer.py", PRINTER)
            run = first.run(printer["id"], args=["6000", "1000"])
            first.wait_run(run["id"], lambda r: r["line_count"] > 500)
            first.server.kill()
        finally:
            first.server.stop()
        again = Node(LiveServer(tmp_path / "a", db_url, energyops=_shared(tmp_path, settings)))
        again.server.start()
        try:
            done = again.finished(run["id"], within=60)
            assert done["status"] == "succeeded"
            lines = again.lines(run["id"])
            assert [line["seq"] for line in lines] == list(range(1, 6003))
            assert [line["text"] for line in lines[1:-1]] == [f"line {i}" for i in range(1, 6001)]
        finally:
            again.server.stop()


def _shared(tmp_path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    shared = tmp_path / "shared-storage"
    shared.mkdir(exist_ok=True)
    return {**settings, "storage_url": f"file://{shared}"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unreachable_scheduler_keeps_runs_queued_until_it_comes_back(
    tmp_path: Path, backend: str
) -> None:
    port = free_port()
    later = DaskCluster(tmp_path / "dask", port)
    address = later.address
    try:
        with cluster(tmp_path, backend, 1, energyops=dask_settings(address)) as (a,):
            quick = a.upload_script("test_quick.py", QUICK)
            run = a.run(quick["id"])
            waiting = a.wait_run(
                run["id"], lambda r: "unreachable" in (r["status_reason"] or ""), within=15
            )
            assert waiting["status"] == "queued"
            assert waiting["status_reason"].startswith(
                f"waiting: the Dask scheduler at {address} is unreachable"
            )
            health = a.get("health")
            assert health["status"] == "ok"
            assert health["executor"]["connected"] is False
            assert "unreachable" in health["executor"]["error"]
            later.start_scheduler()
            later.start_worker("late")
            later.wait_workers(1)
            done = a.finished(run["id"], within=60)
            assert done["status"] == "succeeded" and done["status_reason"] is None
            assert a.get("health")["executor"]["connected"] is True
    finally:
        later.stop()


FLAT_OUT = "import sys\nfor i in range(1, 100_001):\n    sys.stdout.write(f'line {i}\\n')\n"


def test_a_hundred_thousand_lines_from_a_worker_arrive_whole_and_in_order(node: Node) -> None:
    a = node
    loud = a.upload_script("test_loud.py", FLAT_OUT)
    done = a.finished(a.run(loud["id"])["id"], within=120)
    assert done["status"] == "succeeded" and done["worker"]
    total = 1 + 100_000 + 1
    assert done["line_count"] == total
    texts = [line.split(" ", 2)[2] for line in _text_log(a, done["id"]).splitlines()]
    assert texts[1:-1] == [f"line {i}" for i in range(1, 100_001)]
    paged: list[int] = []
    after = 0
    while True:
        page = a.get(f"runs/{done['id']}/logs", after=after, limit=10_000)
        paged += [line["seq"] for line in page["items"]]
        if not page["items"]:
            break
        after = page["next_after"]
    assert paged == list(range(1, total + 1))


DMO_WAITER = """import sys, time
print("up", sys.argv[1], flush=True)
time.sleep(float(sys.argv[2]))
"""
DMO_ONLY = {"DMO": {"DMO": 1}}  # dask_resources: DMO runs need a worker with DMO


def _run_feed(node: Node, run_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The run's activities and notifications, oldest first."""
    activities = node.get("activities", type="run", limit=100)["items"]
    notes = node.get("notifications", limit=100)["items"]

    def mine(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found = [r for r in rows if r["entity_type"] == "run" and r["entity_id"] == run_id]
        return sorted(found, key=lambda r: int(r["id"]))

    return mine(activities), mine(notes)


def _of_run(frames: list[dict[str, Any]], run_id: int) -> list[tuple[str, str]]:
    """(type, status) of the frames about ``run_id`` on the runs and notifications topics."""
    found = []
    for frame in frames:
        data = frame.get("data") or {}
        if frame.get("topic") == "runs" and data.get("run_id", data.get("id")) == run_id:
            found.append((frame["type"], str(data.get("status"))))
        elif frame.get("topic") == "notifications" and data.get("entity_id") == run_id:
            found.append((frame["type"], str(data.get("status") or data.get("type"))))
    return found


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_run_killed_before_any_worker_takes_it_never_runs(
    tmp_path: Path, backend: str
) -> None:
    """The only worker lacks the DMO resource, so Dask holds the run's task (``no-worker``)
    while EnergyOps shows the run handed over. A kill then ends it ``killed`` at once, with
    one activity, one notification and the events; when a worker with DMO joins, the killed
    run's task is gone: the worker runs a later DMO run and nothing of the killed one."""
    lone = DaskCluster(tmp_path / "dask")
    lone.start_scheduler()
    frames: list[dict[str, Any]] = []
    try:
        lone.start_worker("plain")
        (plain,) = (await asyncio.to_thread(lone.wait_workers, 1)).values()
        settings = dask_settings(lone.address, dask_resources=DMO_ONLY)
        with cluster(tmp_path, backend, 1, energyops=settings) as (a,):
            model = await asyncio.to_thread(
                a.upload_script, "dmo_waiter.py", DMO_WAITER, "model", "DMO"
            )
            events = await a.events()
            await events.subscribe("runs", "notifications")

            async def listen() -> None:
                while (frame := await events.recv(within=300)) is not None:
                    frames.append(frame)

            listener = asyncio.ensure_future(listen())
            try:
                token = f"never-{backend}-{time.time_ns()}"
                run = await asyncio.to_thread(a.run, model["id"], args=[token, "60"])
                run_id = run["id"]
                prefix = f"energyops-run-{run_id}-"

                def handed_over() -> list[str]:
                    return [s for k, s in lone.task_states().items() if k.startswith(prefix)]

                deadline = time.monotonic() + 30
                while handed_over() != ["no-worker"]:
                    assert time.monotonic() < deadline, (
                        lone.task_states(),
                        a.get(f"runs/{run_id}"),
                    )
                    await asyncio.sleep(0.1)
                waiting = await asyncio.to_thread(a.get, f"runs/{run_id}")
                assert (waiting["status"], waiting["executor"], waiting["worker"]) == (
                    "running",
                    "dask",
                    None,
                )
                assert waiting["server_id"] == a.id and waiting["pid"] is None

                asked = time.monotonic()
                answer = await asyncio.to_thread(a.delete, f"runs/{run_id}")
                assert answer["kill_requested_by"] == "quant"
                killed = await asyncio.to_thread(a.finished, run_id, 10)
                assert time.monotonic() - asked < 3.0
                assert killed["status"] == "killed"
                assert (
                    killed["status_reason"] == "killed by quant before it started on a Dask worker"
                )
                assert killed["pid"] is None and killed["worker"] is None
                assert killed["started_at"] is None and killed["runtime_ms"] is None
                assert killed["line_count"] == 0 and a.lines(run_id) == []
                deadline = time.monotonic() + 10
                while handed_over():  # the task is cancelled: Dask forgets it
                    assert time.monotonic() < deadline, lone.task_states()
                    await asyncio.sleep(0.1)

                title = f"Run {run_id} of dmo_waiter.py v1 killed"
                activities, notes = await asyncio.to_thread(_run_feed, a, run_id)
                assert [(x["action"], x["user"]) for x in activities] == [
                    ("queued", "quant"),
                    ("killed", "quant"),
                ]
                assert activities[-1]["title"] == title
                assert [(n["type"], n["title"], n["message"]) for n in notes] == [
                    ("run_killed", title, "killed by quant before it started on a Dask worker")
                ]
                deadline = time.monotonic() + 5
                while ("run.finished", "killed") not in _of_run(frames, run_id):
                    assert time.monotonic() < deadline, _of_run(frames, run_id)
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
                seen = _of_run(frames, run_id)
                assert seen.count(("run.finished", "killed")) == 1, seen
                assert seen.count(("activity.new", "killed")) == 1, seen
                assert seen.count(("notification.new", "run_killed")) == 1, seen

                # a worker that fits joins; a later DMO run shows it takes DMO tasks
                later = await asyncio.to_thread(
                    a.run, model["id"], args=[f"later-{time.time_ns()}", "0"]
                )
                lone.start_worker("dmo", resources="DMO=1")
                joined = await asyncio.to_thread(lone.wait_workers, 2)
                done = await asyncio.to_thread(a.finished, later["id"], 60)
                assert done["status"] == "succeeded" and done["worker"] == joined["dmo"]
                await asyncio.sleep(2.0)  # time enough for Dask to hand the killed run out too
                assert await asyncio.to_thread(lone.executed, joined["dmo"]) == 1
                assert await asyncio.to_thread(lone.executed, plain) == 0
                assert not any(k.startswith(prefix) for k in lone.task_states())
                still = await asyncio.to_thread(a.get, f"runs/{run_id}")
                assert still == killed
                assert await asyncio.to_thread(_run_feed, a, run_id) == (activities, notes)
                seen = _of_run(frames, run_id)
                assert seen.count(("run.finished", "killed")) == 1, seen
                assert [f for f in seen if f[0] == "run.started"] == []
                workers_rows = [
                    s for s in a.get("servers")["items"] if s["executor"] == "dask-worker"
                ]
                assert len(workers_rows) == 1  # the later run's task; the killed one never ran
                assert survivors(token) == []
            finally:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
                events.close()
    finally:
        lone.stop()
