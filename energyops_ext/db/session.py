"""Engines, sessions and the threads database work runs on.

The event loop never touches the database: ``Database.read`` runs a function on a small reader
pool, ``Database.write`` on one writer thread (for SQLite this serializes writes inside the
process; ``BEGIN IMMEDIATE`` and ``busy_timeout`` handle other processes such as the CLI).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from ..redact import mask_url

T = TypeVar("T")
log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str | URL) -> URL:
    """Pick the drivers we ship: psycopg 3 for PostgreSQL, the stdlib for SQLite."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL once (the mode is kept in the file). Switching needs the
    database to itself and SQLite answers "locked" at once, without waiting, while another
    process holds it (servers starting together): try again until the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _make_engine(url: URL, *, immediate: bool) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (so BEGIN IMMEDIATE works).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _use_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # the WAL is copied back into the file by Database's checkpoint thread, not by
        # whichever commit passes the size limit (see Database._checkpoint_soon)
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


CHECKPOINT_INTERVAL = 1.0  # seconds between SQLite WAL checkpoints at most


class Database:
    """One database: a read engine, a write engine (the same one on PostgreSQL), and threads."""

    def __init__(
        self,
        url: str | URL,
        *,
        reader_threads: int = 4,
        checkpoint_interval: float = CHECKPOINT_INTERVAL,
    ) -> None:
        self.url = normalize_url(url)
        self.kind = self.url.get_backend_name()  # "sqlite" | "postgresql"
        if self.kind == "sqlite" and self.url.database:
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        self.write_engine = _make_engine(self.url, immediate=True)
        self.read_engine = (
            _make_engine(self.url, immediate=False) if self.kind == "sqlite" else self.write_engine
        )
        self._write_sessions = sessionmaker(self.write_engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        writer_threads = 1 if self.kind == "sqlite" else 4
        self._writer = ThreadPoolExecutor(writer_threads, thread_name_prefix="energyops-db-write")
        self._readers = ThreadPoolExecutor(reader_threads, thread_name_prefix="energyops-db-read")
        self._checkpointer = (
            ThreadPoolExecutor(1, thread_name_prefix="energyops-db-checkpoint")
            if self.kind == "sqlite"
            else None
        )
        self._checkpoint_lock = threading.Lock()
        self._checkpoint_pending = False
        self._checkpoint_interval = checkpoint_interval
        self._last_checkpoint = -checkpoint_interval
        self._closing = threading.Event()

    @property
    def display_url(self) -> str:
        """The URL for logs and pages: no password, user name or secret query values."""
        return mask_url(self.url.render_as_string(hide_password=True))

    # --- synchronous use (threads, CLI, tests) ---

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A session in one write transaction: committed on success, rolled back on error."""
        with self._write_sessions() as session, session.begin():
            yield session
        self._checkpoint_soon()

    def _checkpoint_soon(self) -> None:
        """SQLite: copy the WAL back into the database file on a thread of its own, once per
        burst of commits. Left to SQLite, the commit that takes the WAL past 1000 pages does
        it, with an fsync, while its caller waits: a year of blocks paid 30-60 ms for it. A
        PASSIVE checkpoint waits for no reader or writer; what it leaves, the next one takes.
        Checkpoints are at least ``checkpoint_interval`` seconds apart: a loud run commits its
        log every few tens of milliseconds, and each checkpoint fsyncs the database file."""
        if self._checkpointer is None:
            return
        with self._checkpoint_lock:
            if self._checkpoint_pending:
                return
            self._checkpoint_pending = True
        try:
            self._checkpointer.submit(self._checkpoint)
        except RuntimeError:  # closing: close() checkpoints last
            self._checkpoint_pending = False

    def _checkpoint(self) -> None:
        """Commits made while this waits out the interval are in the checkpoint it then runs;
        closing cuts the wait short."""
        self._closing.wait(self._last_checkpoint + self._checkpoint_interval - time.monotonic())
        with self._checkpoint_lock:
            self._checkpoint_pending = False
        try:
            with self.read_engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception:  # the next commit schedules another
            log.debug("WAL checkpoint failed", exc_info=True)
        self._last_checkpoint = time.monotonic()

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        with self._read_sessions() as session:
            yield session

    def write_sync(self, fn: Callable[[Session], T]) -> T:
        with self.write_session() as session:
            return fn(session)

    def read_sync(self, fn: Callable[[Session], T]) -> T:
        with self.read_session() as session:
            return fn(session)

    # --- from the event loop ---

    async def write(self, fn: Callable[[Session], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, functools.partial(self.write_sync, fn))

    async def read(self, fn: Callable[[Session], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, functools.partial(self.read_sync, fn))

    async def in_writer(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the writer thread; it manages its own connection (bulk paths)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, fn)

    def ping(self) -> bool:
        try:
            with self.read_engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        if self._checkpointer is not None:
            self._closing.set()
            self._checkpointer.shutdown(wait=True)
            self._checkpoint()
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()
