"""The reference models installed and run on demo data through the API: the day defaults to
the latest with prices, the optimum of a battery whose answer is known in closed form, the
schedule written back as the day's model_result_mw (snapshot, stats, the upload record),
the DMO bid, and GET /runs/compare on two runs with different parameters."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
from datetime import date
from typing import Any

import pytest

from energyops_ext.ingest.demo import load
from energyops_ext.models import install_reference_models
from energyops_ext.services import Services

from .conftest import Fetch, assert_error, body
from .models_helpers import log_texts
from .runs_helpers import FAST_RUNS, start_run, wait_for

FIRST = date(2025, 10, 5)
LAST = "2025-10-07"


@pytest.fixture
def energyops_config() -> dict[str, Any]:
    return dict(FAST_RUNS)


async def _installed(api: Fetch, services: Services) -> dict[str, dict[str, Any]]:
    await asyncio.to_thread(load, services.db, FIRST, 3)
    note = await asyncio.to_thread(
        install_reference_models, services.settings, services.db, services.storage
    )
    assert note == (
        "reference models: so_storage_arbitrage.py v1 (SO, installed), "
        "dmo_bid_builder.py v1 (DMO, installed)"
    )
    again = await asyncio.to_thread(
        install_reference_models, services.settings, services.db, services.storage
    )
    assert "so_storage_arbitrage.py v1 (SO, up to date)" in again
    skipped = await asyncio.to_thread(
        install_reference_models,
        services.settings,
        services.db,
        services.storage,
        only_if_no_scripts=True,
    )
    assert skipped == "scripts present (2); reference models not installed"
    listing = body(await api("GET", "scripts", params={"kind": "model"}))["items"]
    return {s["name"]: s for s in listing}


async def _artifact_rows(api: Fetch, run_id: int, name: str) -> list[dict[str, str]]:
    response = await api("GET", f"runs/{run_id}/artifacts/{name}")
    assert response.code == 200, response.body
    return list(csv.DictReader(io.StringIO(response.body.decode())))


async def test_storage_model_runs_on_demo_data_and_writes_back(
    api: Fetch, services: Services
) -> None:
    models = await _installed(api, services)
    so = models["so_storage_arbitrage.py"]
    assert so["model_type"] == "SO" and so["uploaded_by"] == "energyops"
    assert {p["name"] for p in so["parameters"]} >= {"date", "capacity_mwh", "mode"}
    # a one-block battery (E = P·Δ), lossless, one cycle: the best buy-low-sell-later pair
    values = {
        "capacity_mwh": 12.5,
        "power_mw": 50.0,
        "round_trip_efficiency": 1.0,
        "soc_min": 0.0,
        "soc_max": 1.0,
        "soc_initial": 0.0,
        "cycles_per_day": 1.0,
    }
    run = await start_run(api, so["id"], parameters=values)
    assert run["parameters"]["date"] == LAST and run["parameters"]["mode"] == "milp"
    assert run["inputs"] == [{"kind": "market-snapshot", "from": LAST, "to": LAST}]
    done = await wait_for(api, run["id"], timeout_s=60)
    assert done["status"] == "succeeded", await log_texts(api, run["id"])
    assert set(done["input_hashes"]) == {"market-snapshot.csv"}

    before = body(await api("GET", "market/snapshot", params={"date": LAST}))["rows"]
    prices = [r["dam_price"] for r in before]
    if any(p is None for p in prices):  # a block the demo data left out: the model fills it
        schedule = await _artifact_rows(api, run["id"], "schedule.csv")
        prices = [float(r["dam_price"]) for r in schedule]
    best = max(b - a for a, b in itertools.combinations(prices, 2))
    assert done["objective_value"] == pytest.approx(12.5 * best, rel=1e-6)
    assert done["results_count"] == 96 and done["solver"]["gap"] == pytest.approx(0, abs=1e-6)

    results = await _artifact_rows(api, run["id"], "model_results.csv")
    net = {int(r["block"]): float(r["model_result_mw"]) for r in results}
    assert sorted(net) == list(range(1, 97)) and max(net.values()) == pytest.approx(50.0)
    snapshot = body(await api("GET", "market/snapshot", params={"date": LAST}))["rows"]
    assert {r["block"]: r["model_result_mw"] for r in snapshot} == pytest.approx(net)
    stats = body(await api("GET", "market/stats", params={"date": LAST}))
    assert stats["total_model_result_mw"] == pytest.approx(sum(net.values()), abs=1e-3)
    other = body(await api("GET", "market/snapshot", params={"date": "2025-10-06"}))["rows"]
    assert any(abs(r["model_result_mw"] or 0) > 100 for r in other)  # other days untouched

    texts = await log_texts(api, run["id"])
    line = next(t for t in texts if t.startswith("model results: "))
    upload_id = int(line.rsplit("upload ", 1)[1].split(",")[0])
    assert line.startswith(f"model results: 96 blocks of {LAST} written to market_snapshot")
    report = body(await api("GET", f"uploads/{upload_id}"))
    assert report["filename"] == f"run-{run['id']}/model_results.csv"
    assert report["rows_updated"] + report["rows_inserted"] == 96
    assert report["status"] == "stored"
    assert report["report"]["source"]["run_id"] == run["id"]


async def test_bid_builder_and_run_comparison(api: Fetch, services: Services) -> None:
    models = await _installed(api, services)
    dmo = models["dmo_bid_builder.py"]
    run = await start_run(api, dmo["id"], parameters={"date": "2025-10-06", "scenarios": 10})
    done = await wait_for(api, run["id"], timeout_s=60)
    assert done["status"] == "succeeded", await log_texts(api, run["id"])
    bids = await _artifact_rows(api, run["id"], "bids.csv")
    assert {int(b["block"]) for b in bids} == set(range(1, 97))
    assert done["results_count"] == len(bids)
    for block in range(1, 97):
        steps = [b for b in bids if int(b["block"]) == block]
        quantities = [float(b["quantity_mw"]) for b in steps]
        assert quantities == sorted(quantities) and all(0 <= q <= 500 for q in quantities)
    expected = await _artifact_rows(api, run["id"], "model_results.csv")
    snapshot = body(await api("GET", "market/snapshot", params={"date": "2025-10-06"}))["rows"]
    assert [r["model_result_mw"] for r in snapshot] == pytest.approx(
        [float(r["model_result_mw"]) for r in expected]
    )

    so = models["so_storage_arbitrage.py"]
    small = await start_run(api, so["id"], parameters={"power_mw": 25.0})
    large = await start_run(api, so["id"], parameters={"power_mw": 50.0, "mode": "lp"})
    small, large = [await wait_for(api, r["id"], timeout_s=60) for r in (small, large)]
    assert small["status"] == large["status"] == "succeeded"
    response = await api("GET", "runs/compare", params={"ids": f"{small['id']},{large['id']}"})
    assert response.code == 200, response.body
    diff = body(response)
    assert diff["ids"] == [small["id"], large["id"]]
    assert diff["script"]["same_script"] is True and diff["script"]["same_version"] is True
    assert diff["parameters"]["changed"] == {
        "power_mw": {"a": 25.0, "b": 50.0},
        "mode": {"a": "milp", "b": "lp"},
    }
    assert diff["parameters"]["equal"] is False and diff["config"]["equal"] is True
    assert diff["inputs"]["equal"] is True and diff["inputs"]["differing"] == []
    objective = diff["objective_value"]
    assert objective["a"] == small["objective_value"] and objective["b"] > objective["a"]
    assert objective["delta"] == pytest.approx(objective["b"] - objective["a"])
    assert diff["counts"]["results_count"] == {"a": 96, "b": 96, "delta": 0.0}
    blocks = diff["block_results"]
    assert len(blocks["blocks"]) == 96 and blocks["blocks_differing"] > 0
    first = blocks["blocks"][0]
    assert first["diff"] == pytest.approx(first["b"] - first["a"])

    mixed = body(await api("GET", "runs/compare", params={"ids": f"{run['id']},{small['id']}"}))
    assert mixed["script"]["same_script"] is False
    assert set(mixed["parameters"]["removed"]) >= {"p_min_mw"}
    assert mixed["block_results"]["blocks_differing"] > 0  # both wrote block results


BAD_COMPARE = [
    ({}, 400, "ids must be two run ids, e.g. ids=12,15"),
    ({"ids": "1"}, 400, "ids must be two run ids, e.g. ids=12,15; got '1'"),
    ({"ids": "1,2,3"}, 400, "got '1,2,3'"),
    ({"ids": "a,b"}, 400, "got 'a,b'"),
    ({"ids": "4,4"}, 400, "ids must name two different runs"),
    ({"ids": "9998,9999"}, 404, "run 9998 does not exist"),
]


@pytest.mark.parametrize(("params", "status", "message"), BAD_COMPARE)
async def test_compare_refuses_bad_ids(
    api: Fetch, params: dict[str, str], status: int, message: str
) -> None:
    assert_error(await api("GET", "runs/compare", params=params), status, None, message)
