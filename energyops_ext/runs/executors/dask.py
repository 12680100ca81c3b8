"""The Dask executor, server side: hands claimed runs to a Dask cluster.

Each run becomes one task (``runs.worker.run_on_worker``) submitted with ``retries=0`` and a
key of its own. The task takes the run over on the worker, so from then on the run belongs to
the worker, not to this server: its lines, state and files reach the database and the shared
storage whatever happens to this server. ``Future.cancel()`` cannot stop a task that runs;
kills go through the run's kill request, which the worker's task reads. This side only keeps
the futures (so tasks stay wanted), cancels tasks that have not started when their run is
killed, and marks a run failed if its task failed before it could take the run over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from functools import partial
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ...cluster.servers import ServerIdentity
from ...config import Settings
from ...db import Database, utcnow
from ...db.models import Run, Script
from .. import store
from ..worker import WorkerRun, run_on_worker
from .base import OnEnded

CONNECT_TIMEOUT_S = 5.0
RECONNECT_EVERY_S = 2.0


class DaskExecutor:
    name = "dask"

    def __init__(
        self, settings: Settings, db: Database, me: ServerIdentity, log: logging.Logger
    ) -> None:
        self.settings = settings
        self.db = db
        self.me = me
        self.log = log
        self.address = settings.dask_scheduler
        self.client: Any = None
        self.error: str | None = None
        self.futures: dict[int, Any] = {}
        self._last_try = 0.0
        self._followers: set[asyncio.Task[None]] = set()
        self.on_ended: OnEnded | None = None
        self._connecting = asyncio.Lock()

    async def start(self) -> None:
        if not self.address:
            self.error = "no dask_scheduler is configured"
            return
        await self.ready()

    async def stop(self) -> None:
        for task in list(self._followers):
            task.cancel()
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

    def in_flight(self) -> int:
        return len(self.futures)

    async def ready(self) -> str | None:
        if self._connected():
            self.error = None
            return None
        if not self._connecting.locked() and time.monotonic() - self._last_try >= RECONNECT_EVERY_S:
            async with self._connecting:
                self._last_try = time.monotonic()
                await self._connect()
        if self._connected():
            return None
        return self.error or f"connecting to the Dask scheduler at {self.address}"

    def _connected(self) -> bool:
        return self.client is not None and self.client.status == "running"

    async def _connect(self) -> None:
        from distributed import Client

        connect: Any = Client  # untyped
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
            self.client = None
        try:
            self.client = await connect(
                self.address, asynchronous=True, timeout=CONNECT_TIMEOUT_S, name=self.me.id
            )
        except (OSError, TimeoutError) as exc:
            was = self.error
            self.error = f"the Dask scheduler at {self.address} is unreachable ({exc})"
            if was != self.error:
                self.log.warning("EnergyOps: %s", self.error)
            return
        self.error = None
        self.log.info("EnergyOps runs go to the Dask scheduler at %s", self.address)

    async def submit(self, run_id: int) -> None:
        if not self._connected():
            raise RuntimeError(f"not connected to the Dask scheduler at {self.address}")
        spec = WorkerRun.of(run_id, self.me.id, self.settings)
        model_type = await self.db.read(lambda s: _model_type(s, run_id))
        resources = self.settings.dask_resources.get(model_type or "") or None
        future = self.client.submit(
            run_on_worker,
            spec,
            key=f"energyops-run-{run_id}-{secrets.token_hex(4)}",
            pure=False,
            retries=0,
            resources=resources,
        )
        self.futures[run_id] = future
        follower = asyncio.ensure_future(self._follow(run_id, future))
        self._followers.add(follower)
        follower.add_done_callback(self._followers.discard)

    async def _follow(self, run_id: int, future: Any) -> None:
        """Wait for the task; a task that ends without having taken its run over fails it."""
        why: str | None = None
        try:
            result = await future
            if not result.get("taken"):
                why = "its Dask task found it no longer waiting"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            why = f"its Dask task failed: {type(exc).__name__}: {exc}"
        finally:
            self.futures.pop(run_id, None)
        if why is not None:
            me = self.me.id
            if await self.db.write(lambda s: _fail_untaken(s, run_id, me, why)):
                self.log.warning("run %s failed before it started: %s", run_id, why)
                await self._ended(run_id)

    async def _ended(self, run_id: int) -> None:
        if self.on_ended is not None:
            await self.on_ended(run_id)

    async def take_kill_requests(self) -> None:
        """Runs killed before their task took them over: cancel the task, end the run."""
        ids = list(self.futures)
        if not ids:
            return
        me = self.me.id
        for run_id, user in await self.db.read(lambda s: _untaken_kills(s, ids, me)):
            # the run ends killed before its task is cancelled: the cancelled task then finds
            # it ended, instead of failing it first ("its Dask task failed: CancelledError")
            reason = f"killed by {user} before it started on a Dask worker"
            ended = await self.db.write(partial(_kill_untaken, run_id=run_id, me=me, reason=reason))
            future = self.futures.get(run_id)
            if future is not None:
                await future.cancel()
            if ended:
                await self._ended(run_id)

    def health(self) -> dict[str, Any]:
        workers = 0
        if self._connected():
            with contextlib.suppress(Exception):
                workers = len(self.client.scheduler_info().get("workers", {}))
        return {
            "name": self.name,
            "scheduler": self.address,
            "connected": self._connected(),
            "workers": workers,
            "in_flight": len(self.futures),
            "error": self.error,
        }


def _model_type(session: Session, run_id: int) -> str | None:
    return session.scalar(
        select(Script.model_type).join(Run, Run.script_id == Script.id).where(Run.id == run_id)
    )


def _untaken_kills(session: Session, run_ids: list[int], me: str) -> list[tuple[int, str]]:
    rows = session.execute(
        select(Run.id, Run.kill_requested_by).where(
            Run.id.in_(run_ids), store.owned(me), Run.kill_requested_at.is_not(None)
        )
    ).all()
    return [(run_id, user or "another server") for run_id, user in rows]


def _end_untaken(session: Session, run_id: int, me: str, status: str, reason: str) -> bool:
    """End a run no worker took over. It never started: the claim's ``started_at`` goes, as
    for a queued run that is cancelled."""
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, store.owned(me))
        .values(status=status, status_reason=reason, started_at=None, finished_at=utcnow())
    )
    return getattr(result, "rowcount", 0) == 1


def _fail_untaken(session: Session, run_id: int, me: str, reason: str) -> bool:
    return _end_untaken(session, run_id, me, "failed", reason)


def _kill_untaken(session: Session, run_id: int, me: str, reason: str) -> bool:
    return _end_untaken(session, run_id, me, "killed", reason)
