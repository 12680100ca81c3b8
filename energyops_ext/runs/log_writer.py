"""What a run printed, written where every server reads it: ``RunLogWriter`` takes batches from
a run's ``RunLog`` and writes them to the database (lines, counts, metrics, a wake-up for other
servers, the error notifications due) and then to the run's log file, every
``log_flush_interval_s`` or sooner when a loud run piles lines up."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from ..cluster import wakeups
from ..db import Database
from ..db.models import Notification
from ..events import EventHub
from ..feed import announce
from ..tasks import wait_event
from . import run_feed, store
from .active_run import ActiveRun
from .logs import Batch, Line, LineGroup

FLUSH_POLL_S = 0.05
FLUSH_EARLY_LINES = 20_000


class RunLogWriter:
    """Writes the log of each run this engine runs: ``flush_loop`` while it runs, ``flush``
    at its end (and before a live log is downloaded)."""

    def __init__(
        self,
        db: Database,
        hub: EventHub,
        log: logging.Logger,
        interval_s: float,
        log_file: Callable[[int], Path],
    ) -> None:
        self.db = db
        self.hub = hub
        self.log = log
        self.interval_s = interval_s
        self.log_file = log_file

    async def flush_loop(self, active: ActiveRun) -> None:
        """Flush every log_flush_interval_s, or sooner once a big batch waits (so database
        writes overlap a loud run instead of piling up at its end)."""
        interval = self.interval_s
        last = time.monotonic()
        while active.flushing:
            # the run's end wakes this at once: the final flush follows without a poll's wait
            await wait_event(active.flushing_ends, min(interval, FLUSH_POLL_S))
            if not active.flushing:
                return
            due = time.monotonic() - last >= interval
            if due or active.log.pending_count >= FLUSH_EARLY_LINES:
                last = time.monotonic()
                await self.flush(active)

    async def flush(self, active: ActiveRun) -> None:
        """Write what the run printed since the last flush: rows, counts, metrics, the error
        notifications due, then the log file; only then drop the lines from pending."""
        async with active.flush_lock:
            batch = active.log.take()
            if batch is None and not active.errors.waiting(time.monotonic()):
                return
            batch = batch or Batch(
                [], dict(active.log.metrics), active.log.line_count, active.log.error_count
            )
            try:
                notes = await self.db.in_writer(lambda: self._write_batch(active, batch))
            except Exception:
                self.log.exception("writing log lines of run %s failed", active.run_id)
                active.log.release(batch)
                return
            active.log.committed(batch)
            announce(self.hub, [], notes)

    def _write_batch(self, active: ActiveRun, batch: Batch) -> list[Notification]:
        with self.db.write_session() as session:
            store.write_batch(session, active.run_id, batch)
            if batch.last_seq is not None:
                wakeups.wake(session, wakeups.LINES, f"{active.run_id} {batch.last_seq}")
            notices = active.errors.running(
                batch.records, time.monotonic(), any_error=bool(batch.errors)
            )
            notes = run_feed.error_notifications(session, active.run_id, active.title, notices)
        if batch.groups:
            with self.log_file(active.run_id).open("a", encoding="utf-8") as fh:
                fh.write(format_file_lines(batch.groups))
        return notes


def format_file_line(record: Line) -> str:
    """One line of a run's log file: ``<ts> <stream> <text>`` (stream is 6 characters)."""
    return f"{record['ts']} {record['stream']} {record['text']}\n"


def format_file_lines(groups: list[LineGroup]) -> str:
    """``format_file_line`` of every line of the groups: one join per group, whose lines
    share their stream and timestamp."""
    parts = []
    for group in groups:
        prefix = f"{group.ts} {group.stream} "
        parts.append(prefix + f"\n{prefix}".join(group.texts) + "\n")
    return "".join(parts)
