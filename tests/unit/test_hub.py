"""The hub without a server: encode once, coalesce, order, replay without gaps, drop the slow."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from typing import Any

import pytest

from energyops_ext.events import DASHBOARD, RUNS, Event, EventHub, run_topic
from energyops_ext.events.periodic import DashboardPusher
from energyops_ext.events.protocol import BadFrame, Ping, Subscribe, Unsubscribe, parse_client_frame
from energyops_ext.events.session import ClientSession
from energyops_ext.events.stream import run_log_stream
from energyops_ext.events.subscriber import IN_FLIGHT

Line = dict[str, Any]


class MemoryTransport:
    """A socket that records frames; ``stuck`` ones never finish a write (a client that
    reads nothing)."""

    def __init__(self, stuck: bool = False) -> None:
        self.frames: list[bytes] = []
        self.stuck = stuck
        self.closed: tuple[int, str] | None = None

    def send(self, frame: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.frames.append(frame)
        if not self.stuck:
            future.set_result(None)
        return future

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def decoded(self) -> list[dict[str, Any]]:
        return [json.loads(frame) for frame in self.frames]

    def seqs(self, topic: str) -> list[int]:
        return [
            line["seq"]
            for frame in self.decoded()
            if frame["topic"] == topic and frame["type"] == "run.log"
            for line in frame["data"]["lines"]
        ]


class RunLog:
    """The run engine's contract: a line is stored before it is published; the backlog is
    every stored line after a seq."""

    def __init__(self, hub: EventHub, run_id: int = 1) -> None:
        self.hub = hub
        self.run_id = run_id
        self.lines: list[Line] = []
        self.lock = threading.Lock()

    def write(self, count: int) -> None:
        with self.lock:
            start = len(self.lines) + 1
            chunk = [{"seq": s, "text": f"line {s}"} for s in range(start, start + count)]
            self.lines.extend(chunk)
        self.hub.publish(Event(run_topic(self.run_id), "run.log", {"lines": chunk}))

    async def backlog(self, run_id: int, after: int, limit: int | None = None) -> list[Line]:
        def read() -> list[Line]:
            time.sleep(random.uniform(0, 0.003))
            with self.lock:
                rest = self.lines[after:]
            return rest[:limit] if limit else rest

        return await asyncio.to_thread(read)


async def settle(hub: EventHub, rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(hub.batch_window_s / 2)


async def delivered(
    transport: MemoryTransport, topic: str, count: int, within_s: float = 10.0
) -> None:
    """Until ``count`` lines of ``topic`` have arrived (a loaded machine delivers late)."""
    deadline = time.monotonic() + within_s
    while True:
        if len(transport.seqs(topic)) >= count or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.005)


def make_hub(**kwargs: Any) -> EventHub:
    hub = EventHub(**kwargs)
    hub.bind_loop(asyncio.get_running_loop())
    return hub


async def shut(hub: EventHub) -> None:
    """Close every subscriber and let their writer tasks finish."""
    hub.close()
    await asyncio.sleep(0.01)
    assert hub.connections == 0


async def test_one_encoding_for_every_subscriber_and_thread_safe_publish() -> None:
    hub = make_hub()
    transports = [MemoryTransport() for _ in range(5)]
    for transport in transports:
        await hub.connect(transport).subscribe((RUNS,), {})
    await asyncio.to_thread(hub.publish, Event(RUNS, "run.queued", {"run_id": 1}))
    await settle(hub)
    frames = [t.frames for t in transports]
    assert all(len(f) == 1 for f in frames)
    assert all(f[0] is frames[0][0] for f in frames), "each subscriber got its own encoding"
    assert json.loads(frames[0][0]) == {"topic": RUNS, "type": "run.queued", "data": {"run_id": 1}}
    assert hub.stats.frames_encoded == 1
    await shut(hub)


async def test_log_events_are_coalesced_and_keep_their_order() -> None:
    hub = make_hub(batch_window_s=0.02, batch_max_items=250)
    log = RunLog(hub)
    hub.add_stream(run_log_stream(log.backlog))
    transport = MemoryTransport()
    await hub.connect(transport).subscribe((run_topic(1),), {})
    for _ in range(300):
        log.write(1)
    hub.publish(Event(run_topic(1), "run.status", {"status": "running"}))
    for _ in range(100):
        log.write(2)
    await settle(hub)
    frames = transport.decoded()
    types = [f["type"] for f in frames]
    assert types == ["run.log", "run.log", "run.status", "run.log"], types
    assert [len(f["data"]["lines"]) for f in frames if f["type"] == "run.log"] == [250, 50, 200]
    assert transport.seqs(run_topic(1)) == list(range(1, 501))
    assert frames[0]["data"]["run_id"] == 1
    await shut(hub)


async def test_the_batch_window_grows_with_the_audience() -> None:
    hub = make_hub(batch_window_s=0.005, max_batch_window_s=0.05)
    topic = run_topic(5)
    assert hub.window(topic) == 0.005
    for _ in range(20):
        await hub.connect(MemoryTransport()).subscribe((topic,), {})
    assert hub.window(topic) == pytest.approx(0.02)
    for _ in range(80):
        await hub.connect(MemoryTransport()).subscribe((topic,), {})
    assert hub.window(topic) == 0.05
    await shut(hub)


async def test_nobody_listening_costs_nothing() -> None:
    hub = make_hub()
    log = RunLog(hub)
    hub.add_stream(run_log_stream(log.backlog))
    for _ in range(50):
        log.write(10)
    hub.publish(Event(RUNS, "run.started", {}))
    await settle(hub)
    assert hub.stats.frames_encoded == 0
    await shut(hub)


@pytest.mark.parametrize("trial", range(8))
async def test_replay_mid_run_is_gap_free_and_without_duplicates(trial: int) -> None:
    hub = make_hub(batch_window_s=0.002, batch_max_items=64, queue_frames=64)
    log = RunLog(hub, run_id=42)
    hub.add_stream(run_log_stream(log.backlog))
    total = 3000

    def write_all() -> None:
        for _ in range(total // 3):
            log.write(3)

    writer = threading.Thread(target=write_all)
    writer.start()
    await asyncio.sleep(random.uniform(0, 0.01))
    joined_after = random.choice([0, 0, 5])
    transport = MemoryTransport()
    subscriber = hub.connect(transport)
    replayed = await subscriber.subscribe((run_topic(42),), {run_topic(42): joined_after})
    await asyncio.to_thread(writer.join)
    await delivered(transport, run_topic(42), total - joined_after)
    assert transport.seqs(run_topic(42)) == list(range(joined_after + 1, total + 1))
    assert replayed[run_topic(42)] >= 0
    assert transport.closed is None
    await shut(hub)


async def test_replay_longer_than_the_buffer_refetches_instead_of_losing_lines() -> None:
    hub = make_hub(batch_window_s=0.0, batch_max_items=10, queue_frames=4)
    log = RunLog(hub, run_id=7)
    hub.add_stream(run_log_stream(log.backlog))
    log.write(500)
    transport = MemoryTransport()
    subscriber = hub.connect(transport)

    async def writes_during_replay() -> None:
        for _ in range(40):
            await asyncio.to_thread(log.write, 5)
            await asyncio.sleep(0)

    task = asyncio.create_task(writes_during_replay())
    await subscriber.subscribe((run_topic(7),), {run_topic(7): 0})
    await task
    await settle(hub)
    assert transport.closed is None
    assert transport.seqs(run_topic(7)) == list(range(1, 701))
    await shut(hub)


async def test_a_stuck_subscriber_is_dropped_and_others_get_everything() -> None:
    hub = make_hub(queue_frames=16)
    stuck, fast = MemoryTransport(stuck=True), MemoryTransport()
    for transport in (stuck, fast):
        await hub.connect(transport).subscribe((RUNS,), {})
    started = time.perf_counter()
    for i in range(200):
        hub.publish(Event(RUNS, "run.progress", {"i": i}))
        await asyncio.sleep(0)
    publish_s = time.perf_counter() - started
    await settle(hub)
    assert stuck.closed is not None and stuck.closed[0] == 1013
    assert "reconnect with since" in stuck.closed[1]
    assert len(stuck.frames) <= IN_FLIGHT + 1
    assert [f["data"]["i"] for f in fast.decoded()] == list(range(200))
    assert hub.listeners_of(RUNS) == 1 and hub.connections == 1
    assert hub.stats.dropped_slow == 1
    assert publish_s < 1.0
    await shut(hub)


class BrokenTransport(MemoryTransport):
    def send(self, frame: bytes) -> asyncio.Future[None]:
        raise ConnectionResetError("peer vanished")


async def test_a_failed_write_closes_the_socket_and_frees_the_subscriber() -> None:
    hub = make_hub()
    broken = BrokenTransport()
    await hub.connect(broken).subscribe((RUNS,), {})
    hub.publish(Event(RUNS, "run.started", {}))
    await settle(hub)
    assert broken.closed == (1011, "write failed: ConnectionResetError")
    assert not hub.listened(RUNS) and hub.connections == 0
    assert hub.stats.dropped_slow == 0
    await shut(hub)


async def test_sessions_answer_bad_frames_and_free_everything_on_close() -> None:
    hub = make_hub()
    transport = MemoryTransport()
    session = ClientSession(hub, transport)
    session.handle("{")
    session.handle('{"op": "ping"}')
    session.handle('{"op": "subscribe", "topics": ["runs", "run:3"]}')
    await settle(hub)
    assert [f["type"] for f in transport.decoded()] == ["error", "pong", "subscribed"]
    assert hub.listened(RUNS) and hub.listened("run:3")
    session.handle('{"op": "unsubscribe", "topics": ["run:3"]}')
    await settle(hub)
    assert not hub.listened("run:3")
    session.close()
    assert not hub.listened(RUNS) and hub.connections == 0
    await shut(hub)


async def test_dashboard_pusher_runs_only_while_listened() -> None:
    hub = make_hub()
    calls: list[str] = []

    async def kpi() -> dict[str, Any]:
        calls.append("kpi")
        return {"n": len(calls)}

    async def broken() -> dict[str, Any]:
        raise RuntimeError("database down")

    pusher = DashboardPusher(hub, {"kpi.update": (kpi, 0.05), "health.update": (broken, 0.05)})
    pusher.start()
    pusher.start()
    await asyncio.sleep(0.15)
    assert calls == []
    transport = MemoryTransport()
    subscriber = hub.connect(transport)
    await subscriber.subscribe((DASHBOARD,), {})
    await asyncio.sleep(0.18)
    assert 3 <= len(calls) <= 5, calls
    assert {f["type"] for f in transport.decoded()} == {"kpi.update"}
    await subscriber.unsubscribe((DASHBOARD,))
    count = len(calls)
    await asyncio.sleep(0.15)
    assert len(calls) == count
    await pusher.stop()
    assert not pusher.running
    assert all(t.get_name() != "energyops-dashboard-pushes" for t in asyncio.all_tasks())
    await shut(hub)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"op": "ping"}', Ping()),
        ('{"op": "unsubscribe", "topics": ["runs", "runs"]}', Unsubscribe(("runs",))),
        (
            '{"op": "subscribe", "topics": ["run:42", "dashboard"], "since": {"run:42": 1200}}',
            Subscribe(("run:42", "dashboard"), {"run:42": 1200}),
        ),
    ],
)
def test_parse_client_frame(raw: str, expected: object) -> None:
    assert parse_client_frame(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\xff", "invalid_json"),
        ('"ping"', "bad_frame"),
        ('{"op": null}', "unknown_op"),
        ('{"op": "subscribe", "topics": ["run:0"]}', "bad_topic"),
        ('{"op": "subscribe", "topics": ["run:-1"]}', "bad_topic"),
        ('{"op": "subscribe", "topics": ["run:\\uff11"]}', "bad_topic"),
        ('{"op": "subscribe", "topics": [1]}', "bad_topic"),
        ('{"op": "subscribe", "topics": []}', "bad_topics"),
        ('{"op": "subscribe", "topics": ["runs"], "since": {"runs": true}}', "bad_since"),
        ('{"op": "subscribe", "topics": ["run:1"], "since": {"run:1": 1.5}}', "bad_since"),
    ],
)
def test_bad_client_frames(raw: str | bytes, code: str) -> None:
    with pytest.raises(BadFrame) as bad:
        parse_client_frame(raw)
    assert bad.value.code == code
