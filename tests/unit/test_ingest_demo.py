"""The demo generator's shape, and seeding an empty database (both databases)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from energyops_ext.db import Database
from energyops_ext.db.models import ExchangePrice, MarketSnapshot
from energyops_ext.ingest.demo import generate, seed_if_empty
from energyops_ext.ingest.market import DateRange, stats


def test_duck_curve_and_exchange_relations() -> None:
    data = generate(date(2024, 4, 1), 30)
    snap = data["market-snapshot"]
    by_block = snap.groupby("block")["dam_price"].mean()
    assert 2_500 <= by_block.loc[49] <= 3_500  # solar noon
    assert by_block.loc[77:84].max() > 8_000  # evening peak
    assert snap["dam_price"].max() == 10_000  # the ceiling since April 2023
    assert snap["gdam_price"].mean() < snap["dam_price"].mean()
    assert 0 < 30 * 96 - len(snap) < 30  # a few missing blocks
    weekday = snap.assign(day=snap["date"].dt.day_of_week).groupby("day")["dam_price"].mean()
    assert weekday.loc[6] < weekday.loc[2]  # Sundays are cheaper
    ex = data["exchange-prices"]
    for market, (low, high) in {
        "DAM": (3500, 10000),
        "RTM": (1300, 5500),
        "GDAM": (100, 1200),
    }.items():
        rows = ex[ex["market"] == market]
        assert len(rows) == 30 * 96
        assert rows["mcv_mw"].between(low, high).all()
    assert (ex["fsv_mw"] <= ex["mcv_mw"]).all()
    assert (ex["mcv_mw"] <= ex[["purchase_bid_mw", "sell_bid_mw"]].min(axis=1)).all()


def test_summer_is_dearer_than_monsoon() -> None:
    may = generate(date(2024, 5, 1), 14)["market-snapshot"]["dam_price"].mean()
    august = generate(date(2024, 8, 1), 14)["market-snapshot"]["dam_price"].mean()
    assert may > august * 1.15


def test_seed_if_empty(database: Database) -> None:
    message = seed_if_empty(database, days=3)
    assert message.startswith("seeded 3 days")
    count = database.read_sync(lambda s: s.scalar(select(func.count()).select_from(MarketSnapshot)))
    assert count is not None and 270 <= count <= 288
    assert (
        database.read_sync(lambda s: s.scalar(select(func.count()).select_from(ExchangePrice)))
        == 3 * 3 * 96
    )
    again = seed_if_empty(database, days=3)
    assert again.startswith("market data present")
    result = database.read_sync(lambda s: stats(s, DateRange(None, None)))
    assert result["count"] == count
    assert result["avg_dam_price"] == pytest.approx(
        database.read_sync(lambda s: s.scalar(select(func.avg(MarketSnapshot.dam_price)))),
        rel=1e-6,
    )
