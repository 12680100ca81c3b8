"""The values rules look at, aggregated by the database from ``market_snapshot``.

A block's figures are those of ``/market/snapshot``: prices averaged over the plants and
contracts of the block, MW summed. Series per block: the three prices, ``dam_rtm_spread``
(DAM - RTM) and ``schedule_deviation`` (|scheduled - model result|, in MW or in % of the
model result). Rules that look at the same day and blocks share one query, which returns the
max, min and average over the blocks of every series they need; the blocks behind a
transition are read only when there is one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from ..db.models import MarketSnapshot as M

# (series, unit) a rule reads; unit matters only for schedule_deviation
SeriesKey = tuple[str, str]


@dataclass(frozen=True)
class Window:
    """The day and the blocks a rule looks at."""

    day: date
    first: int = 1
    last: int = 96


@dataclass
class Figures:
    """What the database found for one series over one window."""

    maximum: float | None = None
    minimum: float | None = None
    average: float | None = None
    blocks: int = 0


@dataclass
class WindowFigures:
    window: Window
    series: dict[SeriesKey, Figures] = field(default_factory=dict)


def series_key(series: str, unit: str) -> SeriesKey:
    return (series, unit if series == "schedule_deviation" else "mw")


def _per_block(window: Window) -> Any:
    return (
        select(
            M.block.label("block"),
            func.avg(M.dam_price).label("dam"),
            func.avg(M.rtm_price).label("rtm"),
            func.avg(M.gdam_price).label("gdam"),
            func.sum(M.scheduled_mw).label("scheduled"),
            func.sum(M.model_result_mw).label("model"),
        )
        .where(M.date == window.day, M.block.between(window.first, window.last))
        .group_by(M.block)
        .subquery("b")
    )


def expression(blocks: Any, key: SeriesKey) -> ColumnElement[Any]:
    """The per-block value of ``key`` over the per-block subquery ``blocks``."""
    series, unit = key
    c = blocks.c
    if series == "dam_price":
        return c.dam  # type: ignore[no-any-return]
    if series == "rtm_price":
        return c.rtm  # type: ignore[no-any-return]
    if series == "gdam_price":
        return c.gdam  # type: ignore[no-any-return]
    if series == "dam_rtm_spread":
        return c.dam - c.rtm  # type: ignore[no-any-return]
    deviation: ColumnElement[Any] = func.abs(c.scheduled - c.model)
    if unit == "pct":
        return deviation * 100.0 / func.nullif(func.abs(c.model), 0)
    return deviation


def latest_day(session: Session) -> date | None:
    day: date | None = session.scalar(select(func.max(M.date)))
    return day


def figures(session: Session, window: Window, keys: Iterable[SeriesKey]) -> WindowFigures:
    """Max, min, average and block count of every series in ``keys`` over ``window``, in
    one query."""
    wanted = list(dict.fromkeys(keys))
    blocks = _per_block(window)
    columns = []
    for key in wanted:
        value = expression(blocks, key)
        columns += [func.max(value), func.min(value), func.avg(value), func.count(value)]
    row = session.execute(select(*columns)).one()
    found = WindowFigures(window)
    for index, key in enumerate(wanted):
        hi, lo, avg, count = row[4 * index : 4 * index + 4]
        found.series[key] = Figures(_float(hi), _float(lo), _float(avg), int(count or 0))
    return found


def block_values(
    session: Session, window: Window, keys: Iterable[SeriesKey]
) -> dict[SeriesKey, list[tuple[int, float]]]:
    """Per-block values of ``keys`` over ``window`` (the detail of a transition)."""
    wanted = list(dict.fromkeys(keys))
    blocks = _per_block(window)
    rows = session.execute(
        select(blocks.c.block, *(expression(blocks, k) for k in wanted)).order_by(blocks.c.block)
    ).all()
    values: dict[SeriesKey, list[tuple[int, float]]] = {k: [] for k in wanted}
    for row in rows:
        for index, key in enumerate(wanted, start=1):
            if row[index] is not None:
                values[key].append((int(row[0]), float(row[index])))
    return values


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
