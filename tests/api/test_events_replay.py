"""Log fan-out, replay and backpressure over real sockets, with a run log that keeps the run
engine's contract (lines stored before they are published; backlog = every line after a seq)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import pytest
from tornado.websocket import WebSocketClientConnection

from energyops_ext.events import run_topic
from energyops_ext.events.stream import run_log_stream
from energyops_ext.services import Services

from .wsclient import EventsClient, MemoryRunLog, line_seqs

WsFetch = Callable[..., Awaitable[WebSocketClientConnection]]
Connect = Callable[[], Awaitable[EventsClient]]


@pytest.fixture
def run_log(services: Services) -> MemoryRunLog:
    log = MemoryRunLog(services.hub, run_id=900, text_size=60)
    services.hub.add_stream(run_log_stream(log.backlog))
    return log


@pytest.fixture
def connect(services: Services, jp_ws_fetch: WsFetch) -> Iterator[Connect]:
    clients: list[EventsClient] = []

    async def open_client() -> EventsClient:
        client = EventsClient(await jp_ws_fetch("energyops", "api", "events"))
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


async def test_fifty_subscribers_and_a_late_joiner_get_every_line_once(
    services: Services, run_log: MemoryRunLog, connect: Connect
) -> None:
    topic = run_topic(run_log.run_id)
    total = 20_000
    clients = [await connect() for _ in range(50)]
    for client in clients:
        await client.subscribe(topic)
    writer = run_log.write_in_thread(total, chunk=20, pause_s=0.0005)
    await asyncio.sleep(0.1)
    late = await connect()
    replayed = await late.subscribe(topic, since={topic: 0})
    late_seqs = [seq for frame in replayed for seq in line_seqs(frame, topic)]
    assert late_seqs, "joined after the run had started, so the backlog was not empty"
    results = await asyncio.gather(
        *(c.collect_lines(topic, total, within=60) for c in clients),
        late.collect_lines(topic, total, within=60, seqs=late_seqs),
    )
    await asyncio.to_thread(writer.join)
    expected = list(range(1, total + 1))
    for seqs in results:
        assert seqs == expected
    stats = services.hub.stats
    assert stats.stream_items / stats.stream_frames >= 10, "log lines were not batched"
    assert stats.dropped_slow == 0


@pytest.mark.parametrize("energyops_config", [{"ws_queue_frames": 16}])
async def test_a_slow_subscriber_is_dropped_and_resumes_with_since(
    services: Services, run_log: MemoryRunLog, connect: Connect
) -> None:
    run_log.filler = "y" * 400
    topic = run_topic(run_log.run_id)
    slow, fast = await connect(), await connect()
    await slow.subscribe(topic)
    await fast.subscribe(topic)
    fast_seqs: list[int] = []
    final: list[int] = []

    async def read_fast() -> None:
        while not (final and fast_seqs and fast_seqs[-1] >= final[0]):
            frame = await fast.recv(within=60)
            assert frame is not None, f"the fast subscriber was closed ({fast.conn.close_code})"
            fast_seqs.extend(line_seqs(frame, topic))

    reader = asyncio.create_task(read_fast())
    total = 0
    while services.hub.stats.dropped_slow == 0 and total < 200_000:
        await asyncio.to_thread(run_log.write, 200)
        total += 200
        await asyncio.sleep(0.01)
    assert services.hub.stats.dropped_slow == 1, "the slow subscriber was never dropped"
    await asyncio.to_thread(run_log.write, 500)
    total += 500
    final.append(total)
    await fast.send({"op": "ping"})  # the reader may already wait with every line in hand

    got: list[int] = []
    while (frame := await slow.recv(within=10)) is not None:
        got.extend(line_seqs(frame, topic))
    assert slow.conn.close_code == 1013
    assert got == list(range(1, len(got) + 1)) and len(got) < total

    await reader
    assert fast_seqs == list(range(1, total + 1))

    again = await connect()
    since = got[-1] if got else 0
    resumed = await again.subscribe(topic, since={topic: since})
    rest = [seq for frame in resumed for seq in line_seqs(frame, topic)]
    assert got + rest == list(range(1, total + 1))
