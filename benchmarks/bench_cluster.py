"""Three real servers on one database, on PostgreSQL and on SQLite (each a fresh database):

1. print → WebSocket frame latency at 1,000 lines/s for a subscriber on another server than the
   run's owner and, in the same run, for one on the owner (baselines: the owner's subscriber, and
   the same child read from a raw pipe);
2. queued → started by an idle other server while the server the run was posted to is busy
   (baseline: a run posted to an idle server with the others busy, which starts it itself);
3. runs finished per minute by 3 servers vs 1 on one-second runs (baseline: 1 server, and for
   1 server a bare ``python -c "time.sleep(1)"`` back to back).

Each server runs at most one run at a time. Which server runs what is never assumed: the owner
is read from the run (``server_id``), servers are made busy with sleeper runs until every server
but the wanted ones holds one.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from energyops_ext.config import Settings
from energyops_ext.events import run_topic
from tests.api.cluster import CLUSTER_SETTINGS, FINISHED, Node, cluster, owner_and_other
from tests.conftest import PG_ADMIN_URL

from .bench_events import PACED, PACED_LINES, Tally, count_lines, raw_pipe_latencies, subscriber
from .harness import Figure, Result, benchmark, percentile

SERVERS = 3
LINES = PACED_LINES  # printed at 1,000 lines/s
PRINT_DELAY_S = 2.5  # between the run's start and its first line: time to subscribe
PICKUPS = 30  # runs posted one at a time to the busy server
LOCAL_PICKUPS = 15  # runs posted one at a time to the only idle server (the baseline)
BATCH = 18  # one-second runs per throughput batch
POLL_S = 0.01  # client polling of a run's status

SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(600)\n"
TRIVIAL = "print('ok')\n"
ONE_SECOND = "import time\ntime.sleep(1)\n"

# The shipped defaults for the timing settings the test cluster shortens, then one run per
# server and a short kill grace (sleepers end at SIGTERM anyway).
_DEFAULTS = {f.name: f.default for f in fields(Settings)}
ENERGYOPS: dict[str, Any] = {
    **{name: _DEFAULTS[name] for name in CLUSTER_SETTINGS},
    "log_flush_interval_s": _DEFAULTS["log_flush_interval_s"],
    "max_concurrent_runs": 1,
    "kill_grace_s": 0.5,
}
STARTED = {"running", *FINISHED}


def _stamp(value: str) -> float:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _ms(samples: list[float]) -> list[float]:
    return [s * 1000 for s in samples]


def _progress(label: str, what: str, since: float) -> None:
    print(f"  {label}: {what} ({time.monotonic() - since:.1f} s)", flush=True)


# --- the cluster's state: which servers are busy ---


@dataclass
class Scripts:
    paced: int
    sleeper: int
    trivial: int
    one_second: int


def upload(node: Node) -> Scripts:
    return Scripts(
        paced=int(node.upload_script("test_bench_cluster_paced.py", PACED)["id"]),
        sleeper=int(node.upload_script("test_bench_cluster_sleeper.py", SLEEPER)["id"]),
        trivial=int(node.upload_script("test_bench_cluster_trivial.py", TRIVIAL)["id"]),
        one_second=int(node.upload_script("test_bench_cluster_second.py", ONE_SECOND)["id"]),
    )


def _started(run: dict[str, Any]) -> bool:
    return run["status"] == "running" and run["server_id"] is not None


def occupy(via: Node, sleeper: int) -> dict[str, Any]:
    """A sleeper run, posted to ``via`` and running on whichever server took it."""
    run = via.run(sleeper)
    started: dict[str, Any] = via.wait_run(run["id"], _started, within=30)
    return started


def node_of(nodes: list[Node], run: dict[str, Any]) -> Node:
    return next(node for node in nodes if node.id == run["server_id"])


def release(node: Node, run: dict[str, Any]) -> None:
    node.delete(f"runs/{run['id']}")
    node.finished(run["id"], within=30)


# --- 1. print → frame, subscribers on the owner and on another server ---


@dataclass
class Latencies:
    owner: str
    other: str
    same: Tally
    remote: Tally


async def _two_subscribers(owner: Node, other: Node, run_id: int) -> tuple[Tally, Tally]:
    topic = run_topic(run_id)
    same = await subscriber(owner.server, topic)
    remote = await subscriber(other.server, topic)
    try:
        within = PRINT_DELAY_S + LINES / 1000 + 30
        tallies = await asyncio.wait_for(
            asyncio.gather(count_lines(same, LINES, True), count_lines(remote, LINES, True)),
            within,
        )
    finally:
        same.close()
        remote.close()
    return tallies[0], tallies[1]


def latencies(nodes: list[Node], scripts: Scripts) -> Latencies:
    """One paced run on whichever server claims it; one subscriber there, one on another."""
    args = [str(LINES), "1000", str(PRINT_DELAY_S)]
    run = nodes[0].run(scripts.paced, args=args)
    run = nodes[0].wait_run(run["id"], _started, within=PRINT_DELAY_S)
    owner, other = owner_and_other(nodes, run)
    same, remote = asyncio.run(_two_subscribers(owner, other, int(run["id"])))
    ended = owner.finished(run["id"], within=30)
    assert ended["status"] == "succeeded", ended
    return Latencies(owner.name, other.name, same, remote)


# --- 2. queued → started ---


@dataclass
class Pickups:
    db: list[float] = field(default_factory=list)  # created_at → started_at, s
    client: list[float] = field(default_factory=list)  # POST returned → first seen started, s
    starters: Counter[str] = field(default_factory=Counter)


def pickups(via: Node, script: int, count: int, names: dict[str, str]) -> Pickups:
    """``count`` runs posted to ``via`` one at a time, each finished before the next."""
    measured = Pickups()
    for _ in range(count):
        run = via.run(script)
        returned = time.time()
        seen = returned
        while run["status"] not in STARTED:
            time.sleep(POLL_S)
            run = via.get(f"runs/{run['id']}")
            seen = time.time()
        ended = via.finished(run["id"], within=30)
        assert ended["status"] == "succeeded", ended
        measured.db.append(_stamp(ended["started_at"]) - _stamp(ended["created_at"]))
        measured.client.append(seen - returned)
        measured.starters[names[ended["server_id"]]] += 1
    return measured


# --- 3. runs per minute ---


@dataclass
class Batch:
    wall: float  # first POST → last finished_at, s
    starters: Counter[str]

    @property
    def per_minute(self) -> float:
        return BATCH * 60 / self.wall


def batch(via: list[Node], script: int, names: dict[str, str]) -> Batch:
    """``BATCH`` runs posted round-robin to ``via``; until the last one finished."""
    start = time.time()
    ids = [via[i % len(via)].run(script)["id"] for i in range(BATCH)]
    ended = [via[0].finished(run_id, within=120) for run_id in ids]
    assert all(run["status"] == "succeeded" for run in ended), ended
    last = max(_stamp(run["finished_at"]) for run in ended)
    return Batch(last - start, Counter(names[run["server_id"]] for run in ended))


# --- one backend ---


@dataclass
class Measured:
    latency: Latencies
    remote_pickups: Pickups
    local_pickups: Pickups
    busy: str
    one: Batch
    three: Batch
    seconds: float


def measure(workdir: Path, backend: str) -> Measured:
    began = time.monotonic()
    with cluster(workdir, backend, SERVERS, energyops=ENERGYOPS) as nodes:
        names = {node.id: node.name for node in nodes}
        _progress(backend, f"{SERVERS} servers up", began)
        scripts = upload(nodes[0])
        latency = latencies(nodes, scripts)
        _progress(backend, "latency", began)

        # 2. one server busy, the others idle: runs posted to the busy one
        first = occupy(nodes[0], scripts.sleeper)
        busy = node_of(nodes, first)
        remote = pickups(busy, scripts.trivial, PICKUPS, names)
        assert names[busy.id] not in remote.starters, remote.starters
        _progress(backend, "queued → started elsewhere", began)

        # every server busy, then the first one free again: the only idle server
        others = [occupy(node, scripts.sleeper) for node in nodes if node is not busy]
        assert len({r["server_id"] for r in [first, *others]}) == SERVERS
        release(busy, first)
        local = pickups(busy, scripts.trivial, LOCAL_PICKUPS, names)
        assert set(local.starters) == {names[busy.id]}, local.starters
        _progress(backend, "queued → started on the same server", began)

        # 3. the same batch through that one server, then through all of them
        one = batch([busy], scripts.one_second, names)
        assert set(one.starters) == {names[busy.id]}, one.starters
        _progress(backend, "batch on 1 server", began)
        for run in others:
            release(node_of(nodes, run), run)
        three = batch(nodes, scripts.one_second, names)
        _progress(backend, f"batch on {SERVERS} servers", began)
    return Measured(latency, remote, local, names[busy.id], one, three, time.monotonic() - began)


# --- figures ---


def _latency_figures(label: str, m: Latencies, raw_ms: list[float]) -> list[Figure]:
    same, remote = _ms(m.same.latencies), _ms(m.remote.latencies)
    figures = []
    for pct, tag in ((50, "p50"), (95, "p95"), (99, "p99"), (100, "max")):
        figures.append(
            Figure(
                f"print→frame {tag}, subscriber on another server ({label})",
                percentile(remote, pct),
                "ms",
                baseline=percentile(same, pct),
                baseline_name=f"owner's subscriber {tag}",
                goal="p99 ≤ 100 ms" if pct == 99 else "",
            )
        )
    for pct, tag in ((50, "p50"), (95, "p95"), (99, "p99"), (100, "max")):
        figures.append(
            Figure(
                f"print→frame {tag}, subscriber on the owner ({label})",
                percentile(same, pct),
                "ms",
                baseline=percentile(raw_ms, pct),
                baseline_name=f"raw pipe read {tag}",
                goal="p99 ≤ 20 ms" if pct == 99 else "",
            )
        )
    return figures


def _pickup_figures(label: str, m: Measured) -> list[Figure]:
    goal = "p99 ≤ 500 ms" if label == "postgresql" else "p99 ≤ 1.5 s"
    figures = []
    for what, remote, local in (
        ("created_at→started_at", m.remote_pickups.db, m.local_pickups.db),
        ("POST returned→seen started", m.remote_pickups.client, m.local_pickups.client),
    ):
        for pct in (50, 99):
            figures.append(
                Figure(
                    f"queued→started by an idle other server, {what} p{pct} ({label})",
                    percentile(_ms(remote), pct),
                    "ms",
                    baseline=percentile(_ms(local), pct),
                    baseline_name=f"posted to the idle server itself, p{pct}",
                    goal=goal if pct == 99 and what.startswith("created") else "",
                )
            )
    return figures


def _batch_figures(label: str, m: Measured, bare_s: float) -> list[Figure]:
    return [
        Figure(
            f"runs/min, {BATCH} one-second runs, 1 server ({label})",
            m.one.per_minute,
            "runs/min",
            baseline=60 / bare_s,
            baseline_name="bare python sleep(1) back to back",
            higher_is_better=True,
        ),
        Figure(
            f"runs/min, {BATCH} one-second runs, {SERVERS} servers ({label})",
            m.three.per_minute,
            "runs/min",
            baseline=m.one.per_minute,
            baseline_name="1 server",
            goal="ratio ≥ 2.5",
            higher_is_better=True,
        ),
    ]


def _notes(label: str, m: Measured) -> str:
    lat = m.latency
    return (
        f"{label}: run owned by {lat.owner}, subscribers on {lat.owner} "
        f"({lat.same.lines:,} lines, {lat.same.frames:,} frames) and {lat.other} "
        f"({lat.remote.lines:,} lines, {lat.remote.frames:,} frames); busy server {m.busy}, "
        f"{PICKUPS} runs started by {dict(m.remote_pickups.starters)}, baseline "
        f"{LOCAL_PICKUPS} runs; batch walls {m.one.wall:.2f} s (1 server) and "
        f"{m.three.wall:.2f} s ({dict(m.three.starters)}); {m.seconds:.0f} s in all"
    )


def bare_sleep() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import time; time.sleep(1)"], check=True)
    return time.perf_counter() - start


def postgres_reachable() -> str | None:
    """Why PostgreSQL cannot be used, or None."""
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # PostgreSQL is optional for the benchmark
        return str(exc).splitlines()[0]
    return None


@contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        yield Path(tmp)


def _settings_note() -> str:
    shown = ("max_concurrent_runs", "poll_s", "log_flush_interval_s", "heartbeat_s", "lease_s")
    values = ", ".join(f"{name}={ENERGYOPS[name]}" for name in shown)
    return (
        f"{SERVERS} jupyter servers on one database, shared file:// storage, "
        f"EnergyOps settings {values}, kill_grace_s={ENERGYOPS['kill_grace_s']} (shipped "
        f"defaults but max_concurrent_runs and kill_grace_s); {LINES:,} lines at 1,000/s; "
        f"client polls run status every {POLL_S * 1000:.0f} ms"
    )


@benchmark("cluster")
def cluster_benchmark() -> Result:
    with _workdir() as tmp:
        raw_ms = _ms(raw_pipe_latencies(tmp))
        bare_s = statistics.median(bare_sleep() for _ in range(3))
        figures: list[Figure] = []
        notes = [_settings_note()]
        print(f"  {notes[0]}", flush=True)
        skipped = postgres_reachable()
        backends = ["sqlite"] if skipped else ["postgresql", "sqlite"]
        if skipped:
            notes.append(f"postgresql skipped: {skipped}")
        for backend in backends:
            m = measure(tmp / backend, backend)
            figures += _latency_figures(backend, m.latency, raw_ms)
            figures += _pickup_figures(backend, m)
            figures += _batch_figures(backend, m, bare_s)
            notes.append(_notes(backend, m))
            print(f"  {notes[-1]}", flush=True)
    return Result("cluster", figures, notes="; ".join(notes))
