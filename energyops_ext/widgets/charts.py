"""Market chart (bqplot) and stat cards, updated in place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import pandas as pd

from .buffer import esc, format_number

BLOCKS = 96
PRICE_SERIES = (("dam_price", "DAM"), ("rtm_price", "RTM"), ("gdam_price", "GDAM"))
MW_SERIES = (("scheduled_mw", "Scheduled MW"), ("model_result_mw", "Model result MW"))
PRICE_COLOURS = ["#2563eb", "#dc2626", "#16a34a"]
MW_COLOURS = ["#94a3b8", "#f59e0b"]

STAT_CARDS = (
    ("avg_dam_price", "Avg DAM", "Rs/MWh", 2),
    ("avg_rtm_price", "Avg RTM", "Rs/MWh", 2),
    ("avg_gdam_price", "Avg GDAM", "Rs/MWh", 2),
    ("total_scheduled_mw", "Scheduled", "MW", 2),
    ("total_model_result_mw", "Model result", "MW", 2),
    ("total_purchase_bid_mw", "Purchase bids", "MW", 2),
    ("total_sell_bid_mw", "Sell bids", "MW", 2),
    ("count", "Rows", "", 0),
)


def block_series(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per-block arrays (length 96, NaN where a block is missing) from snapshot rows.

    Several rows for one block (plants, contracts) average their prices and add their MW."""
    out = {column: np.full(BLOCKS, np.nan) for column, _ in (*PRICE_SERIES, *MW_SERIES)}
    if frame.empty or "block" not in frame:
        return out
    blocks = pd.to_numeric(frame["block"], errors="coerce")
    frame = frame.assign(block=blocks).dropna(subset=["block"])
    frame = frame[(frame["block"] >= 1) & (frame["block"] <= BLOCKS)]
    grouped = frame.groupby(frame["block"].astype(int))
    for column, _label in PRICE_SERIES:
        if column in frame:
            values = grouped[column].apply(lambda s: pd.to_numeric(s, errors="coerce").mean())
            out[column][values.index.to_numpy() - 1] = values.to_numpy(dtype=float)
    for column, _label in MW_SERIES:
        if column in frame:
            values = grouped[column].apply(
                lambda s: pd.to_numeric(s, errors="coerce").sum(min_count=1)
            )
            out[column][values.index.to_numpy() - 1] = values.to_numpy(dtype=float)
    return out


class MarketChart:
    """DAM / RTM / GDAM prices as lines (left axis, Rs/MWh) and scheduled / model-result MW as
    bars (right axis) over the 96 blocks of a day. ``update`` changes the marks in place."""

    def __init__(self, title: str = "Market") -> None:
        self.blocks = np.arange(1, BLOCKS + 1, dtype=float)
        x = bq.LinearScale(min=0.5, max=BLOCKS + 0.5)
        price = bq.LinearScale(min=0.0)
        mw = bq.LinearScale(min=0.0)
        empty = np.full((len(PRICE_SERIES), BLOCKS), np.nan)
        self.lines = bq.Lines(
            x=self.blocks,
            y=empty,
            scales={"x": x, "y": price},
            colors=PRICE_COLOURS,
            labels=[label for _c, label in PRICE_SERIES],
            display_legend=True,
            stroke_width=2,
        )
        self.bars = bq.Bars(
            x=self.blocks,
            y=np.full((len(MW_SERIES), BLOCKS), np.nan),
            scales={"x": x, "y": mw},
            type="grouped",
            colors=MW_COLOURS,
            opacities=[0.45, 0.45],
            labels=[label for _c, label in MW_SERIES],
            display_legend=True,
            padding=0.1,
        )
        axes = [
            bq.Axis(scale=x, label="Time block", tick_format="d", num_ticks=12),
            bq.Axis(scale=price, orientation="vertical", label="Rs/MWh", side="left"),
            bq.Axis(scale=mw, orientation="vertical", label="MW", side="right", grid_lines="none"),
        ]
        self.figure = bq.Figure(
            marks=[self.bars, self.lines],
            axes=axes,
            title=title,
            legend_location="top-left",
            fig_margin={"top": 50, "bottom": 50, "left": 70, "right": 70},
            layout=widgets.Layout(width="100%", height="420px"),
        )
        self.figure.add_class("eo-market-chart")
        self.updates = 0

    def update(self, frame: pd.DataFrame, title: str | None = None) -> None:
        series = block_series(frame)
        prices = np.vstack([series[c] for c, _ in PRICE_SERIES])
        mws = np.vstack([series[c] for c, _ in MW_SERIES])
        with self.lines.hold_sync(), self.bars.hold_sync():
            self.lines.y = prices
            self.bars.y = np.nan_to_num(mws, nan=0.0)
        if title is not None:
            self.figure.title = title
        self.updates += 1


def stat_cards_html(stats: Mapping[str, Any]) -> str:
    cards = []
    for key, label, unit, decimals in STAT_CARDS:
        value = format_number(stats.get(key), "", decimals)
        cards.append(
            f'<div class="eo-card" data-stat="{esc(key)}">'
            f'<div class="eo-card-label">{esc(label)}</div>'
            f'<div class="eo-card-value">{esc(value)}</div>'
            f'<div class="eo-card-unit">{esc(unit)}</div></div>'
        )
    updated = stats.get("last_updated")
    foot = f'<div class="eo-card-foot">last updated {esc(updated or "—")}</div>'
    return f'<div class="eo-cards">{"".join(cards)}</div>{foot}'


class StatCards:
    """The /market/stats figures as cards."""

    def __init__(self) -> None:
        self.widget = widgets.HTML(value=stat_cards_html({}))
        self.widget.add_class("eo-stat-cards")

    def update(self, stats: Mapping[str, Any]) -> None:
        self.widget.value = stat_cards_html(stats)
