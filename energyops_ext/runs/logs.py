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
        elif b"\r" not in buffer:
            lines = self._whole_lines(buffer)
            if lines is not None:
                return lines
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

    def _whole_lines(self, buffer: bytes) -> list[str] | None:
        """The common case, "\n" only and no line to cut: the complete lines decoded in one
        go and split as text (invalid UTF-8 is replaced the same, since "\n" never belongs
        to a multi-byte sequence). None when a line may be too long: see ``feed``."""
        end = buffer.rfind(b"\n")
        complete = buffer[:end] if end >= 0 else b""
        if len(complete) > self.max_bytes and max(map(len, complete.split(b"\n"))) > self.max_bytes:
            return None
        tail = buffer[end + 1 :]
        if len(tail) > self.max_bytes:
            return None
        self._buffer = tail
        if end < 0:
            return []
        text = complete.decode("utf-8", "replace")
        lines = (text.replace("\x00", "\ufffd") if "\x00" in text else text).split("\n")
        if self._skipping:  # the first line is the end of the line that was cut
            self._skipping = False
            del lines[0]
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


# the words classify_level looks for; a line without any of them has its stream's default level
_LEVEL_WORDS = ("error", "exception", "traceback", "fatal", "warn")
_LEVEL_WORD = re.compile("|".join(_LEVEL_WORDS))


def _lines_matching(joined: str, pattern: re.Pattern[str]) -> list[int]:
    """Indices of the lines of ``joined`` (lines joined by "\n") where ``pattern`` matches;
    the patterns hold no "\n", so a match never spans two lines."""
    found: list[int] = []
    line, at = 0, 0
    for match in pattern.finditer(joined):
        start = match.start()
        line += joined.count("\n", at, start)
        at = start
        if not found or found[-1] != line:
            found.append(line)
    return found


def classify_lines(stream: str, texts: list[str]) -> tuple[str, dict[int, str]]:
    """``classify_level`` of every text at once: the level most lines get, and the index and
    level of each line that differs. The texts are searched joined and lowered once (in C),
    and only lines holding one of the words are classified one by one, so a run of plain
    lines costs a few nanoseconds a line instead of a lower() and four searches each."""
    default = "warning" if stream == "stderr" else "info"
    low = "\n".join(texts).lower()
    if not any(word in low for word in _LEVEL_WORDS):
        return default, {}
    one_each = _one_per_line(low, texts)
    odd = {}
    for index in _lines_matching(low, _LEVEL_WORD) if one_each else range(len(texts)):
        level = classify_level(stream, texts[index])
        if level != default:
            odd[index] = level
    return default, odd


def _one_per_line(joined: str, texts: list[str]) -> bool:
    """No text holds a "\n" itself (only a system line can), so lines of ``joined`` are
    the texts."""
    return joined.count("\n") == len(texts) - 1


def reporting_lines(texts: list[str]) -> list[int]:
    """Indices of the texts that may hold a result marker (``might_report``), in order."""
    joined = "\n".join(texts)
    if (":" not in joined and "=" not in joined) or _MARKER_HINT.search(joined) is None:
        return []
    if not _one_per_line(joined, texts):
        return [i for i, text in enumerate(texts) if might_report(text)]
    return [i for i in _lines_matching(joined, _MARKER_HINT) if might_report(texts[i])]


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

STREAMS = ("stdout", "stderr", "system")
# one letter per (stream, level) pair: how a stored chunk keeps each line's stream and level
LINE_CODE = {
    (stream, level): chr(ord("a") + len(LEVELS) * s + v)
    for s, stream in enumerate(STREAMS)
    for v, level in enumerate(LEVELS)
}


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


@dataclass(slots=True)
class LineGroup:
    """Lines that arrived together (one ``RunLog.add``): one stream, one timestamp,
    consecutive seqs. ``codes`` has one ``LINE_CODE`` letter per line; ``records`` are the
    lines as published."""

    first_seq: int
    stream: str
    ts: str
    texts: list[str]
    codes: str
    records: list[Line]

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.texts) - 1


