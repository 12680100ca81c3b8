"""Notifications out through apprise, to receivers the tests start on 127.0.0.1: an SMTP
server (aiosmtpd) and an HTTP receiver get exactly the messages sent; a refusing channel is
retried with back-off on an injected clock, then failed, in /deliveries and the feed; sends
never hold up the server; two servers' workers send each delivery once."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select, text
from sqlalchemy.orm import Session as DbSession

from energyops_ext.db import Database
from energyops_ext.db.models import Delivery, Notification
from energyops_ext.events import EventHub
from energyops_ext.feed import add_notification
from energyops_ext.notify import outbox
from energyops_ext.notify.worker import DeliveryWorker
from energyops_ext.services import Services

from .conftest import Fetch, body
from .runs_helpers import script_id, start_run, wait_for
from .test_alerts import SPIKE, create, day_file, upload_day

MAIL_FROM = "alerts@desk.example"
MAIL_TO = "trader@desk.example"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- receivers ---


@dataclass
class Mailbox:
    """What the local SMTP server received."""

    port: int
    messages: list[tuple[str, list[str], Message]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append(
            (str(envelope.mail_from), list(envelope.rcpt_tos), message_from_bytes(content))
        )
        return "250 OK"

    @property
    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from={MAIL_FROM}&to={MAIL_TO}"


@dataclass
class Receiver:
    """A local HTTP endpoint that records every POST; ``status`` is what it answers, and
    while ``gate`` is clear it holds each request (a slow channel, without sleeping)."""

    port: int = 0
    status: int = 200
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def paths(self) -> list[str]:
        return [p for p, _ in self.posts]


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    state.gate.set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length) or b"{}")
            state.posts.append((self.path, payload))
            state.arrived.set()
            state.gate.wait(30)
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.gate.set()
    server.shutdown()
    server.server_close()


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def deliver_all(worker: DeliveryWorker) -> None:
    """Send everything due now, also what the worker's own loop claimed meanwhile."""
    while True:
        await worker.idle()
        if await worker.run_once() == 0:
            await worker.idle()
            if await worker.run_once() == 0:
                return


def deliveries(db: Database) -> list[Delivery]:
    return list(db.read_sync(lambda s: s.scalars(select(Delivery).order_by(Delivery.id)).all()))


# --- a server whose notification_urls are the receivers ---


@pytest.fixture
def energyops_config(mailbox: Mailbox, receiver: Receiver) -> dict[str, Any]:
    return {
        "notification_urls": [mailbox.url, receiver.url("desk")],
        "delivery_backoff_s": 30.0,
        "delivery_attempts": 3,
        "delivery_timeout_s": 10.0,
    }


async def test_the_receivers_get_exactly_the_messages_sent(
    api: Fetch, services: Services, mailbox: Mailbox, receiver: Receiver
) -> None:
    rule = await create(api, pending_evaluations=1, channels=[receiver.url("rule")])
    await upload_day(api, services, day_file(prices=SPIKE))
    await deliver_all(services.deliveries)

    title = "Alert firing: DAM spike"
    message = "DAM price > 9000: 9700 on 2024-04-13 in blocks 73-76 (per block)"
    assert len(mailbox.messages) == 1
    sender, recipients, mail = mailbox.messages[0]
    assert (sender, recipients) == (MAIL_FROM, [MAIL_TO])
    assert mail["Subject"] == title
    plain = next(p for p in mail.walk() if p.get_content_type() == "text/plain")
    assert plain.get_payload(decode=True).decode().strip() == message  # type: ignore[union-attr]

    assert sorted(receiver.paths()) == ["/desk", "/rule"]
    for _, payload in receiver.posts:
        assert (payload["title"], payload["message"], payload["type"]) == (
            title,
            message,
            "failure",
        )

    listed = body(await api("GET", "deliveries"))
    assert listed["total"] == 3 and listed["counts"]["sent"] == 3
    assert {d["status"] for d in listed["items"]} == {"sent"}
    assert {d["claimed_by"] for d in listed["items"]} == {services.me.id}
    [notification] = [
        n for n in body(await api("GET", "notifications"))["items"] if n["category"] == "alert"
    ]
    assert {d["notification_id"] for d in listed["items"]} == {notification["id"]}
    assert sorted(d["channel"] for d in listed["items"]) == sorted(
        [
            f"mailto://127.0.0.1:{mailbox.port}?from={MAIL_FROM}&to={MAIL_TO}",
            f"json://127.0.0.1:{receiver.port}/desk",
            f"json://127.0.0.1:{receiver.port}/rule",
        ]
    )
    # nothing more goes out: the rule stays firing, told once
    await upload_day(api, services, day_file(prices=SPIKE))
    await deliver_all(services.deliveries)
    assert len(mailbox.messages) == 1 and len(receiver.posts) == 2
    assert body(await api("GET", f"alerts/{rule['id']}"))["state"] == "firing"


