"""SO storage arbitrage: a battery against day-ahead (DAM) prices, on HiGHS.

A reference model shipped with EnergyOps; copy it and change it. Per 15-minute block t
(Δ = 0.25 h) it chooses charge c_t and discharge d_t (MW, at most the power rating) and the
state of charge s_t (MWh):

    s_t = s_{t-1} + η c_t Δ - d_t Δ / η          η = sqrt(round-trip efficiency)
    soc_min·E ≤ s_t ≤ soc_max·E                  s_0 = soc_initial·E, s_T ≥ s_0
    Σ_{t in a day} d_t Δ ≤ cycles_per_day · E    (daily cycle limit, E = capacity MWh)
    mode "milp": a binary y_t per block, c_t ≤ P y_t and d_t ≤ P (1 - y_t)
    maximize  Σ_t price_t (d_t - c_t) Δ           (revenue in Rs)

Inputs: the day's ``market-snapshot`` rows (the ``date`` parameter brings them as an input
file; outside EnergyOps put ``market-snapshot.csv`` in ``input/``). Outputs: ``schedule.csv``
(per block), ``model_results.csv`` (the net MW per block, written back by EnergyOps as the
day's ``model_result_mw``), ``summary.json``; objective, results count and solver progress
as markers. A stop (POST /runs/{id}/stop) interrupts the MILP and keeps its best schedule.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from energyops_ext import sdk

PARAMETERS: dict[str, dict[str, Any]] = {
    "date": {
        "type": "date",
        "default": "latest",
        "input": "market-snapshot",
        "help": "delivery day (default: the latest day with DAM prices)",
    },
    "capacity_mwh": {"type": "float", "default": 200.0, "min": 0.1, "max": 100000.0},
    "power_mw": {"type": "float", "default": 50.0, "min": 0.1, "max": 100000.0},
    "round_trip_efficiency": {"type": "float", "default": 0.88, "min": 0.05, "max": 1.0},
    "soc_min": {"type": "float", "default": 0.1, "min": 0.0, "max": 1.0, "help": "share of E"},
    "soc_max": {"type": "float", "default": 0.9, "min": 0.0, "max": 1.0, "help": "share of E"},
    "soc_initial": {"type": "float", "default": 0.5, "min": 0.0, "max": 1.0},
    "cycles_per_day": {"type": "float", "default": 1.5, "min": 0.0, "max": 24.0},
    "mode": {
        "type": "choice",
        "choices": ["milp", "lp"],
        "default": "milp",
        "help": "milp: never charge and discharge in one block; lp: the relaxation",
    },
    "time_limit_s": {"type": "float", "default": 300.0, "min": 1.0, "max": 86400.0},
}

BLOCK_H = 0.25
BLOCKS_PER_DAY = 96


@dataclass(frozen=True)
class Battery:
    capacity_mwh: float
    power_mw: float
    round_trip_efficiency: float = 1.0
    soc_min: float = 0.0
    soc_max: float = 1.0
    soc_initial: float = 0.0
    cycles_per_day: float = 1e9


@dataclass
class Schedule:
    status: str
    revenue_rs: float
    charge_mw: list[float]
    discharge_mw: list[float]
    soc_mwh: list[float]
    gap: float | None

    @property
    def net_mw(self) -> list[float]:
        return [d - c for c, d in zip(self.charge_mw, self.discharge_mw, strict=True)]


def solve(
    prices: list[float],
    battery: Battery,
    mode: str = "milp",
    stop: sdk.StopHandler | None = None,
    time_limit_s: float = 300.0,
    report: bool = True,
) -> Schedule:
    """The revenue-maximizing schedule for ``prices`` (Rs/MWh per block, any number of
    96-block days). ``report`` prints solver progress markers (the sdk's)."""
    import highspy as highs_module

    highspy: Any = highs_module

    if battery.soc_min > battery.soc_initial or battery.soc_initial > battery.soc_max:
        raise ValueError("soc_min ≤ soc_initial ≤ soc_max is needed")
    n = len(prices)
    eta = math.sqrt(battery.round_trip_efficiency)
    e, p = battery.capacity_mwh, battery.power_mw
    h = highspy.Highs()
    h.silent()
    h.setOptionValue("time_limit", float(time_limit_s))
    inf = highspy.kHighsInf
    # columns: c_0..c_{n-1}, d_0..d_{n-1}, s_0..s_{n-1}, (y_0..y_{n-1})
    lower = [0.0] * (2 * n) + [battery.soc_min * e] * n
    upper = [p] * (2 * n) + [battery.soc_max * e] * n
    cost = [-price * BLOCK_H for price in prices] + [price * BLOCK_H for price in prices] + [0] * n
    h.addVars(3 * n, lower, upper)
    c, d, s = 0, n, 2 * n
    if mode == "milp":
        h.addVars(n, [0.0] * n, [1.0] * n)
        y = 3 * n
        h.changeColsIntegrality(n, list(range(y, y + n)), [highspy.HighsVarType.kInteger] * n)
        cost += [0.0] * n
    h.changeColsCost(len(cost), list(range(len(cost))), cost)
    h.changeObjectiveSense(highspy.ObjSense.kMaximize)
    s0 = battery.soc_initial * e
    for t in range(n):
        # s_t - s_{t-1} - η Δ c_t + Δ/η d_t = 0   (s_{-1} = s0)
        idx, val = [s + t, c + t, d + t], [1.0, -eta * BLOCK_H, BLOCK_H / eta]
        rhs = 0.0
        if t == 0:
            rhs = s0
        else:
            idx.append(s + t - 1)
            val.append(-1.0)
        h.addRow(rhs, rhs, len(idx), idx, val)
        if mode == "milp":
            h.addRow(-inf, 0.0, 2, [c + t, y + t], [1.0, -p])  # c_t ≤ P y_t
            h.addRow(-inf, p, 2, [d + t, y + t], [1.0, p])  # d_t ≤ P (1 - y_t)
    h.addRow(s0, inf, 1, [s + n - 1], [1.0])  # end no emptier than it started
    limit = battery.cycles_per_day * e
    for start in range(0, n, BLOCKS_PER_DAY):
        blocks = list(range(d + start, d + min(n, start + BLOCKS_PER_DAY)))
        h.addRow(-inf, limit, len(blocks), blocks, [BLOCK_H] * len(blocks))
    if report:
        sdk.solve_highs(h, stop, every_s=0.5)
    else:
        h.run()
    status = h.modelStatusToString(h.getModelStatus())
    info = h.getInfo()
    if info.primal_solution_status != 2:  # kSolutionStatusFeasible
        raise RuntimeError(f"no feasible schedule: {status}")
    values = list(h.getSolution().col_value)
    gap = float(info.mip_gap) if mode == "milp" and math.isfinite(info.mip_gap) else None
    return Schedule(
        status,
        float(info.objective_function_value),
        [round(v, 6) for v in values[c : c + n]],
        [round(v, 6) for v in values[d : d + n]],
        [round(v, 6) for v in values[s : s + n]],
        gap,
    )


# --- inputs and outputs (the run's directories) ---


def day_prices(path: Path, day: str) -> tuple[str, list[float], list[str]]:
    """The day's DAM price per block 1-96 from a market-snapshot CSV (``latest``: its last
    day with prices); blocks without a price take their neighbours' mean. Returns (day,
    prices, notes)."""
    by_day: dict[str, dict[int, list[float]]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("dam_price"):
                blocks = by_day.setdefault(row["date"], {})
                blocks.setdefault(int(row["block"]), []).append(float(row["dam_price"]))
    if day == "latest":
        if not by_day:
            raise SystemExit(f"{path.name} has no DAM prices")
        day = max(by_day)
    found = by_day.get(day)
    if not found:
        raise SystemExit(f"{path.name} has no DAM prices for {day}")
    known = {b: sum(v) / len(v) for b, v in found.items() if 1 <= b <= BLOCKS_PER_DAY}
    prices, notes = [], []
    for block in range(1, BLOCKS_PER_DAY + 1):
        if block in known:
            prices.append(known[block])
            continue
        before = [known[b] for b in range(block - 1, 0, -1) if b in known][:1]
        after = [known[b] for b in range(block + 1, BLOCKS_PER_DAY + 1) if b in known][:1]
        near = before + after
        prices.append(sum(near) / len(near))
        notes.append(f"block {block} has no DAM price; using its neighbours' mean")
    return day, prices, notes


def write_outputs(out: Path, day: str, prices: list[float], schedule: Schedule) -> None:
    with (out / "schedule.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["date", "block", "dam_price", "charge_mw", "discharge_mw", "net_mw", "soc_mwh"]
        )
        for t, price in enumerate(prices):
            writer.writerow(
                [
                    day,
                    t + 1,
                    round(price, 2),
                    schedule.charge_mw[t],
                    schedule.discharge_mw[t],
                    round(schedule.net_mw[t], 6),
                    schedule.soc_mwh[t],
                ]
            )
    with (out / "model_results.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["date", "block", "model_result_mw"])
        writer.writerows([day, t + 1, round(mw, 6)] for t, mw in enumerate(schedule.net_mw))


def main() -> int:
    stop = sdk.stop_handler()
    values: dict[str, Any] = sdk.parameters(PARAMETERS)
    source = sdk.input_dir() / "market-snapshot.csv"
    if not source.is_file():
        print(f"no input {source.name}: run with the date parameter or a market-snapshot input")
        return 1
    day, prices, notes = day_prices(source, values["date"] or "latest")
    for note in notes:
        print(f"warning: {note}")
    battery = Battery(
        values["capacity_mwh"],
        values["power_mw"],
        values["round_trip_efficiency"],
        values["soc_min"],
        values["soc_max"],
        values["soc_initial"],
        values["cycles_per_day"],
    )
    print(f"SO storage arbitrage for {day}: {battery}, mode {values['mode']}", flush=True)
    sdk.progress(10)
    schedule = solve(prices, battery, values["mode"], stop, values["time_limit_s"])
    out = sdk.output_dir()
    write_outputs(out, day, prices, schedule)
    summary = {
        "date": day,
        "status": schedule.status,
        "revenue_rs": schedule.revenue_rs,
        "gap": schedule.gap,
        "stopped": stop.requested,
        "battery": asdict(battery),
        "discharged_mwh": sum(schedule.discharge_mw) * BLOCK_H,
        "charged_mwh": sum(schedule.charge_mw) * BLOCK_H,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"solver status: {schedule.status}; revenue Rs {schedule.revenue_rs:,.2f}")
    sdk.objective(schedule.revenue_rs)
    sdk.results(len(prices))
    sdk.progress(100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
