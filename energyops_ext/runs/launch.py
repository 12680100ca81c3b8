"""From a claimed run to the process that runs it: the run as read once (``RunContext``), its
run directory with the script and inputs, the sandboxed command and environment
(``RunLauncher.prepare``), and the spawned process's identity on the run's row
(``record_process``), which lets any server find and kill it after a crash."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from ..config import Settings
from ..db import Database
from ..db.models import Run
from ..storage import Storage
from . import inputs as run_inputs
from . import parameters as run_parameters
from . import store
from .logs import RunLog
from .procs import ProcessBackend
from .runner import RunProcess, spare_bwrap
from .sandbox import (
    NOTEBOOK_OUTPUT,
    RunPaths,
    SandboxInfo,
    build_command,
    process_marker,
    run_environment,
)


@dataclass
class RunContext:
    """What the engine needs of a claimed run, read once."""

    run_id: int
    title: str
    storage_key: str
    model_type: str | None
    args: list[str]
    config: dict[str, Any]
    inputs: list[dict[str, Any]]
    timeout_s: int
    requested_by: str | None
    format: str = "py"
    parameters: dict[str, Any] = field(default_factory=dict)
    kind: str = "test"
    script_name: str = "script.py"


def read_context(session: Session, run_id: int) -> RunContext:
    run = store.get_run(session, run_id)
    script = run.script
    values = run.parameters
    if values is None:  # a run created without them (an older retry or schedule path)
        values = run_parameters.defaults(run_parameters.from_json(script.parameters))
    return RunContext(
        run_id,
        f"{script.name} v{script.version}",
        script.storage_key,
        script.model_type,
        list(run.args),
        dict(run.config),
        list(run.inputs),
        run.timeout_s,
        run.requested_by,
        script.format or "py",
        dict(values),
        script.kind,
        script.name,
    )


class RunLauncher:
    """Prepares the process of each run this engine starts, from its ``RunContext``."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        storage: Storage,
        server_id: str,
        procs: ProcessBackend,
        paths: Callable[[int], RunPaths],
    ) -> None:
        self.settings = settings
        self.db = db
        self.storage = storage
        self.server_id = server_id
        self.procs = procs
        self.paths = paths

    async def prepare(self, ctx: RunContext, log: RunLog, sandbox: SandboxInfo) -> RunProcess:
        """The run directory written (script, inputs), the inputs' hashes recorded, and the
        process to start: not started yet, its lines going to ``log``."""
        paths = self.paths(ctx.run_id)
        try:
            source = await asyncio.to_thread(self.storage.get, ctx.storage_key)
        except FileNotFoundError:
            raise RuntimeError(
                f"the script's file {self.storage.url(ctx.storage_key)} is not in this "
                "server's storage; servers sharing a database need a shared storage_url"
            ) from None
        notebook = ctx.format == "ipynb"
        script = paths.notebook if notebook else paths.named_script(ctx.script_name)
        await asyncio.to_thread(_write_run_dir, paths, source, script)
        log.add("system", [sandbox.describe()])
        if ctx.inputs:
            specs = run_inputs.parse_inputs(ctx.inputs)
            lines = await self.db.read(lambda s: run_inputs.write_inputs(s, specs, paths.input_dir))
            log.add("system", lines)
            hashes = await asyncio.to_thread(_input_hashes, paths.input_dir)
            await self.db.write(lambda s: _record_inputs(s, ctx.run_id, self.server_id, hashes))
        if sandbox.mode == "unavailable":
            raise RuntimeError(sandbox.fallback_reason)
        argv = build_command(
            sandbox,
            self.settings,
            paths.root,
            script,
            ctx.args,
            notebook_output=paths.output_dir / NOTEBOOK_OUTPUT if notebook else None,
        )
        env = run_environment(paths, ctx.run_id, ctx.model_type, ctx.config, ctx.parameters)
        bwrap = sandbox.mode == "bwrap"
        return RunProcess(
            argv,
            env,
            paths.root,
            process_marker(paths),
            log,
            kill_grace_s=self.settings.kill_grace_s,
            procs=self.procs,
            spare=spare_bwrap if bwrap else None,
            wrapped=bwrap,
        )


def record_process(
    session: Session,
    run_id: int,
    server_id: str,
    process: RunProcess,
    workdir: Path,
    now: datetime,
) -> None:
    """The started process's pid, start time and run directory on its row (still owned by
    ``server_id``), with a first heartbeat at ``now``."""
    session.execute(
        update(Run)
        .where(Run.id == run_id, store.owned(server_id))
        .values(
            pid=process.pid,
            pid_start_time=process.start_time,
            workdir=str(workdir),
            heartbeat_at=now,
        )
    )


def _write_run_dir(paths: RunPaths, source: bytes, script: Path) -> None:
    if paths.root.exists():
        shutil.rmtree(paths.root)
    paths.create()
    script.write_bytes(source)


def _input_hashes(input_dir: Path) -> dict[str, str]:
    """sha256 of each input file, by name (what two runs compare)."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(input_dir.iterdir())
        if path.is_file()
    }


def _record_inputs(session: Session, run_id: int, server_id: str, hashes: dict[str, str]) -> None:
    session.execute(
        update(Run).where(Run.id == run_id, store.owned(server_id)).values(input_hashes=hashes)
    )
