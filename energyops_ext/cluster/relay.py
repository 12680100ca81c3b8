"""Events published on one server reach the subscribers of every server.

Every event this server publishes (but a run's log lines, which other servers read from the
database, and dashboard pushes, which each server makes for its own subscribers) is sent to the
others: on PostgreSQL as a NOTIFY payload (delivered at commit, in commit order), on SQLite as
a row of ``cluster_events`` that the other servers poll (SQLite commits one writer at a
time, so ids appear in order). Received events are published here marked ``remote``, so they
are never sent on again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from ..db import Database, utcnow
from ..db.models import ClusterEvent
from ..events import DASHBOARD, Event, EventHub
from ..tasks import cancel_and_wait
from .listen import NOTIFY_PAYLOAD_LIMIT, notify
from .wakeups import EVENTS

LOCAL_ONLY_TYPES = frozenset({"run.log"})
LOCAL_ONLY_TOPICS = frozenset({DASHBOARD})
# room for the JSON around the data and multi-byte text
PAYLOAD_BUDGET = NOTIFY_PAYLOAD_LIMIT - 200
KEEP_EVENTS = timedelta(minutes=10)
SEND_BATCH = 200


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode(server_id: str, event: Event) -> str:
    """One event as a payload under PostgreSQL's NOTIFY limit: the biggest nested values of
    its data are dropped (and listed in ``truncated``) until it fits."""
    data = dict(event.data)
    while True:
        payload = json.dumps(
            {"server": server_id, "topic": event.topic, "type": event.type, "data": data},
            default=_default,
            separators=(",", ":"),
        )
        if len(payload.encode()) < PAYLOAD_BUDGET:
            return payload
        nested = [
            k for k, v in data.items() if isinstance(v, dict | list | str) and k != "truncated"
        ]
        if not nested:
            return json.dumps(
                {"server": server_id, "topic": event.topic, "type": event.type, "data": {}}
            )
        biggest = max(nested, key=lambda k: len(json.dumps(data[k], default=_default)))
        del data[biggest]
        data["truncated"] = [*data.get("truncated", []), biggest]


def decode(payload: str) -> tuple[str, Event] | None:
    try:
        raw = json.loads(payload)
        event = Event(str(raw["topic"]), str(raw["type"]), dict(raw["data"]), remote=True)
        return str(raw["server"]), event
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


def relayed(event: Event) -> bool:
    return not (event.remote or event.type in LOCAL_ONLY_TYPES or event.topic in LOCAL_ONLY_TOPICS)


class EventRelay:
    def __init__(
        self,
        db: Database,
        hub: EventHub,
        server_id: str,
        *,
        poll_s: float,
        log: logging.Logger,
        receive: bool = True,
    ) -> None:
        """``receive=False``: only send (a Dask worker's task has no subscribers)."""
        self.receiving = receive
        self.db = db
        self.hub = hub
        self.server_id = server_id
        self.poll_s = poll_s
        self.log = log
        self.sent = 0
        self.received = 0
        self._outbox: list[str] = []
        self._send = asyncio.Event()
        self._cursor: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.hub.add_listener(self._on_event)
        self._tasks = [asyncio.ensure_future(self._sender())]
        if self.db.kind == "sqlite" and self.receiving:
            self._tasks.append(asyncio.ensure_future(self._poller()))

    async def stop(self) -> None:
        self.hub.remove_listener(self._on_event)
        await self._flush()
        await cancel_and_wait(*self._tasks)
        self._tasks = []

    # --- out ---

    def _on_event(self, event: Event) -> None:
        if relayed(event):
            self._outbox.append(encode(self.server_id, event))
            self._send.set()

    async def _sender(self) -> None:
        while True:
            await self._send.wait()
            self._send.clear()
            try:
                await self._flush()
            except Exception:
                self.log.exception("relaying events to other servers failed")

    async def _flush(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox[:SEND_BATCH], self._outbox[SEND_BATCH:]
            await self.db.write(partial(self._write, payloads=batch))
            self.sent += len(batch)

    def _write(self, session: Session, payloads: list[str]) -> None:
        if self.db.kind == "postgresql":
            for payload in payloads:
                notify(session, EVENTS, payload)
            return
        now = utcnow()
        session.execute(
            insert(ClusterEvent),
            [{"server_id": self.server_id, "payload": p, "created_at": now} for p in payloads],
        )

    # --- in ---

    def receive(self, payload: str) -> None:
        """A payload from another server (on the loop)."""
        decoded = decode(payload)
        if decoded is None:
            self.log.warning("ignoring a malformed relayed event: %.200s", payload)
            return
        origin, event = decoded
        if origin != self.server_id:
            self.received += 1
            self.hub.publish(event)

    async def _poller(self) -> None:
        """SQLite: read the events other servers wrote (for this server's subscribers and
        its jupyter_events listeners), from the moment this server started."""
        self._cursor = await self.db.read(_last_event_id)
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self._poll()
            except Exception:
                self.log.exception("reading events of other servers failed")

    async def _poll(self) -> None:
        after = self._cursor or 0
        last, payloads = await self.db.read(lambda s: _events_after(s, after, self.server_id))
        self._cursor = last
        for payload in payloads:
            self.receive(payload)


def _last_event_id(session: Session) -> int:
    return session.scalar(select(func.max(ClusterEvent.id))) or 0


def _events_after(session: Session, after: int, server_id: str) -> tuple[int, list[str]]:
    """The last id read, and the payloads other servers wrote after ``after``."""
    rows = session.execute(
        select(ClusterEvent.id, ClusterEvent.payload, ClusterEvent.server_id)
        .where(ClusterEvent.id > after)
        .order_by(ClusterEvent.id)
        .limit(1000)
    ).all()
    last = rows[-1][0] if rows else after
    return last, [payload for _id, payload, origin in rows if origin != server_id]


def prune_events(session: Session, now: datetime) -> None:
    """Drop relayed events every poller has long read (idempotent across servers)."""
    session.execute(delete(ClusterEvent).where(ClusterEvent.created_at < now - KEEP_EVENTS))
