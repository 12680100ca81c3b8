"""The delivery worker of one server: claims due deliveries and sends them off the loop.

Sends run on a small thread pool of their own (never the database threads, never the loop),
each bounded by ``timeout_s``; a slow or refusing channel delays only its own messages. A
failed attempt is retried with exponential back-off; the last failure is recorded on the row
and told in the feed (a notification of category ``delivery``, which is itself never sent).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from ..config import Settings
from ..db import Database, utcnow
from ..events import Event, EventHub
from ..feed import Pending, add_activity, add_notification, announce
from ..tasks import cancel_and_wait, wait_event
from . import outbox
from .channels import display_url, recognised
from .outbox import Claimed
from .send import Sender, SendResult, send_apprise

CLAIM_BATCH = 20
KEEP_DELIVERIES = timedelta(days=30)
PRUNE_EVERY = timedelta(hours=1)


class DeliveryWorker:
    def __init__(
        self,
        db: Database,
        hub: EventHub,
        server_id: str,
        log: logging.Logger,
        *,
        sender: Sender = send_apprise,
        clock: Callable[[], datetime] = utcnow,
        poll_s: float = 1.0,
        timeout_s: float = 30.0,
        backoff_s: float = 30.0,
        threads: int = 4,
    ) -> None:
        self.db = db
        self.hub = hub
        self.server_id = server_id
        self.log = log
        self.sender = sender
        self.clock = clock
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        # a claim outlives a send that times out, so only a dead server's claim expires
        self.lease = timedelta(seconds=2 * timeout_s + 10)
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="energyops-notify")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    # --- life cycle ---

    def start(self) -> None:
        if self._task is None:
            self.hub.add_listener(self._on_event)
            self._task = asyncio.ensure_future(self._loop())

    def _on_event(self, event: Event) -> None:
        # a notification written here has its deliveries queued with it: send them now
        if event.type == "notification.new" and not event.remote:
            self.wake()

    def wake(self) -> None:
        """Look for due deliveries now (a notification was just written here)."""
        self._wake.set()

    async def idle(self) -> None:
        """Wait for the sends in flight (tests, benchmarks)."""
        while self._sending:
            await asyncio.gather(*list(self._sending), return_exceptions=True)

    async def stop(self) -> None:
        self.hub.remove_listener(self._on_event)
        await cancel_and_wait(self._task)
        self._task = None
        for task in list(self._sending):
            task.cancel()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        # a send still blocked in a thread is left to its socket timeout
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _loop(self) -> None:
        pruned_at: datetime | None = None
        while True:
            try:
                await self.run_once(wait=False)
                now = self.clock()
                if pruned_at is None or now - pruned_at >= PRUNE_EVERY:
                    pruned_at = now
                    before = now - KEEP_DELIVERIES
                    await self.db.write(functools.partial(outbox.prune, before=before))
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("delivery worker pass failed")
            await wait_event(self._wake, self.poll_s)
            self._wake.clear()

    # --- one pass ---

    async def run_once(self, *, wait: bool = True) -> int:
        """Claim what is due (as many as there are free send threads) and send it. With
        ``wait`` the sends are awaited (tests, benchmarks); the loop lets them run."""
        free = self.threads - len(self._sending)
        if free <= 0:
            return 0
        now = self.clock()
        claimed = await self.db.write(
            lambda s: outbox.claim(s, self.server_id, now, self.lease, min(free, CLAIM_BATCH))
        )
        tasks = [asyncio.ensure_future(self._deliver(d)) for d in claimed]
        for task in tasks:
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        if wait and tasks:
            await asyncio.gather(*tasks)
        return len(claimed)

    async def _deliver(self, delivery: Claimed) -> None:
        loop = asyncio.get_running_loop()
        sending = loop.run_in_executor(
            self._pool,
            self.sender,
            delivery.url,
            delivery.title,
            delivery.body,
            delivery.severity,
            self.timeout_s,
        )
        try:
            result = await asyncio.wait_for(sending, self.timeout_s + 1)
        except TimeoutError:
            result = SendResult(False, f"no answer within {self.timeout_s:g} s")
        except Exception as exc:
            result = SendResult(False, f"{type(exc).__name__}: {exc}")
        error = (result.error or "").replace(delivery.url, delivery.channel)
        try:
            await self._record(delivery, result.ok, error)
        except Exception:
            self.log.exception("delivery %s: recording the outcome failed", delivery.id)

    async def _record(self, delivery: Claimed, ok: bool, error: str) -> None:
        now = self.clock()
        if ok:
            await self.db.write(lambda s: outbox.record_sent(s, delivery, self.server_id, now))
            self.log.info("delivery %s sent to %s", delivery.id, delivery.channel)
            return
        final = delivery.attempt >= delivery.max_attempts
        retry_at = None if final else now + outbox.backoff_delay(delivery.attempt, self.backoff_s)

        def write(session: Session) -> Pending | None:
            if not outbox.record_failure(session, delivery, self.server_id, error, retry_at):
                return None
            return self._tell_failure(session, delivery, error) if final else Pending([], [])

        pending = await self.db.write(write)
        if retry_at is not None:
            self.log.warning(
                "delivery %s to %s failed (attempt %s of %s), retry at %s: %s",
                delivery.id,
                delivery.channel,
                delivery.attempt,
                delivery.max_attempts,
                retry_at.isoformat(timespec="seconds"),
                error,
            )
        else:
            self.log.error(
                "delivery %s to %s failed for good after %s attempts: %s",
                delivery.id,
                delivery.channel,
                delivery.attempt,
                error,
            )
        if pending is not None:
            announce(self.hub, pending.activities, pending.notifications)

    @staticmethod
    def _tell_failure(session: Session, delivery: Claimed, error: str) -> Pending:
        title = f"Delivery to {delivery.channel} failed"
        message = (
            f"{delivery.title!r} could not be delivered to {delivery.channel} after "
            f"{delivery.attempt} attempts: {error}"
        )
        activity = add_activity(
            session,
            type="system",
            action="delivery_failed",
            title=title,
            entity_type="delivery",
            entity_id=delivery.id,
            status="failed",
        )
        notification = add_notification(
            session,
            type="delivery_failed",
            category="delivery",
            severity="error",
            title=title,
            message=message,
            entity_type="delivery",
            entity_id=delivery.id,
        )
        return Pending([activity], [notification])


def delivery_worker(
    settings: Settings, db: Database, hub: EventHub, server_id: str, log: logging.Logger
) -> DeliveryWorker:
    """The worker of a server, with its ``notification_urls`` queued for every notification
    (URLs apprise does not recognise are left out, with an error in the log)."""
    urls = []
    for url in settings.notification_urls:
        if recognised(url):
            urls.append(url)
        else:
            log.error(
                "notification_urls: apprise does not recognise %s; left out", display_url(url)
            )
    outbox.set_global_channels(db.write_engine, urls, settings.delivery_attempts)
    if urls:
        log.info("EnergyOps notifications go to %s", ", ".join(display_url(u) for u in urls))
    return DeliveryWorker(
        db,
        hub,
        server_id,
        log,
        poll_s=max(0.2, settings.poll_s * 2),
        timeout_s=settings.delivery_timeout_s,
        backoff_s=settings.delivery_backoff_s,
    )
