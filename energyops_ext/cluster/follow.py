"""Live lines of runs that run on another server, read from the database by seq.

A server publishes the lines of its own runs as they are printed. For a ``run:<id>`` topic that
someone here listens to while the run runs elsewhere, this follower reads the lines its owner
committed (woken by the owner's NOTIFY on PostgreSQL, polled on SQLite) and publishes them here
in seq order. Lines come from the database only, so a lost notification delays them and never
loses one; subscribers drop what they already have by seq.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import Database
from ..db.models import Run
from ..events import Event, EventHub, run_topic
from ..events.types import RUN_TOPIC_PREFIX, is_topic, run_id_of
from ..runs import store
from ..tasks import cancel_and_wait, wait_event

PAGE = 5_000
STATUS_EVERY = 10  # ticks without new lines between looks at whether the run has ended


@dataclass
class Followed:
    cursor: int  # last seq published here
    quiet_ticks: int = 0
    ended: bool = False
    wanted: bool = False  # a notification said there is more


class RemoteLogFollower:
    def __init__(
        self,
        db: Database,
        hub: EventHub,
        is_local: Callable[[int], bool],
        *,
        poll_s: float,
        log: logging.Logger,
    ) -> None:
        self.db = db
        self.hub = hub
        self.is_local = is_local
        self.poll_s = poll_s
        self.log = log
        self.followed: dict[int, Followed] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.hub.add_topic_watcher(self._on_topic)
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def prepare(self, topic: str) -> None:
        """Before a subscriber attaches: start following at the seq committed now, so every
        later line is published here and every earlier one is in the database for replay."""
        if not _is_run_topic(topic):
            return
        run_id = run_id_of(topic)
        if run_id in self.followed or self.is_local(run_id):
            return
        cursor = await self.db.read(lambda s: store.max_seq(s, run_id))
        self.followed.setdefault(run_id, Followed(cursor))

    def lines_committed(self, run_id: int, seq: int) -> None:
        """A notification from the owner (on the loop): lines up to ``seq`` are committed."""
        followed = self.followed.get(run_id)
        if followed is not None and seq > followed.cursor:
            followed.wanted = True
            followed.ended = False
            self._wake.set()

    def catch_up(self) -> None:
        """After notifications may have been lost: look at every followed run again."""
        for followed in self.followed.values():
            followed.wanted = True
            followed.ended = False
        self._wake.set()

    def _on_topic(self, topic: str, listened: bool) -> None:
        if not _is_run_topic(topic):
            return
        if not listened:
            self.followed.pop(run_id_of(topic), None)
        else:
            self._wake.set()

    async def _loop(self) -> None:
        while True:
            await wait_event(self._wake, self.poll_s)
            self._wake.clear()
            for run_id, followed in list(self.followed.items()):
                try:
                    await self._read(run_id, followed)
                except Exception:
                    self.log.exception("reading the lines of run %s failed", run_id)

    async def _read(self, run_id: int, followed: Followed) -> None:
        if followed.ended and not followed.wanted:
            return
        if self.is_local(run_id):
            return  # this server runs it now and publishes its lines itself
        followed.wanted = False
        check_status = followed.quiet_ticks >= STATUS_EVERY
        while True:
            after = followed.cursor
            lines, status = await self.db.read(
                partial(_lines_after, run_id=run_id, after=after, with_status=check_status)
            )
            if self.followed.get(run_id) is not followed:
                return  # nobody listens any more
            if lines:
                followed.cursor = int(lines[-1]["seq"])
                followed.quiet_ticks = 0
                self.hub.publish(
                    Event(run_topic(run_id), "run.log", {"run_id": run_id, "lines": lines}, True)
                )
            else:
                followed.quiet_ticks += 1
                if status is not None and status not in store.ACTIVE:
                    followed.ended = True
                    followed.quiet_ticks = 0
            if len(lines) < PAGE:
                return


def _is_run_topic(topic: str) -> bool:
    return topic.startswith(RUN_TOPIC_PREFIX) and is_topic(topic)


def _lines_after(
    session: Session, run_id: int, after: int, with_status: bool
) -> tuple[list[dict[str, Any]], str | None]:
    lines = store.read_lines(session, run_id, after, PAGE)
    status = None
    if with_status or not lines:
        status = session.scalar(select(Run.status).where(Run.id == run_id))
    return lines, status
