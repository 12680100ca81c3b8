"""Files a run leaves: its artifacts (regular files in its output directory) and its log file,
and where they are kept in the shared storage once the run ends."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Artifact:
    name: str
    path: Path
    size: int


def run_prefix(run_id: int) -> str:
    return f"runs/{run_id}"


def artifact_key(run_id: int, name: str) -> str:
    return f"{run_prefix(run_id)}/artifacts/{name}"


def log_key(run_id: int) -> str:
    return f"{run_prefix(run_id)}/log.txt"


def _artifact_files(output: Path) -> Iterator[os.DirEntry[str]]:
    if not output.is_dir():
        return
    with os.scandir(output) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                yield entry


def list_artifacts(output: Path) -> list[Artifact]:
    """Every artifact that may be served: regular files directly in ``output``, by name."""
    found = (resolve_artifact(output, e.name) for e in _artifact_files(output))
    return sorted((a for a in found if a is not None), key=lambda a: a.name)


def resolve_artifact(output: Path, name: str) -> Artifact | None:
    """Only a regular file whose real path is inside the run's real output directory."""
    root = output.resolve()
    try:
        real = (output / name).resolve(strict=True)
        info = os.stat(real, follow_symlinks=False)
    except (OSError, RuntimeError):
        return None
    if real.parent != root or not stat.S_ISREG(info.st_mode):
        return None
    if (output / name).is_symlink():
        return None
    return Artifact(name, real, info.st_size)
