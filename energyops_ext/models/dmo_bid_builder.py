"""DMO day-ahead bid builder: price scenarios per block → a sell bid of price-quantity steps per
block within the plant's limits, a MILP on HiGHS.

A reference model shipped with EnergyOps; copy it and change it. Scenario prices per block
are drawn around the day's DAM price (lognormal, ``spread``, seeded) and each has the same
probability. Per block b the bid has ``steps`` price levels p_{b,0} = 0 < p_{b,1} < … (the
scenario price quantiles) with quantities q_{b,k} (MW) offered at price p_{b,k} or more:

    Pmin·u_b ≤ q_{b,0} ≤ q_{b,1} ≤ … ≤ q_{b,K-1} ≤ Pmax·u_b   u_b ∈ {0, 1} (committed)
    in scenario s the bid clears x_{s,b} = q_{b,k(s,b)}, k(s,b) the highest step priced at
    or below the scenario price; |x_{s,b} - x_{s,b-1}| ≤ ramp (MW per block)
    v_b ≥ u_b - u_{b-1} (start-ups; u_0 = initially_on)
    maximize  Σ_s π_s Σ_b (price_{s,b} - marginal cost) x_{s,b} Δ - startup_cost Σ_b v_b

Inputs: the day's ``market-snapshot`` rows (the ``date`` parameter brings them). Outputs:
``bids.csv`` (block, step, price, quantity), ``model_results.csv`` (the expected cleared MW
per block, written back by EnergyOps as ``model_result_mw``), ``summary.json``; objective
(expected profit in Rs), results count and solver progress as markers.
"""

from __future__ import annotations

import csv
import json
import math
import random
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
    "p_min_mw": {"type": "float", "default": 100.0, "min": 0.0, "max": 100000.0},
    "p_max_mw": {"type": "float", "default": 500.0, "min": 0.1, "max": 100000.0},
    "marginal_cost": {"type": "float", "default": 4200.0, "min": 0.0, "max": 20000.0},
    "ramp_mw_per_block": {"type": "float", "default": 150.0, "min": 0.1, "max": 100000.0},
    "startup_cost": {"type": "float", "default": 150000.0, "min": 0.0, "max": 1e9},
    "initially_on": {"type": "bool", "default": False},
    "scenarios": {"type": "int", "default": 20, "min": 1, "max": 200},
    "spread": {"type": "float", "default": 0.15, "min": 0.0, "max": 2.0, "help": "sd of log"},
    "steps": {"type": "int", "default": 5, "min": 1, "max": 20},
    "seed": {"type": "int", "default": 7, "min": 0, "max": 2147483647},
    "time_limit_s": {"type": "float", "default": 300.0, "min": 1.0, "max": 86400.0},
}

BLOCK_H = 0.25


@dataclass(frozen=True)
class Plant:
    p_min_mw: float
    p_max_mw: float
    marginal_cost: float
    ramp_mw_per_block: float = 1e9
    startup_cost: float = 0.0
    initially_on: bool = False


@dataclass
class Bid:
    status: str
    expected_profit_rs: float
    step_prices: list[list[float]]  # per block, per step
    quantities: list[list[float]]  # per block, per step (MW)
    committed: list[bool]
    expected_mw: list[float]
    gap: float | None


def scenario_prices(dam: list[float], count: int, spread: float, seed: int) -> list[list[float]]:
    """``count`` equally likely price paths around ``dam`` (one shock per block and path)."""
    rng = random.Random(seed)
    return [
        [round(p * math.exp(spread * rng.gauss(0.0, 1.0) - spread**2 / 2), 2) for p in dam]
        for _ in range(count)
    ]


