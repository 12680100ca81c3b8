"""Pure parts of the panels: the bounded log buffer, update throttling, text formatting and
HTML escaping. No widgets here, so all of it is tested without a kernel or a server."""

from __future__ import annotations

import html
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .format import MISSING, format_cell, is_missing

log = logging.getLogger(__name__)

LEVELS = ("debug", "info", "warning", "error")
LEVEL_COLOURS = {
    "debug": "#6b7280",
    "info": "#1f2937",
    "warning": "#b45309",
    "error": "#b91c1c",
    "system": "#1d4ed8",
}


@dataclass(frozen=True, slots=True)
class LogLine:
    seq: int
    level: str
    stream: str
    ts: str
    text: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogLine:
        return cls(
            seq=int(data.get("seq", 0)),
            level=str(data.get("level") or "info"),
            stream=str(data.get("stream") or "stdout"),
            ts=str(data.get("ts") or ""),
            text=str(data.get("text", "")),
        )


class LogBuffer:
    """The last ``capacity`` lines of a run, in seq order, without duplicates.

    Lines arrive from the live stream and from replays that may overlap; a line whose seq is
    not above the last one kept is dropped. ``gaps()`` counts seqs missing inside the window
    (zero when nothing was lost)."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self.received = 0
        self.version = 0
        self._floor = 0

    def __len__(self) -> int:
        return len(self._lines)

    @property
    def last_seq(self) -> int:
        return self._lines[-1].seq if self._lines else self._floor

    @property
    def first_seq(self) -> int:
        return self._lines[0].seq if self._lines else 0

    def extend(self, lines: Iterable[LogLine | Mapping[str, Any]]) -> int:
        """Add lines; returns how many were new."""
        added = 0
        for raw in lines:
            line = raw if isinstance(raw, LogLine) else LogLine.from_json(raw)
            if line.seq <= self._floor or (self._lines and line.seq <= self._lines[-1].seq):
                continue
            self._lines.append(line)
            added += 1
        self.received += added
        if added:
            self.version += 1
        return added

    def clear(self) -> None:
        """Forget the shown lines; later lines (higher seq) still come in."""
        self._floor = self.last_seq
        self._lines.clear()
        self.version += 1

    def lines(self) -> list[LogLine]:
        return list(self._lines)

    def view(
        self, levels: Iterable[str] | None = None, text: str = "", limit: int = 1000
    ) -> list[LogLine]:
        """The last ``limit`` lines whose level is in ``levels`` and that contain ``text``
        (case-insensitive)."""
        wanted = set(levels) if levels is not None else None
        needle = text.casefold()
        picked: list[LogLine] = []
        for line in reversed(self._lines):
            if wanted is not None and line.level not in wanted:
                continue
            if needle and needle not in line.text.casefold():
                continue
            picked.append(line)
            if len(picked) >= limit:
                break
        picked.reverse()
        return picked

    def gaps(self) -> int:
        """Seqs missing between the first and the last line kept."""
        if not self._lines:
            return 0
        return (self._lines[-1].seq - self._lines[0].seq + 1) - len(self._lines)

    def to_text(self) -> str:
        return "".join(
            f"{line.ts}\t{line.level}\t{line.stream}\t{line.text}\n" for line in self._lines
        )


class Throttle:
    """Calls ``flush`` at most ``per_second`` times a second, on its own thread, and only after
    ``poke()`` said something changed. Widget updates go through one of these, never one
    widget message per event."""

    def __init__(self, flush: Callable[[], None], per_second: float = 5.0) -> None:
        if not 0 < per_second <= 20:
            raise ValueError("per_second must be in (0, 20]")
        self.interval = 1.0 / per_second
        self._flush = flush
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self.flushes = 0
        self._thread = threading.Thread(target=self._loop, name="energyops-throttle", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._dirty.set()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            self._dirty.clear()
            started = time.monotonic()
            try:
                self._flush()
            except Exception:  # a failing view must not end its updates for good
                log.exception("panel update failed")
            self.flushes += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


# --- formatting ---


def format_number(value: Any, unit: str = "", decimals: int = 0) -> str:
    """``1234567.8`` → ``1,234,568 MW``; missing values → an em dash."""
    if is_missing(value):
        return MISSING
    try:
        number = float(value)
    except (TypeError, ValueError):
        return MISSING
    if number != number:  # NaN
        return MISSING
    text = f"{number:,.{decimals}f}"
    return f"{text} {unit}".rstrip()


def format_duration(ms: Any) -> str:
    if is_missing(ms):
        return MISSING
    seconds = float(ms) / 1000.0
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def esc(value: Any) -> str:
    """Any value as HTML text: user-supplied names and log text are never markup."""
    return html.escape("" if value is None else str(value), quote=True)


def html_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    empty: str = "nothing yet",
) -> str:
    """A small HTML table; every cell is escaped text. ``columns``: (key, heading).

    A missing value (None, NaN, NaT) shows as an em dash; a timestamp (a datetime or an ISO
    text with a time) in the display zone to the minute (``format.format_cell``)."""
    if not rows:
        return f'<div class="eo-empty">{esc(empty)}</div>'
    head = "".join(f"<th>{esc(title)}</th>" for _key, title in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{esc(format_cell(row.get(key)))}</td>" for key, _title in columns)
        + "</tr>"
        for row in rows
    )
    return f'<table class="eo-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def log_html(lines: Iterable[LogLine]) -> str:
    """Log lines as escaped, level-coloured HTML (for static output such as a report)."""
    return "".join(
        f'<div class="eo-log-line" style="color:{LEVEL_COLOURS.get(line.level, "#1f2937")}">'
        f"{esc(line.text)}</div>"
        for line in lines
    )
