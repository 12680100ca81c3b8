"""The event socket with real runs: 50 subscribers and a mid-run joiner of a 20,000-line run,
lifecycle events on both buses, a slow subscriber dropped and resumed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from tornado.websocket import WebSocketClientConnection

from energyops_ext.events import RUNS, run_topic
from energyops_ext.events.jupyter import RUN_SCHEMA
from energyops_ext.services import Services

from .conftest import Fetch, body
from .runs_helpers import FAST_RUNS, script_id, start_run, wait_for
from .wsclient import EventsClient, Frame, all_seqs, line_seqs

WsFetch = Callable[..., Awaitable[WebSocketClientConnection]]
Connect = Callable[[], Awaitable[EventsClient]]

PRINTER = """
import sys, time
total, width, pause, delay = int(sys.argv[1]), int(sys.argv[2]), *map(float, sys.argv[3:5])
pad = "z" * width
time.sleep(delay)
for i in range(1, total + 1):
    print(f"line {i} {pad}")
    if i % 1000 == 0:
        sys.stdout.flush()
        time.sleep(pause)
"""


@pytest.fixture
def energyops_config() -> dict[str, Any]:
    return dict(FAST_RUNS)


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


async def start_printer(
    api: Fetch, total: int, width: int, pause: float, delay: float = 0.0
) -> int:
    """A run that waits ``delay`` s, then prints ``total`` lines, pausing every 1,000."""
    sid = await script_id(api, "test_printer.py", PRINTER)
    run = await start_run(api, sid, args=[str(total), str(width), str(pause), str(delay)])
    return int(run["id"])


async def line_count(api: Fetch, run_id: int) -> int:
    run = await wait_for(api, run_id)
    assert run["status"] == "succeeded", run
    count = int(body(await api("GET", f"runs/{run_id}"))["line_count"])
    return count


async def test_fifty_subscribers_and_a_mid_run_joiner_get_every_line_once(
    api: Fetch, services: Services, connect: Connect, jp_ws_fetch: WsFetch
) -> None:
    bus = await jp_ws_fetch("api", "events", "subscribe")
    watcher = await connect()
    await watcher.subscribe(RUNS)
    run_id = await start_printer(api, 20_000, 20, 0.03, delay=1.5)
    topic = run_topic(run_id)
    clients = [await connect() for _ in range(50)]
    backlogs = [await c.subscribe(topic, since={topic: 0}) for c in clients]
    seqs = [all_seqs(frames, topic) for frames in backlogs]

    first = await clients[0].collect_lines(topic, 5000, within=60, seqs=seqs[0])
    late = await connect()
    late_seqs = all_seqs(await late.subscribe(topic, since={topic: 0}), topic)
    assert late_seqs[-1] >= first[-1] >= 5000, "the joiner came while the run was writing"

    total = await line_count(api, run_id)
    assert total >= 20_000
    pairs = zip(clients, seqs, strict=True)
    results = await asyncio.gather(
        *(c.collect_lines(topic, total, within=60, seqs=s) for c, s in pairs),
        late.collect_lines(topic, total, within=60, seqs=late_seqs),
    )
    for got in results:
        assert got == list(range(1, total + 1))
    stats = services.hub.stats
    assert stats.stream_items / stats.stream_frames >= 10, "log lines were not batched"

    lifecycle = await watcher.until(lambda f: f["type"] == "run.finished", within=10)
    assert [f["type"] for f in lifecycle] == ["run.queued", "run.started", "run.finished"]
    assert lifecycle[-1]["data"]["status"] == "succeeded"
    bus_types: list[str] = []
    while "run.finished" not in bus_types:
        message = await asyncio.wait_for(bus.read_message(), 10)
        assert message is not None
        event: Frame = json.loads(message)
        if event["schema_id"] == RUN_SCHEMA and event["data"].get("run_id", run_id) == run_id:
            bus_types.append(event["type"])
    assert bus_types == ["run.queued", "run.started", "run.finished"]
    bus.close()


@pytest.mark.parametrize("energyops_config", [{**FAST_RUNS, "ws_queue_frames": 16}])
async def test_a_slow_subscriber_of_a_run_is_dropped_and_resumes_with_since(
    api: Fetch, services: Services, connect: Connect
) -> None:
    # 30 ms per 1,000 lines: the fast subscriber reads on the server's own event loop, and
    # the server now takes lines faster than that loop sends 400-byte lines to two sockets
    run_id = await start_printer(api, 40_000, 400, 0.03)
    topic = run_topic(run_id)
    slow, fast = await connect(), await connect()
    got = all_seqs(await slow.subscribe(topic, since={topic: 0}), topic)
    fast_seqs = all_seqs(await fast.subscribe(topic, since={topic: 0}), topic)
    reader = asyncio.create_task(fast.collect_lines(topic, 40_000, within=60, seqs=fast_seqs))
    total = await line_count(api, run_id)
    await reader
    await fast.collect_lines(topic, total, within=30, seqs=fast_seqs)
    assert fast_seqs == list(range(1, total + 1))
    assert services.hub.stats.dropped_slow == 1

    while (frame := await slow.recv(within=10)) is not None:
        got.extend(line_seqs(frame, topic))
    assert slow.conn.close_code == 1013
    assert got == list(range(1, len(got) + 1)) and len(got) < total

    again = await connect()
    rest = all_seqs(await again.subscribe(topic, since={topic: got[-1]}), topic)
    assert got + rest == list(range(1, total + 1))
