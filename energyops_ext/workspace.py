"""The working copy ``jupyter energyops up`` serves: the repository's notebooks and dashboards
copied into ``<data_dir>/workspace`` so that running, editing and saving them in Lab (outputs,
``.ipynb_checkpoints``) never changes a tracked file.

A file is copied when the working copy lacks it, and refreshed when the repository's version
changed and the working copy still holds the version copied last time (the manifest remembers
its hash); a file someone changed in the working copy is kept as it is."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = ".energyops-workspace.json"
# Editor and cache leftovers in a source folder are not part of it.
SKIPPED_PARTS = frozenset({".ipynb_checkpoints", "__pycache__"})


@dataclass(frozen=True)
class SyncPlan:
    """What to do with each file (paths relative to the workspace)."""

    add: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    keep_changed: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{len(self.add)} copied",
            f"{len(self.update)} updated",
            f"{len(self.keep_changed)} kept with local changes",
        ]
        return ", ".join(parts)


def plan_sync(
    source: Mapping[str, str], working: Mapping[str, str], manifest: Mapping[str, str]
) -> SyncPlan:
    """Pure: ``source`` and ``working`` map relative paths to content hashes, ``manifest`` to
    the hash of the version copied last time."""
    plan = SyncPlan()
    for path, digest in sorted(source.items()):
        have = working.get(path)
        if have is None:
            plan.add.append(path)
        elif have == digest:
            plan.current.append(path)
        elif have == manifest.get(path):
            plan.update.append(path)
        else:
            plan.keep_changed.append(path)
    return plan


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_files(folder: Path) -> Iterable[Path]:
    """The files of ``folder`` worth copying: no hidden files, no checkpoints or caches."""
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        hidden = any(part.startswith(".") or part in SKIPPED_PARTS for part in relative.parts)
        if path.is_file() and not hidden:
            yield path


def sync_workspace(workspace: Path, folders: Mapping[str, Path]) -> SyncPlan:
    """Bring ``workspace/<name>`` up to date from each ``folders[name]`` (a missing source
    folder is skipped) and return what was done."""
    workspace.mkdir(parents=True, exist_ok=True)
    manifest_path = workspace / MANIFEST
    manifest: dict[str, str] = (
        json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    )
    sources: dict[str, Path] = {}
    for name, folder in folders.items():
        if folder.is_dir():
            for path in source_files(folder):
                sources[f"{name}/{path.relative_to(folder).as_posix()}"] = path
    source_hashes = {rel: file_hash(path) for rel, path in sources.items()}
    working_hashes = {
        rel: file_hash(workspace / rel) for rel in sources if (workspace / rel).is_file()
    }
    plan = plan_sync(source_hashes, working_hashes, manifest)
    for rel in (*plan.add, *plan.update):
        target = workspace / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.copying")
        shutil.copyfile(sources[rel], partial)
        partial.replace(target)  # a copy cut short never looks like a local change
    for rel in (*plan.add, *plan.update, *plan.current):
        manifest[rel] = source_hashes[rel]
    # written last and whole: an interrupted copy is redone on the next start
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    tmp.replace(manifest_path)
    return plan
