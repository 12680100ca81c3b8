"""Realistic demo market data: the duck curve, weekly and seasonal swings, a few gaps.

DAM prices dip to ~2,500-3,500 Rs/MWh at solar noon and climb to the ceiling in the evening
peak; RTM follows DAM with more noise, GDAM sits a little below DAM. Exchange volumes follow
DATA.md (DAM MCV 3,500-10,000 MW, RTM 1,300-5,500, GDAM 100-1,200) with FSV ≤ MCV ≤ bids.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db import Database
from ..db.models import MarketSnapshot
from .schemas import KINDS
from .store import store_rows
from .validate import price_ceiling

IST = timedelta(hours=5, minutes=30)
MISSING_SHARE = 0.002
SEED_DAYS = 30

# hour of day → DAM price shape (Rs/MWh before seasonal and weekly factors)
_HOURLY_SHAPE = np.array(
    [
        4800,
        4500,
        4300,
        4200,
        4300,
        4900,
        6200,
        7200,
        6400,
        4600,
        3400,
        2900,
        2700,
        2800,
        3100,
        3900,
        5400,
        7600,
        9600,
        10500,
        9800,
        8200,
        6600,
        5400,
    ],
    dtype=float,
)
_SEASON = np.array([1.0, 0.98, 1.05, 1.15, 1.18, 1.1, 0.88, 0.85, 0.92, 1.05, 0.98, 1.02])
_WEEKDAY = np.array([1.02, 1.03, 1.03, 1.02, 1.0, 0.94, 0.86])  # Monday ... Sunday


def _blocks_frame(start: date, days: int) -> pd.DataFrame:
    dates = pd.date_range(start, periods=days, freq="D")
    frame = pd.DataFrame(
        {
            "date": np.repeat(dates.to_numpy(), 96),
            "block": np.tile(np.arange(1, 97), days),
        }
    )
    return frame


def generate(start: date, days: int, seed: int = 7) -> dict[str, pd.DataFrame]:
    """Rows of ``market-snapshot`` and ``exchange-prices`` (canonical columns)."""
    rng = np.random.default_rng(seed)
    frame = _blocks_frame(start, days)
    hour = (frame["block"].to_numpy() - 1) / 4.0
    shape = np.interp(hour, np.arange(25), np.append(_HOURLY_SHAPE, _HOURLY_SHAPE[0]))
    month = frame["date"].dt.month.to_numpy() - 1
    weekday = frame["date"].dt.day_of_week.to_numpy()
    daily = np.repeat(rng.normal(1.0, 0.06, days), 96)
    ceilings = np.repeat([price_ceiling(start + timedelta(days=i)) for i in range(days)], 96)
    dam = shape * _SEASON[month] * _WEEKDAY[weekday] * daily * rng.normal(1, 0.04, len(frame))
    dam = np.clip(dam, 1500, ceilings).round(2)
    rtm = np.clip(dam * rng.normal(1.0, 0.09, len(frame)), 0, ceilings).round(2)
    solar = np.exp(-(((hour - 12.5) / 3.0) ** 2))
    gdam = np.clip(dam * (0.97 - 0.05 * solar) * rng.normal(1, 0.03, len(frame)), 0, ceilings)
    scheduled = np.clip(420 + 180 * solar + rng.normal(0, 25, len(frame)), 0, None).round(2)
    snapshot = frame.assign(
        plant="",
        contract="",
        dam_price=dam,
        rtm_price=rtm,
        gdam_price=gdam.round(2),
        scheduled_mw=scheduled,
        model_result_mw=(scheduled * rng.normal(1.01, 0.02, len(frame))).round(2),
        purchase_bid_mw=(scheduled * rng.uniform(0.9, 1.1, len(frame))).round(2),
        sell_bid_mw=(scheduled * rng.uniform(1.0, 1.25, len(frame))).round(2),
        state="Maharashtra",
        region="Western",
        plant_name="Desk portfolio",
        contract_name="Exchange",
        model_id="demo",
    )
    keep = rng.random(len(frame)) >= MISSING_SHARE
    exchange = pd.concat(
        [
            _exchange(frame, market, price, solar, rng)
            for market, price in (("DAM", dam), ("RTM", rtm), ("GDAM", gdam.round(2)))
        ],
        ignore_index=True,
    )
    return {"market-snapshot": snapshot[keep].reset_index(drop=True), "exchange-prices": exchange}


def _exchange(
    frame: pd.DataFrame, market: str, price: np.ndarray, solar: np.ndarray, rng: np.random.Generator
) -> pd.DataFrame:
    low, high = {"DAM": (3500, 10000), "RTM": (1300, 5500), "GDAM": (100, 1200)}[market]
    span = high - low
    level = low + span * (0.35 + 0.45 * solar) * rng.uniform(0.85, 1.0, len(frame))
    mcv = np.clip(level, low, high)
    purchase = mcv * rng.uniform(1.05, 1.6, len(frame))
    sell = mcv * rng.uniform(1.05, 1.8, len(frame))
    fsv = mcv * rng.uniform(0.97, 1.0, len(frame))
    return frame.assign(
        market=market,
        area="system",
        purchase_bid_mw=purchase.round(2),
        sell_bid_mw=sell.round(2),
        mcv_mw=mcv.round(2),
        fsv_mw=fsv.round(2),
        mcp=price,
    )


def load(db: Database, start: date, days: int, seed: int = 7) -> dict[str, int]:
    """Generate and upsert ``days`` of demo data from ``start``; rows written per kind."""
    data = generate(start, days, seed)

    def write(session: Session) -> dict[str, int]:
        conn = session.connection()
        written = {}
        for kind, frame in data.items():
            result = store_rows(conn, KINDS[kind], frame, upload_id=None)
            written[kind] = result.inserted + result.updated
        return written

    return db.write_sync(write)


def today_ist() -> date:
    return (datetime.now(UTC) + IST).date()


def seed_if_empty(db: Database, days: int = SEED_DAYS) -> str:
    """Seed the last ``days`` days of demo market data when there is no market data yet."""
    present = db.read_sync(lambda s: s.scalar(select(func.count()).select_from(MarketSnapshot)))
    if present:
        return f"market data present ({present} snapshot rows); not seeding demo data"
    start = today_ist() - timedelta(days=days - 1)
    written = load(db, start, days)
    return f"seeded {days} days of demo market data from {start.isoformat()}: " + ", ".join(
        f"{n} {kind} rows" for kind, n in written.items()
    )
