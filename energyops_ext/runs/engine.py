"""The run engine: the queue, each run from claim to final status, log flushing, heartbeats
and recovery after a restart."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..cluster import servers, wakeups
from ..cluster.servers import OrphanRun, ServerIdentity
from ..config import Settings
from ..db import Database, utcnow
from ..db.models import Activity, Notification, Run
from ..events import DATASETS, RUNS, Event, EventHub, run_topic
from ..feed import add_notification, announce
from ..storage import Storage
from ..tasks import cancel_and_wait, wait_event
from . import inputs as run_inputs
from . import parameters as run_parameters
from . import run_feed, store
from .artifacts import artifact_key, list_artifacts, log_key
from .executors import Executor
from .logs import Batch, Line, LineGroup, RunLog, new_line
from .procs import process_backend
from .results import RESULTS_FILE, write_results
from .run_errors import Ending, Notices, RunErrors
from .runner import RunProcess, spare_bwrap, terminate_tree
from .sandbox import (
    NOTEBOOK_OUTPUT,
    RunPaths,
    SandboxInfo,
    build_command,
    probe,
    process_marker,
    run_environment,
)

FLUSH_POLL_S = 0.05
FLUSH_EARLY_LINES = 20_000


@dataclass
class ActiveRun:
    run_id: int
    log: RunLog
    process: RunProcess | None = None
    kill_reason: str | None = None
    killed_by: str | None = None
    task: asyncio.Task[None] | None = None
    flush_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    errors: RunErrors = field(default_factory=RunErrors)
    title: str = ""
    flushing: bool = True
    flushing_ends: asyncio.Event = field(default_factory=asyncio.Event)  # wakes the flush loop
    stopped_by: str | None = None  # who asked the model to stop and keep its best
    stopped_early: bool = False  # it exited 0 after the stop

    def kill(self, reason: str, user: str | None) -> None:
        if self.kill_reason is None:
            self.kill_reason, self.killed_by = reason, user
        if self.process is not None:
            self.process.request_kill()

    def stop(self, user: str) -> None:
        if self.stopped_by is None:
            self.stopped_by = user
        if self.process is not None:
            self.process.request_stop()


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
    format: str = "py"
    parameters: dict[str, Any] = field(default_factory=dict)
    kind: str = "test"
    script_name: str = "script.py"


class RunEngine:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        storage: Storage,
        hub: EventHub,
        log: logging.Logger,
        me: ServerIdentity,
        clock: Callable[[], datetime] = utcnow,
        *,
        executor: Executor | None = None,
        claims: bool = True,
    ) -> None:
        """``executor`` runs claimed runs elsewhere (Dask) instead of here; ``claims=False``
        (a Dask worker's engine) runs only the runs handed to ``run_owned``: it neither
        takes queued runs nor reaps other servers' runs."""
        self.executor = executor
        if executor is not None:
            executor.on_ended = self.announce_end
        self.claims = claims
        self.settings = settings
        self.db = db
        self.storage = storage
        self.hub = hub
        self.log = log
        self.me = me
        self.clock = clock
        self.active: dict[int, ActiveRun] = {}
        # how processes are found, watched and killed here: the identity ``me`` carries
        # (boot id, start times) comes from the same backend
        self.procs = process_backend(settings.process_backend)
        self.sandbox: SandboxInfo | None = None
        self._pump_lock = asyncio.Lock()
        self._reap_lock = asyncio.Lock()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._waiting_note: str | None = None
        self._waiting_note_prefix = "waiting: "

    # --- start / stop ---

    async def start(self) -> None:
        self.sandbox = await asyncio.to_thread(probe, self.settings)
        if self.sandbox.fallback_reason and self.sandbox.mode != "bwrap":
            self.log.warning("EnergyOps run sandbox: %s", self.sandbox.describe())
        else:
            self.log.info("EnergyOps run sandbox: %s", self.sandbox.describe())
        if self.executor is not None:
            await self.executor.start()
        if self.claims:
            await self.reap()
        self._tasks = [
            asyncio.ensure_future(self._beat()),
            asyncio.ensure_future(self._watch()),
        ]
        await self.pump()

    def is_local(self, run_id: int) -> bool:
        return run_id in self.active

    def wake(self) -> None:
        """Look at the queue and at kill requests now (another server asked); any thread."""
        loop = self.hub.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def stop(self) -> None:
        self._stopping = True
        await cancel_and_wait(*self._tasks)
        tasks = []
        for active in list(self.active.values()):
            active.kill("the server stopped", None)
            if active.task is not None:
                tasks.append(active.task)
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.kill_grace_s + 10)
        if self.executor is not None:
            await self.executor.stop()

    def paths(self, run_id: int) -> RunPaths:
        return RunPaths.for_run(self.settings.sandbox_dir, run_id)

    def log_file(self, run_id: int) -> Path:
        return self.settings.logs_dir / f"{run_id}.log"

    # --- the queue ---

    def running_here(self) -> int:
        return len(self.active) + (self.executor.in_flight() if self.executor else 0)

    async def pump(self) -> None:
        """Start queued runs while fewer than max_concurrent_runs run here (or are handed
        to the executor by this server)."""
        if not self.claims:
            return
        async with self._pump_lock:
            while not self._stopping and self.running_here() < self.settings.max_concurrent_runs:
                if self.executor is not None and not await self._executor_ready():
                    return
                run_id = await self.db.write(self._claim)
                if run_id is None:
                    return
                if self.executor is not None:
                    if not await self._hand_over(run_id):
                        return
                    continue
                active = ActiveRun(run_id, self._new_log(run_id))
                self.active[run_id] = active
                active.task = asyncio.ensure_future(self._execute(active))

    async def _executor_ready(self) -> bool:
        """Hand runs over only while the executor can take them; queued runs say why not."""
        assert self.executor is not None
        why = await self.executor.ready()
        note = None if why is None else f"waiting: {why}"
        if note != self._waiting_note:
            self._waiting_note = note
            await self.db.write(lambda s: store.note_queued(s, note, self._waiting_note_prefix))
        return why is None

    async def _hand_over(self, run_id: int) -> bool:
        """Give a claimed run to the executor; if it cannot take it, the run is queued again."""
        assert self.executor is not None
        try:
            await self.executor.submit(run_id)
        except Exception as exc:
            self.log.warning(
                "run %s could not be handed to %s: %s", run_id, self.executor.name, exc
            )
            note = f"{self._waiting_note_prefix}{exc}"
            await self.db.write(lambda s: store.requeue(s, run_id, self.me.id, note))
            return False
        return True

    def _claim(self, session: Session) -> int | None:
        executor = self.executor.name if self.executor is not None else "local"
        return store.claim_next(session, self.me.id, self.me.host, self.me.boot_id, executor)

    async def run_owned(self, run_id: int) -> None:
        """Run ``run_id``, which this engine's identity already owns (a Dask worker's task
        took it over from the server that claimed it), to its final status."""
        start_seq = await self.db.read(lambda s: store.max_seq(s, run_id))
        active = ActiveRun(run_id, self._new_log(run_id, start_seq))
        self.active[run_id] = active
        await self._execute(active)

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
                if active.stopped_by is not None:
                    process.request_stop()
                root = self.paths(run_id).root
                await self.db.write(lambda s: _record_process(s, run_id, self.me.id, process, root))
                outcome = await process.finish(ctx.timeout_s)
                exit_code, runtime_ms = outcome.exit_code, outcome.runtime_ms
                outcome_status, reason = _status_of(outcome.reason, exit_code, active, ctx)
                active.stopped_early = outcome.reason == "stopped" and outcome_status == "succeeded"
                if outcome_status == "succeeded" and ctx.kind == "model":
                    await self._write_back(active, ctx.requested_by)
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
            active.flushing_ends.set()
            await flusher
            await self.flush(active)
            await asyncio.to_thread(self._store_files, run_id)
            await self._finish(active, outcome_status, exit_code, runtime_ms, reason)
        finally:
            self.active.pop(run_id, None)
            if not self._stopping:
                await self.pump()

    async def _prepare(self, active: ActiveRun, ctx: RunContext) -> RunProcess:
        assert self.sandbox is not None
        paths = self.paths(ctx.run_id)
        try:
            source = await asyncio.to_thread(self.storage.get, ctx.storage_key)
        except FileNotFoundError:
            raise RuntimeError(
                f"the script's file {self.storage.url(ctx.storage_key)} is not in this "
                "server's storage; servers sharing a database need a shared storage_url"
            ) from None
        notebook = ctx.format == "ipynb"
        script = paths.notebook if notebook else paths.named_script(ctx.script_name)
        await asyncio.to_thread(_write_run_dir, paths, source, script)
        active.log.add("system", [self.sandbox.describe()])
        if ctx.inputs:
            specs = run_inputs._inputs(ctx.inputs)
            lines = await self.db.read(lambda s: run_inputs.write_inputs(s, specs, paths.input_dir))
            active.log.add("system", lines)
            hashes = await asyncio.to_thread(_input_hashes, paths.input_dir)
            await self.db.write(lambda s: _record_inputs(s, ctx.run_id, self.me.id, hashes))
        if self.sandbox.mode == "unavailable":
            raise RuntimeError(self.sandbox.fallback_reason)
        argv = build_command(
            self.sandbox,
            self.settings,
            paths.root,
            script,
            ctx.args,
            notebook_output=paths.output_dir / NOTEBOOK_OUTPUT if notebook else None,
        )
        env = run_environment(paths, ctx.run_id, ctx.model_type, ctx.config, ctx.parameters)
        spare = spare_bwrap if self.sandbox.mode == "bwrap" else None
        return RunProcess(
            argv,
            env,
            paths.root,
            process_marker(paths),
            active.log,
            kill_grace_s=self.settings.kill_grace_s,
            procs=self.procs,
            spare=spare,
        )

    async def _write_back(self, active: ActiveRun, user: str | None) -> None:
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
                update(Run).where(Run.id == run_id, store.owned(self.me.id)).values(**values)
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
        announce(self.hub, activities, notes)
        self.hub.publish(Event(run_topic(run_id), "run.status", data))
        finished = {k: data[k] for k in ("status", "exit_code", "runtime_ms", "objective_value")}
        self.hub.publish(Event(RUNS, "run.finished", {"run_id": run_id, **finished, "run": data}))

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
        announce(self.hub, [activity], notes)
        self.hub.publish(Event(run_topic(run_id), "run.status", data))
        finished = {k: data[k] for k in ("status", "exit_code", "runtime_ms", "objective_value")}
        self.hub.publish(Event(RUNS, "run.finished", {"run_id": run_id, **finished, "run": data}))

    async def _publish_status(self, run_id: int, status: str, *, started: bool = False) -> None:
        data = await self.db.read(lambda s: store.run_json(store.get_run(s, run_id)))
        self.hub.publish(Event(run_topic(run_id), "run.status", data))
        if started:
            self.hub.publish(Event(RUNS, "run.started", data))

    def _store_files(self, run_id: int) -> None:
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

    # --- log flushing ---

    async def _flush_loop(self, active: ActiveRun) -> None:
        """Flush every log_flush_interval_s, or sooner once a big batch waits (so database
        writes overlap a loud run instead of piling up at its end)."""
        interval = self.settings.log_flush_interval_s
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

    # --- heartbeats, kill requests from other servers, reaping ---

    async def _beat(self) -> None:
        """Every heartbeat: renew this server's lease and its runs', then reap the runs of
        servers that died."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self.heartbeat()
                if self.claims:
                    await self.reap()
            except Exception:
                self.log.exception("EnergyOps heartbeat failed")

    async def heartbeat(self) -> None:
        me, now = self.me, self.clock()
        ids = [r.run_id for r in self.active.values() if r.process is not None]

        def write(session: Session) -> list[int]:
            servers.renew(session, me, now)
            if ids:
                session.execute(
                    update(Run).where(Run.id.in_(ids), store.owned(me.id)).values(heartbeat_at=now)
                )
            return _not_owned(session, ids, me.id)

        for run_id in await self.db.write(write):
            # another server took this one for dead and reaped its run: stop it here too
            active = self.active.get(run_id)
            if active is not None:
                active.kill("another server marked the run lost", None)

    async def _watch(self) -> None:
        """Kill requests for runs of this server and queued runs other servers added:
        woken at once by a notification (PostgreSQL), else polled."""
        while True:
            await wait_event(self._wake, self.settings.poll_s)
            self._wake.clear()
            try:
                await self._take_kill_requests()
                await self._take_stop_requests()
                if self.executor is not None:
                    await self.executor.take_kill_requests()
                if self.running_here() < self.settings.max_concurrent_runs:
                    await self.pump()
            except Exception:
                self.log.exception("EnergyOps queue watch failed")

    async def _take_kill_requests(self) -> None:
        ids = list(self.active)
        if not ids:
            return
        requests = await self.db.read(lambda s: _kill_requests(s, ids))
        for run_id, user in requests:
            active = self.active.get(run_id)
            if active is not None and active.kill_reason is None:
                self.log.info("run %s: kill requested by %s through another server", run_id, user)
                active.kill(f"killed by {user}", user)

    async def _take_stop_requests(self) -> None:
        ids = [run_id for run_id, a in self.active.items() if a.stopped_by is None]
        if not ids:
            return
        requests = await self.db.read(lambda s: _stop_requests(s, ids))
        for run_id, user in requests:
            active = self.active.get(run_id)
            if active is not None and active.stopped_by is None:
                self.log.info("run %s: stop requested by %s through another server", run_id, user)
                active.stop(user)

    async def reap(self) -> None:
        """Runs whose owner is dead: kill what is left of them on this machine, mark them
        ``lost``. The conditional update makes this happen once, whichever server gets there
        first; the runs of live servers are never touched."""
        async with self._reap_lock:
            me, now, lease = self.me, self.clock(), self.settings.lease_s
            orphans = await self.db.read(
                lambda s: servers.orphan_runs(s, me, now, lease, self.procs.is_alive)
            )
            for orphan in orphans:
                detail = await asyncio.to_thread(self._kill_survivors, orphan)
                if await self._mark_lost(orphan, f"{orphan.reason}; {detail}"):
                    self.log.warning("run %s marked lost: %s", orphan.run_id, orphan.reason)

    def _kill_survivors(self, orphan: OrphanRun) -> str:
        """Processes of a dead server's run can be killed only on the machine they run on."""
        pid = orphan.pid
        if pid is None:
            return "its process had not started"
        if not self.me.same_machine(orphan.host, orphan.boot_id):
            if orphan.host == self.me.host:
                return f"its process (pid {pid}) ended when the machine restarted"
            return f"its process (pid {pid} on {orphan.host}) is beyond this machine's reach"
        start = orphan.pid_start_time
        alive = start is not None and self.procs.is_alive(pid, start)
        marker = process_marker(RunPaths.for_dir(Path(orphan.workdir))) if orphan.workdir else b""
        root = pid if alive else None
        killed = terminate_tree(self.procs, root, marker, 0.0) if marker or alive else 0
        if alive or killed:
            return f"its process (pid {pid}) was still running and was killed"
        return f"its process (pid {pid}) had already gone"

    async def _mark_lost(self, orphan: OrphanRun, reason: str) -> bool:
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
        announce(self.hub, activities, notes)
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
        return True


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


