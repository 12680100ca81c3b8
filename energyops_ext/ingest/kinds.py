"""Which dataset kind a file is: each kind's reading of the header, and a verdict on the kind
the upload declared.

Every kind reads a header row through its own alias table. The declared kind is refused (422)
when a wrong choice would store wrong data:

- it lacks what the kind is for (``NEEDS``: a market snapshot without prices, a generator
  schedule without MW): its rows would be stored empty, or would blank what is stored;
- another kind reads more of the file and the declared kind would leave out values or key
  columns of that kind: values lost, or rows of different plants folded onto one key.

It is kept with a warning when the mismatch costs less: another kind reads more only through
descriptive columns (region, technology, counterparty), or a column the declared kind leaves
out is a value or key of another kind. Columns no kind reads are only noted. All of it is pure:
header names in, a verdict out (``check_sheet`` finds the header rows of a raw sheet first).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..errors import Invalid
from .normalize import find_header, header_failure
from .schemas import KINDS, TIME_ALIASES, DatasetKind, alias_table, normalize_header

SHOWN_COLUMNS = 8


@dataclass(frozen=True)
class Need:
    """What a kind is for: at least one of ``columns`` must be in the file (or the request)."""

    columns: tuple[str, ...]
    what: str


NEEDS: dict[str, Need] = {
    "market-snapshot": Need(("dam_price", "rtm_price", "gdam_price"), "the prices"),
    "exchange-prices": Need(("mcp", "mcv_mw"), "the clearing price or volume"),
    "generator-schedule": Need(("scheduled_mw", "actual_mw"), "the scheduled or actual MW"),
    "contract-schedule": Need(("scheduled_mw", "rate"), "the scheduled MW or rate"),
    "market-bids": Need(
        ("bid_price", "bid_volume_mw", "clearing_price", "clearing_volume_mw"), "the bids"
    ),
    "storage-schedule": Need(
        ("capacity_mw", "charge_mw", "discharge_mw", "state_of_charge"),
        "the storage capacity, charge, discharge or state of charge",
    ),
}


@dataclass(frozen=True)
class Reading:
    """How one kind reads a header: canonical column → position (time columns left out)."""

    kind: DatasetKind
    names: tuple[str, ...]
    columns: dict[str, int]
    time_columns: frozenset[str] = frozenset()

    @property
    def is_header(self) -> bool:
        """Names a date and a block/period (or a timestamp) and a value column of the kind:
        what ``find_header`` asks of a header row."""
        times = self.time_columns
        has_time = bool(times & {"date", "timestamp"}) and bool(
            times & {"block", "timestamp", "hour"}
        )
        return has_time and any(c.name in self.columns for c in self.kind.value_columns)

    @property
    def positions(self) -> set[int]:
        return set(self.columns.values())

    @property
    def substantive(self) -> dict[int, str]:
        """Positions this kind reads as a value or a key (or the source a key falls back to):
        the columns a wrong kind must not leave out."""
        kind = self.kind
        keyish = {
            *kind.extra_keys,
            *(kind.fallbacks[k] for k in kind.extra_keys if k in kind.fallbacks),
        }
        values = {c.name for c in kind.value_columns}
        return {p: c for c, p in self.columns.items() if c in values or c in keyish}

    def meets_needs(self, provided: Collection[str] = ()) -> bool:
        return any(c in self.columns or c in provided for c in NEEDS[self.kind.name].columns)

    def show(self, positions: Collection[int]) -> list[str]:
        return [self.names[p] for p in sorted(positions)]


def read_header(names: Sequence[str], kind: DatasetKind) -> Reading:
    """``kind``'s reading of a header row, matched as ``normalize`` matches it (the first
    column that names a canonical column takes it; time aliases win)."""
    aliases = alias_table(kind)
    columns: dict[str, int] = {}
    times: set[str] = set()
    for pos, name in enumerate(names):
        canonical = aliases.get(normalize_header(name)) if name.strip() else None
        if canonical in TIME_ALIASES:
            times.add(canonical)
        elif canonical and canonical not in columns:
            columns[canonical] = pos
    return Reading(kind, tuple(names), columns, frozenset(times))


@dataclass(frozen=True)
class Finding:
    """A file-level warning about the header (``column`` is the file's header text)."""

    rule: str
    column: str
    message: str


@dataclass
class KindCheck:
    """The verdict on a declared kind that was kept."""

    kind: str
    looks_like: str
    columns_read: dict[str, int]
    left_out: list[str]
    warnings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {
            "looks_like": self.looks_like,
            "columns_read": self.columns_read,
            "columns_left_out": self.left_out,
        }

    def warning_rows(self, header_row: int) -> list[dict[str, Any]]:
        """The findings in the shape of row warnings, on the header's row."""
        return [
            {
                "row": header_row,
                "column": f.column,
                "value": f.column,
                "rule": f.rule,
                "message": f.message,
            }
            for f in self.warnings
        ]


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _listed(names: Sequence[str], joiner: str = "and") -> str:
    shown = list(names[:SHOWN_COLUMNS])
    more = len(names) - len(shown)
    if more:
        return ", ".join(shown) + f" and {more} more"
    if len(shown) <= 1:
        return "".join(shown)
    return ", ".join(shown[:-1]) + f" {joiner} {shown[-1]}"


def _need_text(kind: DatasetKind) -> str:
    need = NEEDS[kind.name]
    labels = [kind.column(c).aliases[1] for c in need.columns]
    return f"{need.what} {_a(kind.name)} file needs ({_listed(labels, 'or')})"


def _best_rival(readings: Mapping[str, Reading], declared: str) -> Reading | None:
    """The other kind that reads most of the file, among those that find what they need."""
    rivals = [r for k, r in readings.items() if k != declared and r.meets_needs()]
    if not rivals:
        return None
    order = list(KINDS)
    return max(
        rivals, key=lambda r: (len(r.columns), len(r.substantive), -order.index(r.kind.name))
    )


def _telling(rival: Reading, mine: Reading | None) -> list[str]:
    """The rival's columns worth naming: its values and keys, and what the declared kind
    does not read."""
    read = mine.positions if mine else set()
    return rival.show(set(rival.substantive) | (rival.positions - read))


def _wrong_kind(rival: Reading, mine: Reading | None, declared: DatasetKind, why: str) -> Invalid:
    name = rival.kind.name
    telling = _telling(rival, mine)
    return Invalid(
        f"this file looks like {_a(name)} (columns {_listed(telling)}); {why}; upload it as {name}",
        code="wrong_kind",
        details={
            "kind": declared.name,
            "suggested_kind": name,
            "columns_found": [n for n in rival.names if n.strip()],
            "suggested_kind_columns": telling,
        },
    )


def _lacking(declared: DatasetKind, mine: Reading | None, rival: Reading | None) -> Invalid:
    """The refusal of a file that lacks what ``declared`` needs: naming the kind it looks
    like when one fits, else listing the columns found."""
    lacks = f"lacks {_need_text(declared)}"
    if rival is not None:
        return _wrong_kind(rival, mine, declared, f"it {lacks}")
    found = [n for n in (mine.names if mine else ()) if n.strip()]
    return Invalid(
        f"the file {lacks}; columns found: {', '.join(found) or 'none'}",
        code="kind_columns_missing" if mine else "header_not_recognized",
        details={
            "kind": declared.name,
            "columns_found": found,
            "missing": list(NEEDS[declared.name].columns),
        },
    )


def judge(
    declared: DatasetKind,
    names_by_kind: Mapping[str, Sequence[str]],
    provided: Collection[str] = (),
) -> KindCheck:
    """The verdict on ``declared`` for a file whose header rows (per kind that found one) are
    ``names_by_kind``; ``provided`` are the columns the request gives values for. Raises
    ``Invalid`` (422) when the upload must be refused."""
    readings = {k: read_header(names, KINDS[k]) for k, names in names_by_kind.items()}
    mine = readings.get(declared.name)
    rival = _best_rival(readings, declared.name)
    if mine is None or not mine.meets_needs(provided):
        raise _lacking(declared, mine, rival)
    check = KindCheck(
        declared.name,
        declared.name,
        {k: len(r.columns) for k, r in readings.items()},
        [mine.names[p] for p in range(len(mine.names)) if _left_out(mine, p)],
    )
    if rival is not None and len(rival.columns) > len(mine.columns):
        lost = set(rival.substantive) - mine.positions
        if lost:
            why = f"as {_a(declared.name)} upload its {_listed(rival.show(lost))} would be left out"
            raise _wrong_kind(rival, mine, declared, why)
        check.looks_like = rival.kind.name
        extra = rival.show(rival.positions - mine.positions)
        check.warnings.append(
            Finding(
                "looks_like_other_kind",
                extra[0],
                f"this file may be {_a(rival.kind.name)}: {_a(rival.kind.name)} also reads "
                f"{_listed(extra)}, which {_a(declared.name)} upload leaves out",
            )
        )
    _warn_left_out(check, mine, readings)
    return check


def _left_out(mine: Reading, pos: int) -> bool:
    """A named column the declared kind does not read (time columns are read by every kind)."""
    name = mine.names[pos]
    if not name.strip() or pos in mine.positions:
        return False
    return alias_table(mine.kind).get(normalize_header(name)) not in TIME_ALIASES


def _warn_left_out(check: KindCheck, mine: Reading, readings: Mapping[str, Reading]) -> None:
    """A left-out column that is a value or key of another kind is a warning; the rest a note."""
    quiet: list[str] = []
    for pos, name in enumerate(mine.names):
        if not _left_out(mine, pos):
            continue
        takers = [(r, r.substantive[pos]) for r in readings.values() if pos in r.substantive]
        if not takers:
            quiet.append(name)
            continue
        other, canonical = takers[0]
        already = any(f.column == name for f in check.warnings)
        if not already:
            check.warnings.append(
                Finding(
                    "column_left_out",
                    name,
                    f"{name} is left out: {_a(check.kind)} has no such column "
                    f"({_a(other.kind.name)} reads it as {canonical})",
                )
            )
    if quiet:
        check.notes.append(f"columns not read: {', '.join(quiet)}")


def header_names(raw: pd.DataFrame, declared: DatasetKind) -> dict[str, list[str]]:
    """The header row of a raw sheet for each kind that finds one. The declared kind's header
    row serves every kind that can read it (one scan of the top rows: the common case, fast);
    only when the declared kind finds none does each kind scan for its own."""
    header = find_header(raw, declared)
    if header is not None:
        return {
            name: header.names
            for name, kind in KINDS.items()
            if read_header(header.names, kind).is_header
        }
    found: dict[str, list[str]] = {}
    for name, kind in KINDS.items():
        own = find_header(raw, kind)
        if own is not None:
            found[name] = own.names
    return found


def check_sheet(
    raw: pd.DataFrame, kind: DatasetKind, sheet: str, provided: Collection[str] = ()
) -> KindCheck:
    """``judge`` on a raw sheet; a header no kind reads keeps the message that lists the
    columns found and what ``kind`` requires."""
    names = header_names(raw, kind)
    if (
        kind.name not in names
        and _best_rival({k: read_header(n, KINDS[k]) for k, n in names.items()}, kind.name) is None
    ):
        raise header_failure(raw, kind, sheet)
    return judge(kind, names, provided)
