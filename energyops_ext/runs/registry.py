"""Process identity: host + boot id + pid + start time, and finding every process of a run.

A pid alone names a different process after a reboot or pid reuse; the start time (field 22 of
/proc/<pid>/stat, clock ticks since boot) and the boot id make the identity exact.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PROC = Path("/proc")


@lru_cache(maxsize=1)
def host_name() -> str:
    return socket.gethostname()


@lru_cache(maxsize=1)
def boot_id() -> str:
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    start_time: int


def read_stat(pid: int) -> ProcStat | None:
    """Parsed /proc/<pid>/stat, or None when the process is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    end = raw.rfind(b")")
    fields = raw[end + 2 :].split()
    # fields[0] is field 3 (state); field N is fields[N - 3]
    return ProcStat(
        pid=pid,
        state=fields[0].decode(),
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        session=int(fields[3]),
        start_time=int(fields[19]),
    )


def start_time(pid: int) -> int | None:
    stat = read_stat(pid)
    return stat.start_time if stat else None


def is_alive(pid: int, expected_start: int | None = None) -> bool:
    """The process exists, is not a zombie, and (if given) started at ``expected_start``."""
    stat = read_stat(pid)
    if stat is None or stat.state in ("Z", "X"):
        return False
    return expected_start is None or stat.start_time == expected_start


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(p) for p in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return found


def descendants(pid: int) -> set[int]:
    seen: set[int] = set()
    stack = [pid]
    while stack:
        for child in children(stack.pop()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def all_pids() -> Iterable[int]:
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            yield int(entry.name)


def with_marker(marker: bytes) -> set[int]:
    """Processes whose environment holds ``marker`` (a run's ``ENERGYOPS_OUTPUT_DIR=...``):
    children keep it across setsid(), so this also finds processes that left the group."""
    me = os.getpid()
    found: set[int] = set()
    for pid in all_pids():
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if marker in env and (env.startswith(marker) or b"\0" + marker in env):
            found.add(pid)
    return found


def in_group(pgid: int) -> set[int]:
    found: set[int] = set()
    for pid in all_pids():
        stat = read_stat(pid)
        if stat is not None and stat.pgrp == pgid:
            found.add(pid)
    return found


def command_name(pid: int) -> str:
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def run_processes(root_pid: int | None, marker: bytes) -> set[int]:
    """Every live process of a run: the root's group and descendants, and every process
    carrying the run's environment marker."""
    pids = with_marker(marker)
    if root_pid is not None:
        pids |= in_group(root_pid) | descendants(root_pid)
        if is_alive(root_pid):
            pids.add(root_pid)
    return {pid for pid in pids if is_alive(pid)}
