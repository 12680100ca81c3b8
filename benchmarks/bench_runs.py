"""Run engine: log throughput (child prints → rows committed), start latency, kill latency.

Each figure is measured against the raw operation in the same run: a raw pipe read of the same
output, a bare ``python -c pass``, and (for kill) the goal itself.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from energyops_ext.config import Settings
from energyops_ext.events import RUNS, Event, run_topic
from energyops_ext.runs import registry
from energyops_ext.runs.sandbox import RunPaths, process_marker
from energyops_ext.services import Services, build_services

from .harness import Figure, Result, benchmark

LINES = 200_000
REPEAT = 5  # log throughput: medians of this many runs, each beside a raw pipe read
LOUD = f"""
import sys
out, err = sys.stdout, sys.stderr
for i in range({LINES // 2}):
    out.write(f"out line {{i}} some text of a typical width\\n")
    err.write(f"err line {{i}} some text of a typical width\\n")
"""
SLEEP = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"


def raw_pipe_read(script: Path) -> float:
    """Seconds to run the script and read both pipes to EOF, nothing else."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-u", str(script)], capture_output=True, check=True)
    elapsed = time.perf_counter() - start
    assert done.stdout.count(b"\n") == LINES // 2
    return elapsed


def bare_python_start() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


async def _wait_finished(services: Services, run_id: int) -> dict[str, Any]:
    while True:
        run = await services.runs.get_run(run_id)
        if run["status"] not in ("queued", "running"):
            return run
        await asyncio.sleep(0.01)


async def _throughput(services: Services, sid: int) -> float:
    """POST -> run.finished, which the engine sends once every line and the final status are
    committed (a client learns it so from the socket; polling GET /runs/{id} every 10 ms
    would cost the server more than a tenth of its time here)."""
    finished: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    run_ids: list[int] = []

    def listener(event: Event) -> None:
        ours = event.topic == RUNS and bool(run_ids) and event.data.get("run_id") == run_ids[0]
        if ours and event.type == "run.finished" and not finished.done():
            finished.set_result(time.perf_counter())

    services.hub.add_listener(listener)
    start = time.perf_counter()
    run = await services.runs.create_run(sid, {}, "bench")
    run_ids.append(run["id"])
    try:
        end = await finished
    finally:
        services.hub.remove_listener(listener)
    done = await services.runs.get_run(run["id"])
    assert done["line_count"] >= LINES, done
    lines = await services.runs.read_logs(run["id"], done["line_count"] - 1, 10)
    assert [line["seq"] for line in lines] == [done["line_count"]], lines
    return end - start


async def _first_line(services: Services, sid: int) -> float:
    first = asyncio.get_running_loop().create_future()
    start = time.perf_counter()
    run_ids: list[int] = []

    def listener(event: Event) -> None:
        if (
            run_ids
            and event.topic == run_topic(run_ids[0])
            and event.type == "run.log"
            and any(line["stream"] == "stdout" for line in event.data["lines"])
            and not first.done()
        ):
            first.set_result(time.perf_counter())

    services.hub.add_listener(listener)
    run = await services.runs.create_run(sid, {}, "bench")
    run_ids.append(run["id"])
    seen: float = await first
    services.hub.remove_listener(listener)
    await services.runs.kill_run(run["id"], "bench")
    await _wait_finished(services, run["id"])
    return seen - start


async def _until_lines(services: Services, run_id: int, count: int) -> None:
    while True:
        if (await services.runs.get_run(run_id))["line_count"] >= count:
            return
        await asyncio.sleep(0.01)


async def _kill(services: Services, sid: int) -> float:
    run = await services.runs.create_run(sid, {}, "bench")
    await _until_lines(services, run["id"], 2)
    marker = process_marker(RunPaths.for_run(services.settings.sandbox_dir, run["id"]))
    start = time.perf_counter()
    await services.runs.kill_run(run["id"], "bench")
    while True:
        if not registry.with_marker(marker):
            break
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - start
    await _wait_finished(services, run["id"])
    return elapsed


async def _measure(data_dir: Path, db_url: str | None, script: Path) -> dict[str, list[float]]:
    overrides: dict[str, Any] = {"kill_grace_s": 5.0, "max_concurrent_runs": 2}
    if db_url:
        overrides["db_url"] = db_url
    settings = Settings.for_data_dir(data_dir, **overrides)
    services = build_services(settings, logging.getLogger("bench"))
    services.hub.bind_loop(asyncio.get_running_loop())
    await services.start()
    figures: dict[str, list[float]] = {"raw": [], "ours": [], "first": [], "kill": []}
    try:
        loud, _ = await services.runs.upload_script(
            "test_loud.py", LOUD.encode(), "test", None, None, "bench"
        )
        sleep, _ = await services.runs.upload_script(
            "test_sleep.py", SLEEP.encode(), "test", None, None, "bench"
        )
        # raw and ours alternate, so a change in the load of a shared machine weighs on both
        for _ in range(REPEAT):
            figures["raw"].append(await asyncio.to_thread(raw_pipe_read, script))
            figures["ours"].append(await _throughput(services, loud["id"]))
        for _ in range(5):
            figures["first"].append(await _first_line(services, sleep["id"]))
            figures["kill"].append(await _kill(services, sleep["id"]))
    finally:
        await services.stop()
    return figures


def _run(db_url: str | None, label: str) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "loud.py"
        script.write_text(LOUD)
        bare = statistics.median(bare_python_start() for _ in range(5))
        measured = asyncio.run(_measure(Path(tmp) / "data", db_url, script))
    raw = statistics.median(measured["raw"])
    ours = statistics.median(measured["ours"])
    first = statistics.median(measured["first"])
    kill = statistics.median(measured["kill"])
    return [
        Figure(
            f"log throughput ({label})",
            LINES / ours,
            "lines/s",
            baseline=LINES / raw,
            baseline_name="raw pipe read of the same output",
            goal="ratio >= 0.5",
            higher_is_better=True,
        ),
        Figure(
            f"POST run -> first line, minus python start ({label})",
            (first - bare) * 1000,
            "ms",
            baseline=bare * 1000,
            baseline_name="python -c pass",
            goal="<= 150 ms",
        ),
        Figure(
            f"kill -> all processes gone ({label})",
            kill * 1000,
            "ms",
            baseline=1000.0,
            baseline_name="goal 1 s",
            goal="<= 1000 ms",
        ),
    ]


@benchmark("runs")
def runs() -> Result:
    figures = _run(None, "sqlite")
    pg = "postgresql+psycopg:///test"
    try:
        url = _pg_database(pg, create=True)
    except Exception as exc:  # PostgreSQL is optional for the benchmark
        return Result("runs", figures, notes=f"postgresql skipped: {exc}")
    try:
        figures += _run(url, "postgresql")
    finally:
        _pg_database(pg, create=False, name=url.rsplit("/", 1)[1])
    return Result("runs", figures)


def _pg_database(admin_url: str, *, create: bool, name: str = "") -> str:
    """Create (or drop) a scratch PostgreSQL database for one benchmark run."""
    import secrets

    from sqlalchemy import create_engine, text

    name = name or f"energyops_bench_{secrets.token_hex(3)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if create:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name
