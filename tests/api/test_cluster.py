"""Three real servers on one database: one registry, one queue, events, kills and reaping
between them (PostgreSQL, and SQLite for servers on one machine)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from sqlalchemy import create_engine, text

from ..ingest_files import snapshot_csv
from ..s3 import make_bucket, moto_s3
from .cluster import Node, cluster, owner_and_other, start_node
from .servers import _database
from .wsclient import all_seqs

pytestmark = pytest.mark.slow

SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(120)\n"
QUICK = (
    "import os, time\nprint('run', os.environ['ENERGYOPS_RUN_ID'], flush=True)\ntime.sleep(0.5)\n"
)
PRINTER = """import sys, time
count, rate = int(sys.argv[1]), int(sys.argv[2])
start = time.monotonic()
for i in range(1, count + 1):
    print(f"line {i}", flush=True)
    ahead = i / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
"""


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def trio(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Node]]:
    workdir = tmp_path_factory.mktemp(f"trio-{request.param}")
    with cluster(workdir, request.param, 3) as nodes:
        yield nodes


def _running_on(node: Node, run: dict[str, Any]) -> dict[str, Any]:
    return node.wait_run(run["id"], lambda r: r["status"] == "running" and r["line_count"] > 1)


def test_every_server_is_listed_and_knows_itself(trio: list[Node]) -> None:
    ids = set()
    for node in trio:
        listing = node.get("servers")
        live = [s for s in listing["items"] if s["live"]]
        assert listing["live"] == len(live) == 3
        (this,) = [s for s in listing["items"] if s["this"]]
        health = node.get("health")
        assert health["server"]["id"] == this["id"]
        assert health["server"]["live_servers"] == 3
        ids.add(this["id"])
    assert len(ids) == 3


def test_a_kill_through_another_server_reaches_the_owner(trio: list[Node]) -> None:
    script = trio[0].upload_script("test_sleeper.py", SLEEPER)
    run = _running_on(trio[0], trio[0].run(script["id"]))
    _owner_node, b = owner_and_other(trio, run)
    owner = run["server_id"]
    killed_at = time.monotonic()
    answer = b.delete(f"runs/{run['id']}")
    assert answer["kill_requested_by"] == "quant" and answer["kill_requested_at"]
    ended = b.finished(run["id"], within=5)
    assert time.monotonic() - killed_at < 1.5
    assert ended["status"] == "killed" and ended["server_id"] == owner
    assert ended["status_reason"] == "killed by quant"
    assert b.delete(f"runs/{run['id']}", status=409)["error"]["code"] == "run_finished"
    # one activity for the kill, written by the owner as the run ended
    items = b.get("activities", type="run", limit=200)["items"]
    mine = [(a["action"], a["user"]) for a in items if a["entity_id"] == run["id"]]
    assert mine == [("killed", "quant"), ("queued", "quant")]


def test_a_queued_run_is_taken_by_an_idle_server(trio: list[Node]) -> None:
    a = trio[0]
    sleeper = a.upload_script("test_sleeper.py", SLEEPER)
    busy = _running_on(a, a.run(sleeper["id"]))
    quick = a.upload_script("test_quick.py", QUICK)
    queued_at = time.monotonic()
    run = a.run(quick["id"])
    started = a.wait_run(run["id"], lambda r: r["status"] != "queued", within=5)
    assert time.monotonic() - queued_at < 2.0
    assert started["server_id"] not in (None, busy["server_id"])
    assert a.finished(run["id"])["status"] == "succeeded"
    a.delete(f"runs/{busy['id']}")
    assert a.finished(busy["id"])["status"] == "killed"


def test_twenty_runs_on_three_servers_each_run_once(trio: list[Node]) -> None:
    quick = trio[0].upload_script("test_quick.py", QUICK)
    runs = [trio[i % 3].run(quick["id"]) for i in range(20)]
    owners = set()
    for run in runs:
        done = trio[1].finished(run["id"], within=60)
        assert done["status"] == "succeeded", done
        owners.add(done["server_id"])
        lines = trio[2].lines(run["id"])
        assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
        texts = [line["text"] for line in lines]
        assert texts.count(f"run {run['id']}") == 1
        assert sum(t.startswith("run ended: succeeded") for t in texts) == 1
    assert len(owners) == 3
    for node in trio:
        text_log = node.log_text()
        assert "could not start" not in text_log and "already reaped" not in text_log


async def test_subscribers_on_other_servers_get_every_line_and_event(trio: list[Node]) -> None:
    a, b, c = trio
    watcher = await b.events()
    await watcher.subscribe("runs", "datasets", "notifications")
    printer = await asyncio.to_thread(a.upload_script, "test_printer.py", PRINTER)
    run = await asyncio.to_thread(a.run, printer["id"], args=["3000", "1000"])
    # a live subscriber on B from the start, a mid-run joiner with since=0 on C
    frames = await watcher.until(
        lambda f: f["type"] == "run.started" and f["data"]["id"] == run["id"]
    )
    owner = (await asyncio.to_thread(a.get, f"runs/{run['id']}"))["server_id"]
    assert frames[-1]["data"]["server_id"] == owner
    live = await b.events()
    topic = f"run:{run['id']}"
    await live.subscribe(topic)
    await asyncio.to_thread(a.wait_run, run["id"], lambda r: r["line_count"] > 500)
    joiner = await c.events()
    replayed = all_seqs(await joiner.subscribe(topic, since={topic: 0}), topic)
    total = 1 + 3000 + 1  # the sandbox line, the printed lines, the end line
    joined = await joiner.collect_lines(topic, total, seqs=replayed)
    assert joined == list(range(1, total + 1))
    seen = await live.collect_lines(topic, total)
    assert seen == list(range(seen[0], total + 1))
    finished = await watcher.until(
        lambda f: f["type"] == "run.finished" and f["data"]["run_id"] == run["id"]
    )
    assert finished[-1]["data"]["status"] == "succeeded"
    assert (await asyncio.to_thread(a.finished, run["id"]))["line_count"] == total

    upload = await asyncio.to_thread(
        a.upload_dataset, "market-snapshot", "day.csv", snapshot_csv([date(2025, 3, 1)])
    )
    uploaded = await watcher.until(lambda f: f["type"] == "dataset.uploaded")
    assert uploaded[-1]["data"]["upload_id"] == upload["upload_id"]
    for client in (watcher, live, joiner):
        client.close()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_servers_starting_at_once_migrate_once(tmp_path: Path, backend: str) -> None:
    with cluster(tmp_path, backend, 3) as nodes:
        assert nodes[0].get("servers")["live"] == 3
        for node in nodes:
            assert node.get("health")["database"]["migration"]["up_to_date"] is True
        engine = create_engine(nodes[0].server.db_url)
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        engine.dispose()
        assert len(versions) == 1


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_a_sigkilled_server_on_this_machine_is_reaped_at_once(tmp_path: Path, backend: str) -> None:
    with cluster(tmp_path, backend, 2, energyops={"lease_s": 60.0}) as nodes:
        script = nodes[0].upload_script("test_sleeper.py", SLEEPER)
        run = _running_on(nodes[0], nodes[0].run(script["id"]))
        a, b = owner_and_other(nodes, run)
        dead_id = run["server_id"]
        a.server.kill()
        killed_at = time.monotonic()
        lost = b.wait_run(run["id"], lambda r: r["status"] == "lost", within=10)
        # the same machine: its process is gone, no need to wait out the 60 s lease
        assert time.monotonic() - killed_at < 3
        assert f"server {dead_id}" in lost["status_reason"]
        assert "its process no longer exists on this machine" in lost["status_reason"]
        assert b.lines(run["id"])[-1]["text"].startswith("run lost: server ")
        listing = {s["id"]: s for s in b.get("servers")["items"]}
        assert listing[dead_id]["live"] is False
        quick = b.upload_script("test_quick.py", QUICK)
        assert b.finished(b.run(quick["id"])["id"])["status"] == "succeeded"


def test_a_server_on_another_host_is_dead_after_its_lease(tmp_path: Path) -> None:
    """One server has a host name of its own: neither sees the other's process, only its
    heartbeats."""
    lease, beat = 3.0, 0.5
    with cluster(tmp_path, "postgresql", 2, hostnames=["eo-a", None]) as nodes:
        assert nodes[0].get("health")["server"]["host"] == "eo-a"
        assert nodes[1].get("health")["server"]["host"] != "eo-a"
        script = nodes[0].upload_script("test_sleeper.py", SLEEPER)
        run = _running_on(nodes[0], nodes[0].run(script["id"]))
        # whichever took the run, the other sees it only through its heartbeats
        a, b = owner_and_other(nodes, run)
        assert run["host"] == a.get("health")["server"]["host"]
        time.sleep(lease + beat)  # A's run outlives a whole lease while A lives
        assert b.get(f"runs/{run['id']}")["status"] == "running"
        a.server.kill()
        killed_at = time.monotonic()
        lost = b.wait_run(run["id"], lambda r: r["status"] == "lost", within=lease + 10)
        waited = time.monotonic() - killed_at
        assert lease - beat <= waited <= lease + beat + 1.5, waited
        assert "sent no heartbeat for" in lost["status_reason"]
        assert "is beyond this machine's reach" in lost["status_reason"]
        quick = b.upload_script("test_quick.py", QUICK)
        assert b.finished(b.run(quick["id"])["id"])["status"] == "succeeded"


def test_a_stalled_server_that_wakes_after_its_lease_gives_its_run_up(tmp_path: Path) -> None:
    """A server frozen past its lease (SIGSTOP: a long GC pause, a VM migration) is taken for
    dead and its run reaped; woken, it finds the run no longer its own, kills the child and
    overwrites nothing, then goes on serving."""
    lease = 3.0
    with cluster(tmp_path, "postgresql", 2, hostnames=["eo-a", None]) as nodes:
        script = nodes[0].upload_script("test_sleeper.py", SLEEPER)
        run = _running_on(nodes[0], nodes[0].run(script["id"]))
        a, b = owner_and_other(nodes, run)
        assert a.server.process is not None
        os.kill(a.server.process.pid, signal.SIGSTOP)
        try:
            lost = b.wait_run(run["id"], lambda r: r["status"] == "lost", within=lease + 10)
        finally:
            os.kill(a.server.process.pid, signal.SIGCONT)
        assert "sent no heartbeat for" in lost["status_reason"]
        deadline = time.monotonic() + 10
        while psutil.pid_exists(run["pid"]) and psutil.Process(run["pid"]).status() != "zombie":
            assert time.monotonic() < deadline, "the woken server left its child running"
            time.sleep(0.1)
        time.sleep(1.0)  # a few heartbeats of the woken server
        after = b.get(f"runs/{run['id']}")
        assert (after["status"], after["status_reason"]) == ("lost", lost["status_reason"])
        assert a.get("health")["server"]["id"] == run["server_id"]
        quick = a.upload_script("test_quick.py", QUICK)
        assert a.finished(a.run(quick["id"])["id"])["status"] == "succeeded"


def test_a_new_server_leaves_the_runs_of_live_servers_alone(tmp_path: Path) -> None:
    with _database(tmp_path, "postgresql") as db_url:
        a = start_node(tmp_path / "a", db_url)
        try:
            script = a.upload_script("test_sleeper.py", SLEEPER)
            run = _running_on(a, a.run(script["id"]))
            late = start_node(tmp_path / "late", db_url)
            try:
                time.sleep(1.0)  # a few heartbeats and reaps of the newcomer
                now = late.get(f"runs/{run['id']}")
                assert now["status"] == "running" and now["pid"] == run["pid"]
                assert now["server_id"] == run["server_id"]
            finally:
                late.server.stop()
            a.delete(f"runs/{run['id']}")
            assert a.finished(run["id"])["status"] == "killed"
        finally:
            a.server.stop()


async def test_a_listen_connection_cut_loses_no_line(tmp_path: Path) -> None:
    with cluster(tmp_path, "postgresql", 2) as (a, b):
        printer = await asyncio.to_thread(a.upload_script, "test_printer.py", PRINTER)
        run = await asyncio.to_thread(a.run, printer["id"], args=["2000", "1000"])
        topic = f"run:{run['id']}"
        await asyncio.to_thread(a.wait_run, run["id"], lambda r: r["line_count"] > 200)
        client = await b.events()
        seqs = all_seqs(await client.subscribe(topic, since={topic: 0}), topic)
        assert await asyncio.to_thread(_cut_listen_connections, a.server.db_url) >= 2
        total = 1 + 2000 + 1
        assert await client.collect_lines(topic, total, seqs=seqs) == list(range(1, total + 1))
        client.close()
        # the wake-ups work again after the reconnect: a run queued through B is run
        quick = b.upload_script("test_quick.py", QUICK)
        assert b.finished(b.run(quick["id"])["id"])["status"] == "succeeded"


def _cut_listen_connections(db_url: str) -> int:
    """pg_terminate_backend on every LISTEN connection of the servers: how many were cut."""
    engine = create_engine(db_url)
    with engine.connect() as conn:
        cut = conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND query LIKE 'LISTEN%'"
            )
        ).all()
    engine.dispose()
    return len(cut)


ARTIFACT_WRITER = """import os
out = os.environ["ENERGYOPS_OUTPUT_DIR"]
with open(os.path.join(out, "result.csv"), "w") as fh:
    fh.write("block,mw\\n" + "".join(f"{b},{b * 1.5}\\n" for b in range(1, 97)))
