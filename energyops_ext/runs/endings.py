"""A run's end, written and told. ``RunEndings`` holds every way a run ends on this server:

- ``finish``: the final row of a run that ran here (status, counts, metrics, its log file's
  key), with its activity, error and end notifications; before it, a model's results are
  written back (``write_back``) and the run's files stored (``store_files``);
- ``announce_end``: the activity, end notification and events of a run that ended without
  running here (failed or killed before its executor started it);
- ``mark_lost``: a run whose server died, ended ``lost`` exactly once.

Each, once committed, announces its feed rows and publishes ``run.status`` and
``run.finished``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from ..cluster import wakeups
from ..cluster.servers import OrphanRun
from ..db import Database
from ..db.models import Activity, Notification, Run
from ..events import DATASETS, RUNS, Event, EventHub, run_topic
from ..feed import add_notification, announce
from ..storage import Storage
from . import run_feed, store
from .active_run import ActiveRun
from .artifacts import artifact_key, list_artifacts, log_key
from .logs import new_line
from .results import RESULTS_FILE, write_results
from .run_errors import Ending, Notices
from .sandbox import RunPaths


class RunEndings:
    """The ends of the runs of one engine, whose server's id is ``server_id``."""

    def __init__(
        self,
        db: Database,
        hub: EventHub,
        storage: Storage,
        log: logging.Logger,
        server_id: str,
        clock: Callable[[], datetime],
        paths: Callable[[int], RunPaths],
        log_file: Callable[[int], Path],
    ) -> None:
        self.db = db
        self.hub = hub
        self.storage = storage
        self.log = log
        self.server_id = server_id
        self.clock = clock
        self.paths = paths
        self.log_file = log_file

    async def write_back(self, active: ActiveRun, user: str | None) -> None:
        """A model's model_results.csv becomes the day's model_result_mw (results.py)."""
        path = self.paths(active.run_id).output_dir / RESULTS_FILE
        if not await asyncio.to_thread(path.is_file):
            return
        try:
            data = await asyncio.to_thread(path.read_bytes)
            run_id, title = active.run_id, active.title
            report, activity = await self.db.write(
                lambda s: write_results(s, run_id, title, data, user)
            )
        except Exception as exc:
            self.log.exception("run %s: writing its model results failed", active.run_id)
            active.log.add("system", [f"model results not written: {exc}"])
            return
        counts = {k: report[k] for k in ("rows_read", "rows_inserted", "rows_updated")}
        active.log.add(
            "system",
            [
                f"model results: {report['rows_inserted'] + report['rows_updated']} blocks of "
                f"{', '.join(report['dates']) or 'no day'} written to market_snapshot "
                f"model_result_mw ({report['rows_rejected']} rejected; upload "
                f"{report['upload_id']}, {report['status']})"
            ],
        )
        announce(self.hub, [activity])
        self.hub.publish(
            Event(
                DATASETS,
                "dataset.uploaded",
                {
                    "kind": "market-snapshot",
                    "upload_id": report["upload_id"],
                    "rows_rejected": report["rows_rejected"],
                    **counts,
                },
            )
        )
        if report["dates"]:
            self.hub.publish(
                Event(
                    DATASETS,
                    "market.updated",
                    {"kind": "market-snapshot", "dates": report["dates"]},
                )
            )

    def store_files(self, run_id: int) -> None:
        """Before the run is final: its artifacts and log file go to the shared storage, where
        every server serves them from. Only regular files inside the output directory."""
        try:
            output = self.paths(run_id).output_dir
            for artifact in list_artifacts(output):
                self.storage.put_file(artifact_key(run_id, artifact.name), artifact.path)
            log_path = self.log_file(run_id)
            if log_path.exists():
                self.storage.put_file(log_key(run_id), log_path)
        except Exception:
            self.log.exception("storing the files of run %s failed", run_id)

    async def finish(
        self,
        active: ActiveRun,
        status: str,
        exit_code: int | None,
        runtime_ms: int | None,
        reason: str | None,
    ) -> None:
        """The final row of a run that ran here, if this server still owns it (else another
        server reaped it meanwhile: a warning, nothing written)."""
        run_id = active.run_id
        log = active.log

        values: dict[str, Any] = {
            "status": status,
            "exit_code": exit_code,
            "runtime_ms": runtime_ms,
            "finished_at": self.clock(),
            "status_reason": reason,
            "line_count": log.line_count,
            "error_count": log.error_count,
            "log_key": self.log_file(run_id).name,
            "stopped_early": active.stopped_early,
            **{k: v for k, v in log.metrics.items() if k in store.METRIC_COLUMNS},
        }
        solver = store.solver_figures(log.metrics)
        if solver:
            values["solver"] = solver
        told_by_status = status in run_feed.NOTIFY_STATUS
        ending = active.errors.end(time.monotonic(), told_by_status=told_by_status)

        def write(
            session: Session,
        ) -> tuple[dict[str, Any], list[Activity], list[Notification]] | None:
            ended = session.execute(
                update(Run).where(Run.id == run_id, store.owned(self.server_id)).values(**values)
            )
            if getattr(ended, "rowcount", 0) != 1:
                return None  # another server took this server for dead and reaped the run
            run = store.get_run(session, run_id)
            session.refresh(run)
            title = run_feed.end_title(run, active.title)
            user = active.killed_by or run.requested_by
            activity = run_feed.end_activity(session, run, title, user)
            notes = run_feed.error_notifications(session, run_id, active.title, ending.notices)
            told = run_feed.end_notification(
                session, run, title, reason or f"exit code {exit_code}", ending
            )
            notes += [told] if told is not None else []
            session.flush()
            return store.run_json(run), [activity], notes

        written = await self.db.write(write)
        if written is None:
            self.log.warning("run %s ended %s here but was already reaped", run_id, status)
            return
        data, activities, notes = written
        self._tell(run_id, data, activities, notes, _finished(data))

    async def announce_end(self, run_id: int) -> None:
        """The activity, the end notification and the events of a run that ended without
        running here (failed, or killed, before its executor started it)."""

        def write(session: Session) -> tuple[dict[str, Any], Activity, list[Notification]]:
            run = store.get_run(session, run_id)
            user = run.kill_requested_by if run.status == "killed" else None
            title = run_feed.end_title(run)
            activity = run_feed.end_activity(session, run, title, user or run.requested_by)
            reason = run.status_reason or run.status
            told = run_feed.end_notification(session, run, title, reason, Ending(Notices()))
            session.flush()
            return store.run_json(run), activity, [told] if told is not None else []

        data, activity, notes = await self.db.write(write)
        self._tell(run_id, data, [activity], notes, _finished(data))

    async def mark_lost(self, orphan: OrphanRun, reason: str) -> bool:
        """``orphan`` ends ``lost``, with a last line, its activity and a notification: once,
        by a conditional update (False when another server reaped it first, or it ended)."""
        run_id = orphan.run_id

        def write(
            session: Session,
        ) -> tuple[dict[str, Any], list[Activity], list[Notification]] | None:
            result = session.execute(
                update(Run)
                .where(
                    Run.id == run_id,
                    Run.status == "running",
                    Run.server_id.is_(None)
                    if orphan.server_id is None
                    else Run.server_id == orphan.server_id,
                )
                .values(status="lost", status_reason=reason, finished_at=self.clock())
            )
            if getattr(result, "rowcount", 0) != 1:
                return None  # another server reaped it first, or it ended meanwhile
            run = store.get_run(session, run_id)
            session.refresh(run)
            seq = max(store.max_seq(session, run_id), run.line_count) + 1
            record = new_line(seq, "system", f"run lost: {reason}")
            store.insert_lines(session, run_id, [record])
            run.line_count = seq
            wakeups.wake(session, wakeups.LINES, f"{run_id} {seq}")
            activity = run_feed.end_activity(session, run, run_feed.end_title(run), None)
            note = add_notification(
                session,
                type="run_lost",
                category="run",
                severity="warning",
                title=f"Run {run_id} lost",
                message=reason,
                entity_type="run",
                entity_id=run_id,
                user=run.requested_by,
            )
            return store.run_json(run), [activity], [note]

        written = await self.db.write(write)
        if written is None:
            return False
        data, activities, notes = written
        lost = {"status": "lost", "exit_code": None, "runtime_ms": None}
        finished = {**lost, "objective_value": data["objective_value"]}
        self._tell(run_id, data, activities, notes, finished)
        return True

    def _tell(
        self,
        run_id: int,
        data: dict[str, Any],
        activities: list[Activity],
        notes: list[Notification],
        finished: dict[str, Any],
    ) -> None:
        """After the commit: the feed rows, then ``run.status`` and ``run.finished``."""
        announce(self.hub, activities, notes)
        self.hub.publish(Event(run_topic(run_id), "run.status", data))
        self.hub.publish(Event(RUNS, "run.finished", {"run_id": run_id, **finished, "run": data}))


def _finished(data: dict[str, Any]) -> dict[str, Any]:
    """What ``run.finished`` tells of a run besides its id and its row."""
    return {k: data[k] for k in ("status", "exit_code", "runtime_ms", "objective_value")}