async def test_a_refusing_channel_is_retried_with_back_off_then_failed_and_told(
    api: Fetch, services: Services, mailbox: Mailbox, receiver: Receiver
) -> None:
    receiver.status = 500
    closed = f"json://127.0.0.1:{free_port()}/nobody"

    def notify(session: DbSession) -> int:
        row = add_notification(
            session,
            type="run_failed",
            category="run",
            severity="error",
            title="Run 7 failed",
            message="exit code 1",
        )
        outbox.queue_deliveries(session, row, [closed])
        return row.id

    clock = Clock(datetime.now(UTC) + timedelta(seconds=1))
    services.deliveries.clock = clock
    notification_id = await services.db.write(notify)
    start = clock.now
    seen: list[tuple[float, int, int]] = []  # (seconds, posts to the 500 receiver, sent mails)
    for offset in (0, 29, 30, 89, 90, 200):
        clock.now = start + timedelta(seconds=offset)
        await deliver_all(services.deliveries)
        seen.append((offset, len(receiver.posts), len(mailbox.messages)))
    # attempts at 0, 30 (back-off 30 s) and 90 (60 s): three, then failed
    assert seen == [(0, 1, 1), (29, 1, 1), (30, 2, 1), (89, 2, 1), (90, 3, 1), (200, 3, 1)]

    listed = body(await api("GET", "deliveries", params={"notification_id": notification_id}))
    by_channel = {d["channel"]: d for d in listed["items"]}
    refused = by_channel[f"json://127.0.0.1:{receiver.port}/desk"]
    unreachable = by_channel[closed]
    assert (refused["status"], refused["attempts"]) == ("failed", 3)
    assert "500" in refused["last_error"], refused
    assert (unreachable["status"], unreachable["attempts"]) == ("failed", 3)
    assert "Connection error" in unreachable["last_error"], unreachable
    assert by_channel[mailbox.url]["status"] == "sent"
    failed = body(await api("GET", "deliveries", params={"status": "failed"}))
    assert failed["total"] == 2 and failed["counts"]["failed"] == 2

    told = [
        n for n in body(await api("GET", "notifications"))["items"] if n["category"] == "delivery"
    ]
    assert sorted(n["title"] for n in told) == sorted(
        [
            f"Delivery to {closed} failed",
            f"Delivery to json://127.0.0.1:{receiver.port}/desk failed",
        ]
    )
    assert all(n["severity"] == "error" and "'Run 7 failed'" in n["message"] for n in told)
    # the failures are not themselves sent anywhere (no loop of failing messages)
    assert listed["total"] == 3 and body(await api("GET", "deliveries"))["total"] == 3
    activities = body(await api("GET", "activities", params={"type": "system"}))["items"]
    assert sum(a["action"] == "delivery_failed" for a in activities) == 2


async def test_a_slow_channel_holds_up_neither_requests_nor_runs(
    api: Fetch, services: Services, receiver: Receiver, mailbox: Mailbox
) -> None:
    receiver.gate.clear()  # the receiver holds every request until released
    await create(api, pending_evaluations=1)
    await upload_day(api, services, day_file(prices=SPIKE))
    arrived = await asyncio.to_thread(receiver.arrived.wait, 10)
    assert arrived, "the delivery did not start"

    began = time.monotonic()
    health = await api("GET", "health")
    assert health.code == 200 and time.monotonic() - began < 1.0
    sid = await script_id(api, "test_quick.py", "print('quick')\n")
    run = await wait_for(api, (await start_run(api, sid))["id"], timeout_s=30)
    assert run["status"] == "succeeded"
    pending = body(await api("GET", "deliveries", params={"status": "sending"}))
    assert pending["total"] == 1  # still held by the receiver

    receiver.gate.set()
    await deliver_all(services.deliveries)
    assert body(await api("GET", "deliveries"))["counts"]["sent"] == 2


# --- two servers' workers on one database ---


def queue(db: Database, urls: list[str], title: str = "Alert firing: DAM spike") -> int:
    def write(session: DbSession) -> int:
        row = Notification(
            type="alert_firing",
            category="alert",
            severity="error",
            title=title,
            message="DAM price > 9000",
            is_read=False,
            is_archived=False,
            created_at=datetime.now(UTC) - timedelta(seconds=1),
        )
        session.add(row)
        session.flush()
        outbox.queue_deliveries(session, row, urls)
        return row.id

    return db.write_sync(write)


