"""The run engine: the queue of this server, and each run it takes from its claim to its final
status, with the heartbeats and kill/stop requests that reach it from other servers.

``RunEngine`` decides what runs when and owns every run's state (``ActiveRun``); its parts
do the rest:

- ``launch.py``: the claimed run read once, its run directory and sandboxed process;
- ``log_writer.py``: what the run prints, written in batches to the database and log file;
- ``endings.py``: the final row, feed rows and events of a run that ended, was ended
  elsewhere, or was lost;
- ``reaper.py``: the runs of dead servers, ended ``lost``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from ..cluster import servers
from ..cluster.servers import ServerIdentity
from ..config import Settings
from ..db import Database, utcnow
from ..db.models import Run
from ..events import RUNS, Event, EventHub, run_topic
from ..storage import Storage
from ..tasks import cancel_and_wait, wait_event
from . import store
from .active_run import ActiveRun, status_of
from .endings import RunEndings
from .executors import Executor
from .launch import RunLauncher, read_context, record_process
from .log_writer import RunLogWriter
from .logs import Line, RunLog
from .procs import process_backend
from .reaper import Reaper
from .sandbox import RunPaths, SandboxInfo, probe


class RunEngine:
    """This server's run queue, and the runs it runs (``active``)."""

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
        self.launcher = RunLauncher(settings, db, storage, me.id, self.procs, self.paths)
        self.log_writer = RunLogWriter(db, hub, log, settings.log_flush_interval_s, self.log_file)
        self.endings = RunEndings(db, hub, storage, log, me.id, clock, self.paths, self.log_file)
        self.reaper = Reaper(db, log, me, clock, settings.lease_s, self.procs, self.endings)
        if executor is not None:
            executor.on_ended = self.endings.announce_end
        self._pump_lock = asyncio.Lock()
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
            await self.reaper.reap()
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
        flusher = asyncio.ensure_future(self.log_writer.flush_loop(active))
        outcome_status, exit_code, runtime_ms, reason = "failed", None, None, None
        try:
            ctx = await self.db.read(lambda s: read_context(s, run_id))
            active.title = ctx.title
            await self._publish_started(run_id)
            assert self.sandbox is not None
            process = await self.launcher.prepare(ctx, active.log, self.sandbox)
            if active.kill_reason is None:
                await asyncio.to_thread(process.start)
                active.process = process
                if active.kill_reason is not None:
                    process.request_kill()
                if active.stopped_by is not None:
                    process.request_stop()
                root = self.paths(run_id).root
                await self.db.write(
                    lambda s: record_process(s, run_id, self.me.id, process, root, self.clock())
                )
                outcome = await process.finish(ctx.timeout_s)
                exit_code, runtime_ms = outcome.exit_code, outcome.runtime_ms
                outcome_status, reason = status_of(outcome.reason, exit_code, active, ctx.timeout_s)
                active.stopped_early = outcome.reason == "stopped" and outcome_status == "succeeded"
                if outcome_status == "succeeded" and ctx.kind == "model":
                    await self.endings.write_back(active, ctx.requested_by)
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
            await self.log_writer.flush(active)
            await asyncio.to_thread(self.endings.store_files, run_id)
            await self.endings.finish(active, outcome_status, exit_code, runtime_ms, reason)
        finally:
            self.active.pop(run_id, None)
            if not self._stopping:
                await self.pump()

    async def _publish_started(self, run_id: int) -> None:
        data = await self.db.read(lambda s: store.run_json(store.get_run(s, run_id)))
        self.hub.publish(Event(run_topic(run_id), "run.status", data))
        self.hub.publish(Event(RUNS, "run.started", data))

    # --- heartbeats, kill and stop requests from other servers ---

    async def _beat(self) -> None:
        """Every heartbeat: renew this server's lease and its runs', then reap the runs of
        servers that died."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self.heartbeat()
                if self.claims:
                    await self.reaper.reap()
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
                await self._take_requests()
                if self.executor is not None:
                    await self.executor.take_kill_requests()
                if self.running_here() < self.settings.max_concurrent_runs:
                    await self.pump()
            except Exception:
                self.log.exception("EnergyOps queue watch failed")

    async def _take_requests(self) -> None:
        """Kill and stop requests other servers left on this server's runs, in one read."""
        ids = list(self.active)
        if not ids:
            return
        for run_id, killed_by, stopped_by in await self.db.read(lambda s: _requests(s, ids)):
            active = self.active.get(run_id)
            if active is None:
                continue
            if killed_by is not None and active.kill_reason is None:
                self.log.info(
                    "run %s: kill requested by %s through another server", run_id, killed_by
                )
                active.kill(f"killed by {killed_by}", killed_by)
            if stopped_by is not None and active.stopped_by is None:
                self.log.info(
                    "run %s: stop requested by %s through another server", run_id, stopped_by
                )
                active.stop(stopped_by)


def _not_owned(session: Session, run_ids: list[int], server_id: str) -> list[int]:
    """Which of ``run_ids`` this server no longer owns as running (reaped by another)."""
    if not run_ids:
        return []
    still = set(session.scalars(select(Run.id).where(Run.id.in_(run_ids), store.owned(server_id))))
    return [run_id for run_id in run_ids if run_id not in still]


def _requests(session: Session, run_ids: list[int]) -> list[tuple[int, str | None, str | None]]:
    """(run, who asked for a kill, who asked for a stop) of ``run_ids`` with a request; a
    request without a name is "another server"."""
    rows = session.execute(
        select(
            Run.id,
            Run.kill_requested_at,
            Run.kill_requested_by,
            Run.stop_requested_at,
            Run.stop_requested_by,
        ).where(
            Run.id.in_(run_ids),
            or_(Run.kill_requested_at.is_not(None), Run.stop_requested_at.is_not(None)),
        )
    ).all()
    return [
        (
            run_id,
            (kill_by or "another server") if kill_at is not None else None,
            (stop_by or "another server") if stop_at is not None else None,
        )
        for run_id, kill_at, kill_by, stop_at, stop_by in rows
    ]
