"""RunService: scripts and their versions, runs and their queue, logs, artifacts.

Handlers call these coroutines; they know nothing of Tornado. Database and file work runs in
threads; the process work is in ``engine.py`` and ``runner.py``.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, BinaryIO

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..cluster import wakeups
from ..db import utcnow
from ..db.models import MarketSnapshot, Run, Script
from ..errors import BadRequest, Conflict, NotFound, check_name
from ..events import RUNS, Event, run_topic
from ..feed import add_activity, announce
from . import compare, scripts, store
from . import parameters as run_parameters
from .artifacts import artifact_key, list_artifacts, log_key, resolve_artifact, run_prefix
from .engine import RunEngine
from .inputs import InputSpec, RunRequest, parse_run_request
from .levels import LEVELS
from .log_writer import format_file_line
from .logs import STREAMS
from .notebooks import notebook_html
from .results import RESULTS_FILE, block_results
from .sandbox import NOTEBOOK_OUTPUT, probe


@dataclass(frozen=True)
class Download:
    """A file to send: its name and how to open it (local file, storage or memory)."""

    name: str
    open: Callable[[], BinaryIO]


class RunService:
    def __init__(self, engine: RunEngine) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.db = engine.db
        self.storage = engine.storage
        self.hub = engine.hub
        self.log = engine.log

    async def start(self) -> None:
        await self.engine.start()

    async def stop(self) -> None:
        await self.engine.stop()

    def health(self) -> dict[str, Any]:
        """/health parts: which sandbox layers work, and the queue. Blocking."""
        info = self.engine.sandbox or probe(self.settings)
        queued = self.db.read_sync(store.queued_count)
        executor = self.engine.executor
        return {
            "executor": executor.health() if executor is not None else {"name": "local"},
            "sandbox": info.to_json(),
            "queue": {
                "running": self.engine.running_here(),
                "queued": queued,
                "max_concurrent": self.settings.max_concurrent_runs,
            },
        }

    # --- scripts ---

    async def upload_script(
        self,
        filename: str,
        data: bytes,
        kind: str | None,
        model_type: str | None,
        description: str | None,
        user: str,
    ) -> tuple[dict[str, Any], bool]:
        """Store a new version (201) or return the latest one when the content is the same
        (200). Returns (script, created)."""
        upload = await asyncio.to_thread(
            scripts.validate_upload, self.settings, filename, data, kind, model_type, description
        )
        key = self.storage.new_key("scripts", f".{upload.format}")
        await asyncio.to_thread(self.storage.put, key, upload.data)

        def save(session: Session) -> tuple[dict[str, Any], bool, list[Any]]:
            return scripts.store_version(session, upload, key, user)

        try:
            data_out, created, activities = await self.db.write(save)
        except IntegrityError:
            await asyncio.to_thread(self.storage.delete, key)
            raise Conflict(
                f"another version of {upload.name} was uploaded at the same time; try again"
            ) from None
        except BaseException:
            await asyncio.to_thread(self.storage.delete, key)
            raise
        if not created:
            await asyncio.to_thread(self.storage.delete, key)
        announce(self.hub, activities)
        return data_out, created

    async def list_scripts(self, **filters: Any) -> dict[str, Any]:
        return await self.db.read(
            lambda s: scripts.list_scripts(s, run_json=store.run_json, **filters)
        )

    async def get_script(self, script_id: int) -> dict[str, Any]:
        return await self.db.read(lambda s: scripts.script_detail(s, script_id, store.run_json))

    async def script_source(self, script_id: int) -> str:
        key = await self.db.read(lambda s: scripts.get_script(s, script_id).storage_key)
        data = await asyncio.to_thread(self.storage.get, key)
        return data.decode("utf-8")

    async def update_script(
        self, script_id: int, changes: dict[str, Any], user: str
    ) -> dict[str, Any]:
        status = changes.get("status")
        if status is not None and status not in scripts.STATUSES:
            raise BadRequest(
                "status must be active or archived",
                code="invalid_field",
                details={"field": "status"},
            )
        description = changes.get("description")
        if description is not None and (
            not isinstance(description, str) or len(description) > scripts.MAX_DESCRIPTION
        ):
            raise BadRequest(
                "description must be a string of at most 2000 characters",
                code="invalid_field",
                details={"field": "description"},
            )

        def write(session: Session) -> tuple[dict[str, Any], list[Any]]:
            script = scripts.get_script(session, script_id)
            activities = []
            if "description" in changes:
                script.description = description or None
            if status is not None and status != script.status:
                script.status = status
                action = "archived" if status == "archived" else "restored"
                activities.append(
                    add_activity(
                        session,
                        type="script",
                        action=action,
                        title=f"{script.name} v{script.version} {action}",
                        entity_type="script",
                        entity_id=script.id,
                        user=user,
                    )
                )
            session.flush()
            return scripts.script_json(script), activities

        data, activities = await self.db.write(write)
        announce(self.hub, activities)
        return data

    async def delete_script(self, script_id: int, force: bool, user: str) -> None:
        """The script version with every run, log line, log file, run directory and its file."""
        run_ids, active_ids = await self.db.read(lambda s: _script_runs(s, script_id))
        if active_ids and not force:
            raise Conflict(
                f"script {script_id} has active runs ({', '.join(map(str, active_ids))});"
                " kill them first or pass force=true",
                details={"runs": active_ids},
            )
        for run_id in active_ids:
            await self._stop_run(run_id, "the script was deleted", user)

        def delete(session: Session) -> tuple[str, list[Any]]:
            script = scripts.get_script(session, script_id)
            key, title = script.storage_key, f"{script.name} v{script.version} deleted"
            for run in session.scalars(select(Run).where(Run.script_id == script_id)):
                session.delete(run)
            session.delete(script)
            activity = add_activity(
                session,
                type="script",
                action="deleted",
                title=title,
                entity_type="script",
                entity_id=script_id,
                user=user,
            )
            return key, [activity]

        key, activities = await self.db.write(delete)
        await asyncio.to_thread(self._delete_files, key, run_ids)
        announce(self.hub, activities)

    def _delete_files(self, key: str, run_ids: list[int]) -> None:
        self.storage.delete(key)
        for run_id in run_ids:
            self.storage.delete_prefix(run_prefix(run_id))
            self.engine.log_file(run_id).unlink(missing_ok=True)
            shutil.rmtree(self.engine.paths(run_id).root, ignore_errors=True)

    # --- runs ---

    async def create_run(self, script_id: int, body: dict[str, Any], user: str) -> dict[str, Any]:
        request = parse_run_request(body, self.settings, utcnow())

        def write(session: Session) -> tuple[dict[str, Any], list[Any]]:
            script = scripts.get_script(session, script_id)
            if script.status == "archived":
                raise Conflict(
                    f"script {script_id} ({script.name} v{script.version}) is "
                    "archived; restore it to run it"
                )
            values, inputs = _run_parameters(session, script, request)
            run = Run(
                script=script,
                status="queued",
                args=request.args,
                config=request.config,
                inputs=inputs,
                parameters=values,
                priority=request.priority,
                timeout_s=request.timeout_s,
                requested_by=user,
                line_count=0,
                error_count=0,
                deadline_at=request.deadline_at,
                retry=request.retry.to_json() if request.retry else None,
                channels=request.channels,
            )
            session.add(run)
            session.flush()
            wakeups.wake(session, wakeups.QUEUE, str(run.id))
            activity = add_activity(
                session,
                type="run",
                action="queued",
                title=f"Run {run.id} of {script.name} v{script.version} requested",
                entity_type="run",
                entity_id=run.id,
                status="queued",
                user=user,
            )
            return store.run_json(run), [activity]

        data, activities = await self.db.write(write)
        announce(self.hub, activities)
        self.hub.publish(Event(run_topic(data["id"]), "run.status", data))
        self.hub.publish(Event(RUNS, "run.queued", data))
        await self.engine.pump()
        return await self.get_run(data["id"])

    async def get_run(self, run_id: int) -> dict[str, Any]:
        return await self.db.read(lambda s: store.run_json(store.get_run(s, run_id)))

    async def list_runs(self, **filters: Any) -> dict[str, Any]:
        return await self.db.read(lambda s: store.list_runs(s, **filters))

    async def _active_status(self, run_id: int) -> str:
        """The status of a queued or running run; 409 when it has finished."""
        status = await self.db.read(lambda s: store.get_run(s, run_id).status)
        if status not in store.ACTIVE:
            raise Conflict(
                f"run {run_id} has already finished ({status})",
                code="run_finished",
                details={"status": status},
            )
        return status

    async def kill_run(self, run_id: int, user: str) -> dict[str, Any]:
        """Cancel a queued run or kill a running one (it ends ``killed``)."""
        await self._active_status(run_id)
        await self._stop_run(run_id, f"killed by {user}", user, wait=False)
        return await self.get_run(run_id)

    async def request_stop(self, run_id: int, user: str) -> dict[str, Any]:
        """Ask a running model to stop and keep its best (the run ends ``succeeded`` with
        ``stopped_early``, or ``killed``); a queued run is cancelled. The request is stored
        on the run: its owner, here or on another server or worker, acts on it."""
        await self._active_status(run_id)
        stored = await self.db.write(lambda s: _request_stop(s, run_id, user))
        if not stored and await self._active_status(run_id) == "queued":
            await self._stop_run(run_id, f"stopped by {user} before it started", user, False)
            return await self.get_run(run_id)
        active = self.engine.active.get(run_id)
        if active is not None:
            active.stop(user)
        await self._activity(run_id, user, "stop_requested", f"Run {run_id}: stop requested")
        return await self.get_run(run_id)

    async def notebook(self, run_id: int, fmt: str) -> tuple[bytes, str]:
        """The executed notebook of a notebook run: (body, content type)."""
        run = await self.get_run(run_id)
        if run["format"] != "ipynb":
            raise NotFound(
                f"run {run_id} is not a notebook run ({run['script_name']})",
                code="not_a_notebook",
            )
        try:
            download = await self.artifact(run_id, NOTEBOOK_OUTPUT)
        except NotFound:
            raise NotFound(
                f"run {run_id} has no executed notebook yet ({run['status']})",
                code="notebook_not_found",
            ) from None
        data = await asyncio.to_thread(_read_all, download)
        if fmt == "html":
            html = await asyncio.to_thread(notebook_html, data)
            return html.encode("utf-8"), "text/html; charset=UTF-8"
        return data, "application/x-ipynb+json"

    async def compare_runs(self, ids: tuple[int, int]) -> dict[str, Any]:
        def read(session: Session) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            runs = [store.get_run(session, run_id) for run_id in ids]
            return [store.run_json(r) for r in runs], [scripts.script_json(r.script) for r in runs]

        runs, versions = await self.db.read(read)
        blocks = [await self._block_results(run["id"]) for run in runs]
        return compare.compare(runs[0], runs[1], (versions[0], versions[1]), (blocks[0], blocks[1]))

    async def _block_results(self, run_id: int) -> dict[tuple[str, int], float] | None:
        try:
            download = await self.artifact(run_id, RESULTS_FILE)
        except NotFound:
            return None
        data = await asyncio.to_thread(_read_all, download)
        return block_results(data.decode("utf-8", "replace")) or None

    async def _activity(self, run_id: int, user: str, action: str, title: str) -> None:
        def write(session: Session) -> list[Any]:
            return [
                add_activity(
                    session,
                    type="run",
                    action=action,
                    title=title,
                    entity_type="run",
                    entity_id=run_id,
                    status="running",
                    user=user,
                )
            ]

        announce(self.hub, await self.db.write(write))

    async def _stop_run(self, run_id: int, reason: str, user: str, wait: bool = True) -> None:
        """Kill a run wherever it is. The kill's one activity is written where the run ends
        (the engine that runs it, or the cancel of a queued run), with who killed it."""
        active = self.engine.active.get(run_id)
        if active is not None:
            active.kill(reason, user)
            if wait and active.task is not None:
                await asyncio.wait({active.task})
            return
        cancelled = await self.db.write(lambda s: _cancel_queued(s, run_id, reason, user))
        if cancelled is not None:
            announce(self.hub, cancelled[1])
            self.hub.publish(Event(run_topic(run_id), "run.status", cancelled[0]))
            self.hub.publish(
                Event(
                    RUNS,
                    "run.finished",
                    {
                        "run_id": run_id,
                        "status": "killed",
                        "exit_code": None,
                        "runtime_ms": None,
                        "objective_value": None,
                        "run": cancelled[0],
                    },
                )
            )
            return
        active = self.engine.active.get(run_id)
        if active is not None:  # it started meanwhile
            await self._stop_run(run_id, reason, user, wait)
            return
        # running on another server: store the request on the run and wake its owner
        if not await self.db.write(lambda s: _request_kill(s, run_id, user)):
            return  # it ended meanwhile
        await self.engine.reaper.reap()  # an owner that is dead cannot kill: reap the run now
        if wait:
            await self._until_finished(run_id)

    async def _until_finished(self, run_id: int) -> None:
        deadline = time.monotonic() + self.settings.kill_grace_s + 10
        while time.monotonic() < deadline:
            status = await self.db.read(lambda s: store.get_run(s, run_id).status)
            if status not in store.ACTIVE:
                return
            await asyncio.sleep(0.05)
        raise Conflict(f"run {run_id} did not end after its kill was requested; try again")

    # --- logs ---

    async def log_backlog(
        self, run_id: int, after_seq: int, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Every line with seq > ``after_seq`` that exists now, in seq order, without a gap:
        the unflushed lines of an active run (snapshot taken first) merged with the database
        (read second). A line leaves the in-memory list only after its batch commits, so a
        flush between the two reads cannot lose it."""
        return await self.read_logs(run_id, after_seq, limit)

    async def read_logs(
        self,
        run_id: int,
        after_seq: int = 0,
        limit: int | None = None,
        stream: str | None = None,
        level: str | None = None,
    ) -> list[dict[str, Any]]:
        if stream is not None and stream not in STREAMS:
            raise BadRequest(
                f"stream must be one of {', '.join(STREAMS)}",
                code="invalid_parameter",
                details={"field": "stream"},
            )
        if level is not None and level not in LEVELS:
            raise BadRequest(
                f"level must be one of {', '.join(LEVELS)}",
                code="invalid_parameter",
                details={"field": "level"},
            )
        active = self.engine.active.get(run_id)
        pending = active.log.snapshot(after_seq) if active is not None else []

        def read(session: Session) -> list[dict[str, Any]]:
            store.get_run(session, run_id)
            return store.read_lines(session, run_id, after_seq, limit, stream, level)

        lines = {line["seq"]: line for line in await self.db.read(read)}
        allowed = set(store.levels_at_least(level)) if level else None
        for record in pending:
            if record["seq"] in lines or (stream and record["stream"] != stream):
                continue
            if allowed is None or record["level"] in allowed:
                lines[record["seq"]] = dict(record)
        ordered = [lines[seq] for seq in sorted(lines)]
        return ordered[:limit] if limit is not None else ordered

    async def log_download(self, run_id: int) -> Download:
        """The whole log: this server's file while it runs the run, else the file its owner
        stored when the run ended, else (a lost run, or one running elsewhere) the lines in
        the database."""
        await self.get_run(run_id)
        name = f"run-{run_id}.log"
        active = self.engine.active.get(run_id)
        if active is not None:
            await self.engine.log_writer.flush(active)
            path = self.engine.log_file(run_id)
            await asyncio.to_thread(path.touch)
            return Download(name, lambda: path.open("rb"))
        key = log_key(run_id)
        if await asyncio.to_thread(self.storage.exists, key):
            return Download(name, lambda: self.storage.open(key))
        text = await self.db.read(lambda s: _log_text(s, run_id))
        return Download(name, lambda: io.BytesIO(text.encode("utf-8")))

    # --- artifacts ---

    async def artifacts(self, run_id: int) -> list[dict[str, Any]]:
        await self.get_run(run_id)
        if run_id in self.engine.active:
            found = await asyncio.to_thread(list_artifacts, self.engine.paths(run_id).output_dir)
            return [{"name": a.name, "size": a.size} for a in found]
        stored = await asyncio.to_thread(self.storage.list, f"{run_prefix(run_id)}/artifacts")
        return [{"name": name, "size": size} for name, size in stored]

    async def artifact(self, run_id: int, name: str) -> Download:
        check_name(name, "artifact name")
        await self.get_run(run_id)
        missing = NotFound(f"run {run_id} has no artifact {name!r}", code="artifact_not_found")
        if run_id in self.engine.active:
            output = self.engine.paths(run_id).output_dir
            found = await asyncio.to_thread(resolve_artifact, output, name)
            if found is None:
                raise missing
            return Download(name, lambda: found.path.open("rb"))
        key = artifact_key(run_id, name)
        if not await asyncio.to_thread(self.storage.exists, key):
            raise missing
        return Download(name, lambda: self.storage.open(key))