@pytest.fixture
def second_database(db_url: str) -> Iterator[Database]:
    db = Database(db_url)
    yield db
    db.close()


def worker(db: Database, name: str, clock: Clock | None = None) -> DeliveryWorker:
    return DeliveryWorker(
        db,
        EventHub(),
        name,
        logging.getLogger("test"),
        clock=clock or (lambda: datetime.now(UTC)),
        timeout_s=5.0,
        threads=3,
    )


async def test_two_servers_workers_send_each_delivery_once(
    database: Database, second_database: Database, receiver: Receiver
) -> None:
    urls = [receiver.url(f"m{i}") for i in range(12)]
    queue(database, urls)
    a, b = worker(database, "server-a"), worker(second_database, "server-b")
    try:
        for _ in range(10):
            claimed = await asyncio.gather(a.run_once(), b.run_once())
            if list(claimed) == [0, 0]:
                break
    finally:
        await a.stop()
        await b.stop()
    assert sorted(receiver.paths()) == sorted(f"/m{i}" for i in range(12))
    rows = deliveries(database)
    assert {(r.status, r.attempts) for r in rows} == {("sent", 1)}
    assert {r.claimed_by for r in rows} == {"server-a", "server-b"}


def wait_for_lock_wait(db: Database, within_s: float = 10.0) -> None:
    """Until a session of this database waits on a row lock."""
    deadline = time.monotonic() + within_s
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        with db.read_engine.connect() as conn:
            if conn.execute(query).scalar_one():
                return
    raise AssertionError(f"no session waited on a lock within {within_s} s")


def test_a_server_that_loses_a_claim_race_takes_the_next_deliveries(
    database: Database, second_database: Database, db_url: str
) -> None:
    """server-b looks at the same three due rows server-a is claiming; once server-a commits,
    server-b's updates of those rows find them taken and it claims the next three instead of
    none (before, one server could take every delivery while the other came back empty)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite holds its write lock from BEGIN IMMEDIATE: no claim in between")
    queue(database, [f"json://127.0.0.1:9/m{i}" for i in range(9)])
    now, lease = datetime.now(UTC), timedelta(seconds=60)
    first = database._write_sessions()
    first.begin()
    mine = outbox.claim(first, "server-a", now, lease, 3)  # held, not committed
    result: list[list[outbox.Claimed]] = []

    def claim_b() -> None:
        result.append(
            second_database.write_sync(lambda s: outbox.claim(s, "server-b", now, lease, 3))
        )

    other = threading.Thread(target=claim_b)
    other.start()
    wait_for_lock_wait(database)  # server-b has looked and waits on server-a's row locks
    first.commit()
    first.close()
    other.join(10)
    (theirs,) = result
    assert len(mine) == len(theirs) == 3
    assert not {d.id for d in mine} & {d.id for d in theirs}
    assert {r.claimed_by for r in deliveries(database)} == {"server-a", "server-b", None}


async def test_a_server_dying_mid_delivery_costs_a_retry_not_the_message(
    database: Database, second_database: Database, receiver: Receiver
) -> None:
    queue(database, [receiver.url("once")])
    clock = Clock(datetime.now(UTC))
    lease = timedelta(seconds=20)
    # server-a claims the row and dies before it sends or records anything
    [claimed] = database.write_sync(lambda s: outbox.claim(s, "server-a", clock.now, lease, 5))
    assert claimed.attempt == 1
    b = worker(second_database, "server-b", clock)
    try:
        assert await b.run_once() == 0  # the claim still holds
        clock.now += lease + timedelta(seconds=1)
        assert await b.run_once() == 1
        await b.idle()
    finally:
        await b.stop()
    assert receiver.paths() == ["/once"]
    [row] = deliveries(database)
    assert (row.status, row.attempts, row.claimed_by) == ("sent", 2, "server-b")
    # the dead server's late outcome no longer counts
    assert not database.write_sync(lambda s: outbox.record_sent(s, claimed, "server-a", clock.now))


async def test_old_sent_and_failed_deliveries_are_pruned(
    database: Database, receiver: Receiver
) -> None:
    queue(database, [receiver.url("sent"), receiver.url("failed"), receiver.url("pending")])
    now = datetime.now(UTC)

    def age(session: DbSession) -> None:
        rows = session.scalars(select(Delivery).order_by(Delivery.id)).all()
        for row, status in zip(rows, ("sent", "failed", "pending"), strict=True):
            row.status = status
            row.created_at = now - timedelta(days=31)

    database.write_sync(age)
    assert database.write_sync(lambda s: outbox.prune(s, now - timedelta(days=30))) == 2
    assert [r.status for r in deliveries(database)] == ["pending"]
