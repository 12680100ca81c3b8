"""Models: notebook run overhead against the same code as a script (POST -> first line, kernel
start included), and the SO storage model on a year of blocks (solve time on HiGHS)."""

from __future__ import annotations

import asyncio
import logging
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from energyops_ext.config import Settings
from energyops_ext.events import Event, run_topic
from energyops_ext.ingest.demo import generate
from energyops_ext.models.so_storage_arbitrage import Battery, solve
from energyops_ext.services import Services, build_services

from .harness import Figure, Result, benchmark

CODE = "import time\nprint('first line', flush=True)\n"
REPEAT = 5
BATTERY = Battery(200.0, 50.0, 0.88, 0.1, 0.9, 0.5, 1.5)


def _notebook(source: str) -> bytes:
    import nbformat as nbformat_module

    nbformat: Any = nbformat_module
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    nb.cells = [nbformat.v4.new_code_cell(source)]
    return str(nbformat.writes(nb)).encode()


async def _wait_finished(services: Services, run_id: int) -> None:
    while True:
        if (await services.runs.get_run(run_id))["status"] not in ("queued", "running"):
            return
        await asyncio.sleep(0.02)


async def _first_line(services: Services, sid: int) -> float:
    """POST -> the run.log event carrying the model's first printed line."""
    first: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    run_ids: list[int] = []

    def listener(event: Event) -> None:
        if (
            run_ids
            and event.topic == run_topic(run_ids[0])
            and event.type == "run.log"
            and any("first line" in line["text"] for line in event.data["lines"])
            and not first.done()
        ):
            first.set_result(time.perf_counter())

    services.hub.add_listener(listener)
    start = time.perf_counter()
    run = await services.runs.create_run(sid, {}, "bench")
    run_ids.append(run["id"])
    seen = await asyncio.wait_for(first, 60)
    services.hub.remove_listener(listener)
    await _wait_finished(services, run["id"])
    return seen - start


async def _overhead(data_dir: Path) -> tuple[list[float], list[float]]:
    settings = Settings.for_data_dir(data_dir, kill_grace_s=5.0)
    services = build_services(settings, logging.getLogger("bench"))
    services.hub.bind_loop(asyncio.get_running_loop())
    await services.start()
    try:
        script, _ = await services.runs.upload_script(
            "test_first.py", CODE.encode(), "test", None, None, "bench"
        )
        notebook, _ = await services.runs.upload_script(
            "test_first.ipynb", _notebook(CODE), "test", None, None, "bench"
        )
        scripts, notebooks = [], []
        for _ in range(REPEAT):
            scripts.append(await _first_line(services, script["id"]))
            notebooks.append(await _first_line(services, notebook["id"]))
    finally:
        await services.stop()
    return scripts, notebooks


def _year_prices() -> list[float]:
    """A year of demo DAM prices, block by block (a block the demo data left out takes the
    nearest one's price)."""
    frame = generate(date(2025, 1, 1), 365, seed=7)["market-snapshot"]
    days = frame["date"].dt.date.astype(str).tolist()
    blocks = frame["block"].astype(int).tolist()
    values = frame["dam_price"].astype(float).tolist()
    by_block: dict[tuple[str, int], float] = dict(
        zip(zip(days, blocks, strict=True), values, strict=True)
    )
    prices = []
    for day in sorted(set(days)):
        for block in range(1, 97):
            near = [by_block.get((day, b)) for b in (block, block - 1, block + 1, block - 2)]
            prices.append(next(p for p in near if p is not None))
    return prices


def _solve_time(prices: list[float], mode: str, **kw: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    schedule = solve(prices, BATTERY, mode, report=False, **kw)
    return time.perf_counter() - start, schedule


@benchmark("models")
def models() -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        scripts, notebooks = asyncio.run(_overhead(Path(tmp) / "data"))
    script_s, notebook_s = statistics.median(scripts), statistics.median(notebooks)
    prices = _year_prices()
    day_s = statistics.median(
        _solve_time(prices[i * 96 : (i + 1) * 96], "milp")[0] for i in range(7)
    )
    lp_s, lp = _solve_time(prices, "lp")
    milp_s, milp = _solve_time(prices, "milp", time_limit_s=600.0)
    notes = (
        f"year of {len(prices)} blocks: LP {lp.status}, revenue Rs {lp.revenue_rs:,.0f}; "
        f"MILP {milp.status}, revenue Rs {milp.revenue_rs:,.0f}, gap {milp.gap}"
    )
    return Result(
        "models",
        [
            Figure(
                "notebook POST -> first line, over the same code as a script",
                (notebook_s - script_s) * 1000,
                "ms",
                baseline=script_s * 1000,
                baseline_name="the script's POST -> first line",
                goal="<= 2000 ms more",
            ),
            Figure(
                "SO storage, a year of blocks, LP solve",
                lp_s,
                "s",
                baseline=day_s * 365,
                baseline_name="365 one-day MILP solves",
            ),
            Figure(
                "SO storage, a year of blocks, MILP solve",
                milp_s,
                "s",
                baseline=day_s * 365,
                baseline_name="365 one-day MILP solves",
            ),
        ],
        notes=notes,
    )
