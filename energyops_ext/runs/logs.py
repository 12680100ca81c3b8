"""Run output: line splitting, levels, result markers, and the per-run line buffer.

Everything here is pure or thread-safe in-memory state; the database and the log file are
written by ``service.py`` with batches taken from a ``RunLog``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict

MAX_LINE_BYTES = 64 * 1024
CUT_MARKER = f" [line cut: longer than {MAX_LINE_BYTES} bytes]"
LEVELS = ("debug", "info", "warning", "error")
LEVEL_RANK = {name: rank for rank, name in enumerate(LEVELS)}

_SEPARATORS = re.compile(rb"\r\n|\r|\n")


class LineSplitter:
    """Bytes in, complete text lines out. Partial lines are held until their end arrives;
    ``\\r\\n``, ``\\r`` and ``\\n`` all end a line; invalid UTF-8 is replaced; a line longer
    than ``max_bytes`` is cut there (with a marker) and the rest of it is skipped."""

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = b""
        self._held_cr = False  # the last chunk ended in \r: a \n next is part of it
        self._skipping = False  # discarding the rest of a cut line

    def feed(self, data: bytes) -> list[str]:
        if self._held_cr:
            self._held_cr = False
            if data.startswith(b"\n"):
                data = data[1:]
        buffer = self._buffer + data if self._buffer else data
        if buffer.endswith(b"\r"):
            buffer = buffer[:-1]
            self._held_cr = True
        parts = _SEPARATORS.split(buffer) if b"\r" in buffer else buffer.split(b"\n")
        tail = b"" if self._held_cr else parts.pop()
        lines = self._complete(parts)
        if len(tail) > self.max_bytes:
            if not self._skipping:
                lines.append(self._decode(tail))
                self._skipping = True
            tail = b""
        self._buffer = tail
        return lines

    def finish(self) -> list[str]:
        """End of stream: whatever is held becomes the last line."""
        tail, self._buffer, self._held_cr = self._buffer, b"", False
        lines = [] if self._skipping or not tail else [self._decode(tail)]
        self._skipping = False
        return lines

    def _complete(self, parts: list[bytes]) -> list[str]:
        if self._skipping and parts:
            # the first complete part is the end of the line that was cut
            self._skipping = False
            parts = parts[1:]
        return [self._decode(part) for part in parts]

    def _decode(self, part: bytes) -> str:
        if len(part) > self.max_bytes:
            text = part[: self.max_bytes].decode("utf-8", "replace") + CUT_MARKER
        else:
            text = part.decode("utf-8", "replace")
        return text.replace("\x00", "\ufffd") if "\x00" in text else text


def classify_level(stream: str, text: str) -> str:
    """error / exception / traceback / fatal → error; warn or stderr → warning; else info.
    (Substring tests on the lowered text: several times faster than a regex per line.)"""
    low = text.lower()
    if stream == "system":
        return "warning" if "warn" in low else "info"
    if "error" in low or "exception" in low or "traceback" in low or "fatal" in low:
        return "error"
    if stream == "stderr" or "warn" in low:
        return "warning"
    return "info"


def might_report(text: str) -> bool:
    """Cheap pre-test for ``parse_marker``: every marker form contains ':' or '='."""
    return (":" in text or "=" in text) and _MARKER_HINT.search(text) is not None


# --- result markers ---

MARKER_PREFIX = "::energyops "
_PLAIN = re.compile(
    r"^\s*(?:"
    r"objective(?:\s+value)?\s*[:=]\s*(?P<objective>[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r"|results?\s+written\s*[:=]\s*(?P<results>\d[\d,]*)"
    r"|progress\s*[:=]\s*(?P<progress>\d+(?:\.\d+)?)\s*%"
    r"|solver\s+time\s*[:=]\s*(?P<solver>\d+(?:\.\d+)?)\s*(?P<unit>ms|s)\b"
    r")",
    re.IGNORECASE,
)
_MARKER_HINT = re.compile(r"::energyops |objective|results? written|progress|solver time", re.I)
# a notebook run labels each output line with its cell: "[cell 3] Objective value: 1.5"
_CELL_LABEL = re.compile(r"^\[(?:cell \d+|parameters|setup)\] ")
SOLVER_KEYS = ("incumbent", "bound", "gap", "elapsed_s")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if number == number and abs(number) != float("inf") else None


def parse_marker(text: str) -> dict[str, float | int] | None:
    """Metrics a line reports: ``::energyops {json}`` or the plain forms of API.md.
    Returns keys among progress, objective_value, results_count, solver_time_ms and the
    solver figures incumbent, bound, gap, elapsed_s. A notebook cell's label is skipped."""
    if not might_report(text):
        return None
    if text.startswith("[") and (label := _CELL_LABEL.match(text)):
        text = text[label.end() :]
    stripped = text.strip()
    if stripped.startswith(MARKER_PREFIX):
        return _parse_json_marker(stripped[len(MARKER_PREFIX) :])
    match = _PLAIN.match(text)
    if match is None:
        return None
    if match["results"] is not None:
        return {"results_count": int(match["results"].replace(",", ""))}
    # a printed number may overflow to inf (Objective value: 1e400): not a figure
    if match["objective"] is not None:
        objective = _number(float(match["objective"].replace(",", "")))
        return None if objective is None else {"objective_value": objective}
    if match["progress"] is not None:
        progress = _number(float(match["progress"]))
        return None if progress is None else {"progress": min(100.0, progress)}
    solver = _number(float(match["solver"]))
    if solver is None:
        return None
    return {"solver_time_ms": round(solver * 1000 if match["unit"].lower() == "s" else solver)}