def _write_run_dir(paths: RunPaths, source: bytes, script: Path) -> None:
    if paths.root.exists():
        shutil.rmtree(paths.root)
    paths.create()
    script.write_bytes(source)


def _input_hashes(input_dir: Path) -> dict[str, str]:
    """sha256 of each input file, by name (what two runs compare)."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(input_dir.iterdir())
        if path.is_file()
    }


def _record_inputs(session: Session, run_id: int, server_id: str, hashes: dict[str, str]) -> None:
    session.execute(
        update(Run).where(Run.id == run_id, store.owned(server_id)).values(input_hashes=hashes)
    )


def _context(session: Session, run_id: int) -> RunContext:
    run = store.get_run(session, run_id)
    script = run.script
    values = run.parameters
    if values is None:  # a run created without them (an older retry or schedule path)
        values = run_parameters.defaults(run_parameters.from_json(script.parameters))
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
        script.format or "py",
        dict(values),
        script.kind,
        script.name,
    )


def _not_owned(session: Session, run_ids: list[int], server_id: str) -> list[int]:
    """Which of ``run_ids`` this server no longer owns as running (reaped by another)."""
    if not run_ids:
        return []
    still = set(session.scalars(select(Run.id).where(Run.id.in_(run_ids), store.owned(server_id))))
    return [run_id for run_id in run_ids if run_id not in still]


def _stop_requests(session: Session, run_ids: list[int]) -> list[tuple[int, str]]:
    rows = session.execute(
        select(Run.id, Run.stop_requested_by).where(
            Run.id.in_(run_ids), Run.stop_requested_at.is_not(None)
        )
    ).all()
    return [(run_id, user or "another server") for run_id, user in rows]


def _kill_requests(session: Session, run_ids: list[int]) -> list[tuple[int, str]]:
    rows = session.execute(
        select(Run.id, Run.kill_requested_by).where(
            Run.id.in_(run_ids), Run.kill_requested_at.is_not(None)
        )
    ).all()
    return [(run_id, user or "another server") for run_id, user in rows]


def _record_process(
    session: Session, run_id: int, server_id: str, process: RunProcess, workdir: Path
) -> None:
    session.execute(
        update(Run)
        .where(Run.id == run_id, store.owned(server_id))
        .values(
            pid=process.pid,
            pid_start_time=process.start_time,
            workdir=str(workdir),
            heartbeat_at=datetime.now(UTC),
        )
    )


def _status_of(
    reason: str, exit_code: int | None, active: ActiveRun, ctx: RunContext
) -> tuple[str, str | None]:
    if reason == "killed":
        return "killed", active.kill_reason
    if reason == "timeout":
        return "timed_out", f"timed out after {ctx.timeout_s} s"
    if reason == "stopped":
        if exit_code == 0:
            return "succeeded", f"stopped early by {active.stopped_by}; the model kept its best"
        return "killed", (
            f"stopped by {active.stopped_by}; the model did not stop cleanly in time "
            f"(exit code {exit_code})"
        )
    if exit_code == 0:
        return "succeeded", None
    return "failed", f"exit code {exit_code}"
