"""The reference models on real HiGHS against optima computed independently: brute force over
every charge/idle/discharge sequence of a tiny battery, a closed form with losses, and every
commitment and bid-step choice of a tiny plant."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from energyops_ext.models import REFERENCE_MODELS
from energyops_ext.models.dmo_bid_builder import Plant, scenario_prices, step_levels
from energyops_ext.models.dmo_bid_builder import day_prices as dmo_day_prices
from energyops_ext.models.dmo_bid_builder import solve as solve_bid
from energyops_ext.models.so_storage_arbitrage import Battery, day_prices, solve
from energyops_ext.runs.parameters import script_parameters

DT = 0.25


def brute_force_battery(prices: list[float], power: float, battery: Battery) -> float:
    """Best revenue over every sequence of full charge / idle / full discharge (lossless)."""
    e = battery.capacity_mwh
    best = float("-inf")
    for actions in itertools.product((-1, 0, 1), repeat=len(prices)):
        soc, discharged, revenue, feasible = battery.soc_initial * e, 0.0, 0.0, True
        for action, price in zip(actions, prices, strict=True):
            soc -= action * power * DT
            discharged += max(action, 0) * power * DT
            revenue += action * power * DT * price
            if not battery.soc_min * e - 1e-9 <= soc <= battery.soc_max * e + 1e-9:
                feasible = False
                break
        kept = soc >= battery.soc_initial * e - 1e-9
        if feasible and kept and discharged <= battery.cycles_per_day * e + 1e-9:
            best = max(best, revenue)
    return best


BATTERY_CASES = [
    ([3000, 2500, 7000, 4000, 9000, 2000], Battery(20, 40, 1.0, 0, 1, 0, 1.0)),
    ([3000, 2500, 7000, 4000, 9000, 2000], Battery(20, 40, 1.0, 0, 1, 0, 2.0)),
    ([5000, 2000, 2100, 8000, 1000, 9500, 9400], Battery(30, 40, 1.0, 0, 1, 0, 3.0)),
    ([5000, 2000, 2100, 8000, 1000, 9500, 9400], Battery(40, 40, 1.0, 0.25, 1, 0.5, 1.0)),
    ([8000, 7000, 6000, 5000, 4000], Battery(20, 40, 1.0, 0, 1, 0.5, 1.0)),  # falling prices
]


@pytest.mark.parametrize("mode", ["lp", "milp"])
@pytest.mark.parametrize(("prices", "battery"), BATTERY_CASES)
def test_storage_matches_brute_force(prices: list[float], battery: Battery, mode: str) -> None:
    schedule = solve(prices, battery, mode, report=False)
    expected = brute_force_battery(prices, battery.power_mw, battery)
    assert schedule.status == "Optimal"
    assert schedule.revenue_rs == pytest.approx(expected, abs=1e-6)
    revenue = sum(p * mw * DT for p, mw in zip(prices, schedule.net_mw, strict=True))
    assert revenue == pytest.approx(expected, abs=1e-6)
    e = battery.capacity_mwh
    assert all(
        battery.soc_min * e - 1e-6 <= s <= battery.soc_max * e + 1e-6 for s in schedule.soc_mwh
    )
    if mode == "milp":
        assert all(
            min(c, d) < 1e-9 for c, d in zip(schedule.charge_mw, schedule.discharge_mw, strict=True)
        )


def test_storage_with_losses_matches_the_closed_form() -> None:
    # charge fully in the cheap block, discharge what is left in the dear one: d = 0.81 c
    prices, rte, power = [2000.0, 4000.0], 0.81, 10.0
    battery = Battery(100, power, rte, 0, 1, 0, 10)
    schedule = solve(prices, battery, "milp", report=False)
    # the end state may not be below the start: so nothing is stored, all of it sold
    expected = (prices[1] * rte * power - prices[0] * power) * DT
    assert schedule.revenue_rs == pytest.approx(expected)
    assert schedule.discharge_mw[1] == pytest.approx(rte * power)
    # below the break-even spread (4000 * 0.81 < 3500) the battery stays idle
    idle = solve([3500.0, 4000.0], battery, "milp", report=False)
    assert idle.revenue_rs == pytest.approx(0.0, abs=1e-9)


def test_storage_over_several_days_limits_cycles_per_day() -> None:
    day = [2000.0] * 48 + [9000.0] * 48
    battery = Battery(50, 50, 1.0, 0, 1, 0, 1.0)
    schedule = solve(day * 2, battery, "lp", report=False)
    assert schedule.revenue_rs == pytest.approx(2 * 50 * 7000.0)
    for start in (0, 96):
        assert sum(schedule.discharge_mw[start : start + 96]) * DT == pytest.approx(50.0)


def brute_force_bid(scenarios: list[list[float]], plant: Plant, steps: int) -> float:
    """Best expected profit over every commitment and every monotone two-level bid (Pmin
    below a threshold step, Pmax from it): the optimal bids of the MILP without ramps."""
    n_b = len(scenarios[0])
    levels = [step_levels([s[b] for s in scenarios], steps) for b in range(n_b)]

    def bids(b: int) -> list[list[float]]:
        k = len(levels[b])
        return [
            [plant.p_min_mw if i < j else plant.p_max_mw for i in range(k)] for j in range(k + 1)
        ]

    best = float("-inf")
    for commit in itertools.product((0, 1), repeat=n_b):
        starts = sum(1 for b in range(n_b) if commit[b] and not (commit[b - 1] if b else 0))
        options = [bids(b) if commit[b] else [[0.0] * len(levels[b])] for b in range(n_b)]
        for choice in itertools.product(*options):
            profit = -plant.startup_cost * starts
            for path in scenarios:
                for b, price in enumerate(path):
                    step = max(k for k, level in enumerate(levels[b]) if level <= price)
                    profit += (price - plant.marginal_cost) * DT * choice[b][step] / len(scenarios)
            best = max(best, profit)
    return best


@pytest.mark.parametrize(
    ("dam", "plant", "seed"),
    [
        ([3000, 5200, 6100, 3900], Plant(20, 50, 4500, 1e6, 3000), 1),
        ([3000, 5200, 6100, 3900], Plant(20, 50, 4500, 1e6, 30000), 1),
        ([6000, 4400, 4600, 7000, 2500], Plant(10, 80, 4500, 1e6, 1000), 4),
    ],
)
def test_bid_builder_matches_brute_force(dam: list[float], plant: Plant, seed: int) -> None:
    scenarios = scenario_prices(dam, 3, 0.3, seed)
    bid = solve_bid(scenarios, plant, 3, report=False)
    assert bid.status == "Optimal"
    assert bid.expected_profit_rs == pytest.approx(brute_force_bid(scenarios, plant, 3), abs=1e-6)
    for levels, quantities, on in zip(bid.step_prices, bid.quantities, bid.committed, strict=True):
        assert levels == sorted(levels) and quantities == sorted(quantities)
        assert all(
            plant.p_min_mw * on - 1e-6 <= q <= plant.p_max_mw * on + 1e-6 for q in quantities
        )


def test_bid_builder_keeps_the_ramp_in_every_scenario() -> None:
    dam = [2000.0, 9000.0, 2000.0, 9000.0, 9000.0, 2000.0]
    plant = Plant(0, 100, 4000, 30, 0, True)
    scenarios = scenario_prices(dam, 4, 0.2, 3)
    bid = solve_bid(scenarios, plant, 3, report=False)
    for path in scenarios:
        cleared = [
            bid.quantities[b][max(k for k, lv in enumerate(bid.step_prices[b]) if lv <= p)]
            for b, p in enumerate(path)
        ]
        assert all(abs(b - a) <= 30 + 1e-6 for a, b in itertools.pairwise(cleared))


def test_input_reading_fills_missing_blocks(tmp_path: Path) -> None:
    path = tmp_path / "market-snapshot.csv"
    rows = ["date,block,plant,contract,dam_price"]
    rows += [f"2025-10-06,{b},,,{1000 + b}" for b in range(1, 97) if b != 50]
    rows += [f"2025-10-05,{b},,,5" for b in range(1, 97)]
    path.write_text("\n".join(rows) + "\n")
    day, prices, notes = day_prices(path, "latest")
    assert day == "2025-10-06" and len(prices) == 96
    assert prices[49] == pytest.approx((1049 + 1051) / 2)
    assert notes == ["block 50 has no DAM price; using its neighbours' mean"]
    assert dmo_day_prices(path, "2025-10-05")[1] == [5.0] * 96
    with pytest.raises(SystemExit, match="no DAM prices for 2025-01-01"):
        day_prices(path, "2025-01-01")


def test_reference_models_declare_their_parameters() -> None:
    for model in REFERENCE_MODELS:
        declared = {p.name: p for p in script_parameters(model.path.read_text())}
        assert declared["date"].default == "latest" and declared["date"].input == "market-snapshot"