def group_records(records: list[Line]) -> list[LineGroup]:
    """Lines built one by one (``new_line``) as groups: consecutive lines of one stream and
    one timestamp form one group."""
    groups: list[LineGroup] = []
    for record in records:
        last = groups[-1] if groups else None
        code = LINE_CODE[record["stream"], record["level"]]
        if (
            last is not None
            and last.stream == record["stream"]
            and last.ts == record["ts"]
            and last.last_seq + 1 == record["seq"]
        ):
            last.texts.append(record["text"])
            last.codes += code
            last.records.append(record)
        else:
            groups.append(
                LineGroup(
                    record["seq"], record["stream"], record["ts"], [record["text"]], code, [record]
                )
            )
    return groups


Publish = Callable[[list[Line]], None]
MetricsHook = Callable[[dict[str, float | int]], None]


@dataclass
class Batch:
    groups: list[LineGroup]
    metrics: dict[str, float | int]
    line_count: int
    error_count: int
    errors: list[Line] = field(default_factory=list)

    @property
    def records(self) -> list[Line]:
        return [record for group in self.groups for record in group.records]

    @property
    def last_seq(self) -> int | None:
        return self.groups[-1].last_seq if self.groups else None


class RunLog:
    """Numbers, classifies and buffers the lines of one run (thread-safe).

    Lines enter ``pending`` before they are published and leave it only once their batch has
    committed, so ``snapshot`` + a database read after it never miss a line. They are kept as
    groups (one per ``add``), so taking, committing and storing cost per group, not per line.
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
        self._pending: list[LineGroup] = []
        self._taken = 0  # pending[:_taken] are in a batch being written
        self._untaken_lines = 0
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
        default, odd = classify_lines(stream, texts)
        changed: dict[str, float | int] = {}
        if stream != "system":
            for index in reporting_lines(texts):
                if found := parse_marker(texts[index]):
                    changed.update(found)
        count = len(texts)
        levels = [default] * count
        codes = [LINE_CODE[stream, default]] * count
        for index, level in odd.items():
            levels[index] = level
            codes[index] = LINE_CODE[stream, level]
        with self._lock:
            first = self._seq + 1
            records: list[Line] = [
                {"seq": seq, "stream": stream, "level": level, "ts": ts, "text": text}
                for seq, level, text in zip(range(first, first + count), levels, texts, strict=True)
            ]
            errors = [records[i] for i, level in odd.items() if level == "error"]
            self._pending.append(LineGroup(first, stream, ts, texts, "".join(codes), records))
            self._seq = first + count - 1
            self.line_count += count
            self._untaken_lines += count
            if errors:
                self.error_count += len(errors)
                self._errors.extend(errors)
            if changed:
                self.metrics.update(changed)
            self._publish(records)
        if changed and self._on_metrics is not None:
            self._on_metrics(dict(self.metrics))

    def take(self) -> Batch | None:
        """The lines not yet in a batch (and the counts as of them); None when idle."""
        with self._lock:
            groups = self._pending[self._taken :]
            errors, self._errors = self._errors, []
            if not groups and not errors:
                return None
            self._taken = len(self._pending)
            self._untaken_lines = 0
            return Batch(groups, dict(self.metrics), self.line_count, self.error_count, errors)

    def committed(self, batch: Batch) -> None:
        """``batch`` is in the database: drop its lines from the pending list."""
        last = batch.last_seq
        if last is None:
            return
        with self._lock:
            drop = 0
            while drop < len(self._pending) and self._pending[drop].last_seq <= last:
                drop += 1
            del self._pending[:drop]
            self._taken = max(0, self._taken - drop)

    def release(self, batch: Batch) -> None:
        """Writing ``batch`` failed: its lines go back to be taken again."""
        with self._lock:
            self._taken = 0
            self._untaken_lines = sum(len(group.texts) for group in self._pending)
            self._errors = batch.errors + self._errors

    def snapshot(self, after_seq: int) -> list[Line]:
        with self._lock:
            return [
                record
                for group in self._pending
                if group.last_seq > after_seq
                for record in group.records
                if record["seq"] > after_seq
            ]

    @property
    def pending_count(self) -> int:
        return self._untaken_lines
