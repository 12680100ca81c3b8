"""SQLite: the WAL is copied back into the database file by the checkpoint thread after a
commit, not by the commit itself (which would make its caller wait for the copy and fsync),
at most once per interval, and last when the database closes."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

from sqlalchemy import text

from energyops_ext.db import Database


def rows_in_file_alone(db_file: Path, tmp: Path) -> int:
    """The rows a copy of the database file holds without its WAL."""
    alone = tmp / "alone.db"
    shutil.copy(db_file, alone)
    with sqlite3.connect(alone) as conn:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])


def test_a_commit_leaves_the_checkpoint_to_its_thread(tmp_path: Path) -> None:
    db_file = tmp_path / "energyops.db"
    db = Database(f"sqlite:///{db_file}", checkpoint_interval=0)
    checkpointer = db._checkpointer
    assert checkpointer is not None
    gate = threading.Event()
    try:
        with db.write_session() as session:
            session.execute(text("CREATE TABLE t (n INTEGER, pad TEXT)"))
        checkpointer.submit(lambda: None).result()
        held = checkpointer.submit(gate.wait)  # the thread is busy until the gate opens
        with db.write_session() as session:
            session.execute(
                text("INSERT INTO t VALUES (:n, :pad)"),
                [{"n": i, "pad": "x" * 200} for i in range(20_000)],  # past 1,000 WAL pages
            )
        assert rows_in_file_alone(db_file, tmp_path) == 0  # the commit did not checkpoint
        gate.set()
        held.result()
        checkpointer.submit(lambda: None).result()
        assert rows_in_file_alone(db_file, tmp_path) == 20_000
    finally:
        gate.set()
        db.close()


def insert_rows(db: Database, count: int) -> None:
    with db.write_session() as session:
        session.execute(
            text("INSERT INTO t VALUES (:n, :pad)"), [{"n": i, "pad": "x"} for i in range(count)]
        )


def test_checkpoints_wait_out_the_interval_and_closing_runs_the_last(tmp_path: Path) -> None:
    db_file = tmp_path / "energyops.db"
    db = Database(f"sqlite:///{db_file}", checkpoint_interval=3600)
    checkpointer = db._checkpointer
    assert checkpointer is not None
    with db.write_session() as session:
        session.execute(text("CREATE TABLE t (n INTEGER, pad TEXT)"))
    checkpointer.submit(lambda: None).result()  # the first checkpoint ran at once
    for _ in range(10):  # the next one waits out the hour: the rows stay in the WAL
        insert_rows(db, 10)
    assert db._checkpoint_pending
    assert rows_in_file_alone(db_file, tmp_path) == 0
    closing = threading.Thread(target=db.close)
    closing.start()
    closing.join(timeout=30)
    assert not closing.is_alive()  # closing cut the hour short
    assert rows_in_file_alone(db_file, tmp_path) == 100
