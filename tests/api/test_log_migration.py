"""Migration 0007 (log_lines -> log_chunks): runs written in the old layout, one row per line,
read the same after it through every reader, and a downgrade gives the rows back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.orm import Session

from energyops_ext.db import Database, current_revision, head_revision, upgrade
from energyops_ext.db.migrate import alembic_config
from energyops_ext.runs import chunks, store
from energyops_ext.runs.levels import LEVEL_RANK, LEVELS
from energyops_ext.runs.logs import STREAMS, iso_ts

from .cluster_factories import add_run, add_script

START = datetime(2026, 3, 1, 4, 30, 0, 0, tzinfo=UTC)
old_lines = sa.table(
    "log_lines",
    sa.column("run_id", sa.Integer),
    sa.column("seq", sa.Integer),
    sa.column("stream", sa.String),
    sa.column("level", sa.String),
    sa.column("ts", sa.DateTime(timezone=True)),
    sa.column("text", sa.Text),
)


@pytest.fixture
def at_0006(empty_db_url: str) -> Iterator[Database]:
    db = Database(empty_db_url)
    upgrade(db.write_engine, "0006")
    yield db
    db.close()


def old_rows(run_id: int, count: int, gap_after: int | None = None) -> list[dict[str, Any]]:
    """Lines as the old writer stored them: every stream and level, texts with tabs,
    backslashes, non-ASCII, empty ones, a system line of two lines; a timestamp per 7 lines
    (one with no microseconds); a gap in seq after ``gap_after`` (a run lost mid-batch)."""
    rows = []
    for i in range(count):
        seq = i + 1 + (5 if gap_after is not None and i >= gap_after else 0)
        stream = STREAMS[i % 3]
        text = "" if i % 11 == 0 else f"line {i}\tback\\slash é 中"
        if stream == "system" and i % 1500 == 5:
            text = f"run lost: server gone\ntraceback {i}"
        ts = START + timedelta(microseconds=0 if i < 7 else 1_000 * (i // 7) + 1)
        rows.append(
            {
                "run_id": run_id,
                "seq": seq,
                "stream": stream,
                "level": LEVELS[(i // 3) % 4],
                "ts": ts,
                "text": text,
            }
        )
    return rows


def read_as_before(session: Session, run_id: int) -> list[dict[str, Any]]:
    """What the readers returned from log_lines (the old store.read_lines)."""
    c = old_lines.c
    query = sa.select(c.seq, c.stream, c.level, c.ts, c.text).where(c.run_id == run_id)
    return [
        {
            "seq": seq,
            "stream": stream,
            "level": level,
            "ts": iso_ts(ts if ts.tzinfo else ts.replace(tzinfo=UTC)),
            "text": text,
        }
        for seq, stream, level, ts, text in session.execute(query.order_by(c.seq))
    ]


def seed(db: Database) -> tuple[list[int], dict[int, list[dict[str, Any]]]]:
    def write(session: Session) -> list[int]:
        script = add_script(session)
        runs = [add_run(session, script, status="succeeded") for _ in range(3)]
        rows = old_rows(runs[0], 2_600) + old_rows(runs[1], 40, gap_after=17)
        session.execute(old_lines.insert(), rows)  # runs[2] printed nothing
        return runs

    runs = db.write_sync(write)
    return runs, {run_id: db.read_sync(partial(read_as_before, run_id=run_id)) for run_id in runs}


def test_runs_in_the_old_layout_read_the_same_after_the_migration(at_0006: Database) -> None:
    runs, before = seed(at_0006)
    assert len(before[runs[0]]) == 2_600 and len(before[runs[1]]) == 40

    upgrade(at_0006.write_engine)
    assert current_revision(at_0006.write_engine) == head_revision()
    assert "log_lines" not in sa.inspect(at_0006.write_engine).get_table_names()
    read = at_0006.read_sync
    for run_id in runs:
        lines = before[run_id]
        assert read(partial(store.read_lines, run_id=run_id, after_seq=0, limit=None)) == lines
        last = lines[-1]["seq"] if lines else 0
        assert read(partial(store.max_seq, run_id=run_id)) == last
        for after, limit in [(0, 10), (17, 3), (1023, 2), (1500, 1000), (2599, 5)]:
            page = read(partial(store.read_lines, run_id=run_id, after_seq=after, limit=limit))
            assert page == [line for line in lines if line["seq"] > after][:limit]
        for stream, level in [("system", None), (None, "error"), ("stderr", "warning")]:
            expected = [
                line
                for line in lines
                if (stream is None or line["stream"] == stream)
                and (level is None or LEVEL_RANK[line["level"]] >= LEVEL_RANK[level])
            ]
            got = read(
                partial(
                    store.read_lines,
                    run_id=run_id,
                    after_seq=0,
                    limit=None,
                    stream=stream,
                    level=level,
                )
            )
            assert got == expected, (stream, level)
    sizes = read(
        lambda s: s.scalars(sa.text("SELECT last_seq - first_seq + 1 FROM log_chunks")).all()
    )
    assert max(sizes) == chunks.MAX_LINES  # old runs become chunks of many lines too


def test_a_downgrade_gives_the_old_rows_back(at_0006: Database) -> None:
    runs, before = seed(at_0006)
    upgrade(at_0006.write_engine)
    command.downgrade(alembic_config(at_0006.write_engine), "0006")
    for run_id in runs:
        assert at_0006.read_sync(partial(read_as_before, run_id=run_id)) == before[run_id]
