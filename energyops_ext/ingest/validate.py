"""Row validation (DATA.md): each failure is an error with row number, column, value and rule.

Errors reject their row: ``errors`` lists exactly the rows that are not stored. Warnings are
reported and the row is kept; ``incomplete_day`` is one (it concerns rows that are not there),
and a strict upload still refuses the file for it (``STRICT_WARNINGS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from ..errors import Invalid
from .parse import BLOCKS_PER_DAY
from .schemas import MW_BOUNDS, PRICE_BOUNDS, DatasetKind

UPPER_CASE_KEYS = ("market", "market_type")
CEILINGS = ((date(2023, 4, 1), 10_000.0), (date(2022, 4, 1), 12_000.0))
OLD_CEILING = 20_000.0
STRICT_WARNINGS = frozenset({"incomplete_day"})


def price_ceiling(day: date) -> float:
    """The exchange price ceiling in force on ``day`` (Rs/MWh)."""
    for since, ceiling in CEILINGS:
        if day >= since:
            return ceiling
    return OLD_CEILING


@dataclass
class Validation:
    frame: pd.DataFrame  # the rows to store: canonical columns only
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    rows_rejected: int = 0

    @property
    def strict_failures(self) -> list[dict[str, Any]]:
        """What makes a strict upload refuse the file: every error, and incomplete days."""
        return self.errors + [w for w in self.warnings if w["rule"] in STRICT_WARNINGS]


def complete_keys(
    frame: pd.DataFrame, kind: DatasetKind, mapping: dict[str, str], defaults: dict[str, str]
) -> list[str]:
    """Fill key and other columns the file lacks: from request values, then fallbacks
    (a snapshot's ``plant`` from its plant name), then empty for optional keys. Returns notes."""
    notes: list[str] = []
    for name, value in defaults.items():
        col = kind.column(name)
        if name not in frame:
            frame[name] = float(value) if col.numeric else value
            notes.append(f"{name} = {value!r} for every row (from the request)")
        else:
            frame[name] = frame[name].fillna(float(value) if col.numeric else value)
    for key in kind.extra_keys:
        if key in frame:
            continue
        source = kind.fallbacks.get(key)
        if source and source in frame:
            frame[key] = frame[source]
            notes.append(f"{key} taken from {mapping.get(source, source)}")
        elif key in kind.default_empty:
            frame[key] = "system" if key == "area" else ""
        else:
            aliases = ", ".join(kind.column(key).aliases[1:4])
            example = "DAM" if key == "market" else "..."
            raise Invalid(
                f"the file has no {key} column (e.g. {aliases}); "
                f"send {key} as a form field, e.g. {key}={example}",
                code="missing_column",
                details={"column": key},
            )
    for key in kind.default_empty:
        frame[key] = frame[key].fillna("system" if key == "area" else "")
    for key in UPPER_CASE_KEYS:
        if key in frame:  # once per distinct value: a year holds 35,136 copies of "DAM"
            cells = frame[key]
            frame[key] = cells.map({v: str(v).upper() for v in cells.dropna().unique()})
    return notes


class _Collector:
    def __init__(self, frame: pd.DataFrame, mapping: dict[str, str]) -> None:
        self.frame = frame
        self.mapping = mapping
        self.rejected = np.zeros(len(frame), dtype=bool)
        self.errors: dict[tuple[int, str, str], dict[str, Any]] = {}
        self.warnings: dict[tuple[int, str, str], dict[str, Any]] = {}

    def add(
        self,
        mask: Any,
        column: str,
        rule: str,
        message: str,
        *,
        reject: bool = True,
        warning: bool = False,
        values: pd.Series | None = None,
    ) -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        if reject and not warning:
            self.rejected |= mask
        target = self.warnings if warning else self.errors
        raw = values if values is not None else self._raw(column)
        rows = self.frame["_row"].to_numpy()[mask]
        cells = raw.to_numpy()[mask] if raw is not None else [None] * len(rows)
        header = self.mapping.get(column, column)
        for row, value in zip(rows.tolist(), cells, strict=True):
            target.setdefault(
                (int(row), column, rule),
                {
                    "row": int(row),
                    "column": header,
                    "value": _show(value),
                    "rule": rule,
                    "message": message,
                },
            )

    def _raw(self, column: str) -> pd.Series | None:
        for name in (f"raw:{column}", column):
            if name in self.frame:
                return self.frame[name]
        if column in ("date", "block"):
            return self.frame.get("raw:timestamp")
        return None


def _show(value: Any) -> str | None:
    """A cell as the report shows it; a NUL (which no stored report can hold) as ``\\u0000``."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if value is pd.NaT:
        return None
    return str(value).replace("\x00", "\\u0000")


def validate(frame: pd.DataFrame, kind: DatasetKind, mapping: dict[str, str]) -> Validation:
    frame = frame.reset_index(drop=True)
    c = _Collector(frame, mapping)
    _check_time(c, frame)
    _check_values(c, frame, kind)
    _check_text(c, frame, kind)
    for key in kind.required_keys:
        c.add(
            frame[key].isna() | (frame[key] == ""),
            key,
            "missing_key",
            f"{key} is empty; it is part of the key {', '.join(kind.key)}",
        )
    _check_duplicates(c, frame, kind)
    _check_days(c, frame)
    _warn_prices(c, frame, kind)
    if kind.name == "exchange-prices":
        _warn_volumes(c, frame)
    keep = frame.loc[
        ~c.rejected, ["date", "block", *(col.name for col in kind.columns if col.name in frame)]
    ]
    keep = keep.astype({"block": "int64"})
    for col in kind.columns:
        if col.name not in keep:
            keep[col.name] = np.nan if col.numeric else None
    errors = sorted(c.errors.values(), key=lambda e: (e["row"], e["column"]))
    warnings = sorted(c.warnings.values(), key=lambda e: (e["row"], e["column"]))
    return Validation(keep, errors, warnings, int(c.rejected.sum()))


def _check_time(c: _Collector, frame: pd.DataFrame) -> None:
    raw_date = c._raw("date")
    missing = raw_date.isna().to_numpy() if raw_date is not None else np.ones(len(frame), bool)
    bad = frame["date"].isna().to_numpy()
    c.add(bad & missing, "date", "missing_date", "the row has no date")
    c.add(
        bad & ~missing,
        "date",
        "invalid_date",
        "not a date: expected DD-MM-YYYY, DD/MM/YYYY, YYYY-MM-DD, an Excel date or a timestamp "
        "(day first: 05-04-2024 is 5 April)",
    )
    block = frame["block"]
    c.add(
        block.isna(),
        "block",
        "invalid_block",
        "not a time block: expected 1-96, a range like 00:00-00:15, a start time on a "
        "15-minute boundary or a timestamp",
    )
    c.add(
        block.notna() & ((block < 1) | (block > BLOCKS_PER_DAY)),
        "block",
        "block_out_of_range",
        "a block must be between 1 and 96",
    )


def _check_values(c: _Collector, frame: pd.DataFrame, kind: DatasetKind) -> None:
    present = [col for col in kind.value_columns if col.name in frame]
    for col in present:
        if f"bad:{col.name}" in frame:
            c.add(frame[f"bad:{col.name}"].fillna(False), col.name, "not_a_number", "not a number")
        values = frame[col.name]
        if col.type == "mw":
            low, high = MW_BOUNDS
            c.add(
                (values < low) | (values > high),
                col.name,
                "mw_out_of_range",
                f"MW must be between {low:,.0f} and {high:,.0f}",
            )
        elif col.type == "price":
            low, high = PRICE_BOUNDS
            c.add(
                (values < low) | (values > high),
                col.name,
                "price_out_of_range",
                f"a price must be between {low:,.0f} and {high:,.0f} Rs/MWh",
            )
    if present:
        empty = frame[[col.name for col in present]].isna().all(axis=1)
        bad_cells = np.zeros(len(frame), dtype=bool)
        for col in present:
            if f"bad:{col.name}" in frame:
                bad_cells |= frame[f"bad:{col.name}"].fillna(False).to_numpy(dtype=bool)
        c.add(
            empty.to_numpy() & ~bad_cells,
            present[0].name,
            "no_values",
            "the row has no value in any of: " + ", ".join(col.name for col in present),
        )


def _check_text(c: _Collector, frame: pd.DataFrame, kind: DatasetKind) -> None:
    """Text with a NUL: PostgreSQL text cannot hold one (SQLite would keep it silently). Each
    distinct value is looked at once."""
    for col in kind.text_columns:
        if col.name not in frame:
            continue
        codes, distinct = pd.factorize(frame[col.name].to_numpy(dtype=object))
        has_nul = np.array(["\x00" in str(v) for v in distinct] + [False], dtype=bool)
        c.add(has_nul[codes], col.name, "nul_in_text", "the text holds a NUL character")


def _check_duplicates(c: _Collector, frame: pd.DataFrame, kind: DatasetKind) -> None:
    ok = ~c.rejected
    keyed = frame.loc[ok, list(kind.key)]
    dup = np.zeros(len(frame), dtype=bool)
    dup[np.flatnonzero(ok)] = keyed.duplicated(keep="first").to_numpy()
    c.add(
        dup, "block", "repeated_block", f"the same {', '.join(kind.key)} appears on an earlier row"
    )


def _check_days(c: _Collector, frame: pd.DataFrame) -> None:
    ok = ~c.rejected
    if not ok.any():
        return
    good = frame.loc[ok, ["date", "block", "_row"]]
    per_day = _blocks_per_day(good)
    for stamp, info in per_day[per_day["blocks"] != BLOCKS_PER_DAY].iterrows():
        day = pd.Timestamp(stamp)  # type: ignore[arg-type]
        have = set(good.loc[good["date"] == day, "block"].astype(int))
        missing = [b for b in range(1, BLOCKS_PER_DAY + 1) if b not in have]
        shown = _ranges(missing)
        key = (int(info["row"]), "block", f"incomplete_day:{day.date()}")
        c.warnings.setdefault(
            key,
            {
                "row": int(info["row"]),
                "column": c.mapping.get("block", "block"),
                "value": f"{int(info['blocks'])} blocks",
                "rule": "incomplete_day",
                "message": f"{day.date().isoformat()} has {int(info['blocks'])} of 96 blocks; "
                f"missing {shown}",
            },
        )


def _blocks_per_day(good: pd.DataFrame) -> pd.DataFrame:
    """Distinct blocks and first row per date, with numpy (pandas' grouped nunique was the
    slowest step of validating a year)."""
    days = good["date"].to_numpy(dtype="datetime64[D]").astype(np.int64)
    keys = np.unique(days * (BLOCKS_PER_DAY + 1) + good["block"].to_numpy(dtype=np.int64))
    dates, blocks = np.unique(keys // (BLOCKS_PER_DAY + 1), return_counts=True)
    order = np.argsort(days, kind="stable")
    starts = np.searchsorted(days[order], dates)
    first_rows = np.minimum.reduceat(good["_row"].to_numpy()[order], starts)
    index = pd.DatetimeIndex(dates.astype("datetime64[D]").astype("datetime64[ns]"), name="date")
    return pd.DataFrame({"blocks": blocks, "row": first_rows}, index=index)


def _ranges(blocks: list[int]) -> str:
    parts: list[str] = []
    start = prev = None
    for b in [*blocks, None]:
        if b is not None and prev is not None and b == prev + 1:
            prev = b
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = b
    return ", ".join(parts[:10]) + (" ..." if len(parts) > 10 else "")


def _warn_prices(c: _Collector, frame: pd.DataFrame, kind: DatasetKind) -> None:
    days = frame["date"]
    ceiling = np.select(
        [days >= pd.Timestamp(CEILINGS[0][0]), days >= pd.Timestamp(CEILINGS[1][0])],
        [CEILINGS[0][1], CEILINGS[1][1]],
        OLD_CEILING,
    )
    for col in kind.value_columns:
        if col.type == "price" and col.name in frame:
            over = (frame[col.name] > ceiling) & (frame[col.name] <= PRICE_BOUNDS[1])
            c.add(
                over,
                col.name,
                "above_ceiling",
                "above the exchange price ceiling in force on that date",
                warning=True,
            )


def _warn_volumes(c: _Collector, frame: pd.DataFrame) -> None:
    if {"fsv_mw", "mcv_mw"} <= set(frame):
        c.add(
            frame["fsv_mw"] > frame["mcv_mw"],
            "fsv_mw",
            "fsv_above_mcv",
            "final scheduled volume is above the clearing volume",
            warning=True,
        )
    if "mcv_mw" in frame:
        bids = [b for b in ("purchase_bid_mw", "sell_bid_mw") if b in frame]
        if bids:
            least = frame[bids].min(axis=1)
            c.add(
                frame["mcv_mw"] > least,
                "mcv_mw",
                "mcv_above_bids",
                "clearing volume is above the smaller of purchase and sell bids",
                warning=True,
            )
