"""Servers sharing one database, below the level of real servers, on SQLite and PostgreSQL:
the queue claim, who counts as dead, reaping exactly once, kill requests, the SQLite event
relay, and the migration of the registry."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, func, insert, inspect, select, update
from sqlalchemy.orm import Session

from energyops_ext.cluster import servers
from energyops_ext.cluster.relay import EventRelay, encode, prune_events
from energyops_ext.cluster.servers import OrphanRun, ServerIdentity
from energyops_ext.db import Database, current_revision, head_revision, upgrade
from energyops_ext.db.base import Base
from energyops_ext.db.migrate import alembic_config
from energyops_ext.db.models import Activity, ClusterEvent, LogChunk, Run, Script, Server
from energyops_ext.events import DASHBOARD, RUNS, Event, EventHub, run_topic
from energyops_ext.runs import registry, store
from energyops_ext.runs.active_run import ActiveRun
from energyops_ext.runs.logs import new_line
from energyops_ext.runs.service import _request_kill

from .cluster_factories import (
    LEASE_S,
    NOW,
    ServerFactory,
    add_run,
    add_script,
    add_server,
    gone_pid,
    identity,
    lost_lines,
    notification_count,
    run_row,
    this_machine,
)


@pytest.fixture
def script_id(database: Database) -> int:
    return database.write_sync(add_script)


@pytest.fixture
def make_server(database: Database, db_url: str, tmp_path: Path) -> Iterator[ServerFactory]:
    factory = ServerFactory(db_url, tmp_path)
    yield factory
    factory.close()


# --- the queue claim ---

# (name, status, priority, seconds before NOW it was created)
QUEUE = [
    ("old-low", "queued", 0, 100),
    ("new-high", "queued", 5, 10),
    ("older-high", "queued", 5, 50),
    ("older-high-twin", "queued", 5, 50),  # same age: the lower id goes first
    ("oldest-mid", "queued", 1, 200),
    ("running-top", "running", 9, 300),
    ("failed-top", "failed", 9, 300),
]
CLAIM_ORDER = ["older-high", "older-high-twin", "new-high", "oldest-mid", "old-low"]


def claim(db: Database, server_id: str, host: str = "eo-a", boot: str = "boot-a") -> int | None:
    return db.write_sync(lambda s: store.claim_next(s, server_id, host, boot))


def test_claims_follow_priority_then_age_and_skip_what_is_not_queued(
    database: Database, script_id: int
) -> None:
    def seed(session: Session) -> dict[int, str]:
        return {
            add_run(
                session,
                script_id,
                status=status,
                priority=priority,
                created_at=NOW - timedelta(seconds=age),
            ): name
            for name, status, priority, age in QUEUE
        }

    names = database.write_sync(seed)
    claimed = []
    while (run_id := claim(database, "srv-a")) is not None:
        claimed.append(names[run_id])
    assert claimed == CLAIM_ORDER
    assert claim(database, "srv-b") is None


def test_a_claim_records_its_owner(database: Database, script_id: int) -> None:
    run_id = database.write_sync(lambda s: add_run(s, script_id))
    before = datetime.now(UTC)
    assert claim(database, "srv-a", "eo-a", "boot-a") == run_id
    after = datetime.now(UTC)
    run = run_row(database, run_id)
    assert (run.status, run.server_id, run.host, run.boot_id) == (
        "running",
        "srv-a",
        "eo-a",
        "boot-a",
    )
    assert run.started_at is not None and before <= run.started_at <= after
    assert run.heartbeat_at == run.started_at


def test_an_empty_queue_and_a_claimed_run_give_none(database: Database, script_id: int) -> None:
    assert claim(database, "srv-a") is None
    run_id = database.write_sync(lambda s: add_run(s, script_id))
    assert claim(database, "srv-a") == run_id
    assert claim(database, "srv-a") is None
    assert claim(database, "srv-b") is None
    assert run_row(database, run_id).server_id == "srv-a"


def rank(run: Run) -> tuple[int, datetime, int]:
    return (-run.priority, run.created_at, run.id)


@pytest.mark.parametrize("threads", [2, 4])
def test_concurrent_claims_take_every_run_exactly_once(
    database: Database, script_id: int, threads: int
) -> None:
    """Each claimer has its own Database (its own connections), as separate servers do;
    PostgreSQL skips rows other claimers hold, SQLite's write lock serializes."""
    run_ids = database.write_sync(
        lambda s: [
            add_run(s, script_id, priority=i % 3, created_at=NOW + timedelta(seconds=i))
            for i in range(40)
        ]
    )
    barrier = threading.Barrier(threads)
    claims: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def claimer(server_id: str) -> None:
        db = Database(database.url)
        try:
            got: list[int] = []
            barrier.wait()
            while (run_id := claim(db, server_id)) is not None:
                got.append(run_id)
            claims[server_id] = got
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.close()

    workers = [threading.Thread(target=claimer, args=(f"srv-{i}",)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    assert sorted(chain.from_iterable(claims.values())) == sorted(run_ids)
    rows = {run.id: run for run in database.read_sync(lambda s: s.scalars(select(Run)).all())}
    assert {run.id: run.server_id for run in rows.values()} == {
        run_id: server_id for server_id, got in claims.items() for run_id in got
    }
    assert database.read_sync(store.queued_count) == 0
    # each claimer took its runs best first: nothing better was free when it claimed
    for got in claims.values():
        assert got == sorted(got, key=lambda run_id: rank(rows[run_id]))


# --- who counts as dead: orphan_runs ---

ME = identity("srv-me", host="eo-a", boot_id="boot-a", pid=10, pid_start_time=100)
ALIVE_HERE = {(10, 100), (14, 140)}


def alive_here(pid: int, start: int | None) -> bool:
    return (pid, start) in ALIVE_HERE


@dataclass(frozen=True)
class Owner:
    me: ServerIdentity
    silent_s: float = 1.0
    stopped_s_ago: float | None = None


OWNERS = {
    "live-remote": Owner(identity("srv-live-remote", host="eo-b", boot_id="boot-b", pid=11)),
    "dead-remote": Owner(
        identity("srv-dead-remote", host="eo-b", boot_id="boot-b", pid=12), silent_s=45.0
    ),
    "gone-here": Owner(identity("srv-gone-here", pid=13, pid_start_time=130)),
    "alive-here": Owner(identity("srv-alive-here", pid=14, pid_start_time=140)),
    "rebooted": Owner(identity("srv-rebooted", boot_id="boot-old", pid=14, pid_start_time=140)),
    "stopped": Owner(identity("srv-stopped", host="eo-c", pid=15), stopped_s_ago=10.0),
    # this server's own row, silent for an hour: its own runs are still never orphans
    "me": Owner(ME, silent_s=3600.0),
}
UNREGISTERED = identity("srv-forgotten", host="eo-b", boot_id="boot-b", pid=16)


@dataclass(frozen=True)
class OrphanCase:
    owner: str | None  # a key of OWNERS, "unregistered", or None (a run from before ids)
    reason: str | None  # None: not an orphan
    status: str = "running"
    host: str | None = None  # of an ownerless run


ORPHAN_CASES = {
    "live server on another host": OrphanCase("live-remote", None),
    "live server on this machine": OrphanCase("alive-here", None),
    "server past its lease": OrphanCase(
        "dead-remote",
        "server srv-dead-remote (eo-b, pid 12) sent no heartbeat for 45.0 s (lease 30 s)",
    ),
    "server whose process is gone here": OrphanCase(
        "gone-here",
        "server srv-gone-here (eo-a, pid 13) is gone: its process no longer exists on this machine",
    ),
    "same host name, other boot id, fresh heartbeat": OrphanCase("rebooted", None),
    "stopped server": OrphanCase(
        "stopped", "server srv-stopped (eo-c, pid 15) stopped at 2026-01-05T09:29:50+00:00"
    ),
    "unregistered server": OrphanCase(
        "unregistered", "server srv-forgotten is not registered any more"
    ),
    "ownerless run on this host": OrphanCase(
        None, "the server that ran it stopped before servers had ids", host="eo-a"
    ),
    "ownerless run on another host": OrphanCase(None, None, host="eo-b"),
    "queued run of a dead server": OrphanCase("dead-remote", None, status="queued"),
    "finished run of a dead server": OrphanCase("dead-remote", None, status="failed"),
    "queued ownerless run on this host": OrphanCase(None, None, status="queued", host="eo-a"),
    "this server's own run": OrphanCase("me", None),
}


def register_owners(session: Session) -> None:
    for owner in OWNERS.values():
        stopped = NOW - timedelta(seconds=owner.stopped_s_ago) if owner.stopped_s_ago else None
        add_server(
            session,
            owner.me,
            heartbeat_at=NOW - timedelta(seconds=owner.silent_s),
            stopped_at=stopped,
        )


def add_case_run(session: Session, script_id: int, case: OrphanCase) -> int:
    owner = (
        None
        if case.owner is None
        else UNREGISTERED
        if case.owner == "unregistered"
        else OWNERS[case.owner].me
    )
    return add_run(session, script_id, status=case.status, owner=owner, host=case.host, pid=777)


def expected_orphan(run_id: int, case: OrphanCase) -> OrphanRun:
    assert case.reason is not None
    owner = None
    if case.owner is not None:
        owner = UNREGISTERED if case.owner == "unregistered" else OWNERS[case.owner].me
    return OrphanRun(
        run_id=run_id,
        server_id=owner.id if owner else None,
        reason=case.reason,
        host=owner.host if owner else case.host,
        boot_id=owner.boot_id if owner else None,
        pid=777,
        pid_start_time=None,
        workdir=None,
    )


def orphans_seen_by_me(db: Database) -> list[OrphanRun]:
    return db.read_sync(lambda s: servers.orphan_runs(s, ME, NOW, LEASE_S, alive_here))


@pytest.mark.parametrize("case", ORPHAN_CASES.values(), ids=ORPHAN_CASES.keys())
def test_orphan_runs(database: Database, script_id: int, case: OrphanCase) -> None:
    def seed(session: Session) -> int:
        register_owners(session)
        return add_case_run(session, script_id, case)

    run_id = database.write_sync(seed)
    expected = [] if case.reason is None else [expected_orphan(run_id, case)]
    assert orphans_seen_by_me(database) == expected


def test_orphan_runs_of_every_kind_at_once(database: Database, script_id: int) -> None:
    def seed(session: Session) -> list[OrphanRun]:
        register_owners(session)
        runs = [(add_case_run(session, script_id, case), case) for case in ORPHAN_CASES.values()]
        return [expected_orphan(run_id, case) for run_id, case in runs if case.reason]

    expected = database.write_sync(seed)
    assert sorted(orphans_seen_by_me(database), key=lambda o: o.run_id) == expected


# --- the registry: heartbeats and forgetting ---


@pytest.mark.parametrize(
    ("state", "renewed", "row_after"),
    [
        ("registered", True, (NOW + timedelta(seconds=5), None)),
        ("stopped", False, (NOW, NOW + timedelta(seconds=1))),
        ("gone", False, None),
    ],
)
def test_heartbeat_renews_only_a_live_row(
    database: Database,
    state: str,
    renewed: bool,
    row_after: tuple[datetime, datetime | None] | None,
) -> None:
    me = identity("srv-a")
    if state != "gone":
        database.write_sync(lambda s: servers.register(s, me, NOW, "http://eo-a:8888/"))
    if state == "stopped":
        database.write_sync(
            lambda s: servers.mark_stopped(s, me.id, NOW + timedelta(seconds=1), "stopped")
        )
    later = NOW + timedelta(seconds=5)
    assert database.write_sync(lambda s: servers.heartbeat(s, me, later)) is renewed
    row = database.read_sync(lambda s: s.get(Server, me.id))
    if row_after is None:
        assert row is None
        return
    assert row is not None
    assert (row.heartbeat_at, row.stopped_at) == row_after
    assert (row.started_at, row.host, row.pid, row.url) == (NOW, "eo-a", 1000, "http://eo-a:8888/")


@dataclass(frozen=True)
class ForgetCase:
    silent: timedelta
    forgotten: bool
    owns: str | None = None  # the status of a run it owns
    stopped: bool = False


DAY = timedelta(days=1)
FORGET_CASES = {
    "silent two days, owns nothing": ForgetCase(2 * DAY, True),
    "silent two days, owns only a finished run": ForgetCase(2 * DAY, True, owns="succeeded"),
    "silent two days, owns a running run": ForgetCase(2 * DAY, False, owns="running"),
    "silent two days, owns a queued run": ForgetCase(2 * DAY, False, owns="queued"),
    "stopped two days ago": ForgetCase(2 * DAY, True, stopped=True),
    "stopped an hour ago": ForgetCase(timedelta(hours=1), False, stopped=True),
    "silent exactly the keep time": ForgetCase(DAY, False),
    "live": ForgetCase(timedelta(seconds=1), False),
}


@pytest.mark.parametrize("case", FORGET_CASES.values(), ids=FORGET_CASES.keys())
def test_forget_stopped(database: Database, script_id: int, case: ForgetCase) -> None:
    old = identity("srv-old")
    live = identity("srv-live")

    def seed(session: Session) -> None:
        last = NOW - case.silent
        add_server(session, old, heartbeat_at=last, stopped_at=last if case.stopped else None)
        add_server(session, live)
        if case.owns is not None:
            add_run(session, script_id, status=case.owns, owner=old)
        add_run(session, script_id, status="queued")  # no owner: a NULL among the owners
        add_run(session, script_id, status="running", owner=live)

    database.write_sync(seed)
    assert database.write_sync(lambda s: servers.forget_stopped(s, NOW, DAY)) == int(case.forgotten)
    # twice (two servers pruning at once) is harmless
    assert database.write_sync(lambda s: servers.forget_stopped(s, NOW, DAY)) == 0
    left = database.read_sync(lambda s: sorted(s.scalars(select(Server.id)).all()))
    assert left == (["srv-live"] if case.forgotten else ["srv-live", "srv-old"])
    assert database.read_sync(lambda s: s.scalar(select(func.count()).select_from(Run))) == (
        3 if case.owns else 2
    )


# --- reaping a dead server's runs, exactly once, by either of two live servers ---


@dataclass
class ReapScene:
    lost: dict[int, str]  # run id -> the reason it must end with
    live: list[int]


def seed_reap_scene(database: Database, script_id: int, *engines: ServerIdentity) -> ReapScene:
    dead_remote = identity("srv-dead", host="eo-dead", boot_id="boot-dead", pid=4242)
    gone = gone_pid()
    dead_here = this_machine("srv-gone", pid=gone)
    live_remote = identity("srv-live", host="eo-live", boot_id="boot-live", pid=7)
    live_here = this_machine("srv-live-here")

    def seed(session: Session) -> ReapScene:
        for me in (*engines, live_remote, live_here, dead_here):
            add_server(session, me, heartbeat_at=NOW)
        add_server(session, dead_remote, heartbeat_at=NOW - timedelta(hours=1))
        remote = add_run(session, script_id, status="running", owner=dead_remote)
        here = add_run(session, script_id, status="running", owner=dead_here, pid=gone)
        return ReapScene(
            lost={
                remote: "server srv-dead (eo-dead, pid 4242) sent no heartbeat for 3600.0 s "
                "(lease 30 s); its process had not started",
                here: f"server srv-gone ({dead_here.host}, pid {gone}) is gone: its process no "
                f"longer exists on this machine; its process (pid {gone}) had already gone",
            },
            live=[
                add_run(session, script_id, status="running", owner=live_remote),
                add_run(session, script_id, status="running", owner=live_here),
                *[add_run(session, script_id, status="running", owner=me) for me in engines],
            ],
        )

    return database.write_sync(seed)


def run_activities(database: Database, run_id: int) -> list[tuple[str, str | None]]:
    return database.read_sync(
        lambda s: [
            (a.action, a.status)
            for a in s.scalars(
                select(Activity).where(Activity.entity_type == "run", Activity.entity_id == run_id)
            )
        ]
    )


def assert_lost_once(database: Database, run_id: int, reason: str) -> None:
    run = run_row(database, run_id)
    assert (run.status, run.status_reason, run.finished_at, run.line_count) == (
        "lost",
        reason,
        NOW,
        1,
    )
    assert lost_lines(database, run_id) == [(1, "system", f"run lost: {reason}")]
    assert notification_count(database, "run_lost", run_id) == 1
    assert run_activities(database, run_id) == [("lost", "lost")]  # its end's one activity


def assert_untouched(database: Database, run_id: int) -> None:
    run = run_row(database, run_id)
    assert (run.status, run.status_reason, run.finished_at, run.line_count) == (
        "running",
        None,
        None,
        0,
    )
    assert database.read_sync(lambda s: store.max_seq(s, run_id)) == 0


def lost_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return sorted(
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("energyops.test.") and "marked lost" in r.getMessage()
    )


async def test_two_servers_reap_a_dead_servers_runs_exactly_once(
    database: Database,
    script_id: int,
    make_server: ServerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = make_server(this_machine("srv-a"))
    b = make_server(this_machine("srv-b"))
    scene = seed_reap_scene(database, script_id, a.me, b.me)
    caplog.set_level(logging.WARNING)

    await asyncio.gather(a.engine.reaper.reap(), b.engine.reaper.reap())
    # again: nothing left to do
    await asyncio.gather(a.engine.reaper.reap(), b.engine.reaper.reap())

    for run_id, reason in scene.lost.items():
        assert_lost_once(database, run_id, reason)
        finished = a.finished(run_id) + b.finished(run_id)
        assert [(f["status"], f["exit_code"], f["run"]["status_reason"]) for f in finished] == [
            ("lost", None, reason)
        ]
        notes = [
            e.data
            for e in a.events + b.events
            if e.type == "notification.new" and e.data["entity_id"] == run_id
        ]
        assert [(n["type"], n["message"]) for n in notes] == [("run_lost", reason)]
    assert lost_warnings(caplog) == sorted(
        f"run {run_id} marked lost: {reason.split('; ')[0]}"
        for run_id, reason in scene.lost.items()
    )
    for run_id in scene.live:
        assert_untouched(database, run_id)


async def test_the_lost_mark_goes_to_one_of_two_servers_that_both_saw_the_orphan(
    database: Database, script_id: int, make_server: ServerFactory
) -> None:
    a = make_server(this_machine("srv-a"))
    b = make_server(this_machine("srv-b"))
    scene = seed_reap_scene(database, script_id, a.me, b.me)

    def seen_by(me: ServerIdentity) -> list[OrphanRun]:
        return database.read_sync(
            lambda s: servers.orphan_runs(s, me, NOW, LEASE_S, registry.is_alive)
        )

    seen_a, seen_b = seen_by(a.me), seen_by(b.me)
    assert sorted(o.run_id for o in seen_a) == sorted(scene.lost)
    assert seen_a == seen_b
    for orphan in seen_a:
        won = await asyncio.gather(
            a.engine.endings.mark_lost(orphan, "reaped by a"),
            b.engine.endings.mark_lost(orphan, "reaped by b"),
        )
        assert sorted(won) == [False, True]
        assert_lost_once(database, orphan.run_id, "reaped by a" if won[0] else "reaped by b")
    for run_id in scene.live:
        assert_untouched(database, run_id)


async def test_a_run_that_ended_meanwhile_is_not_marked_lost(
    database: Database, script_id: int, make_server: ServerFactory
) -> None:
    a = make_server(this_machine("srv-a"))
    scene = seed_reap_scene(database, script_id, a.me)
    orphans = database.read_sync(
        lambda s: servers.orphan_runs(s, a.me, NOW, LEASE_S, registry.is_alive)
    )
    database.write_sync(lambda s: s.execute(update(Run).values(status="succeeded")))
    marked = [await a.engine.endings.mark_lost(o, "too late") for o in orphans]
    assert marked == [False] * len(scene.lost)
    assert database.read_sync(lambda s: s.scalar(select(func.count()).select_from(LogChunk))) == 0
    assert [e for e in a.events if e.type == "run.finished"] == []


@pytest.mark.parametrize("row", ["registered", "gone"])
async def test_the_engine_heartbeat_renews_or_recreates_its_row(
    database: Database, make_server: ServerFactory, row: str
) -> None:
    a = make_server(this_machine("srv-a"))
    if row == "registered":
        database.write_sync(lambda s: add_server(s, a.me, heartbeat_at=NOW - timedelta(hours=1)))
    await a.engine.heartbeat()
    server = database.read_sync(lambda s: s.get(Server, "srv-a"))
    assert server is not None
    assert (server.heartbeat_at, server.stopped_at, server.host, server.pid) == (
        NOW,
        None,
        registry.host_name(),
        os.getpid(),
    )


async def test_the_engine_heartbeat_survives_a_row_marked_stopped(
    database: Database, make_server: ServerFactory
) -> None:
    """servers.heartbeat answers False for a stopped row ("another server took it for
    dead"); the engine must not then insert a second row with the same id."""
    a = make_server(this_machine("srv-a"))
    database.write_sync(lambda s: add_server(s, a.me, heartbeat_at=NOW, stopped_at=NOW))
    await a.engine.heartbeat()
    ids = database.read_sync(lambda s: s.scalars(select(Server.id)).all())
    assert list(ids) == ["srv-a"]


# --- kill requests, relayed to the owner through the run's row ---


@pytest.mark.parametrize("status", ["queued", "succeeded", "killed", "lost"])
def test_a_kill_request_needs_a_running_run(
    database: Database, script_id: int, status: str
) -> None:
    run_id = database.write_sync(lambda s: add_run(s, script_id, status=status))
    assert database.write_sync(lambda s: _request_kill(s, run_id, "alice")) is False
    run = run_row(database, run_id)
    assert (run.kill_requested_at, run.kill_requested_by) == (None, None)


async def test_the_owner_takes_kill_requests_for_its_active_runs(
    database: Database, script_id: int, make_server: ServerFactory
) -> None:
    a = make_server(this_machine("srv-a"))

    def seed(session: Session) -> list[int]:
        add_server(session, a.me)
        return [add_run(session, script_id, status="running", owner=a.me) for _ in range(3)]

    asked, untouched, anonymous = database.write_sync(seed)
    active = {
        run_id: ActiveRun(run_id, a.engine._new_log(run_id))
        for run_id in (asked, untouched, anonymous)
    }
    a.engine.active.update(active)

    before = datetime.now(UTC)
    assert database.write_sync(lambda s: _request_kill(s, asked, "alice")) is True
    assert database.write_sync(lambda s: _request_kill(s, asked, "bob")) is True
    database.write_sync(
        lambda s: s.execute(update(Run).where(Run.id == anonymous).values(kill_requested_at=NOW))
    )
    row = run_row(database, asked)
    assert row.kill_requested_by == "alice"  # the first request is kept
    assert row.kill_requested_at is not None and row.kill_requested_at >= before

    await a.engine._take_requests()
    assert {run_id: (r.kill_reason, r.killed_by) for run_id, r in active.items()} == {
        asked: ("killed by alice", "alice"),
        untouched: (None, None),
        anonymous: ("killed by another server", "another server"),
    }


# --- the event relay on SQLite: a polled table ---


class NullTransport:
    """A socket that takes every frame: it makes the hub count one connection."""

    def send(self, frame: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def close(self, code: int, reason: str) -> None:
        pass


@dataclass
class RelayEnd:
    db: Database
    hub: EventHub
    relay: EventRelay
    heard: list[Event] = field(default_factory=list)


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.fixture
def sqlite_db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def relay_end(
    sqlite_db_url: str, jp_asyncio_loop: asyncio.AbstractEventLoop
) -> Iterator[Callable[..., RelayEnd]]:
    ends: list[RelayEnd] = []

    def make(server_id: str, *, poll_s: float | None = None) -> RelayEnd:
        """A server's relay, started. Without ``poll_s`` its poller is cancelled before its
        first step and the test drives ``_poll`` itself."""
        db = Database(sqlite_db_url)
        hub = EventHub()
        hub.bind_loop(asyncio.get_running_loop())
        log = logging.getLogger(f"energyops.test.{server_id}")
        relay = EventRelay(db, hub, server_id, poll_s=poll_s or 3600.0, log=log)
        end = RelayEnd(db, hub, relay)
        relay.start()
        if poll_s is None:
            poller = relay._tasks[-1]
            assert poller.get_coro().__qualname__ == "EventRelay._poller"  # type: ignore[union-attr]
            poller.cancel()
        hub.add_listener(end.heard.append)
        hub.connect(NullTransport())  # someone listens here
        ends.append(end)
        return end

    yield make
    for end in ends:
        jp_asyncio_loop.run_until_complete(end.relay.stop())  # a second stop() is harmless
        end.hub.close()
        end.db.close()


def queued(i: int) -> Event:
    return Event(RUNS, "run.queued", {"run_id": i, "at": NOW + timedelta(seconds=i)})


def arrived(i: int) -> Event:
    at = (NOW + timedelta(seconds=i)).isoformat()
    return Event(RUNS, "run.queued", {"run_id": i, "at": at}, remote=True)


def relayed_rows(db: Database) -> dict[str, int]:
    rows = db.read_sync(
        lambda s: s.execute(
            select(ClusterEvent.server_id, func.count()).group_by(ClusterEvent.server_id)
        ).all()
    )
    return {server_id: count for server_id, count in rows}


async def test_events_reach_the_other_server_in_order_and_never_come_back(
    relay_end: Callable[..., RelayEnd],
) -> None:
    a, b = relay_end("srv-a"), relay_end("srv-b")
    await a.relay._poll()
    await b.relay._poll()  # both read from now on
    local_only = [
        Event(run_topic(1), "run.log", {"run_id": 1, "lines": [{"seq": 1}]}),
        Event(DASHBOARD, "kpi", {"runs": {}}),
    ]
    for i in range(100):
        a.hub.publish(queued(i))
        if i == 50:
            for event in local_only:
                a.hub.publish(event)
    await until(lambda: a.relay.sent == 100)

    await b.relay._poll()
    assert b.relay.received == 100
    assert b.heard == [arrived(i) for i in range(100)]
    await b.relay.stop()  # flushes anything B would send on
    assert b.relay.sent == 0

    await a.relay._poll()
    assert a.relay.received == 0
    assert a.heard == [
        *[queued(i) for i in range(51)],
        *local_only,
        *[queued(i) for i in range(51, 100)],
    ]
    assert relayed_rows(a.db) == {"srv-a": 100}


async def test_a_backlog_longer_than_a_page_arrives_over_two_polls(
    relay_end: Callable[..., RelayEnd],
) -> None:
    a, b = relay_end("srv-a"), relay_end("srv-b")
    await b.relay._poll()
    for i in range(1200):
        a.hub.publish(queued(i))
    await until(lambda: a.relay.sent == 1200)
    await b.relay._poll()
    assert b.relay.received == 1000
    await b.relay._poll()
    assert b.heard == [arrived(i) for i in range(1200)]


async def test_events_from_before_a_server_started_are_not_replayed_to_it(
    relay_end: Callable[..., RelayEnd],
) -> None:
    a = relay_end("srv-a")
    for i in range(5):
        a.hub.publish(queued(i))
    await until(lambda: a.relay.sent == 5)
    b = relay_end("srv-b", poll_s=0.01)
    await until(lambda: b.relay._cursor is not None)
    a.hub.publish(queued(5))
    await until(lambda: b.relay.received > 0)
    # one poll delivers every row after the cursor in id order: older rows would come first
    assert b.heard == [arrived(5)]


async def test_the_poller_delivers_by_itself(relay_end: Callable[..., RelayEnd]) -> None:
    a, b = relay_end("srv-a", poll_s=0.01), relay_end("srv-b", poll_s=0.01)
    await until(lambda: b.relay._cursor is not None)
    for i in range(20):
        a.hub.publish(queued(i))
    await until(lambda: b.relay.received == 20)
    assert b.heard == [arrived(i) for i in range(20)]
    assert a.relay.received == 0


@pytest.mark.parametrize("garbage", ["not json", "[" * 5000], ids=["not json", "deeply nested"])
async def test_a_malformed_row_costs_no_other_event(
    relay_end: Callable[..., RelayEnd], garbage: str, caplog: pytest.LogCaptureFixture
) -> None:
    b = relay_end("srv-b")
    await b.relay._poll()
    payloads = [encode("srv-x", queued(1)), garbage, encode("srv-x", queued(2))]
    b.db.write_sync(
        lambda s: s.execute(
            insert(ClusterEvent),
            [{"server_id": "srv-x", "payload": p, "created_at": NOW} for p in payloads],
        )
    )
    await b.relay._poll()
    assert b.heard == [arrived(1), arrived(2)]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"ignoring a malformed relayed event: {garbage[:200]}"
    ]


def test_prune_events_drops_only_old_rows(database: Database) -> None:
    ages = {"eleven minutes": 11 * 60, "ten minutes": 10 * 60, "nine minutes": 9 * 60, "now": 0}
    database.write_sync(
        lambda s: s.execute(
            insert(ClusterEvent),
            [
                {"server_id": "srv-a", "payload": name, "created_at": NOW - timedelta(seconds=age)}
                for name, age in ages.items()
            ],
        )
    )
    for _ in range(2):  # twice, as two servers pruning at once would
        database.write_sync(lambda s: prune_events(s, NOW))
        left = database.read_sync(
            lambda s: s.scalars(select(ClusterEvent.payload).order_by(ClusterEvent.id)).all()
        )
        assert list(left) == ["ten minutes", "nine minutes", "now"]


# --- migrations ---


@pytest.fixture
def migrated(empty_db_url: str) -> Iterator[Database]:
    """The database as the server opens it (its engine settings), migrated to head."""
    db = Database(empty_db_url)
    upgrade(db.write_engine)
    yield db
    db.close()


def schema_diff(engine: Engine) -> list[Any]:
    """What autogenerate would write for the models against the database (types compared,
    server defaults not: 0002 gives runs.executor a server default for existing rows)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)


REGISTRY_TABLES = {"servers", "cluster_events"}
RUN_OWNER_COLUMNS = {
    "server_id",
    "executor",
    "worker",
    "workdir",
    "kill_requested_at",
    "kill_requested_by",
}


def schema_of(engine: Engine) -> tuple[set[str], set[str], set[str]]:
    """Tables, columns of runs, and indexes of runs."""
    found = inspect(engine)
    return (
        set(found.get_table_names()),
        {c["name"] for c in found.get_columns("runs")},
        {str(i["name"]) for i in found.get_indexes("runs")},
    )


def test_the_migrated_schema_is_the_models(migrated: Database) -> None:
    assert current_revision(migrated.write_engine) == head_revision()
    assert schema_diff(migrated.write_engine) == []


def test_downgrade_to_0001_and_back_to_head(migrated: Database) -> None:
    engine = migrated.write_engine
    downgrade(engine, "0001")
    tables, columns, indexes = schema_of(engine)
    assert current_revision(engine) == "0001"
    assert not tables & REGISTRY_TABLES
    assert not columns & RUN_OWNER_COLUMNS
    assert indexes == {"ix_runs_script_id", "ix_runs_status_priority"}

    upgrade(engine)
    tables, columns, indexes = schema_of(engine)
    assert current_revision(engine) == head_revision()
    assert tables >= REGISTRY_TABLES and columns >= RUN_OWNER_COLUMNS
    assert indexes >= {"ix_runs_script_id", "ix_runs_status_priority", "ix_runs_server_status"}
    assert schema_diff(engine) == []


def test_downgrade_and_upgrade_keep_runs_and_their_lines(migrated: Database) -> None:
    def seed(session: Session) -> int:
        run_id = add_run(session, add_script(session), status="succeeded")
        store.insert_lines(session, run_id, [new_line(1, "stdout", "hello", NOW)])
        return run_id

    run_id = migrated.write_sync(seed)
    downgrade(migrated.write_engine, "0001")
    upgrade(migrated.write_engine)

    def read(session: Session) -> tuple[Any, ...]:
        run = session.get(Run, run_id)
        assert run is not None
        lines = [line["text"] for line in store.read_lines(session, run_id, 0, None)]
        scripts = session.scalar(select(func.count()).select_from(Script))
        return run.status, run.executor, run.server_id, list(lines), scripts

    assert migrated.read_sync(read) == ("succeeded", "local", None, ["hello"], 1)
