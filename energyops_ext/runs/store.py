"""Database work of runs: JSON shapes, the queue claim, log chunks, log and run queries."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, object_session

from ..db.models import LogChunk, Run, Script
from ..errors import NotFound
from ..notify import display_url
from . import chunks
from .levels import LEVEL_RANK, LEVELS
from .logs import Batch, Line, LineGroup, group_records
from .markers import SOLVER_KEYS

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "killed", "timed_out", "lost")
STATUSES = ACTIVE + FINISHED
METRIC_COLUMNS = ("progress", "objective_value", "results_count", "solver_time_ms")
CHUNK_COLUMNS = "run_id, first_seq, last_seq, kinds, codes, stamps, texts"
CHUNKS_PER_READ = 16


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def run_json(run: Run) -> dict[str, Any]:
    script = run.script
    return {
        "id": run.id,
        "script_id": run.script_id,
        "script_name": script.name,
        "script_version": script.version,
        "kind": script.kind,
        "model_type": script.model_type,
        "status": run.status,
        "status_reason": run.status_reason,
        "args": run.args,
        "config": run.config,
        "inputs": run.inputs,
        "priority": run.priority,
        "timeout_s": run.timeout_s,
        "requested_by": run.requested_by,
        "server_id": run.server_id,
        "executor": run.executor,
        "worker": run.worker,
        "host": run.host,
        "pid": run.pid,
        "kill_requested_at": _iso(run.kill_requested_at),
        "kill_requested_by": run.kill_requested_by,
        "created_at": run.created_at.isoformat(),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "heartbeat_at": _iso(run.heartbeat_at),
        "exit_code": run.exit_code,
        "runtime_ms": run.runtime_ms,
        "line_count": run.line_count,
        "error_count": run.error_count,
        "progress": run.progress,
        "objective_value": run.objective_value,
        "results_count": run.results_count,
        "solver_time_ms": run.solver_time_ms,
        "attempt": run.attempt or 1,
        "first_run_id": run.first_run_id or run.id,
        "schedule_id": run.schedule_id,
        "deadline_at": _iso(run.deadline_at),
        "deadline_missed": bool(run.deadline_missed),
        "retry": run.retry,
        "channels": [display_url(url) for url in run.channels or []],
        "not_before": _iso(run.not_before),
        "retry_outcome": run.retry_outcome,
        "attempts": chain_attempts(run),
        "format": script.format or "py",
        "parameters": run.parameters,
        "stop_requested_at": _iso(run.stop_requested_at),
        "stop_requested_by": run.stop_requested_by,
        "stopped_early": bool(run.stopped_early),
        "input_hashes": run.input_hashes,
        "solver": run.solver,
    }


def chain_attempts(run: Run) -> list[dict[str, Any]]:
    """Every attempt of the run's chain (the first run and its retries), oldest first."""
    session = object_session(run)
    if session is None or (not run.retry and (run.attempt or 1) == 1):
        return [{"id": run.id, "attempt": run.attempt or 1, "status": run.status}]
    first = run.first_run_id or run.id
    rows = session.execute(
        select(Run.id, Run.attempt, Run.status)
        .where((Run.id == first) | (Run.first_run_id == first))
        .order_by(Run.attempt, Run.id)
    ).all()
    return [{"id": r[0], "attempt": r[1], "status": r[2]} for r in rows]


def get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist", code="run_not_found")
    return run


def list_runs(
    session: Session,
    *,
    script_id: int | None,
    kind: str | None,
    model_type: str | None,
    status: str | None,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    query = select(Run).join(Script, Run.script_id == Script.id)
    if script_id is not None:
        query = query.where(Run.script_id == script_id)
    if kind:
        query = query.where(Script.kind == kind)
    if model_type:
        query = query.where(Script.model_type == model_type)
    if status:
        query = query.where(Run.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Run.id.desc()).limit(limit).offset(offset)).all()
    return {"items": [run_json(r) for r in rows], "total": total}


def claim_next(
    session: Session, server_id: str, host: str, boot: str, executor: str = "local"
) -> int | None:
    """Move the next queued run (priority, then age) to running, owned by ``server_id``; None
    when none waits. PostgreSQL locks the candidate row and skips rows other servers hold
    (FOR UPDATE SKIP LOCKED); on SQLite the write lock serializes claims. The UPDATE is
    conditional on ``queued`` either way, so two servers never both take one run."""
    next_queued = (
        select(Run.id)
        .where(Run.status == "queued")
        .where(Run.not_before.is_(None) | (Run.not_before <= datetime.now(UTC)))  # retries wait
        .order_by(Run.priority.desc(), Run.created_at, Run.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        next_queued = next_queued.with_for_update(skip_locked=True)
    for _ in range(5):
        run_id = session.scalar(next_queued)
        if run_id is None:
            return None
        now = datetime.now(UTC)
        claimed = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status == "queued")
            .values(
                status="running",
                started_at=now,
                status_reason=None,
                server_id=server_id,
                executor=executor,
                host=host,
                boot_id=boot,
                heartbeat_at=now,
            )
        )
        if getattr(claimed, "rowcount", 0) == 1:
            return run_id
    return None


