"""Load on a live server: 20 concurrent uploads of the fixture files and 10 concurrent runs with
the queue limit at 2, while a probe calls /health every 50 ms.

Checked (the benchmark fails loudly otherwise): every upload gets its report with consistent
counts, row counts equal those of one upload of each file (upserts, nothing duplicated or
lost), every run finishes ``succeeded``, never more than 2 run at once, and /health always
answers 200 within 1 s. Baselines, measured in the same run on the same server: one upload
alone, one run alone, and /health at rest.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.api.servers import LiveServer, live_server

from .harness import Figure, Result, benchmark, percentile

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
FILES = {
    "sample_market_snapshot.xlsx": "market-snapshot",
    "sample_dmo_generator_scheduling.xlsx": "generator-schedule",
    "sample_storage_data.csv": "storage-schedule",
}
UPLOADS = 20
RUNS = 10
QUEUE_LIMIT = 2
FINISHED = {"succeeded", "failed", "killed", "timed_out", "lost"}
RUN_SCRIPT = b"""import time
for i in range(10):
    print(f"step {i}", flush=True)
    time.sleep(0.1)
print("Objective value: 42.0")
"""


@dataclass
class Probe:
    """Calls /health every ``interval`` seconds in a thread; keeps every latency."""

    server: LiveServer
    interval: float = 0.05
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Probe:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            start = time.perf_counter()
            try:
                status = session.get(
                    self.server.url("health"), headers=self.server.headers, timeout=10
                ).status_code
            except requests.RequestException as exc:
                self.errors.append(repr(exc))
            else:
                self.latencies.append(time.perf_counter() - start)
                if status != 200:
                    self.errors.append(f"health answered {status}")
            self._stop.wait(self.interval)


def upload(server: LiveServer, name: str) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    with (FIXTURES / name).open("rb") as fh:
        response = requests.post(
            server.url(f"datasets/{FILES[name]}/uploads"),
            headers=server.headers,
            files={"file": (name, fh)},
            timeout=300,
        )
    elapsed = time.perf_counter() - start
    if response.status_code != 201:
        raise AssertionError(f"upload of {name}: {response.status_code} {response.text[:500]}")
    report: dict[str, Any] = response.json()
    counts = [report[k] for k in ("rows_read", "rows_inserted", "rows_updated", "rows_rejected")]
    if counts[0] != sum(counts[1:]):
        raise AssertionError(f"upload of {name}: counts do not add up: {report}")
    return elapsed, report


def row_counts(server: LiveServer) -> dict[str, int]:
    items = requests.get(server.url("datasets"), headers=server.headers, timeout=30).json()
    return {item["kind"]: item["rows"] for item in items["items"]}


def start_run(server: LiveServer, script_id: int) -> int:
    response = requests.post(
        server.url(f"scripts/{script_id}/runs"), headers=server.headers, json={}, timeout=60
    )
    if response.status_code != 202:
        raise AssertionError(f"run: {response.status_code} {response.text[:300]}")
    run_id: int = response.json()["id"]
    return run_id


def wait_runs(
    server: LiveServer, ids: list[int], timeout: float = 300
) -> tuple[dict[int, Any], int]:
    """Poll until every run finished; returns the runs and the most seen running at once."""
    deadline = time.monotonic() + timeout
    most_running = 0
    while time.monotonic() < deadline:
        runs = requests.get(
            server.url("runs"), headers=server.headers, params={"limit": 1000}, timeout=30
        ).json()["items"]
        mine = {r["id"]: r for r in runs if r["id"] in ids}
        most_running = max(most_running, sum(r["status"] == "running" for r in mine.values()))
        if len(mine) == len(ids) and all(r["status"] in FINISHED for r in mine.values()):
            return mine, most_running
        time.sleep(0.05)
    raise AssertionError(f"runs did not finish in {timeout}s")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def rest_health(server: LiveServer, samples: int = 100) -> list[float]:
    with Probe(server, interval=0.0) as probe:
        while len(probe.latencies) < samples:
            time.sleep(0.01)
    return probe.latencies


def load_uploads(server: LiveServer) -> tuple[float, float, float, Probe]:
    """Baseline: each file alone; then 20 at once (round robin over the files)."""
    alone = [upload(server, name)[0] for name in FILES]
    expected = row_counts(server)
    names = [list(FILES)[i % len(FILES)] for i in range(UPLOADS)]
    with Probe(server) as probe, ThreadPoolExecutor(UPLOADS) as pool:
        wall, results = timed(lambda: list(pool.map(lambda n: upload(server, n), names)))
    if len(results) != UPLOADS:
        raise AssertionError(f"{len(results)} reports for {UPLOADS} uploads")
    after = row_counts(server)
    if after != expected:
        raise AssertionError(f"row counts changed under load: {expected} -> {after}")
    mean_loaded = statistics.mean(r[0] for r in results)
    return wall, mean_loaded, statistics.mean(alone), probe


def load_runs(server: LiveServer) -> tuple[float, float, int, Probe]:
    response = requests.post(
        server.url("scripts"),
        headers=server.headers,
        files={"file": ("test_load.py", RUN_SCRIPT)},
        data={"kind": "test"},
        timeout=60,
    )
    script_id = response.json()["id"]
    alone, _ = timed(lambda: wait_runs(server, [start_run(server, script_id)]))
    with Probe(server) as probe, ThreadPoolExecutor(RUNS) as pool:
        ids = list(pool.map(lambda _: start_run(server, script_id), range(RUNS)))
        wall, (runs, most_running) = timed(lambda: wait_runs(server, ids))
    bad = {i: r["status"] for i, r in runs.items() if r["status"] != "succeeded"}
    if bad:
        raise AssertionError(f"runs that did not succeed: {bad}")
    if most_running > QUEUE_LIMIT:
        raise AssertionError(f"{most_running} runs ran at once; the limit is {QUEUE_LIMIT}")
    return wall, alone, most_running, probe


def check_probe(probe: Probe, what: str) -> None:
    if probe.errors:
        raise AssertionError(f"/health during {what}: {probe.errors[:5]}")
    if max(probe.latencies) >= 1.0:
        raise AssertionError(f"/health took {max(probe.latencies):.2f}s during {what}")


def run_load(backend: str) -> Result:
    with (
        tempfile.TemporaryDirectory() as tmp,
        live_server(Path(tmp), backend, energyops={"max_concurrent_runs": QUEUE_LIMIT}) as server,
    ):
        rest = rest_health(server)
        up_wall, up_mean, up_alone, up_probe = load_uploads(server)
        run_wall, run_alone, most_running, run_probe = load_runs(server)
    check_probe(up_probe, "uploads")
    check_probe(run_probe, "runs")
    loaded = up_probe.latencies + run_probe.latencies
    rest_p99, rest_max = percentile(rest, 99) * 1000, max(rest) * 1000
    name = f"load_{backend}"
    return Result(
        name,
        [
            Figure(
                f"{UPLOADS} concurrent uploads, wall",
                up_wall,
                "s",
                up_alone * UPLOADS,
                "one upload alone x 20",
                "every upload reported; row counts unchanged",
            ),
            Figure("upload latency under load, mean", up_mean, "s", up_alone, "one upload alone"),
            Figure(
                f"{RUNS} runs at queue limit {QUEUE_LIMIT}, wall",
                run_wall,
                "s",
                run_alone * RUNS / QUEUE_LIMIT,
                "one run alone x 10 / 2",
                f"all succeeded; at most {most_running} running at once",
            ),
            Figure(
                "/health p99 under load",
                percentile(loaded, 99) * 1000,
                "ms",
                rest_p99,
                "/health p99 at rest",
                "< 1000 ms",
            ),
            Figure(
                "/health max under load",
                max(loaded) * 1000,
                "ms",
                rest_max,
                "/health max at rest",
                "< 1000 ms",
            ),
        ],
        notes=f"{len(loaded)} health probes under load, none failed",
    )


@benchmark("load_sqlite")
def load_sqlite() -> Result:
    return run_load("sqlite")


@benchmark("load_postgresql")
def load_postgresql() -> Result:
    return run_load("postgresql")
