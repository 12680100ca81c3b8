"""Market chart (bqplot) and stat cards, updated in place.

bqplot 0.13's grouped ``Bars`` compute their y domain from a field their data does not have
(``yRef``, see BarsModel.update_domains), so a y scale left to follow the data collapses to
[0, 0]: every bar is 0 px high and the axis shows one tick, "0", drawn halfway up. The chart
therefore sets both ends of its value scales itself, from the data, on every update."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import pandas as pd

from .buffer import esc, format_number
from .format import (
    BLOCKS_PER_DAY,
    HOURS_PER_BLOCK,
    block_span,
    blocks_text,
    format_instant,
    hour_ticks,
)

BLOCKS = BLOCKS_PER_DAY
MARKET_CLOCK = "IST"  # blocks are the exchanges' 15-minute periods of an IST day
PRICE_SERIES = (("dam_price", "DAM"), ("rtm_price", "RTM"), ("gdam_price", "GDAM"))
MW_SERIES = (("scheduled_mw", "Scheduled MW"), ("model_result_mw", "Model result MW"))
VALUE_COLUMNS = (
    *(c for c, _ in (*PRICE_SERIES, *MW_SERIES)),
    "purchase_bid_mw",
    "sell_bid_mw",
)
PRICE_COLOURS = ["#2563eb", "#dc2626", "#16a34a"]
MW_COLOURS = ["#94a3b8", "#f59e0b"]
BAR_OPACITY = 0.45

CHART_CSS = (
    "<style>.eo-chart-legend{display:flex;gap:16px;font-size:12px;padding:2px 70px}"
    ".eo-legend-item{display:inline-flex;align-items:center;gap:4px}"
    ".eo-legend-line{display:inline-block;width:18px}"
    ".eo-legend-bar{display:inline-block;width:10px;height:10px}"
    ".eo-chart-note{font-size:13px;font-weight:600;color:#b45309;padding:0 70px}</style>"
)

PRICE_CARDS = (
    ("avg_dam_price", "Avg DAM"),
    ("avg_rtm_price", "Avg RTM"),
    ("avg_gdam_price", "Avg GDAM"),
)
# (energy key, average key, label): MW held for a block is energy; the day's MW is an average.
ENERGY_CARDS = (
    ("energy_scheduled_mwh", "avg_scheduled_mw", "Scheduled"),
    ("energy_model_result_mwh", "avg_model_result_mw", "Model result"),
    ("energy_purchase_bid_mwh", "avg_purchase_bid_mw", "Purchase bids"),
    ("energy_sell_bid_mwh", "avg_sell_bid_mw", "Sell bids"),
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


def blocks_without_data(frame: pd.DataFrame) -> list[int]:
    """Blocks 1-96 that no row of ``frame`` gives any value for (the snapshot has a row of
    nulls for each of them; the export has no row)."""
    present: set[int] = set()
    if not frame.empty and "block" in frame:
        columns = [c for c in VALUE_COLUMNS if c in frame]
        valued = frame[columns].apply(pd.to_numeric, errors="coerce").notna().any(axis=1)
        present = {int(b) for b in pd.to_numeric(frame.loc[valued, "block"], errors="coerce")}
    return [b for b in range(1, BLOCKS + 1) if b not in present]


NICE_STEPS = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0)


def nice_ceiling(value: float) -> float:
    """The smallest round number (``NICE_STEPS`` times a power of ten) that is at least
    ``value``, 1 for nothing to show, so an axis ends on a round number."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in NICE_STEPS:
        if step * power >= value * (1 - 1e-12):
            return step * power
    return 10.0 * power  # pragma: no cover - the loop always returns


def scale_bounds(values: np.ndarray) -> tuple[float, float]:
    """(min, max) of a value axis: from 0 (or below, for negative data) to a round number
    5% above the largest value, so price and MW axes share the zero line at the bottom."""
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 0.0
    bottom = float(finite.min()) if finite.size else 0.0
    low = -nice_ceiling(-bottom * 1.05) if bottom < 0 else 0.0
    return low, nice_ceiling(top * 1.05)