def note_queued(session: Session, note: str | None, prefix: str) -> None:
    """Say on every queued run why it waits (``note``), or clear what was said (None)."""
    waiting = (Run.status == "queued") & Run.status_reason.startswith(prefix)
    if note is None:
        session.execute(update(Run).where(waiting).values(status_reason=None))
    else:
        queued = (Run.status == "queued") & (Run.status_reason.is_(None) | waiting)
        session.execute(update(Run).where(queued).values(status_reason=note))


def requeue(session: Session, run_id: int, server_id: str, reason: str) -> None:
    """A claimed run this server could not start goes back to the queue."""
    session.execute(
        update(Run)
        .where(Run.id == run_id, owned(server_id))
        .values(status="queued", server_id=None, started_at=None, status_reason=reason)
    )


def owned(server_id: str) -> Any:
    """The WHERE clause of every state change a running run's owner makes."""
    return (Run.status == "running") & (Run.server_id == server_id)


def insert_groups(session: Session, run_id: int, groups: list[LineGroup]) -> None:
    """Store lines as chunks (chunks.py): a few hundred rows for a few hundred thousand
    lines, sent through the driver's executemany in the session's transaction."""
    rows = [(run_id, *chunk) for chunk in chunks.pack(groups)]
    if not rows:
        return
    conn = session.connection()
    driver: Any = conn.connection.driver_connection
    marker = "%s" if conn.dialect.name == "postgresql" else "?"
    statement = f"INSERT INTO log_chunks ({CHUNK_COLUMNS}) VALUES ({', '.join([marker] * 7)})"
    with contextlib.closing(driver.cursor()) as cursor:
        cursor.executemany(statement, rows)


def insert_lines(session: Session, run_id: int, records: list[Line]) -> None:
    """Store lines built one by one (``new_line``), in seq order."""
    insert_groups(session, run_id, group_records(records))


def solver_figures(metrics: dict[str, float | int]) -> dict[str, float]:
    """The last incumbent / bound / gap / elapsed a model reported (run.solver)."""
    return {k: float(metrics[k]) for k in SOLVER_KEYS if k in metrics}


def write_batch(session: Session, run_id: int, batch: Batch) -> None:
    insert_groups(session, run_id, batch.groups)
    values: dict[str, Any] = {"line_count": batch.line_count, "error_count": batch.error_count}
    values.update({k: v for k, v in batch.metrics.items() if k in METRIC_COLUMNS})
    if solver := solver_figures(batch.metrics):
        values["solver"] = solver
    session.execute(update(Run).where(Run.id == run_id).values(**values))


def read_lines(
    session: Session,
    run_id: int,
    after_seq: int,
    limit: int | None,
    stream: str | None = None,
    level: str | None = None,
) -> list[dict[str, Any]]:
    """The stored lines with seq > ``after_seq`` (of ``stream``, at ``level`` or above), in
    seq order, at most ``limit``. Chunks are read a few at a time, and a filtered read asks
    only for the chunks whose ``kinds`` hold a matching line."""
    keep = chunks.wanted(stream, level)
    query = select(
        LogChunk.first_seq,
        LogChunk.last_seq,
        LogChunk.kinds,
        LogChunk.codes,
        LogChunk.stamps,
        LogChunk.texts,
    ).where(LogChunk.run_id == run_id)
    if keep is not None:
        query = query.where(LogChunk.kinds.op("&")(keep.mask) != 0)
    query = query.order_by(LogChunk.last_seq).limit(CHUNKS_PER_READ)
    lines: list[dict[str, Any]] = []
    cursor = after_seq
    while True:
        rows = session.execute(query.where(LogChunk.last_seq > cursor)).all()
        for row in rows:
            lines.extend(chunks.unpack(chunks.Chunk(*row), after_seq, keep))
            if limit is not None and len(lines) >= limit:
                return lines[:limit]
        if len(rows) < CHUNKS_PER_READ:
            return lines
        cursor = rows[-1].last_seq


def levels_at_least(level: str) -> list[str]:
    return [name for name in LEVELS if LEVEL_RANK[name] >= LEVEL_RANK[level]]


def max_seq(session: Session, run_id: int) -> int:
    return session.scalar(select(func.max(LogChunk.last_seq)).where(LogChunk.run_id == run_id)) or 0


def queued_count(session: Session) -> int:
    return session.scalar(select(func.count()).where(Run.status == "queued")) or 0
