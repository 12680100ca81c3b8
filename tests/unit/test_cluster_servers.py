"""The pure parts of servers sharing a database: when a server counts as dead, what "the same
machine" means, and the relay's payloads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from energyops_ext.cluster.listen import NOTIFY_PAYLOAD_LIMIT
from energyops_ext.cluster.relay import decode, encode, relayed
from energyops_ext.cluster.servers import ServerIdentity, dead_reason
from energyops_ext.db.models import Server
from energyops_ext.events import DASHBOARD, NOTIFICATIONS, RUNS, Event, run_topic

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
ME = ServerIdentity(
    id="me",
    host="eo-a",
    boot_id="boot-1",
    pid=100,
    pid_start_time=1,
    version="0.0.0-test",
    executor="local",
)
# processes that exist on this (imaginary) machine: (pid, start time)
ALIVE_HERE = {(100, 1), (200, 2)}


@dataclass(frozen=True)
class DeadCase:
    server_id: str
    host: str
    boot_id: str
    pid: int
    start: int | None
    silent_s: float
    reason: str | None
    alive_asked: list[tuple[int, int | None]]
    stopped_s_ago: float | None = None
    lease_s: float = 30.0


DEAD_CASES = {
    "live on this machine": DeadCase(
        "s1", "eo-a", "boot-1", 200, 2, 5.0, None, alive_asked=[(200, 2)]
    ),
    "stopped row": DeadCase(
        "s2",
        "eo-b",
        "boot-9",
        300,
        3,
        1.0,
        "server s2 (eo-b, pid 300) stopped at 2026-01-05T09:29:00+00:00",
        alive_asked=[],
        stopped_s_ago=60.0,
    ),
    "this machine, process gone, fresh heartbeat": DeadCase(
        "s3",
        "eo-a",
        "boot-1",
        201,
        3,
        1.0,
        "server s3 (eo-a, pid 201) is gone: its process no longer exists on this machine",
        alive_asked=[(201, 3)],
    ),
    "this machine, same pid but another start time": DeadCase(
        "s3b",
        "eo-a",
        "boot-1",
        200,
        7,
        1.0,
        "server s3b (eo-a, pid 200) is gone: its process no longer exists on this machine",
        alive_asked=[(200, 7)],
    ),
    # two machines may share a host name (cloned VMs): only the lease can tell
    "same host name, other boot id, fresh heartbeat": DeadCase(
        "s4", "eo-a", "boot-0", 200, 2, 1.0, None, alive_asked=[]
    ),
    "other host, fresh heartbeat, pid unknown here": DeadCase(
        "s5", "eo-b", "boot-1", 999_999, 9, 29.0, None, alive_asked=[]
    ),
    "other host past the lease": DeadCase(
        "s6",
        "eo-b",
        "boot-7",
        400,
        4,
        45.5,
        "server s6 (eo-b, pid 400) sent no heartbeat for 45.5 s (lease 30 s)",
        alive_asked=[],
    ),
    "other host exactly at the lease": DeadCase(
        "s7", "eo-b", "boot-7", 400, 4, 30.0, None, alive_asked=[]
    ),
    "other host just past the lease": DeadCase(
        "s8",
        "eo-b",
        "boot-7",
        400,
        4,
        30.1,
        "server s8 (eo-b, pid 400) sent no heartbeat for 30.1 s (lease 30 s)",
        alive_asked=[],
    ),
    "other host, a fractional lease": DeadCase(
        "s9",
        "eo-c",
        "boot-7",
        401,
        None,
        3.0,
        "server s9 (eo-c, pid 401) sent no heartbeat for 3.0 s (lease 2.5 s)",
        alive_asked=[],
        lease_s=2.5,
    ),
    "this machine, process alive but silent past the lease (hung)": DeadCase(
        "s10",
        "eo-a",
        "boot-1",
        200,
        2,
        31.0,
        "server s10 (eo-a, pid 200) sent no heartbeat for 31.0 s (lease 30 s)",
        alive_asked=[(200, 2)],
    ),
    "this server itself, silent and its process unknown": DeadCase(
        "me", "eo-a", "boot-1", 555, 5, 3600.0, None, alive_asked=[]
    ),
}


def server_row(case: DeadCase) -> Server:
    heartbeat = NOW - timedelta(seconds=case.silent_s)
    stopped = NOW - timedelta(seconds=case.stopped_s_ago) if case.stopped_s_ago else None
    return Server(
        id=case.server_id,
        host=case.host,
        boot_id=case.boot_id,
        pid=case.pid,
        pid_start_time=case.start,
        version="0.0.0-test",
        executor="local",
        started_at=heartbeat - timedelta(hours=1),
        heartbeat_at=heartbeat,
        stopped_at=stopped,
    )


@pytest.mark.parametrize("case", DEAD_CASES.values(), ids=DEAD_CASES.keys())
def test_dead_reason(case: DeadCase) -> None:
    asked: list[tuple[int, int | None]] = []

    def alive(pid: int, start: int | None) -> bool:
        asked.append((pid, start))
        return (pid, start) in ALIVE_HERE

    reason = dead_reason(server_row(case), now=NOW, lease_s=case.lease_s, me=ME, alive=alive)
    assert reason == case.reason
    # pid liveness is only ever asked about processes of this machine
    assert asked == case.alive_asked


@pytest.mark.parametrize(
    ("boot_id", "host", "boot", "same"),
    [
        ("boot-1", "eo-a", "boot-1", True),
        ("boot-1", "eo-a", "boot-0", False),
        ("boot-1", "eo-b", "boot-1", False),
        ("boot-1", "eo-a", None, False),
        ("boot-1", None, "boot-1", False),
        ("boot-1", None, None, False),
        # an unknown boot id never proves the same machine, even when both are unknown
        ("", "eo-a", "", False),
    ],
)
def test_same_machine(boot_id: str, host: str | None, boot: str | None, same: bool) -> None:
    me = ServerIdentity("me", "eo-a", boot_id, 100, 1, "0.0.0-test", "local")
    assert me.same_machine(host, boot) is same


# --- the relay's payloads ---


def test_encode_decode_round_trip_turns_dates_into_iso_strings() -> None:
    event = Event(
        RUNS,
        "run.finished",
        {
            "run_id": 7,
            "status": "lost",
            "finished_at": datetime(2026, 1, 5, 9, 30, 15, 250_000, tzinfo=UTC),
            "run": {"day": date(2026, 1, 5), "args": ["--fast", 3], "objective_value": 1.5},
            "exit_code": None,
        },
    )
    payload = encode("srv-a", event)
    assert decode(payload) == (
        "srv-a",
        Event(
            RUNS,
            "run.finished",
            {
                "run_id": 7,
                "status": "lost",
                "finished_at": "2026-01-05T09:30:15.250000+00:00",
                "run": {"day": "2026-01-05", "args": ["--fast", 3], "objective_value": 1.5},
                "exit_code": None,
            },
            remote=True,
        ),
    )


def test_encode_of_something_json_cannot_carry_fails_loudly() -> None:
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        encode("srv-a", Event(RUNS, "run.queued", {"ids": {1, 2}}))


@pytest.mark.parametrize(
    ("event", "sent"),
    [
        (Event(run_topic(3), "run.log", {"run_id": 3, "lines": []}), False),
        (Event(RUNS, "run.log", {"run_id": 3, "lines": []}), False),
        (Event(DASHBOARD, "kpi", {"runs": {}}), False),
        (Event(DASHBOARD, "health", {}), False),
        (Event(RUNS, "run.finished", {"run_id": 3}, remote=True), False),
        (Event(NOTIFICATIONS, "notification.new", {"id": 1}, remote=True), False),
        (Event(run_topic(3), "run.status", {"id": 3}), True),
        (Event(run_topic(3), "run.progress", {"run_id": 3, "progress": 50}), True),
        (Event(RUNS, "run.finished", {"run_id": 3}), True),
        (Event(NOTIFICATIONS, "notification.new", {"id": 1}), True),
    ],
    ids=lambda value: (
        f"{value.topic}/{value.type}{'/remote' if value.remote else ''}"
        if isinstance(value, Event)
        else str(value)
    ),
)
def test_relayed(event: Event, sent: bool) -> None:
    assert relayed(event) is sent


BIG_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "one big nested value": (
        {"run_id": 7, "run": {"config": "x" * 9000}, "status": "lost"},
        {"run_id": 7, "status": "lost", "truncated": ["run"]},
    ),
    "the biggest goes first, the rest fits": (
        {"a": "x" * 5000, "b": "y" * 4000, "c": "z" * 10},
        {"b": "y" * 4000, "c": "z" * 10, "truncated": ["a"]},
    ),
    "several must go, biggest first": (
        {"a": "x" * 7000, "b": ["y" * 100] * 60, "c": "z" * 3000, "n": 12},
        {"c": "z" * 3000, "n": 12, "truncated": ["a", "b"]},
    ),
    "multi-byte text counts in escaped bytes": (
        {"run_id": 1, "text": "€" * 1500, "short": "ok"},
        {"run_id": 1, "short": "ok", "truncated": ["text"]},
    ),
}


@pytest.mark.parametrize(("data", "kept"), BIG_CASES.values(), ids=BIG_CASES.keys())
def test_encode_drops_the_biggest_values_until_under_the_notify_limit(
    data: dict[str, Any], kept: dict[str, Any]
) -> None:
    assert len(json.dumps(data).encode()) > 8000
    payload = encode("srv-a", Event(RUNS, "run.finished", data))
    assert len(payload.encode()) < NOTIFY_PAYLOAD_LIMIT
    assert decode(payload) == ("srv-a", Event(RUNS, "run.finished", kept, remote=True))


def test_encode_leaves_a_small_event_whole() -> None:
    data = {"run_id": 7, "text": "€" * 1000, "lines": ["a"] * 100}
    payload = encode("srv-a", Event(RUNS, "run.finished", data))
    assert decode(payload) == ("srv-a", Event(RUNS, "run.finished", data, remote=True))


GARBAGE = {
    "empty": "",
    "not json": "not json",
    "cut short": "{",
    "a list": "[]",
    "an empty object": "{}",
    "null": "null",
    "a number": "42",
    "a string": '"text"',
    "no data": '{"server": "s", "topic": "runs", "type": "run.queued"}',
    "no topic": '{"server": "s", "type": "run.queued", "data": {}}',
    "no server": '{"topic": "runs", "type": "run.queued", "data": {}}',
    "data a string": '{"server": "s", "topic": "runs", "type": "run.queued", "data": "ab"}',
    "data a list": '{"server": "s", "topic": "runs", "type": "run.queued", "data": [1, 2]}',
    "data a number": '{"server": "s", "topic": "runs", "type": "run.queued", "data": 5}',
    # under the NOTIFY limit, and deeper than the JSON decoder's recursion limit
    "nested 5000 deep": "[" * 5000,
}


@pytest.mark.parametrize("payload", GARBAGE.values(), ids=GARBAGE.keys())
def test_decode_of_garbage_is_none(payload: str) -> None:
    assert decode(payload) is None
