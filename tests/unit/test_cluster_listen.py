"""PgListener and notify() against the machine's PostgreSQL."""

from __future__ import annotations

import logging
import queue
import secrets
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from energyops_ext.cluster.listen import PgListener, notify, psycopg_conninfo

Factory = Callable[..., tuple[PgListener, "Inbox"]]


class Inbox:
    """What a listener received, for the tests to wait on."""

    def __init__(self) -> None:
        self.notes: queue.Queue[tuple[str, str]] = queue.Queue()
        self.connects: queue.Queue[int] = queue.Queue()
        self.connect_count = 0

    def on_notify(self, channel: str, payload: str) -> None:
        self.notes.put((channel, payload))

    def on_connect(self) -> None:
        self.connect_count += 1
        self.connects.put(self.connect_count)

    def next(self, timeout: float = 1.0) -> tuple[str, str]:
        return self.notes.get(timeout=timeout)

    def silent_for(self, seconds: float) -> bool:
        try:
            self.notes.get(timeout=seconds)
        except queue.Empty:
            return True
        return False


def until(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def channel_name() -> str:
    return f"eo_test_{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def engine(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def make_listener(pg_url: str) -> Iterator[Factory]:
    made: list[PgListener] = []

    def make(*channels: str, url: str = pg_url, **options: object) -> tuple[PgListener, Inbox]:
        inbox = Inbox()
        listener = PgListener(
            url,
            channels,
            options.pop("on_notify", inbox.on_notify),  # type: ignore[arg-type]
            on_connect=inbox.on_connect,
            **options,  # type: ignore[arg-type]
        )
        made.append(listener)
        listener.start()
        return listener, inbox

    yield make
    for listener in made:
        listener.stop()


def send(engine: Engine, channel: str, payload: str) -> None:
    with engine.begin() as conn:
        notify(conn, channel, payload)


def backend_alive(engine: Engine, pid: int) -> bool:
    with engine.connect() as conn:
        found = conn.execute(text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid})
        return found.first() is not None


@pytest.mark.parametrize(
    ("url", "conninfo"),
    [
        ("postgresql+psycopg:///dbname", "postgresql:///dbname"),
        ("postgresql://user:pw@host/db", "postgresql://user:pw@host/db"),
        ("postgresql:///test", "postgresql:///test"),
        ("postgresql+psycopg://u:p%40ss@h:5433/d", "postgresql://u:p%40ss@h:5433/d"),
    ],
)
def test_conninfo_of_a_sqlalchemy_url(url: str, conninfo: str) -> None:
    assert psycopg_conninfo(url) == conninfo


def test_a_notification_from_another_connection_arrives(
    make_listener: Factory, pg_url: str
) -> None:
    channel = channel_name()
    listener, inbox = make_listener(channel)
    assert listener.wait_connected(5)
    assert listener.connects == 1
    assert inbox.connects.get(timeout=1) == 1
    with psycopg.connect(psycopg_conninfo(pg_url), autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (channel, "hello"))
    assert inbox.next() == (channel, "hello")


def test_several_channels_including_ones_that_need_quoting(
    make_listener: Factory, engine: Engine
) -> None:
    plain, quoted = channel_name(), f"Runs.Done {secrets.token_hex(2)}"
    listener, inbox = make_listener(plain, quoted)
    assert listener.wait_connected(5)
    send(engine, quoted, "a")
    send(engine, plain, "b")
    assert inbox.next() == (quoted, "a")
    assert inbox.next() == (plain, "b")


def test_notify_arrives_at_commit_and_never_after_rollback(
    make_listener: Factory, engine: Engine
) -> None:
    channel = channel_name()
    listener, inbox = make_listener(channel)
    assert listener.wait_connected(5)
    with engine.begin() as conn:
        notify(conn, channel, "committed")
        assert inbox.silent_for(0.3)
    assert inbox.next() == (channel, "committed")
    with engine.connect() as conn:
        notify(conn, channel, "rolled back")
        conn.rollback()
    send(engine, channel, "marker")
    assert inbox.next() == (channel, "marker")
    assert inbox.silent_for(0.1)