def _latest_price_day(session: Session) -> str | None:
    day = session.scalar(
        select(func.max(MarketSnapshot.date)).where(MarketSnapshot.dam_price.is_not(None))
    )
    return day.isoformat() if day is not None else None


def _run_parameters(
    session: Session, script: Script, request: RunRequest
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The run's parameter values (checked, defaults filled in, ``latest`` dates resolved)
    and its inputs (those asked for, plus the day of each date parameter with an input
    dataset whose kind was not asked for)."""
    declared = run_parameters.from_json(script.parameters)
    if request.args and (script.format or "py") == "ipynb":
        raise BadRequest(
            "args apply to .py scripts; notebooks take parameters",
            code="invalid_field",
            details={"field": "args"},
        )
    values = run_parameters.resolve(declared, request.parameters)
    inputs = list(request.inputs)
    asked = {spec.kind for spec in inputs}
    for param in declared:
        if param.type != "date" or values[param.name] is None:
            continue
        if values[param.name] == run_parameters.LATEST:
            latest = _latest_price_day(session)
            if latest is None:
                raise run_parameters.rule_error(
                    param.name, "date", f"parameter {param.name!r}: no day has DAM prices yet"
                )
            values[param.name] = latest
        if param.input and param.input not in asked:
            day = date.fromisoformat(values[param.name])
            inputs.append(InputSpec(param.input, day, day))
    return values, [spec.to_json() for spec in inputs]


def _log_text(session: Session, run_id: int) -> str:
    lines = store.read_lines(session, run_id, 0, None)
    return "".join(format_file_line(line) for line in lines)  # type: ignore[arg-type]


def _script_runs(session: Session, script_id: int) -> tuple[list[int], list[int]]:
    scripts.get_script(session, script_id)
    rows = session.execute(select(Run.id, Run.status).where(Run.script_id == script_id)).all()
    return [r[0] for r in rows], [r[0] for r in rows if r[1] in store.ACTIVE]


def _read_all(download: Download) -> bytes:
    with download.open() as fh:
        return fh.read()


def _request_stop(session: Session, run_id: int, user: str) -> bool:
    """Store a stop request on a running run and wake its owner; False when not running."""
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "running")
        .values(
            stop_requested_at=func.coalesce(Run.stop_requested_at, utcnow()),
            stop_requested_by=func.coalesce(Run.stop_requested_by, user),
        )
    )
    if getattr(result, "rowcount", 0) != 1:
        return False
    wakeups.wake(session, wakeups.CONTROL, f"stop {run_id}")
    return True


def _request_kill(session: Session, run_id: int, user: str) -> bool:
    """Ask the owner of a running run to kill it; False when the run is not running."""
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "running")
        .values(
            kill_requested_at=func.coalesce(Run.kill_requested_at, utcnow()),
            kill_requested_by=func.coalesce(Run.kill_requested_by, user),
        )
    )
    if getattr(result, "rowcount", 0) != 1:
        return False
    wakeups.wake(session, wakeups.CONTROL, f"kill {run_id}")
    return True


def _cancel_queued(
    session: Session, run_id: int, reason: str, user: str
) -> tuple[dict[str, Any], list[Any]] | None:
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "queued")
        .values(status="killed", status_reason=reason, finished_at=utcnow())
    )
    if getattr(result, "rowcount", 0) != 1:
        return None
    run = store.get_run(session, run_id)
    session.refresh(run)
    activity = add_activity(
        session,
        type="run",
        action="killed",
        title=f"Run {run_id} cancelled before it started",
        entity_type="run",
        entity_id=run_id,
        status="killed",
        user=user,
    )
    return store.run_json(run), [activity]
