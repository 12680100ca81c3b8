"""A PostgreSQL LISTEN connection that reconnects, pings when idle and never silently goes deaf.

Notifications sent while the listener is not connected are lost: PostgreSQL delivers them only
to sessions listening at commit time. ``on_connect`` runs after every (re)connection, once the
LISTENs are in place, so the caller can catch up on whatever it may have missed; a slow poll on
the caller's side is still wise, since a half-open connection is only found at the next ping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session

from ..redact import mask_url

NOTIFY_PAYLOAD_LIMIT = 8000
"""PostgreSQL refuses NOTIFY payloads of this many bytes or more (in the server encoding)."""

# How long one wait for notifications lasts: the bound on how late stop() is noticed.
_TICK_S = 0.25

# libpq settings added unless the URL chooses its own (libpq ignores the TCP ones on a Unix
# socket): a connect to a black-holed host gives up, and unacknowledged data (a ping on a
# half-open connection) ends the connection instead of waiting for minutes of retransmissions.
_CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}


def psycopg_conninfo(url: str) -> str:
    """The libpq connection string of a SQLAlchemy URL (``postgresql+psycopg:///db`` and
    friends)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def notify(connection: Connection | Session, channel: str, payload: str) -> None:
    """Send ``payload`` on ``channel`` in the transaction of ``connection``.

    Listeners receive it only when that transaction commits, never after a rollback; identical
    channel + payload pairs in one transaction are folded into one notification.
    """
    size = len(payload.encode())
    if size >= NOTIFY_PAYLOAD_LIMIT:
        raise ValueError(
            f"a notification payload must be under {NOTIFY_PAYLOAD_LIMIT} bytes, not {size}"
        )
    connection.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
    )


class PgListener:
    """LISTEN on `channels` from a dedicated autocommit psycopg 3 connection in its own thread.

    ``on_notify(channel, payload)`` and ``on_connect()`` run in that thread; what they raise is
    logged and the listening goes on. After ``idle_ping_s`` without a notification a
    ``SELECT 1`` checks the connection. Any connection error is logged and followed by a
    reconnection, waiting between ``retry_s[0]`` and ``retry_s[1]`` seconds (doubling each
    failed attempt).
    """

    def __init__(
        self,
        url: str,
        channels: Sequence[str],
        on_notify: Callable[[str, str], None],
        *,
        on_connect: Callable[[], None] | None = None,
        idle_ping_s: float = 30.0,
        retry_s: tuple[float, float] = (0.1, 5.0),
        log: logging.Logger | None = None,
    ) -> None:
        parsed = make_url(url)
        self._conninfo = psycopg_conninfo(url)
        given = conninfo_to_dict(self._conninfo)
        self._connect_kwargs: dict[str, Any] = {
            k: v for k, v in _CONNECT_DEFAULTS.items() if k not in given
        }
        self._where = mask_url(parsed.render_as_string(hide_password=True))
        self._password = parsed.password
        self.channels = tuple(channels)
        self.on_notify = on_notify
        self.on_connect = on_connect
        self.idle_ping_s = idle_ping_s
        self.retry_s = retry_s
        self.log = log if log is not None else logging.getLogger(__name__)
        self.backend_pid: int | None = None
        self.connects = 0
        self.pings = 0
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start listening in a daemon thread; connection errors are retried, never raised."""
        if self._thread is not None:
            return
        # each thread gets its own event: a thread that outlived stop() stays stopped
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stopping,), name="energyops-pg-listen", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close its connection; waits at most ``timeout`` seconds."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        thread.join(timeout)
        if thread.is_alive():
            self.log.warning("LISTEN thread for %s still busy after %.1f s", self._where, timeout)

    def wait_connected(self, timeout: float) -> bool:
        """Whether the LISTENs are in place, waiting up to ``timeout`` seconds for them."""
        return self._connected.wait(timeout)

    def _run(self, stopping: threading.Event) -> None:
        delay = self.retry_s[0]
        while not stopping.is_set():
            try:
                with psycopg.connect(
                    self._conninfo, autocommit=True, **self._connect_kwargs
                ) as conn:
                    self._listen(conn)
                    delay = self.retry_s[0]
                    self._call("on_connect", self.on_connect)
                    self._receive(conn, stopping)
            except Exception as exc:
                if not stopping.is_set():
                    self.log.warning(
                        "LISTEN connection to %s failed (%s); reconnecting in %.2f s",
                        self._where,
                        self._mask(exc),
                        delay,
                        exc_info=not isinstance(exc, psycopg.Error),
                    )
            finally:
                self._connected.clear()
                self.backend_pid = None
            if stopping.wait(delay):
                break
            delay = min(delay * 2, self.retry_s[1])

    def _listen(self, conn: Any) -> None:
        for channel in self.channels:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self.backend_pid = conn.info.backend_pid
        self.connects += 1
        self._connected.set()
        self.log.info(
            "listening on %s at %s (connection %d)",
            ", ".join(self.channels),
            self._where,
            self.connects,
        )

    def _receive(self, conn: Any, stopping: threading.Event) -> None:
        """Deliver notifications until stopped; raises when the connection fails."""
        ping_at = time.monotonic() + self.idle_ping_s
        while not stopping.is_set():
            wait = min(_TICK_S, max(0.0, ping_at - time.monotonic()))
            received = conn.notifies(timeout=wait)
            try:
                for note in received:
                    ping_at = time.monotonic() + self.idle_ping_s
                    self._call("on_notify", self.on_notify, note.channel, note.payload)
                    if stopping.is_set():
                        return
            finally:
                received.close()
            if time.monotonic() >= ping_at:
                conn.execute("SELECT 1")
                self.pings += 1
                ping_at = time.monotonic() + self.idle_ping_s

    def _call(self, name: str, callback: Callable[..., None] | None, *args: str) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            self.log.exception("%s callback of the LISTEN on %s failed", name, self._where)

    def _mask(self, exc: BaseException) -> str:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if self._password:
            message = message.replace(self._password, "***")
        return message