def step_levels(prices: list[float], steps: int) -> list[float]:
    """0, then the (k / steps) quantiles of a block's scenario prices: increasing levels."""
    ordered = sorted(prices)
    levels = [0.0]
    for k in range(1, steps):
        level = ordered[min(len(ordered) - 1, (k * len(ordered)) // steps)]
        if level > levels[-1]:
            levels.append(level)
    return levels


def solve(
    scenarios: list[list[float]],
    plant: Plant,
    steps: int,
    stop: sdk.StopHandler | None = None,
    time_limit_s: float = 300.0,
    report: bool = True,
) -> Bid:
    import highspy as highs_module

    highspy: Any = highs_module

    n_s, n_b = len(scenarios), len(scenarios[0])
    prob = 1.0 / n_s
    levels = [step_levels([scenarios[s][b] for s in range(n_s)], steps) for b in range(n_b)]

    def cleared_step(s: int, b: int) -> int:
        return max(k for k, level in enumerate(levels[b]) if level <= scenarios[s][b])

    h = highspy.Highs()
    h.silent()
    h.setOptionValue("time_limit", float(time_limit_s))
    inf = highspy.kHighsInf
    q: list[list[int]] = []
    column = 0
    coefficients: dict[int, float] = {}
    for b in range(n_b):
        row = []
        for _k in levels[b]:
            row.append(column)
            coefficients[column] = 0.0
            column += 1
        q.append(row)
    for s in range(n_s):
        for b in range(n_b):
            margin = (scenarios[s][b] - plant.marginal_cost) * BLOCK_H * prob
            coefficients[q[b][cleared_step(s, b)]] += margin
    u = list(range(column, column + n_b))
    v = list(range(column + n_b, column + 2 * n_b))
    total = column + 2 * n_b
    h.addVars(total, [0.0] * total, [plant.p_max_mw] * column + [1.0] * (2 * n_b))
    h.changeColsIntegrality(n_b, u, [highspy.HighsVarType.kInteger] * n_b)
    costs = [coefficients.get(i, 0.0) for i in range(column)] + [0.0] * n_b
    costs += [-plant.startup_cost] * n_b
    h.changeColsCost(total, list(range(total)), costs)
    h.changeObjectiveSense(highspy.ObjSense.kMaximize)
    for b in range(n_b):
        first, last = q[b][0], q[b][-1]
        h.addRow(0.0, inf, 2, [first, u[b]], [1.0, -plant.p_min_mw])  # q_0 ≥ Pmin u
        h.addRow(-inf, 0.0, 2, [last, u[b]], [1.0, -plant.p_max_mw])  # q_K ≤ Pmax u
        for k in range(1, len(q[b])):
            h.addRow(0.0, inf, 2, [q[b][k], q[b][k - 1]], [1.0, -1.0])  # monotone steps
        previous = 1.0 if plant.initially_on else 0.0
        if b == 0:
            h.addRow(-previous, inf, 2, [v[b], u[b]], [1.0, -1.0])  # v ≥ u - u_0
        else:
            h.addRow(0.0, inf, 3, [v[b], u[b], u[b - 1]], [1.0, -1.0, 1.0])
    ramps: set[tuple[int, int]] = set()
    for s in range(n_s):
        for b in range(1, n_b):
            pair = (q[b][cleared_step(s, b)], q[b - 1][cleared_step(s, b - 1)])
            if pair in ramps:
                continue
            ramps.add(pair)
            r = plant.ramp_mw_per_block
            h.addRow(-r, r, 2, list(pair), [1.0, -1.0])
    if report:
        sdk.solve_highs(h, stop, every_s=0.5)
    else:
        h.run()
    status = h.modelStatusToString(h.getModelStatus())
    info = h.getInfo()
    if info.primal_solution_status != 2:
        raise RuntimeError(f"no feasible bid: {status}")
    values = list(h.getSolution().col_value)
    quantities = [[round(values[i], 6) for i in q[b]] for b in range(n_b)]
    expected = [
        round(sum(quantities[b][cleared_step(s, b)] for s in range(n_s)) * prob, 6)
        for b in range(n_b)
    ]
    return Bid(
        status,
        float(info.objective_function_value),
        levels,
        quantities,
        [values[i] > 0.5 for i in u],
        expected,
        float(info.mip_gap) if math.isfinite(info.mip_gap) else None,
    )


def day_prices(path: Path, day: str) -> tuple[str, list[float]]:
    """The day's DAM price per block (``latest``: the CSV's last day with prices; a block
    without one takes the nearest earlier block's, else the next one's)."""
    by_day: dict[str, dict[int, list[float]]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("dam_price"):
                by_day.setdefault(row["date"], {}).setdefault(int(row["block"]), []).append(
                    float(row["dam_price"])
                )
    if day == "latest":
        if not by_day:
            raise SystemExit(f"{path.name} has no DAM prices")
        day = max(by_day)
    blocks = by_day.get(day)
    if not blocks:
        raise SystemExit(f"{path.name} has no DAM prices for {day}")
    known = {b: sum(v) / len(v) for b, v in blocks.items()}
    prices = []
    for block in range(1, 97):
        near = [known[b] for b in (*range(block, 0, -1), *range(block + 1, 97)) if b in known]
        prices.append(near[0])
    return day, prices


def main() -> int:
    stop = sdk.stop_handler()
    values: dict[str, Any] = sdk.parameters(PARAMETERS)
    source = sdk.input_dir() / "market-snapshot.csv"
    if not source.is_file():
        print(f"no input {source.name}: run with the date parameter or a market-snapshot input")
        return 1
    if values["p_min_mw"] > values["p_max_mw"]:
        print(f"p_min_mw {values['p_min_mw']} is above p_max_mw {values['p_max_mw']}")
        return 1
    day, dam = day_prices(source, values["date"] or "latest")
    plant = Plant(
        values["p_min_mw"],
        values["p_max_mw"],
        values["marginal_cost"],
        values["ramp_mw_per_block"],
        values["startup_cost"],
        values["initially_on"],
    )
    paths = scenario_prices(dam, values["scenarios"], values["spread"], values["seed"])
    print(f"DMO bid builder for {day}: {plant}, {len(paths)} scenarios", flush=True)
    sdk.progress(10)
    bid = solve(paths, plant, values["steps"], stop, values["time_limit_s"])
    out = sdk.output_dir()
    with (out / "bids.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["date", "block", "step", "price", "quantity_mw"])
        for b, (levels, quantities) in enumerate(zip(bid.step_prices, bid.quantities, strict=True)):
            for k, (price, mw) in enumerate(zip(levels, quantities, strict=True)):
                writer.writerow([day, b + 1, k + 1, price, mw])
    with (out / "model_results.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["date", "block", "model_result_mw"])
        writer.writerows([day, b + 1, mw] for b, mw in enumerate(bid.expected_mw))
    summary = {
        "date": day,
        "status": bid.status,
        "expected_profit_rs": bid.expected_profit_rs,
        "gap": bid.gap,
        "stopped": stop.requested,
        "plant": asdict(plant),
        "committed_blocks": sum(bid.committed),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"solver status: {bid.status}; expected profit Rs {bid.expected_profit_rs:,.2f}")
    sdk.objective(bid.expected_profit_rs)
    sdk.results(sum(len(levels) for levels in bid.step_prices))
    sdk.progress(100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
