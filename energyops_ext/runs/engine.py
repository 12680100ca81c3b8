"""The run engine: the queue, each run from claim to final status, log flushing, heartbeats
and recovery after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..config import Settings
from ..db import Database
from ..db.models import Notification, Run
from ..events import RUNS, Event, EventHub, run_topic
from ..feed import add_activity, add_notification, announce
from ..storage import Storage
from . import inputs as run_inputs
from . import registry, store
from .logs import Batch, ErrorThrottle, Line, RunLog, new_line
from .runner import RunProcess, spare_bwrap, terminate_tree
from .sandbox import (
    RunPaths,
    SandboxInfo,
    build_command,
    probe,
    process_marker,
    run_environment,
)

FLUSH_POLL_S = 0.05
FLUSH_EARLY_LINES = 20_000
NOTIFY_STATUS = {"failed": "error", "killed": "warning", "timed_out": "error", "lost": "warning"}


@dataclass
class ActiveRun:
    run_id: int
    log: RunLog
    process: RunProcess | None = None
    kill_reason: str | None = None
    killed_by: str | None = None
    task: asyncio.Task[None] | None = None
    flush_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    throttle: ErrorThrottle = field(default_factory=ErrorThrottle)
    title: str = ""
    flushing: bool = True

    def kill(self, reason: str, user: str | None) -> None:
        if self.kill_reason is None:
            self.kill_reason, self.killed_by = reason, user
        if self.process is not None:
            self.process.request_kill()


@dataclass
class RunContext:
    """What the engine needs of a claimed run, read once."""

    run_id: int
    title: str
    storage_key: str
    model_type: str | None
    args: list[str]
    config: dict[str, Any]
    inputs: list[dict[str, Any]]
    timeout_s: int
    requested_by: str | None


class RunEngine:
    def __init__(
        self, settings: Settings, db: Database, storage: Storage, hub: EventHub, log: logging.Logger
    ) -> None:
        self.settings = settings
        self.db = db
        self.storage = storage
        self.hub = hub
        self.log = log
        self.active: dict[int, ActiveRun] = {}
        self.sandbox: SandboxInfo | None = None
        self._pump_lock = asyncio.Lock()
        self._stopping = False
        self._heartbeat: asyncio.Task[None] | None = None

    # --- start / stop ---

    async def start(self) -> None:
        self.sandbox = await asyncio.to_thread(probe, self.settings)
        if self.sandbox.fallback_reason and self.sandbox.mode != "bwrap":
            self.log.warning("EnergyOps run sandbox: %s", self.sandbox.describe())
        else:
            self.log.info("EnergyOps run sandbox: %s", self.sandbox.describe())
        await self.recover()
        self._heartbeat = asyncio.ensure_future(self._beat())
        await self.pump()

    async def stop(self) -> None:
        self._stopping = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        tasks = []
        for active in list(self.active.values()):
            active.kill("the server stopped", None)
            if active.task is not None:
                tasks.append(active.task)
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.kill_grace_s + 10)

    def paths(self, run_id: int) -> RunPaths:
        return RunPaths.for_run(self.settings.sandbox_dir, run_id)

    def log_file(self, run_id: int) -> Path:
        return self.settings.logs_dir / f"{run_id}.log"

    # --- the queue ---

    async def pump(self) -> None:
        """Start queued runs while fewer than max_concurrent_runs run here."""
        async with self._pump_lock:
            while not self._stopping and len(self.active) < self.settings.max_concurrent_runs:
                run_id = await self.db.write(store.claim_next)
                if run_id is None:
                    return
                active = ActiveRun(run_id, self._new_log(run_id))
                self.active[run_id] = active
                active.task = asyncio.ensure_future(self._execute(active))

    def _new_log(self, run_id: int, start_seq: int = 0) -> RunLog:
        topic = run_topic(run_id)

        def publish(lines: list[Line]) -> None:
            self.hub.publish(Event(topic, "run.log", {"run_id": run_id, "lines": lines}))

        def on_metrics(metrics: dict[str, float | int]) -> None:
            self.hub.publish(Event(topic, "run.progress", {"run_id": run_id, **metrics}))

        return RunLog(run_id, publish, on_metrics, start_seq)

    # --- one run ---

    async def _execute(self, active: ActiveRun) -> None:
        run_id = active.run_id
        flusher = asyncio.ensure_future(self._flush_loop(active))
        outcome_status, exit_code, runtime_ms, reason = "failed", None, None, None
        try:
            ctx = await self.db.read(lambda s: _context(s, run_id))
            active.title = ctx.title
            await self._publish_status(run_id, "running", started=True)
            process = await self._prepare(active, ctx)
            if active.kill_reason is None:
                await asyncio.to_thread(process.start)
                active.process = process
                if active.kill_reason is not None:
                    process.request_kill()
                await self.db.write(lambda s: _record_process(s, run_id, process))
                outcome = await process.finish(ctx.timeout_s)
                exit_code, runtime_ms = outcome.exit_code, outcome.runtime_ms
                outcome_status, reason = _status_of(outcome.reason, exit_code, active, ctx)
            else:
                outcome_status, reason = "killed", active.kill_reason
        except Exception as exc:
            self.log.exception("run %s could not run", run_id)
            reason = f"the run could not start: {exc}"
            active.log.add("system", [reason])
        try:
            end = f"run ended: {outcome_status}"
            end += f", exit code {exit_code}" if exit_code is not None else ""
            end += f" after {runtime_ms / 1000:.3f} s" if runtime_ms is not None else ""
            active.log.add("system", [end + (f" ({reason})" if reason else "")])
            # never cancel a flush mid-write: its batch would commit without leaving pending
            active.flushing = False
            await flusher
            await self.flush(active, final=True)
            await self._finish(active, outcome_status, exit_code, runtime_ms, reason)
        finally:
            self.active.pop(run_id, None)
            if not self._stopping:
                await self.pump()

    async def _prepare(self, active: ActiveRun, ctx: RunContext) -> RunProcess:
        assert self.sandbox is not None
        paths = self.paths(ctx.run_id)
        source = await asyncio.to_thread(self.storage.get, ctx.storage_key)
        await asyncio.to_thread(_write_run_dir, paths, source)
        active.log.add("system", [self.sandbox.describe()])
        if ctx.inputs:
            specs = run_inputs._inputs(ctx.inputs)
            lines = await self.db.read(lambda s: run_inputs.write_inputs(s, specs, paths.input_dir))
            active.log.add("system", lines)
        if self.sandbox.mode == "unavailable":
            raise RuntimeError(self.sandbox.fallback_reason)
        argv = build_command(self.sandbox, self.settings, paths.root, paths.script, ctx.args)
        env = run_environment(paths, ctx.run_id, ctx.model_type, ctx.config)
        spare = spare_bwrap if self.sandbox.mode == "bwrap" else None
        return RunProcess(
            argv,
            env,
            paths.root,
            process_marker(paths),
            active.log,
            kill_grace_s=self.settings.kill_grace_s,
            spare=spare,
        )

    async def _finish(
        self,
        active: ActiveRun,
        status: str,
        exit_code: int | None,
        runtime_ms: int | None,
        reason: str | None,
    ) -> None:
        run_id = active.run_id
        log = active.log

        def write(session: Session) -> tuple[dict[str, Any], list[Any], list[Notification]]:
            run = store.get_run(session, run_id)
            run.status, run.exit_code, run.runtime_ms = status, exit_code, runtime_ms
            run.finished_at, run.status_reason = datetime.now(UTC), reason
            run.line_count, run.error_count = log.line_count, log.error_count
            for key, value in log.metrics.items():
                setattr(run, key, value)
            run.log_key = self.log_file(run_id).name
            title = f"Run {run_id} of {active.title} {status.replace('_', ' ')}"
            activity = add_activity(
                session,
                type="run",
                action=status,
                title=title,
                entity_type="run",
                entity_id=run_id,
                status=status,
                user=active.killed_by or run.requested_by,
            )
            notes = []
            if status in NOTIFY_STATUS:
                message = reason or f"exit code {exit_code}"
                notes.append(
                    add_notification(
                        session,
                        type=f"run_{status}",
                        category="run",
                        severity=NOTIFY_STATUS[status],
                        title=title,
                        message=message,
                        entity_type="run",
                        entity_id=run_id,
                        user=run.requested_by,
                    )
                )
            session.flush()
            return store.run_json(run), [activity], notes

        data, activities, notes = await self.db.write(write)
        announce(self.hub, activities, notes)
        self.hub.publish(Event(run_topic(run_id), "run.status", data))
        finished = {k: data[k] for k in ("status", "exit_code", "runtime_ms", "objective_value")}
        self.hub.publish(Event(RUNS, "run.finished", {"run_id": run_id, **finished, "run": data}))

    async def _publish_status(self, run_id: int, status: str, *, started: bool = False) -> None:
        data = await self.db.read(lambda s: store.run_json(store.get_run(s, run_id)))
        self.hub.publish(Event(run_topic(run_id), "run.status", data))
        if started:
            self.hub.publish(Event(RUNS, "run.started", data))

    # --- log flushing ---

    async def _flush_loop(self, active: ActiveRun) -> None:
        """Flush every log_flush_interval_s, or sooner once a big batch waits (so database
        writes overlap a loud run instead of piling up at its end)."""
        interval = self.settings.log_flush_interval_s
        last = time.monotonic()
        while active.flushing:
            await asyncio.sleep(min(interval, FLUSH_POLL_S))
            due = time.monotonic() - last >= interval
            if due or active.log.pending_count >= FLUSH_EARLY_LINES:
                last = time.monotonic()
                await self.flush(active)

    async def flush(self, active: ActiveRun, final: bool = False) -> None:
        """Write what the run printed since the last flush: rows, counts, metrics, error
        notifications, then the log file; only then drop the lines from pending."""
        async with active.flush_lock:
            batch = active.log.take()
            if batch is None and not (final and active.throttle.suppressed):
                return
            batch = batch or Batch(
                [], dict(active.log.metrics), active.log.line_count, active.log.error_count
            )
            try:
                notes = await self.db.in_writer(lambda: self._write_batch(active, batch, final))
            except Exception:
                self.log.exception("writing log lines of run %s failed", active.run_id)
                active.log.release(batch)
                return
            active.log.committed(batch)
            announce(self.hub, [], notes)

    def _write_batch(self, active: ActiveRun, batch: Batch, final: bool) -> list[Notification]:
        with self.db.write_session() as session:
            store.write_batch(session, active.run_id, batch)
            notes = self._error_notes(session, active, batch.errors, final)
        if batch.records:
            with self.log_file(active.run_id).open("a", encoding="utf-8") as fh:
                fh.write("".join([format_file_line(r) for r in batch.records]))
        return notes

    def _error_notes(
        self, session: Session, active: ActiveRun, errors: list[Line], final: bool
    ) -> list[Notification]:
        """At most 5 error notifications a minute per run, then one "N more errors"."""
        notes = []
        summary = 0
        title = f"Run {active.run_id} of {active.title}"
        now = time.monotonic()
        for record in errors:
            notify, rolled = active.throttle.offer(now)
            summary += rolled
            if notify:
                notes.append(
                    add_notification(
                        session,
                        type="run_error",
                        category="run",
                        severity="error",
                        title=f"{title}: error",
                        message=record["text"][:500],
                        entity_type="run",
                        entity_id=active.run_id,
                    )
                )
        if final:
            summary += active.throttle.close()
        if summary:
            notes.append(
                add_notification(
                    session,
                    type="run_error",
                    category="run",
                    severity="error",
                    title=f"{title}: {summary} more errors",
                    message=f"{summary} more errors (see the run's log)",
                    entity_type="run",
                    entity_id=active.run_id,
                )
            )
        return notes

    # --- heartbeats and recovery ---

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            ids = [r.run_id for r in self.active.values() if r.process is not None]
            if ids:
                try:
                    await self.db.write(partial(_touch, ids))
                except Exception:
                    self.log.exception("run heartbeat failed")

    async def recover(self) -> None:
        """Runs this host left ``running``: kill survivors, mark every one ``lost``."""
        rows = await self.db.read(
            lambda s: s.execute(
                select(Run.id, Run.boot_id, Run.pid, Run.pid_start_time).where(
                    Run.status == "running", Run.host == registry.host_name()
                )
            ).all()
        )
        for run_id, boot, pid, started in rows:
            reason = await asyncio.to_thread(self._reap_lost, run_id, boot, pid, started)
            await self._mark_lost(run_id, reason)
            self.log.warning("run %s marked lost: %s", run_id, reason)

    def _reap_lost(
        self, run_id: int, boot: str | None, pid: int | None, started: int | None
    ) -> str:
        marker = process_marker(self.paths(run_id))
        same_boot = bool(boot) and boot == registry.boot_id()
        alive = (
            same_boot
            and pid is not None
            and started is not None
            and registry.is_alive(pid, started)
        )
        killed = terminate_tree(pid if alive else None, marker, 0.0)
        if pid is None:
            return "the server stopped before the process started"
        if not same_boot:
            return "the machine restarted while the run was running"
        if alive or killed:
            return f"the server restarted; its process (pid {pid}) was still running and was killed"
        return f"the server restarted; its process (pid {pid}) had already gone"

    async def _mark_lost(self, run_id: int, reason: str) -> None:
        def write(session: Session) -> tuple[Line, dict[str, Any], list[Notification]]:
            run = store.get_run(session, run_id)
            seq = max(store.max_seq(session, run_id), run.line_count) + 1
            record = new_line(seq, "system", f"run lost: {reason}")
            store.insert_lines(session, run_id, [record])
            run.status, run.status_reason, run.finished_at = "lost", reason, datetime.now(UTC)
            run.line_count = seq
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
            return record, store.run_json(run), [note]

        record, data, notes = await self.db.write(write)
        await asyncio.to_thread(_append_file, self.log_file(run_id), [record])
        announce(self.hub, [], notes)
        self.hub.publish(Event(run_topic(run_id), "run.status", data))
        self.hub.publish(
            Event(
                RUNS,
                "run.finished",
                {
                    "run_id": run_id,
                    "status": "lost",
                    "exit_code": None,
                    "runtime_ms": None,
                    "objective_value": data["objective_value"],
                    "run": data,
                },
            )
        )


def format_file_line(record: Line) -> str:
    """One line of a run's log file: ``<ts> <stream> <text>`` (stream is 6 characters)."""
    return f"{record['ts']} {record['stream']} {record['text']}\n"


