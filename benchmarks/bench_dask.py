"""Runs on a Dask cluster against the same runs on the local executor, in the same run, on
PostgreSQL and on SQLite:

1. POST run → first line: client-side, the POST returned → the first ``run.log`` frame carrying
   a printed line on the WebSocket of the server the run was posted to (subscribed right after
   the POST, since seq 0, so a line committed before the subscription arrives in the replay);
   ``REPS`` runs of a one-line child on each executor, interleaved (baselines: the local
   executor; ``python -c pass``; a bare Dask task submit → result);
2. log throughput: a child printing ``LINES`` lines flat out, POST sent → run seen finished with
   every line committed (``line_count`` less the run engine's system lines == ``LINES``), on each
   executor (baselines: the local executor; a raw pipe read of the same output).

The cluster is a real ``dask scheduler`` and one ``dask worker --nthreads 1 --no-nanny`` on
loopback. Every server claims any queued run of its database, so the two executors get a
database each (two servers, one with ``executor=dask``, one local, up at the same time), with
the shipped timing defaults. Each sample's run JSON (``created_at``, ``started_at``) and its
first line's ``ts`` split the first-line latency into queued → started (for Dask: the worker's
task took the run over), started → printed line read, and read → frame at the client; the
medians are in the notes.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from energyops_ext.events import run_topic
from tests.api.cluster import FINISHED, Node
from tests.api.dask_cluster import Client, DaskCluster
from tests.api.servers import LiveServer, _database

from .bench_cluster import ENERGYOPS, _ms, _progress, _stamp, postgres_reachable
from .bench_runs import LINES, LOUD, bare_python_start, raw_pipe_read
from .harness import Figure, Result, benchmark, percentile

REPS = 11  # first-line runs per executor and backend (odd: p50 is the median)
THROUGHPUT_REPS = {"postgresql": 5, "sqlite": 3}
ROUND_TRIPS = 20  # bare Dask tasks
POLL_S = 0.02  # client polling of a run's status
ONE_LINE = "print('up', flush=True)\n"
GOAL_EXTRA_MS = 200.0
GOAL_RATIO = 0.8
EXECUTORS = ("dask", "local")
# keep the servers' and the worker's logs there (else a temporary directory)
KEEP_ENV = "ENERGYOPS_BENCH_DASK_DIR"


# --- one sample of each kind ---


@dataclass
class FirstLine:
    seen: float  # POST returned → first printed line's frame, s
    post: float  # POST sent → returned, s
    queued: float  # created_at → started_at (Dask: the worker's task took the run over), s
    to_line: float  # started_at → the first printed line's ts (read by the run engine), s
    to_frame: float  # that ts → its frame at the client, s
    cold: bool = False


@dataclass
class Throughput:
    wall: float  # POST sent → seen finished, s
    db: float  # started_at → finished_at, s
    line_count: int

    @property
    def rate(self) -> float:
        return LINES / self.wall

    @property
    def db_rate(self) -> float:
        return LINES / self.db


@dataclass
class Executor:
    node: Node
    one_line: int
    loud: int
    first: list[FirstLine] = field(default_factory=list)
    cold: FirstLine | None = None
    throughput: list[Throughput] = field(default_factory=list)


async def _first_line(node: Node, script: int) -> FirstLine:
    """The WebSocket is open before the POST; the subscription is sent once it returned."""
    ws_url = node.server.base.replace("http://", "ws://") + "/energyops/api/events"
    conn = await websocket_connect(HTTPRequest(ws_url, headers=node.server.headers))
    try:
        sent = time.time()
        run = node.run(script)
        returned = time.time()
        topic = run_topic(int(run["id"]))
        await conn.write_message(
            json.dumps({"op": "subscribe", "topics": [topic], "since": {topic: 0}})
        )
        while True:
            message = await asyncio.wait_for(conn.read_message(), 60)
            now = time.time()
            assert message is not None, f"closed ({conn.close_code}) before the first line"
            frame = json.loads(message)
            assert frame.get("type") != "error", frame
            if frame.get("topic") == topic and frame.get("type") == "run.log":
                printed = [ln for ln in frame["data"]["lines"] if ln["stream"] == "stdout"]
                if printed:
                    break
    finally:
        conn.close()
    done = node.finished(int(run["id"]), within=60)
    assert done["status"] == "succeeded", done
    started = _stamp(done["started_at"])
    line_ts = _stamp(printed[0]["ts"])
    return FirstLine(
        seen=now - returned,
        post=returned - sent,
        queued=started - _stamp(done["created_at"]),
        to_line=line_ts - started,
        to_frame=now - line_ts,
    )


def _throughput(node: Node, script: int) -> Throughput:
    start = time.time()
    run = node.run(script)
    while run["status"] not in FINISHED:
        time.sleep(POLL_S)
        run = node.get(f"runs/{run['id']}")
    wall = time.time() - start
    assert run["status"] == "succeeded", run
    system = node.get(f"runs/{run['id']}/logs", stream="system", limit=1000)["items"]
    assert run["line_count"] - len(system) == LINES, (run["line_count"], len(system))
    db = _stamp(run["finished_at"]) - _stamp(run["started_at"])
    return Throughput(wall, db, int(run["line_count"]))


# --- one backend: a server per executor, each on a database of its own ---


@contextmanager
def _servers(workdir: Path, backend: str, scheduler: str) -> Iterator[dict[str, Node]]:
    with ExitStack() as stack:
        nodes: dict[str, Node] = {}
        for name in EXECUTORS:
            db_url = stack.enter_context(_database(workdir / f"db-{name}", backend))
            shared = workdir / f"storage-{name}"
            shared.mkdir(parents=True, exist_ok=True)
            settings: dict[str, Any] = {**ENERGYOPS, "storage_url": f"file://{shared}"}
            if name == "dask":
                settings |= {"executor": "dask", "dask_scheduler": scheduler}
            server = LiveServer(workdir / f"server-{name}", db_url, energyops=settings)
            stack.callback(server.stop)
            server.launch()
            nodes[name] = Node(server)
        for node in nodes.values():
            node.server.wait_ready()
        _wait_connected(nodes["dask"])
        yield nodes


def _wait_connected(node: Node, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        executor = node.get("health")["executor"]
        if executor.get("connected") and executor.get("workers", 0) >= 1:
            return
        assert time.monotonic() < deadline, executor
        time.sleep(0.1)


def _upload(node: Node) -> tuple[int, int]:
    one = node.upload_script("test_bench_dask_one_line.py", ONE_LINE)
    loud = node.upload_script("test_bench_dask_loud.py", LOUD)
    return int(one["id"]), int(loud["id"])


async def _first_lines(runs: dict[str, Executor]) -> None:
    for executor in runs.values():  # the worker's first task imports EnergyOps: not timed
        executor.cold = await _first_line(executor.node, executor.one_line)
    for i in range(REPS):
        for executor in _turn(runs, i):
            executor.first.append(await _first_line(executor.node, executor.one_line))


def _turn(runs: dict[str, Executor], i: int) -> list[Executor]:
    """Each executor in turn, the order swapped every repetition."""
    order = list(runs.values())
    return order if i % 2 == 0 else order[::-1]


def measure(workdir: Path, backend: str, scheduler: str) -> dict[str, Executor]:
    began = time.monotonic()
    with _servers(workdir, backend, scheduler) as nodes:
        _progress(backend, "servers up", began)
        runs = {name: Executor(node, *_upload(node)) for name, node in nodes.items()}
        asyncio.run(_first_lines(runs))
        _progress(backend, f"{REPS} first lines on each executor", began)
        for i in range(THROUGHPUT_REPS[backend]):
            for executor in _turn(runs, i):
                executor.throughput.append(_throughput(executor.node, executor.loud))
        _progress(backend, f"{THROUGHPUT_REPS[backend]} loud runs on each executor", began)
    return runs


# --- raw baselines ---


def dask_round_trips(address: str) -> list[float]:
    """A bare task (``abs(-1)``) submitted and its result back, from a client connected once."""
    samples = []
    with Client(address, timeout=10) as client:
        client.submit(abs, -1, pure=False).result()
        for _ in range(ROUND_TRIPS):
            start = time.perf_counter()
            client.submit(abs, -1, pure=False).result()
            samples.append(time.perf_counter() - start)
    return samples


@dataclass
class Raw:
    python_s: float
    pipe_s: float
    dask_ms: list[float]


def raw_baselines(workdir: Path, scheduler: str) -> Raw:
    script = workdir / "loud.py"
    script.write_text(LOUD)
    return Raw(
        python_s=statistics.median(bare_python_start() for _ in range(5)),
        pipe_s=statistics.median(raw_pipe_read(script) for _ in range(3)),
        dask_ms=_ms(dask_round_trips(scheduler)),
    )


# --- figures ---


def _seen_ms(executor: Executor) -> list[float]:
    return _ms([s.seen for s in executor.first])


def _first_line_figures(label: str, runs: dict[str, Executor], raw: Raw) -> list[Figure]:
    dask, local = _seen_ms(runs["dask"]), _seen_ms(runs["local"])
    figures = []
    for pct in (50, 95):
        figures.append(
            Figure(
                f"POST→first line p{pct}, dask executor ({label})",
                percentile(dask, pct),
                "ms",
                baseline=percentile(local, pct),
                baseline_name=f"local executor p{pct}",
                goal=f"≤ local + {GOAL_EXTRA_MS:.0f} ms" if pct == 50 else "",
            )
        )
    for pct in (50, 95):
        figures.append(
            Figure(
                f"POST→first line p{pct}, local executor ({label})",
                percentile(local, pct),
                "ms",
                baseline=raw.python_s * 1000,
                baseline_name="python -c pass",
            )
        )
    figures.append(
        Figure(
            f"POST→first line p50, dask minus local ({label})",
            percentile(dask, 50) - percentile(local, 50),
            "ms",
            baseline=percentile(raw.dask_ms, 50),
            baseline_name="bare dask task submit→result p50",
            goal=f"≤ {GOAL_EXTRA_MS:.0f} ms",
        )
    )
    return figures


def _throughput_figures(label: str, runs: dict[str, Executor], raw: Raw) -> list[Figure]:
    dask = statistics.median(t.rate for t in runs["dask"].throughput)
    local = statistics.median(t.rate for t in runs["local"].throughput)
    return [
        Figure(
            f"log throughput, {LINES:,} lines flat out, dask executor ({label})",
            dask,
            "lines/s",
            baseline=local,
            baseline_name="local executor",
            goal=f"ratio ≥ {GOAL_RATIO}",
            higher_is_better=True,
        ),
        Figure(
            f"log throughput, {LINES:,} lines flat out, local executor ({label})",
            local,
            "lines/s",
            baseline=LINES / raw.pipe_s,
            baseline_name="raw pipe read of the same output",
            higher_is_better=True,
        ),
    ]


def _med_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f}"


def _executor_note(name: str, executor: Executor) -> str:
    first = executor.first
    cold = executor.cold
    tp = executor.throughput
    split = (
        f"POST {_med_ms([s.post for s in first])} ms, then created→started "
        f"{_med_ms([s.queued for s in first])} ms, started→line read "
        f"{_med_ms([s.to_line for s in first])} ms, line read→frame "
        f"{_med_ms([s.to_frame for s in first])} ms"
    )
    if cold is not None:
        split += f"; untimed first run {cold.seen * 1000:.0f} ms"
    walls = ", ".join(f"{t.wall:.2f}" for t in tp)
    dbs = ", ".join(f"{t.db_rate:,.0f}" for t in tp)
    return (
        f"{name}: first line medians {split}; loud runs {walls} s POST→seen finished, "
        f"started_at→finished_at rates {dbs} lines/s, line_count {tp[0].line_count:,}"
    )


def _notes(label: str, runs: dict[str, Executor], seconds: float) -> str:
    parts = "; ".join(_executor_note(name, executor) for name, executor in runs.items())
    return f"{label} ({seconds:.0f} s): {parts}"


def _loud_reps() -> str:
    return ", ".join(f"{count} on {backend}" for backend, count in THROUGHPUT_REPS.items())


@contextmanager
def _workdir() -> Iterator[Path]:
    kept = os.environ.get(KEEP_ENV)
    if kept:
        path = Path(kept)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        yield Path(tmp)


@benchmark("dask")
def dask_benchmark() -> Result:
    with _workdir() as tmp:
        dask = DaskCluster(tmp / "dask")
        try:
            dask.start_scheduler()
            dask.start_worker("w1")
            dask.wait_workers(1)
            raw = raw_baselines(tmp, dask.address)
            figures: list[Figure] = []
            notes = [
                f"a dask scheduler and 1 worker (--nthreads 1, no nanny) on loopback; per "
                f"backend 2 jupyter servers (executor=dask, executor=local), each on a database "
                f"of its own, shipped timing defaults (poll_s={ENERGYOPS['poll_s']}, "
                f"log_flush_interval_s={ENERGYOPS['log_flush_interval_s']}), "
                f"max_concurrent_runs=1; {REPS} first-line runs per executor, interleaved, "
                f"and {_loud_reps()} loud runs per executor (median); "
                f"client polls run status every {POLL_S * 1000:.0f} ms; raw: python -c pass "
                f"{raw.python_s * 1000:.0f} ms, bare dask task p50 "
                f"{percentile(raw.dask_ms, 50):.1f} ms / p95 {percentile(raw.dask_ms, 95):.1f} ms"
            ]
            print(f"  {notes[0]}", flush=True)
            skipped = postgres_reachable()
            backends = ["sqlite"] if skipped else ["postgresql", "sqlite"]
            if skipped:
                notes.append(f"postgresql skipped: {skipped}")
            for backend in backends:
                began = time.monotonic()
                runs = measure(tmp / backend, backend, dask.address)
                figures += _first_line_figures(backend, runs, raw)
                figures += _throughput_figures(backend, runs, raw)
                notes.append(_notes(backend, runs, time.monotonic() - began))
                print(f"  {notes[-1]}", flush=True)
        finally:
            dask.stop()
    return Result("dask", figures, notes="; ".join(notes))
