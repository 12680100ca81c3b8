"""The event socket against a live server: print → frame latency at 1,000 lines/s (baseline: the
same child read from a raw pipe), lines/s delivered to each of 50 subscribers (baseline: one
subscriber) and how many printed lines one WebSocket frame carries."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from tests.api.runs_helpers import multipart
from tests.api.servers import LiveServer, live_server

from .harness import Figure, Result, benchmark, percentile

PACED = """
import sys, time
total, rate, delay = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
time.sleep(delay)
start = time.monotonic()
for i in range(total):
    wait = start + i / rate - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    print(f"{time.time():.6f} line {i}", flush=True)
"""
FAST = """
import sys, time
total, delay = int(sys.argv[1]), float(sys.argv[2])
time.sleep(delay)
for i in range(total):
    print(f"line {i} with some text of a typical width for a solver log")
"""
PACED_LINES = 5_000
FAST_LINES = 100_000
STEADY_LINES, STEADY_RATE = 60_000, 20_000
FANOUT = 50
STDOUT = '"stream":"stdout"'


@dataclass
class Tally:
    """What one subscriber saw: lines, frames, first/last arrival, print→arrival latencies."""

    lines: int = 0
    frames: int = 0
    first: float = 0.0
    last: float = 0.0
    latencies: list[float] = field(default_factory=list)


def start_run(server: LiveServer, script: str, name: str, args: list[str]) -> int:
    payload, content_type = multipart({"kind": "test"}, (name, script.encode()))
    headers = {**server.headers, "Content-Type": content_type}
    uploaded = requests.post(server.url("scripts"), data=payload, headers=headers, timeout=30)
    uploaded.raise_for_status()
    script_id = uploaded.json()["id"]
    started = requests.post(
        server.url(f"scripts/{script_id}/runs"),
        json={"args": args},
        headers=server.headers,
        timeout=30,
    )
    started.raise_for_status()
    return int(started.json()["id"])


async def subscriber(server: LiveServer, topic: str) -> WebSocketClientConnection:
    url = f"ws://127.0.0.1:{server.port}/energyops/api/events"
    conn = await websocket_connect(HTTPRequest(url, headers=server.headers))
    await conn.write_message(
        json.dumps({"op": "subscribe", "topics": [topic], "since": {topic: 0}})
    )
    while True:
        message = await conn.read_message()
        assert isinstance(message, str) and '"error"' not in message[:40], message
        if '"subscribed"' in message[:40]:
            return conn


async def count_lines(conn: WebSocketClientConnection, total: int, timed: bool) -> Tally:
    """Read frames until ``total`` lines the child printed arrived (system lines of the run
    engine aside); count them without decoding JSON unless ``timed`` (then each line's
    printed time gives its latency)."""
    tally = Tally()
    while tally.lines < total:
        message = await conn.read_message()
        now = time.time()
        assert message is not None, f"closed ({conn.close_code}) after {tally.lines} lines"
        text = message if isinstance(message, str) else message.decode()
        if '"run.log"' not in text[:60]:
            continue
        count = text.count(STDOUT)
        if not count:
            continue
        if not tally.lines:
            tally.first = now
        tally.lines += count
        tally.frames += 1
        tally.last = now
        if timed:
            for line in json.loads(text)["data"]["lines"]:
                if line["stream"] == "stdout":
                    tally.latencies.append(now - float(line["text"].split(" ", 1)[0]))
    return tally


async def watch(
    server: LiveServer, script: str, args: list[str], total: int, n: int
) -> list[Tally]:
    run_id = start_run(server, script, "test_bench_events.py", args)
    topic = f"run:{run_id}"
    conns = [await subscriber(server, topic) for _ in range(n)]
    try:
        timed = script is PACED and args[1] == "1000"
        return await asyncio.gather(*(count_lines(c, total, timed) for c in conns))
    finally:
        for conn in conns:
            conn.close()


def raw_pipe_latencies(workdir: Path) -> list[float]:
    """The same paced child read line by line from a pipe: print → read latency."""
    path = workdir / "paced.py"
    path.write_text(PACED)
    child = subprocess.Popen(
        [sys.executable, "-u", str(path), str(PACED_LINES), "1000", "0"], stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    latencies = [time.time() - float(line.split(b" ", 1)[0]) for line in child.stdout]
    child.wait()
    return latencies


def rate(tallies: list[Tally], total: int) -> float:
    """Lines per second each subscriber received: every subscriber got ``total`` lines between
    the first arrival anywhere and the last arrival everywhere."""
    return total / (max(t.last for t in tallies) - min(t.first for t in tallies))


@dataclass
class Measured:
    raw: list[float]
    paced: Tally
    one: list[Tally]
    many: list[Tally]
    steady_one: list[Tally]
    steady_many: list[Tally]


def measure(workdir: Path) -> Measured:
    raw = raw_pipe_latencies(workdir)
    with live_server(workdir / "server", "sqlite") as server:
        paced = [str(PACED_LINES), "1000", "1.5"]
        fast = [str(FAST_LINES), "2"]
        steady = [str(STEADY_LINES), str(STEADY_RATE), "3"]
        return Measured(
            raw=raw,
            paced=asyncio.run(watch(server, PACED, paced, PACED_LINES, 1))[0],
            one=asyncio.run(watch(server, FAST, fast, FAST_LINES, 1)),
            many=asyncio.run(watch(server, FAST, fast, FAST_LINES, FANOUT)),
            steady_one=asyncio.run(watch(server, PACED, steady, STEADY_LINES, 1)),
            steady_many=asyncio.run(watch(server, PACED, steady, STEADY_LINES, FANOUT)),
        )


def fanout_figure(name: str, many: list[Tally], one: list[Tally], total: int) -> Figure:
    return Figure(
        name,
        rate(many, total),
        "lines/s",
        baseline=rate(one, total),
        baseline_name="one subscriber",
        goal="ratio ≥ 0.8",
        higher_is_better=True,
    )


def batching_figure(name: str, frames: int, lines: int) -> Figure:
    return Figure(name, frames / lines, "frames/line", baseline=1.0, baseline_name="1 per line")


@benchmark("events")
def events() -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        m = measure(Path(tmp))
    ms = [s * 1000 for s in m.paced.latencies]
    raw_ms = [s * 1000 for s in m.raw]
    return Result(
        "events",
        [
            Figure(
                "print→frame p50 at 1,000 lines/s",
                percentile(ms, 50),
                "ms",
                baseline=percentile(raw_ms, 50),
                baseline_name="raw pipe read p50",
            ),
            Figure(
                "print→frame p99 at 1,000 lines/s",
                percentile(ms, 99),
                "ms",
                baseline=percentile(raw_ms, 99),
                baseline_name="raw pipe read p99",
                goal="p99 ≤ 20 ms",
            ),
            fanout_figure(
                f"lines/s to each of {FANOUT} subscribers, run at {STEADY_RATE:,} lines/s",
                m.steady_many,
                m.steady_one,
                STEADY_LINES,
            ),
            fanout_figure(
                f"lines/s to each of {FANOUT} subscribers, run printing flat out",
                m.many,
                m.one,
                FAST_LINES,
            ),
            batching_figure(
                "WS frames per printed line at 1,000 lines/s", m.paced.frames, PACED_LINES
            ),
            batching_figure("WS frames per printed line, flat out", m.one[0].frames, FAST_LINES),
        ],
        notes=f"live jupyter server on SQLite; {PACED_LINES:,} lines at 1,000/s; "
        f"{STEADY_LINES:,} lines at {STEADY_RATE:,}/s and {FAST_LINES:,} lines flat out, each to "
        f"1 and to {FANOUT} subscribers read by one client process on the same machine",
    )