def _append_file(path: Path, records: list[Line]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(format_file_line(r) for r in records))


def _write_run_dir(paths: RunPaths, source: bytes) -> None:
    if paths.root.exists():
        shutil.rmtree(paths.root)
    paths.create()
    paths.script.write_bytes(source)


def _context(session: Session, run_id: int) -> RunContext:
    run = store.get_run(session, run_id)
    script = run.script
    return RunContext(
        run_id,
        f"{script.name} v{script.version}",
        script.storage_key,
        script.model_type,
        list(run.args),
        dict(run.config),
        list(run.inputs),
        run.timeout_s,
        run.requested_by,
    )


def _touch(run_ids: list[int], session: Session) -> None:
    session.execute(update(Run).where(Run.id.in_(run_ids)).values(heartbeat_at=datetime.now(UTC)))


def _record_process(session: Session, run_id: int, process: RunProcess) -> None:
    session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(pid=process.pid, pid_start_time=process.start_time, heartbeat_at=datetime.now(UTC))
    )


def _status_of(
    reason: str, exit_code: int | None, active: ActiveRun, ctx: RunContext
) -> tuple[str, str | None]:
    if reason == "killed":
        return "killed", active.kill_reason
    if reason == "timeout":
        return "timed_out", f"timed out after {ctx.timeout_s} s"
    if exit_code == 0:
        return "succeeded", None
    return "failed", f"exit code {exit_code}"
