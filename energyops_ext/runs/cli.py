"""``jupyter energyops cleanup``: remove stale temp files, old run directories, orphan logs."""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from traitlets import Bool, Unicode

from ..cli import EnergyOpsCommand
from ..config import Settings
from ..db import Database
from ..db.models import Run
from .store import FINISHED

TEMP_FILE = re.compile(r"^\..+\.tmp-\d+$")
TEMP_MAX_AGE_S = 3600.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` or plain seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if match is None:
        raise ValueError(f"max age must look like 7d, 12h, 30m or 3600; got {text!r}")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"])


@dataclass
class CleanupReport:
    temp_files: list[Path] = field(default_factory=list)
    run_dirs: list[Path] = field(default_factory=list)
    log_files: list[Path] = field(default_factory=list)
    bytes: int = 0

    def lines(self, dry_run: bool) -> list[str]:
        verb = "would remove" if dry_run else "removed"
        out = [f"{verb} {p}" for p in (*self.temp_files, *self.run_dirs, *self.log_files)]
        out.append(
            f"{verb} {len(self.temp_files)} upload temp files, {len(self.run_dirs)} run "
            f"directories, {len(self.log_files)} orphan log files ({self.bytes:,} bytes)"
        )
        return out


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def plan_cleanup(settings: Settings, db: Database, max_age: timedelta) -> CleanupReport:
    """What cleanup removes: temp files older than an hour, run directories of runs that
    finished before ``max_age`` ago (or no longer exist), log files of runs that do not exist."""
    report = CleanupReport()
    now = time.time()
    if settings.files_dir.is_dir():
        for path in settings.files_dir.rglob(".*.tmp-*"):
            if TEMP_FILE.match(path.name) and now - path.stat().st_mtime > TEMP_MAX_AGE_S:
                report.temp_files.append(path)
    rows = db.read_sync(
        lambda s: [tuple(r) for r in s.execute(select(Run.id, Run.status, Run.finished_at))]
    )
    runs: dict[int, tuple[str, datetime | None]] = {r[0]: (r[1], r[2]) for r in rows}
    cutoff = datetime.now(UTC) - max_age
    if settings.sandbox_dir.is_dir():
        for path in sorted(settings.sandbox_dir.iterdir()):
            if not path.name.isdigit() or not path.is_dir():
                continue
            run = runs.get(int(path.name))
            if run is None or (run[0] in FINISHED and run[1] is not None and run[1] < cutoff):
                report.run_dirs.append(path)
    if settings.logs_dir.is_dir():
        for path in sorted(settings.logs_dir.glob("*.log")):
            if path.stem.isdigit() and int(path.stem) not in runs:
                report.log_files.append(path)
    report.bytes = sum(_size(p) for p in (*report.temp_files, *report.run_dirs, *report.log_files))
    return report


def apply_cleanup(report: CleanupReport) -> None:
    for path in (*report.temp_files, *report.log_files):
        path.unlink(missing_ok=True)
    for path in report.run_dirs:
        shutil.rmtree(path, ignore_errors=True)


class CleanupApp(EnergyOpsCommand):
    name = "jupyter-energyops-cleanup"
    description = (
        "Remove stale upload temp files, run directories of runs finished longer ago than "
        "--max-age, and log files of runs that no longer exist; print what was removed."
    )
    max_age = Unicode(
        help="Remove run directories of runs finished longer ago than this (7d, 12h, 30m). "
        "Default: $ENERGYOPS_CLEANUP_MAX_AGE, else 7d.",
    ).tag(config=True)
    dry_run = Bool(False, help="Only print what would be removed.").tag(config=True)
    aliases = {"max-age": "CleanupApp.max_age"}
    flags = {"dry-run": ({"CleanupApp": {"dry_run": True}}, "Only print what would be removed.")}

    def start(self) -> None:
        raw = self.max_age or os.environ.get("ENERGYOPS_CLEANUP_MAX_AGE") or "7d"
        try:
            max_age = parse_age(raw)
        except ValueError as exc:
            print(exc)
            self.exit(2)
        settings = self.energyops_settings()
        db = self.open_database()
        try:
            report = plan_cleanup(settings, db, max_age)
        finally:
            db.close()
        if not self.dry_run:
            apply_cleanup(report)
        print("\n".join(report.lines(self.dry_run)))