def legend_html() -> str:
    """The series and their colours, as a row above the plot (bqplot's legend sits on it)."""
    items = [
        f'<span class="eo-legend-item"><span class="eo-legend-line" '
        f'style="border-top:2px solid {colour}"></span>{esc(label)}</span>'
        for (_c, label), colour in zip(PRICE_SERIES, PRICE_COLOURS, strict=True)
    ]
    items += [
        f'<span class="eo-legend-item"><span class="eo-legend-bar" '
        f'style="background:{colour};opacity:{BAR_OPACITY}"></span>{esc(label)}</span>'
        for (_c, label), colour in zip(MW_SERIES, MW_COLOURS, strict=True)
    ]
    return f'{CHART_CSS}<div class="eo-chart-legend">{"".join(items)}</div>'


def hover_html(block: int, series: Mapping[str, np.ndarray]) -> str:
    """What hovering a block shows: its number, its time of day and the charted values."""
    index = block - 1
    lines = [f"<b>block {block}</b> · {esc(block_span(block))} {MARKET_CLOCK}"]
    for column, label in PRICE_SERIES:
        value = format_number(series[column][index], "Rs/MWh", 2)
        lines.append(f"{esc(label)} {esc(value)}")
    for column, label in MW_SERIES:
        value = format_number(series[column][index], "", 1)
        lines.append(f"{esc(label.removesuffix(' MW'))} {esc(value)} MW")
    return f'<div class="eo-chart-hover-text">{"<br>".join(lines)}</div>'


def chart_note(frame: pd.DataFrame) -> str:
    """A sentence for a day with no data, or with blocks that have none; empty otherwise."""
    missing = blocks_without_data(frame)
    if not missing:
        return ""
    day = ""
    if not frame.empty and "date" in frame:
        day = str(frame["date"].iloc[0])[:10]
    if len(missing) == BLOCKS:
        return f"No market data for {day}." if day else "No market data for this day."
    return f"No data for {blocks_text(missing)}: the chart has a gap and the export no row."


