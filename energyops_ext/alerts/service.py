"""Alert rules of one server: the API's operations, and evaluation on uploads and a timer.

An upload of market data is evaluated by the server it was uploaded to (its
``market.updated`` event; relayed copies from other servers arrive ``remote`` and are
ignored), so N servers do not evaluate it N times. The timer runs on every server; the
evaluation skips rules another server evaluated within the interval. Database work runs on
the database threads, never on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..db import Database, utcnow
from ..events import DATASETS, Event, EventHub
from ..events.types import ALERTS
from ..feed import announce
from ..tasks import cancel_and_wait
from . import evaluate, store
from .evaluate import Written

TRIGGERS = ("data", "timer", "manual")


@dataclass
class EvaluationReport:
    trigger: str
    rules: int = 0
    evaluated: int = 0
    written: int = 0
    dropped: int = 0
    notifications: int = 0
    transitions: list[dict[str, Any]] = field(default_factory=list)
    elapsed_ms: float = 0.0


class AlertService:
    def __init__(
        self,
        db: Database,
        hub: EventHub,
        server_id: str,
        log: logging.Logger,
        *,
        interval_s: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
        on_notified: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.hub = hub
        self.server_id = server_id
        self.log = log
        self.interval_s = interval_s
        self.clock = clock
        self.on_notified = on_notified
        self._timer: asyncio.Task[None] | None = None
        self._running: asyncio.Task[None] | None = None
        self._again = False

    # --- life cycle ---

    def start(self) -> None:
        self.hub.add_listener(self._on_event)
        if self._timer is None and self.interval_s > 0:
            self._timer = asyncio.ensure_future(self._timer_loop())

    async def stop(self) -> None:
        self.hub.remove_listener(self._on_event)
        await cancel_and_wait(self._timer, self._running)
        self._timer = self._running = None

    def _on_event(self, event: Event) -> None:
        if (
            event.topic == DATASETS
            and event.type == "market.updated"
            and not event.remote
            and event.data.get("kind") == "market-snapshot"
        ):
            self.request()

    def request(self) -> None:
        """Evaluate soon because market data changed; changes during an evaluation make
        one more evaluation after it, not one each."""
        if self._running is not None and not self._running.done():
            self._again = True
            return
        self._running = asyncio.ensure_future(self._on_data())

    async def settled(self) -> None:
        """Wait until the evaluations uploads asked for are done (tests, benchmarks)."""
        while self._running is not None and not self._running.done():
            await asyncio.shield(self._running)

    async def _on_data(self) -> None:
        while True:
            self._again = False
            try:
                await self.evaluate("data")
            except Exception:
                self.log.exception("alert evaluation after an upload failed")
            if not self._again:
                return

    async def _timer_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.evaluate("timer")
            except Exception:
                self.log.exception("alert evaluation on the timer failed")

    # --- evaluation ---

    async def evaluate(self, trigger: str = "manual") -> EvaluationReport:
        """Evaluate every enabled rule once: read and decide on a reader thread, write each
        decision on the writer with a conditional update, then publish. After new data, a
        rule whose write was dropped (another server wrote it meanwhile, maybe from older
        data) is evaluated once more."""
        started = time.perf_counter()
        report = EvaluationReport(trigger)
        written = await self._evaluate_once(trigger, None, report)
        if trigger == "data" and written.dropped_ids:
            await self._evaluate_once(trigger, written.dropped_ids, report)
        report.elapsed_ms = (time.perf_counter() - started) * 1000
        if report.transitions or report.dropped:
            self.log.info(
                "alerts (%s): %s rules, %s transitions, %s notifications, %s dropped",
                trigger,
                report.evaluated,
                len(report.transitions),
                report.notifications,
                report.dropped,
            )
        return report

    async def _evaluate_once(
        self, trigger: str, only: set[int] | None, report: EvaluationReport
    ) -> Written:
        now = self.clock()
        rules, planned = await self.db.read(
            lambda s: evaluate.plan(s, now, trigger=trigger, interval_s=self.interval_s, only=only)
        )
        if only is None:
            report.rules, report.evaluated = rules, len(planned)
        if not planned:
            return Written()
        written = await self.db.write(lambda s: evaluate.apply(s, planned, now, self.server_id))
        report.written += written.written
        report.dropped += written.dropped
        report.transitions += written.transitions
        report.notifications += len(written.pending.notifications)
        announce(self.hub, written.pending.activities, written.pending.notifications)
        for event in written.events:
            self.hub.publish(event)
        if written.pending.notifications and self.on_notified is not None:
            self.on_notified()
        return written

    # --- the API's operations ---

    async def create(self, body: dict[str, Any], user: str | None) -> dict[str, Any]:
        now = self.clock()
        rule = await self.db.write(lambda s: store.create_rule(s, body, user, now))
        self.hub.publish(Event(ALERTS, "alert.created", rule))
        return rule

    async def update(self, rule_id: int, body: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        rule = await self.db.write(lambda s: store.update_rule(s, rule_id, body, now))
        self.hub.publish(Event(ALERTS, "alert.updated", rule))
        return rule

    async def delete(self, rule_id: int) -> None:
        await self.db.write(lambda s: store.delete_rule(s, rule_id))
        self.hub.publish(Event(ALERTS, "alert.deleted", {"id": rule_id}))

    async def get(self, rule_id: int) -> dict[str, Any]:
        return await self.db.read(lambda s: store.rule_json(store.get_rule(s, rule_id)))

    async def list_rules(
        self, *, limit: int, offset: int, state: str | None, enabled: bool | None
    ) -> dict[str, Any]:
        return await self.db.read(
            lambda s: store.list_rules(s, limit=limit, offset=offset, state=state, enabled=enabled)
        )

    async def history(self, rule_id: int, *, limit: int, offset: int) -> dict[str, Any]:
        return await self.db.read(
            lambda s: store.list_history(s, rule_id, limit=limit, offset=offset)
        )