def _parse_json_marker(payload: str) -> dict[str, float | int] | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    found: dict[str, float | int] = {}
    progress = _number(data.get("progress"))
    if progress is not None:
        found["progress"] = max(0.0, min(100.0, progress))
    objective = _number(data.get("objective", data.get("objective_value")))
    if objective is not None:
        found["objective_value"] = objective
    results = _number(data.get("results", data.get("results_count")))
    if results is not None:
        found["results_count"] = int(results)
    solver = _number(data.get("solver_time_ms"))
    if solver is None and _number(data.get("solver_time_s")) is not None:
        solver = float(data["solver_time_s"]) * 1000
    if solver is not None:
        found["solver_time_ms"] = round(solver)
    for key in SOLVER_KEYS:
        figure = _number(data.get(key))
        if figure is not None:
            found[key] = figure
    return found or None


# --- the in-memory buffer of one active run ---


class Line(TypedDict):
    """One log line as stored, published and replayed. ``ts`` is ISO 8601 UTC with
    microseconds; the dict published in ``run.log`` is this very object."""

    seq: int
    stream: str
    level: str
    ts: str
    text: str


def iso_ts(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def new_line(seq: int, stream: str, text: str, ts: datetime | None = None) -> Line:
    stamp = iso_ts(ts or datetime.now(UTC))
    return {
        "seq": seq,
        "stream": stream,
        "level": classify_level(stream, text),
        "ts": stamp,
        "text": text,
    }


Publish = Callable[[list[Line]], None]
MetricsHook = Callable[[dict[str, float | int]], None]


@dataclass
class Batch:
    records: list[Line]
    metrics: dict[str, float | int]
    line_count: int
    error_count: int
    errors: list[Line] = field(default_factory=list)


class RunLog:
    """Numbers, classifies and buffers the lines of one run (thread-safe).

    Lines enter ``pending`` before they are published and leave it only once their batch has
    committed, so ``snapshot`` + a database read after it never miss a line.
    """

    def __init__(
        self,
        run_id: int,
        publish: Publish,
        on_metrics: MetricsHook | None = None,
        start_seq: int = 0,
    ) -> None:
        self.run_id = run_id
        self._publish = publish
        self._on_metrics = on_metrics
        self._lock = threading.RLock()
        self._seq = start_seq
        self._pending: list[Line] = []
        self._taken = 0  # pending[:_taken] are in a batch being written
        self.line_count = start_seq
        self.error_count = 0
        self.metrics: dict[str, float | int] = {}
        self._errors: list[Line] = []

    @property
    def last_seq(self) -> int:
        return self._seq

    def add(self, stream: str, texts: list[str]) -> None:
        if not texts:
            return
        ts = iso_ts(datetime.now(UTC))
        changed: dict[str, float | int] = {}
        with self._lock:
            records: list[Line] = []
            seq = self._seq
            for text in texts:
                seq += 1
                level = classify_level(stream, text)
                record: Line = {
                    "seq": seq,
                    "stream": stream,
                    "level": level,
                    "ts": ts,
                    "text": text,
                }
                records.append(record)
                if level == "error":
                    self.error_count += 1
                    self._errors.append(record)
                if stream != "system" and might_report(text) and (found := parse_marker(text)):
                    changed.update(found)
            self._seq = seq
            self.line_count += len(records)
            self._pending.extend(records)
            if changed:
                self.metrics.update(changed)
            self._publish(records)
        if changed and self._on_metrics is not None:
            self._on_metrics(dict(self.metrics))

    def take(self) -> Batch | None:
        """The lines not yet in a batch (and the counts as of them); None when idle."""
        with self._lock:
            records = self._pending[self._taken :]
            errors, self._errors = self._errors, []
            if not records and not errors:
                return None
            self._taken = len(self._pending)
            return Batch(records, dict(self.metrics), self.line_count, self.error_count, errors)

    def committed(self, batch: Batch) -> None:
        """``batch`` is in the database: drop its lines from the pending list."""
        if not batch.records:
            return
        last = batch.records[-1]["seq"]
        with self._lock:
            drop = 0
            while drop < len(self._pending) and self._pending[drop]["seq"] <= last:
                drop += 1
            del self._pending[:drop]
            self._taken = max(0, self._taken - drop)

    def release(self, batch: Batch) -> None:
        """Writing ``batch`` failed: its lines go back to be taken again."""
        with self._lock:
            self._taken = 0
            self._errors = batch.errors + self._errors

    def snapshot(self, after_seq: int) -> list[Line]:
        with self._lock:
            return [r for r in self._pending if r["seq"] > after_seq]

    @property
    def pending_count(self) -> int:
        return len(self._pending) - self._taken
