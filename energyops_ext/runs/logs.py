"""A run's log lines as the server holds them: the ``Line`` shape, lines grouped as they arrived
(``LineGroup``), the batches written to the database (``Batch``), and ``RunLog``, the
numbered, classified, thread-safe buffer of one active run.

Everything here is in-memory state; the engine's ``RunLogWriter`` (``log_writer.py``) writes
the batches taken from a ``RunLog`` to the database and the log file. How a line's level and
metrics are found is in ``levels.py`` and ``markers.py``; how bytes become lines, in
``line_splitter.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypedDict

from .levels import LEVELS, classify_level, classify_lines
from .markers import parse_marker, reporting_lines

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
    """What one flush writes: the groups taken from a ``RunLog``, its counts and metrics as of
    them, and the error lines among them."""

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
