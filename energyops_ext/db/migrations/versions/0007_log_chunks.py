"""log lines stored in chunks: many consecutive lines of a run to a row (log_chunks), the
lines of log_lines converted, log_lines dropped

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10 12:00:00

The chunk format is the one of ``energyops_ext/runs/chunks.py`` as of this revision, copied
here so that this migration keeps doing what it did when that module changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STREAMS = ("stdout", "stderr", "system")
LEVELS = ("debug", "info", "warning", "error")
CODE = {
    (stream, level): chr(ord("a") + len(LEVELS) * s + v)
    for s, stream in enumerate(STREAMS)
    for v, level in enumerate(LEVELS)
}
PAIR = {code: pair for pair, code in CODE.items()}
MAX_LINES = 1024
MAX_CHARS = 256 * 1024
PAGE = 10_000

chunks_table = sa.table(
    "log_chunks",
    sa.column("run_id", sa.Integer),
    sa.column("first_seq", sa.Integer),
    sa.column("last_seq", sa.Integer),
    sa.column("kinds", sa.Integer),
    sa.column("codes", sa.Text),
    sa.column("stamps", sa.Text),
    sa.column("texts", sa.Text),
)
lines_table = sa.table(
    "log_lines",
    sa.column("run_id", sa.Integer),
    sa.column("seq", sa.Integer),
    sa.column("stream", sa.String),
    sa.column("level", sa.String),
    sa.column("ts", sa.DateTime(timezone=True)),
    sa.column("text", sa.Text),
)


def upgrade() -> None:
    op.create_table(
        "log_chunks",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("first_seq", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("kinds", sa.Integer(), nullable=False),
        sa.Column("codes", sa.Text(), nullable=False),
        sa.Column("stamps", sa.Text(), nullable=False),
        sa.Column("texts", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_log_chunks_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "first_seq", name=op.f("pk_log_chunks")),
    )
    op.create_index("ix_log_chunks_run_last_seq", "log_chunks", ["run_id", "last_seq"], unique=True)
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and _has_lz4(bind):
        # lz4 compresses a chunk's text several times faster than the default pglz
        op.execute("ALTER TABLE log_chunks ALTER COLUMN texts SET COMPRESSION lz4")
    _convert_lines(bind)
    op.drop_table("log_lines")


def downgrade() -> None:
    op.create_table(
        "log_lines",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=8), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_log_lines_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_log_lines")),
    )
    bind = op.get_bind()
    query = sa.select(chunks_table).order_by(chunks_table.c.run_id, chunks_table.c.first_seq)
    rows: list[dict[str, Any]] = []
    for chunk in bind.execute(query).mappings().all():
        rows.extend(_expand(chunk))
        if len(rows) >= PAGE:
            bind.execute(lines_table.insert(), rows)
            rows = []
    if rows:
        bind.execute(lines_table.insert(), rows)
    op.drop_index("ix_log_chunks_run_last_seq", table_name="log_chunks")
    op.drop_table("log_chunks")


def _has_lz4(bind: sa.Connection) -> bool:
    values = bind.scalar(
        sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    )
    return values is not None and "lz4" in values


# --- log_lines -> log_chunks ---


def _convert_lines(bind: sa.Connection) -> None:
    run_ids = bind.scalars(sa.select(lines_table.c.run_id).distinct()).all()
    for run_id in run_ids:
        rows = [_chunk_row(run_id, lines) for lines in _chunked(_lines_of(bind, run_id))]
        for start in range(0, len(rows), PAGE):
            bind.execute(chunks_table.insert(), rows[start : start + PAGE])


def _lines_of(bind: sa.Connection, run_id: int) -> Iterator[tuple[int, str, str, str]]:
    """(seq, code, ts, text) of one run in seq order, read a page at a time."""
    c = lines_table.c
    after = 0
    while True:
        page = bind.execute(
            sa.select(c.seq, c.stream, c.level, c.ts, c.text)
            .where(c.run_id == run_id, c.seq > after)
            .order_by(c.seq)
            .limit(PAGE)
        ).all()
        for seq, stream, level, ts, text in page:
            yield seq, CODE[stream, level], _iso(ts), text
        if len(page) < PAGE:
            return
        after = page[-1][0]


def _iso(ts: datetime) -> str:
    aware = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _chunked(
    lines: Iterator[tuple[int, str, str, str]],
) -> Iterator[list[tuple[int, str, str, str]]]:
    """Consecutive seqs, at most MAX_LINES lines and MAX_CHARS of text; a text holding "\\n"
    alone."""
    chunk: list[tuple[int, str, str, str]] = []
    size = 0
    for line in lines:
        seq, text = line[0], line[3]
        alone = "\n" in text
        if chunk and (
            alone
            or chunk[-1][0] + 1 != seq
            or len(chunk) == MAX_LINES
            or size + len(text) + 1 > MAX_CHARS
        ):
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += len(text) + 1
        if alone:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _chunk_row(run_id: int, lines: list[tuple[int, str, str, str]]) -> dict[str, Any]:
    codes = "".join(line[1] for line in lines)
    kinds = 0
    for code in set(codes):
        kinds |= 1 << (ord(code) - ord("a"))
    stamps: list[list[Any]] = []
    for line in lines:
        if stamps and stamps[-1][1] == line[2]:
            stamps[-1][0] += 1
        else:
            stamps.append([1, line[2]])
    return {
        "run_id": run_id,
        "first_seq": lines[0][0],
        "last_seq": lines[-1][0],
        "kinds": kinds,
        "codes": codes,
        "stamps": ",".join(f"{count}@{ts}" for count, ts in stamps),
        "texts": "\n".join(line[3] for line in lines),
    }


# --- log_chunks -> log_lines ---


def _expand(chunk: Any) -> list[dict[str, Any]]:
    codes = chunk["codes"]
    texts = [chunk["texts"]] if len(codes) == 1 else chunk["texts"].split("\n")
    stamps: list[str] = []
    for piece in chunk["stamps"].split(","):
        count, _, ts = piece.partition("@")
        stamps.extend([ts] * int(count))
    return [
        {
            "run_id": chunk["run_id"],
            "seq": chunk["first_seq"] + i,
            "stream": PAIR[code][0],
            "level": PAIR[code][1],
            "ts": datetime.fromisoformat(stamps[i]),
            "text": texts[i],
        }
        for i, code in enumerate(codes)
    ]