class MarketChart:
    """DAM / RTM / GDAM prices as lines (left axis, Rs/MWh) and scheduled / model-result MW as
    bars (right axis) over the time of day; hovering a block shows its time and values.
    ``widget`` is the whole (legend, note, figure); ``update`` changes it in place."""

    def __init__(self, title: str = "Market") -> None:
        # x is hours since midnight; a block is drawn over the middle of its quarter hour
        self.hours = (np.arange(BLOCKS, dtype=float) + 0.5) * HOURS_PER_BLOCK
        x = bq.LinearScale(min=0.0, max=24.0)
        self.price_scale = bq.LinearScale(min=0.0, max=1.0)
        self.mw_scale = bq.LinearScale(min=0.0, max=1.0)
        self.series = block_series(pd.DataFrame())
        self.lines = bq.Lines(
            x=self.hours,
            y=np.full((len(PRICE_SERIES), BLOCKS), np.nan),
            scales={"x": x, "y": self.price_scale},
            colors=PRICE_COLOURS,
            labels=[label for _c, label in PRICE_SERIES],
            stroke_width=2,
        )
        self.bars = bq.Bars(
            x=self.hours,
            y=np.zeros((len(MW_SERIES), BLOCKS)),
            scales={"x": x, "y": self.mw_scale},
            type="grouped",
            colors=MW_COLOURS,
            opacities=[BAR_OPACITY] * len(MW_SERIES),
            labels=[label for _c, label in MW_SERIES],
            padding=0.1,
        )
        self.hover = widgets.HTML()
        self.hover.add_class("eo-chart-hover")
        self.hover_band = self._hover_band(x)
        self.figure = bq.Figure(
            marks=[self.bars, self.lines, self.hover_band],
            axes=self._axes(x),
            title=title,
            fig_margin={"top": 40, "bottom": 50, "left": 80, "right": 75},
            layout=widgets.Layout(width="100%", height="420px"),
        )
        self.figure.add_class("eo-market-chart")
        self.note = widgets.HTML()
        self.note.add_class("eo-chart-note")
        self.widget = widgets.VBox([widgets.HTML(legend_html()), self.note, self.figure])
        self.updates = 0

    def _hover_band(self, x: bq.LinearScale) -> bq.Bars:
        """One invisible full-height bar per block on top of the marks: hovering anywhere over
        a block (with or without MW) tells the kernel which block, which fills the tooltip."""
        band = bq.Bars(
            x=self.hours,
            y=np.ones(BLOCKS),
            scales={"x": x, "y": bq.LinearScale(min=0.0, max=1.0)},
            colors=["#ffffff"],
            opacities=[0.0],
            padding=0.0,
            tooltip=self.hover,
            interactions={"hover": "tooltip"},
        )
        band.on_hover(self._hovered)
        return band

    def _axes(self, x: bq.LinearScale) -> list[bq.Axis]:
        ticks = hour_ticks(3)
        return [
            bq.Axis(
                scale=x,
                label=f"Time of day ({MARKET_CLOCK})",
                tick_values=np.array([float(v) for v in ticks]),
                tick_labels=ticks,
            ),
            bq.Axis(
                scale=self.price_scale,
                orientation="vertical",
                label="Rs/MWh",
                side="left",
                tick_format=",.0f",
                label_offset="60px",
            ),
            bq.Axis(
                scale=self.mw_scale,
                orientation="vertical",
                label="MW",
                side="right",
                grid_lines="none",
                tick_format=",.0f",
                label_offset="50px",
            ),
        ]

    def _hovered(self, _mark: Any, content: Mapping[str, Any]) -> None:
        data = content.get("data") or {}
        index = data.get("index") if isinstance(data, Mapping) else None
        if isinstance(index, int) and 0 <= index < BLOCKS:
            self.hover.value = hover_html(index + 1, self.series)

    def update(self, frame: pd.DataFrame, title: str | None = None) -> None:
        self.series = block_series(frame)
        prices = np.vstack([self.series[c] for c, _ in PRICE_SERIES])
        mws = np.vstack([self.series[c] for c, _ in MW_SERIES])
        price_low, price_high = scale_bounds(prices)
        mw_low, mw_high = scale_bounds(mws)
        with self.lines.hold_sync(), self.bars.hold_sync():
            self.price_scale.min, self.price_scale.max = price_low, price_high
            self.mw_scale.min, self.mw_scale.max = mw_low, mw_high
            self.lines.y = prices
            self.bars.y = np.nan_to_num(mws, nan=0.0)
        self.note.value = esc(chart_note(frame))
        if title is not None:
            self.figure.title = title
        self.updates += 1


def stat_cards_html(stats: Mapping[str, Any], zone: ZoneInfo | None = None) -> str:
    """Average prices; per MW figure the day's energy in MWh with its average MW; the row
    count; and when the data last changed, in the display zone to the minute."""
    cards = [
        _card(key, label, format_number(stats.get(key), "", 2), "Rs/MWh")
        for key, label in PRICE_CARDS
    ]
    for energy, average, label in ENERGY_CARDS:
        value = format_number(stats.get(energy), "", 1)
        mean = format_number(stats.get(average), "MW", 1)
        cards.append(_card(energy, label, value, f"MWh · avg {mean}"))
    cards.append(_card("count", "Rows", format_number(stats.get("count"), "", 0), ""))
    updated = format_instant(stats.get("last_updated"), zone)
    foot = f'<div class="eo-card-foot">last updated {esc(updated)}</div>'
    return f'<div class="eo-cards">{"".join(cards)}</div>{foot}'


def _card(key: str, label: str, value: str, unit: str) -> str:
    return (
        f'<div class="eo-card" data-stat="{esc(key)}">'
        f'<div class="eo-card-label">{esc(label)}</div>'
        f'<div class="eo-card-value">{esc(value)}</div>'
        f'<div class="eo-card-unit">{esc(unit)}</div></div>'
    )


class StatCards:
    """The /market/stats figures as cards."""

    def __init__(self) -> None:
        self.widget = widgets.HTML(value=stat_cards_html({}))
        self.widget.add_class("eo-stat-cards")

    def update(self, stats: Mapping[str, Any]) -> None:
        self.widget.value = stat_cards_html(stats)
