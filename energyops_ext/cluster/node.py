"""This server among the others on one database: its row in ``servers``, the LISTEN
connection (PostgreSQL) and what it wakes, the event relay and the remote log follower."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ..config import Settings
from ..db import Database, utcnow
from ..events import EventHub
from ..runs.procs import process_backend
from ..tasks import cancel_and_wait
from . import servers, wakeups
from .follow import RemoteLogFollower
from .listen import PgListener
from .relay import EventRelay, prune_events
from .servers import ServerIdentity

FORGET_STOPPED = timedelta(days=1)
PRUNE_EVERY_S = 60.0
SQLITE_FOLLOW_POLL_S = 0.02


class ClusterNode:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        hub: EventHub,
        me: ServerIdentity,
        log: logging.Logger,
        *,
        wake_queue: Callable[[], None],
        is_local: Callable[[int], bool],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.procs = process_backend(settings.process_backend)
        self.db = db
        self.hub = hub
        self.me = me
        self.log = log
        self.clock = clock
        self.wake_queue = wake_queue
        self.url: str | None = None
        self.relay = EventRelay(db, hub, me.id, poll_s=min(settings.poll_s, 0.1), log=log)
        self.follower = RemoteLogFollower(
            db,
            hub,
            is_local,
            # SQLite has no notifications: poll followed runs often (one indexed read each),
            # so a line waits at most a flush interval plus this
            poll_s=SQLITE_FOLLOW_POLL_S if db.kind == "sqlite" else 1.0,
            log=log,
        )
        self.listener: PgListener | None = None
        self._prune: asyncio.Task[None] | None = None

    async def register(self, url: str | None) -> None:
        """A row for this server (before the engine claims anything in its name)."""
        self.url = url
        await self.db.write(lambda s: servers.register(s, self.me, self.clock(), url))
        self.log.info("EnergyOps server %s on %s (%s)", self.me.id, self.me.host, self.db.kind)

    async def start(self) -> None:
        self.relay.start()
        self.follower.start()
        if self.db.kind == "postgresql":
            self.listener = PgListener(
                str(self.db.url.render_as_string(hide_password=False)),
                wakeups.CHANNELS,
                self._on_notify,
                on_connect=self._on_connect,
                log=self.log,
            )
            self.listener.start()
        self._prune = asyncio.ensure_future(self._prune_loop())

    async def stop(self) -> None:
        await cancel_and_wait(self._prune)
        if self.listener is not None:
            await asyncio.to_thread(self.listener.stop)
        await self.follower.stop()
        await self.relay.stop()
        with contextlib.suppress(Exception):
            await self.db.write(
                lambda s: servers.mark_stopped(s, self.me.id, self.clock(), "stopped")
            )

    async def list_servers(self) -> list[dict[str, Any]]:
        me, now, lease = self.me, self.clock(), self.settings.lease_s
        return await self.db.read(
            lambda s: servers.list_servers(s, me, now, lease, self.procs.is_alive)
        )

    # --- notifications (listener thread) ---

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self.hub.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel in (wakeups.QUEUE, wakeups.CONTROL):
            self.wake_queue()
        elif channel == wakeups.LINES:
            run_id, _, seq = payload.partition(" ")
            if run_id.isdigit() and seq.isdigit():
                self._call(self.follower.lines_committed, int(run_id), int(seq))
        elif channel == wakeups.EVENTS:
            self._call(self.relay.receive, payload)

    def _on_connect(self) -> None:
        """(Re)connected: what was sent meanwhile is lost, so look at everything again."""
        self.wake_queue()
        self._call(self.follower.catch_up)

    # --- housekeeping ---

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY_S)
            try:
                await self.prune()
            except Exception:
                self.log.exception("pruning cluster tables failed")

    async def prune(self) -> None:
        """Old relayed events and long-stopped servers; any server may do it, twice is fine."""
        now = self.clock()

        def write(session: Any) -> None:
            prune_events(session, now)
            servers.forget_stopped(session, now, FORGET_STOPPED)

        await self.db.write(write)
