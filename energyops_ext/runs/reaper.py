"""Reaping: ``Reaper`` ends the runs of servers that died (their lease ran out) ``lost``, after
killing what is left of their processes where this machine can reach them. Every live
server reaps, at its start and at each heartbeat."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ..cluster import servers
from ..cluster.servers import OrphanRun, ServerIdentity
from ..db import Database
from .endings import RunEndings
from .procs import ProcessBackend
from .runner import terminate_tree
from .sandbox import RunPaths, process_marker


class Reaper:
    """Reaps for the server ``me``; ``lease_s`` is how long a silent server lives."""

    def __init__(
        self,
        db: Database,
        log: logging.Logger,
        me: ServerIdentity,
        clock: Callable[[], datetime],
        lease_s: float,
        procs: ProcessBackend,
        endings: RunEndings,
    ) -> None:
        self.db = db
        self.log = log
        self.me = me
        self.clock = clock
        self.lease_s = lease_s
        self.procs = procs
        self.endings = endings
        self._lock = asyncio.Lock()

    async def reap(self) -> None:
        """Runs whose owner is dead: kill what is left of them on this machine, mark them
        ``lost``. The conditional update makes this happen once, whichever server gets there
        first; the runs of live servers are never touched."""
        async with self._lock:
            me, now, lease = self.me, self.clock(), self.lease_s
            orphans = await self.db.read(
                lambda s: servers.orphan_runs(s, me, now, lease, self.procs.is_alive)
            )
            for orphan in orphans:
                detail = await asyncio.to_thread(self._kill_survivors, orphan)
                if await self.endings.mark_lost(orphan, f"{orphan.reason}; {detail}"):
                    self.log.warning("run %s marked lost: %s", orphan.run_id, orphan.reason)

    def _kill_survivors(self, orphan: OrphanRun) -> str:
        """Processes of a dead server's run can be killed only on the machine they run on."""
        pid = orphan.pid
        if pid is None:
            return "its process had not started"
        if not self.me.same_machine(orphan.host, orphan.boot_id):
            if orphan.host == self.me.host:
                return f"its process (pid {pid}) ended when the machine restarted"
            return f"its process (pid {pid} on {orphan.host}) is beyond this machine's reach"
        start = orphan.pid_start_time
        alive = start is not None and self.procs.is_alive(pid, start)
        marker = process_marker(RunPaths.for_dir(Path(orphan.workdir))) if orphan.workdir else b""
        root = pid if alive else None
        killed = terminate_tree(self.procs, root, marker, 0.0) if marker or alive else 0
        if alive or killed:
            return f"its process (pid {pid}) was still running and was killed"
        return f"its process (pid {pid}) had already gone"