def test_notify_through_a_session(make_listener: Factory, engine: Engine) -> None:
    channel = channel_name()
    listener, inbox = make_listener(channel)
    assert listener.wait_connected(5)
    with Session(engine) as session:
        notify(session, channel, "from a session")
        session.commit()
    assert inbox.next() == (channel, "from a session")


def test_payloads_must_be_under_8000_bytes(make_listener: Factory, engine: Engine) -> None:
    channel = channel_name()
    listener, inbox = make_listener(channel)
    assert listener.wait_connected(5)
    with engine.begin() as conn:
        for payload in ("x" * 8000, "é" * 4000):
            with pytest.raises(ValueError, match="under 8000 bytes, not 8000"):
                notify(conn, channel, payload)
    send(engine, channel, "x" * 7999)
    assert inbox.next() == (channel, "x" * 7999)


def test_a_terminated_backend_is_replaced(make_listener: Factory, engine: Engine) -> None:
    channel = channel_name()
    listener, inbox = make_listener(channel, retry_s=(0.05, 0.5))
    assert listener.wait_connected(5)
    assert inbox.connects.get(timeout=1) == 1
    first = listener.backend_pid
    assert first is not None
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    assert until(lambda: listener.connects == 2)
    assert inbox.connects.get(timeout=1) == 2
    assert listener.wait_connected(1)
    assert listener.backend_pid not in (None, first)
    send(engine, channel, "after the reconnect")
    assert inbox.next() == (channel, "after the reconnect")


def test_idle_connection_is_pinged(make_listener: Factory, engine: Engine) -> None:
    channel = channel_name()
    listener, inbox = make_listener(channel, idle_ping_s=0.2)
    assert listener.wait_connected(5)
    assert until(lambda: listener.pings >= 2)
    send(engine, channel, "still listening")
    assert inbox.next() == (channel, "still listening")
    assert listener.connects == 1


def test_a_failing_callback_does_not_stop_delivery(
    make_listener: Factory, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    channel = channel_name()
    received: queue.Queue[str] = queue.Queue()

    def on_notify(channel: str, payload: str) -> None:
        if payload == "boom":
            raise RuntimeError("callback failed")
        received.put(payload)

    listener, _ = make_listener(channel, on_notify=on_notify)
    assert listener.wait_connected(5)
    send(engine, channel, "boom")
    send(engine, channel, "next")
    assert received.get(timeout=1) == "next"
    assert any(
        r.levelno == logging.ERROR and "on_notify callback" in r.getMessage()
        for r in caplog.records
    )
    assert listener.connects == 1


def test_stop_is_prompt_and_closes_the_backend(make_listener: Factory, engine: Engine) -> None:
    listener, _ = make_listener(channel_name())
    assert listener.wait_connected(5)
    pid = listener.backend_pid
    assert pid is not None and backend_alive(engine, pid)
    started = time.monotonic()
    listener.stop()
    assert time.monotonic() - started < 1.0
    assert until(lambda: not backend_alive(engine, pid))
    assert listener.backend_pid is None
    assert not listener.wait_connected(0)
    listener.stop()  # idempotent


def test_an_unreachable_server_is_retried_without_raising(
    make_listener: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="energyops_ext.cluster.listen")
    listener, _ = make_listener(
        channel_name(), url="postgresql://eo:s3cret@127.0.0.1:1/x", retry_s=(0.05, 0.2)
    )

    def failures() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "failed" in r.getMessage()]

    assert until(lambda: len(failures()) >= 3)
    assert not listener.wait_connected(0)
    assert listener.connects == 0
    assert all("s3cret" not in r.getMessage() for r in failures())
    assert "postgresql://***@127.0.0.1:1/x" in failures()[0].getMessage()
    started = time.monotonic()
    listener.stop()
    assert time.monotonic() - started < 1.0