os.symlink("/etc/passwd", os.path.join(out, "passwd"))
print("wrote result.csv", flush=True)
"""


def test_files_in_s3_are_served_by_every_server(tmp_path: Path) -> None:
    """Scripts, artifacts and finished logs in S3 (a moto server on loopback)."""
    with moto_s3() as (_endpoint, options):
        bucket = make_bucket(options)
        storage = {"storage_url": f"s3://{bucket}/energyops", "storage_options": options}
        with cluster(tmp_path, "postgresql", 2, energyops=storage) as nodes:
            script = nodes[0].upload_script("test_writer.py", ARTIFACT_WRITER)
            run = nodes[0].finished(nodes[0].run(script["id"])["id"])
            assert run["status"] == "succeeded", nodes[0].lines(run["id"])
            _owner, other = owner_and_other(nodes, run)
            listing = other.get(f"runs/{run['id']}/artifacts")["items"]
            expected = "block,mw\n" + "".join(f"{b},{b * 1.5}\n" for b in range(1, 97))
            assert listing == [{"name": "result.csv", "size": len(expected)}]
            served = requests.get(
                other.server.url(f"runs/{run['id']}/artifacts/result.csv"),
                headers=other.server.headers,
                timeout=30,
            )
            assert served.status_code == 200 and served.text == expected
            symlink = requests.get(
                other.server.url(f"runs/{run['id']}/artifacts/passwd"),
                headers=other.server.headers,
                timeout=30,
            )
            assert symlink.status_code == 404
            log = requests.get(
                other.server.url(f"runs/{run['id']}/logs"),
                headers=other.server.headers,
                params={"format": "text"},
                timeout=30,
            )
            texts = [line.split(" ", 2)[2] for line in log.text.splitlines()]
            assert texts == [line["text"] for line in other.lines(run["id"])]
            assert "wrote result.csv" in texts
        keys = s3_keys(options, bucket)
        assert any(k.endswith(f"runs/{run['id']}/artifacts/result.csv") for k in keys)
        assert any(k.endswith(f"runs/{run['id']}/log.txt") for k in keys)
        assert any("/scripts/" in k for k in keys)
        assert not any(k.endswith("/passwd") for k in keys)


def s3_keys(options: dict[str, Any], bucket: str) -> list[str]:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    return [str(k) for k in fs.find(bucket)]
