"""Which blocks of a date range have no market-snapshot row: what an export tells its reader.

The work is bounded by the data, not by the calendar: a run of days with no row at all is one
entry (``2024-04-15..2024-04-20:1-96``), so ``from=0106-07-27`` costs no more than the days
that hold data. Only days with some but not all 96 blocks are looked at block by block.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db.models import MarketSnapshot as M
from .parse import block_label

BLOCKS_PER_DAY = 96
ALL_BLOCKS = tuple(range(1, BLOCKS_PER_DAY + 1))
MISSING_HEADER_CHARS = 4000
ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class MissingRun:
    """``blocks`` are missing on every day from ``first`` to ``last``."""

    first: date
    last: date
    blocks: tuple[int, ...]

    @property
    def count(self) -> int:
        return ((self.last - self.first).days + 1) * len(self.blocks)

    @property
    def days(self) -> str:
        start = self.first.isoformat()
        return start if self.first == self.last else f"{start}..{self.last.isoformat()}"

    def label(self) -> str:
        """``2024-04-12:37,50-52``."""
        return f"{self.days}:{block_ranges(self.blocks)}"


def _runs(blocks: tuple[int, ...] | list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for block in sorted(blocks):
        if runs and block == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], block)
        else:
            runs.append((block, block))
    return runs


def block_ranges(blocks: tuple[int, ...] | list[int]) -> str:
    """``[3, 4, 5, 9]`` → ``3-5,9``."""
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in _runs(blocks))


def block_times(blocks: tuple[int, ...] | list[int]) -> str:
    """``01:00-24:00`` for blocks 5 to 96; runs separated by commas."""
    return ", ".join(f"{block_label(a)[:5]}-{block_label(b)[6:]}" for a, b in _runs(blocks))


def _where(query: Any, first: date | None, last: date | None) -> Any:
    if first is not None:
        query = query.where(M.date >= first)
    if last is not None:
        query = query.where(M.date <= last)
    return query


def missing_blocks(session: Session, first: date | None, last: date | None) -> list[MissingRun]:
    """The blocks without any row from ``first`` to ``last``, in date order. A range open at
    one end stops at the first / last day with data; no data and an open end: nothing."""
    per_day = session.execute(
        _where(select(M.date, func.count(func.distinct(M.block))), first, last).group_by(M.date)
    ).all()
    counts: dict[date, int] = {day: int(n) for day, n in per_day}
    first = first or min(counts, default=None)
    last = last or max(counts, default=None)
    if first is None or last is None:
        return []
    partial = [day for day, n in counts.items() if n < BLOCKS_PER_DAY]
    present: dict[date, set[int]] = {day: set() for day in partial}
    if partial:
        rows = session.execute(select(M.date, M.block).where(M.date.in_(partial)).distinct())
        for day, block in rows:
            present[day].add(int(block))
    runs: list[MissingRun] = []
    expected = first
    for day in sorted(counts):
        if day > expected:  # whole days without a row
            runs.append(MissingRun(expected, day - ONE_DAY, ALL_BLOCKS))
        if day in present:
            gap = tuple(b for b in ALL_BLOCKS if b not in present[day])
            runs.append(MissingRun(day, day, gap))
        expected = day + ONE_DAY
    if last >= expected:
        runs.append(MissingRun(expected, last, ALL_BLOCKS))
    return runs


def missing_headers(runs: list[MissingRun]) -> dict[str, str]:
    """Response headers that tell an export's reader which blocks have no row:
    ``X-EnergyOps-Missing-Block-Count`` always, and ``X-EnergyOps-Missing-Blocks`` (entries
    separated by spaces, ``2024-04-12:37,50-52 2024-04-14..2024-04-15:1-96``) when any is
    missing; a list longer than ``MISSING_HEADER_CHARS`` ends with `` ...``."""
    headers = {"X-EnergyOps-Missing-Block-Count": str(sum(run.count for run in runs))}
    text = ""
    for run in runs:
        entry = run.label()
        if len(text) + len(entry) + 1 > MISSING_HEADER_CHARS:
            text += " ..."
            break
        text = f"{text} {entry}" if text else entry
    if text:
        headers["X-EnergyOps-Missing-Blocks"] = text
    return headers
