"""Process backends, chosen once at start by ``EnergyOps.process_backend``:

- ``linux``: /proc (identity, tree, environment markers), a pidfd for the exit, process
  groups; the only one that runs under bubblewrap, ``unshare`` and ``prlimit``.
- ``portable``: psutil (macOS, Windows; on Linux when asked, which is how its code is tested
  here), a Job Object on Windows; no namespaces, so the sandbox mode is ``none``.
- ``auto``: ``linux`` where it works, else ``portable``.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

from .base import Action, Containment, LineSink, PipeReader, ProcessBackend, ProcRef

BACKENDS = ("auto", "linux", "portable")

__all__ = [
    "BACKENDS",
    "Action",
    "Containment",
    "LineSink",
    "PipeReader",
    "ProcRef",
    "ProcessBackend",
    "linux_unavailable",
    "process_backend",
]


def linux_unavailable() -> str | None:
    """Why the linux backend cannot run here, or None when it can."""
    if sys.platform != "linux":
        return f"this is {sys.platform}, not Linux"
    if not hasattr(os, "pidfd_open"):
        return "os.pidfd_open is missing (Linux 5.3 or later is needed)"
    if not Path("/proc/self/stat").is_file():
        return "/proc is not mounted"
    return None


@cache
def process_backend(name: str = "auto") -> ProcessBackend:
    """The backend called ``name`` (one instance per process); ``ValueError`` if it cannot
    run here."""
    name = name.lower()
    if name not in BACKENDS:
        raise ValueError(f"process_backend must be one of {', '.join(BACKENDS)}, not {name!r}")
    why_not = linux_unavailable()
    if name == "linux" and why_not is not None:
        raise ValueError(f"process_backend=linux does not work here: {why_not}")
    # (the platform test is always true when why_not is None; it tells the type checker)
    if sys.platform == "linux" and why_not is None and name in ("auto", "linux"):
        from .linux import LinuxBackend

        return LinuxBackend()
    from .portable import PortableBackend

    return PortableBackend()
