"""The command line as an operator uses it: real processes, a real database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, inspect

from energyops_ext.db import head_revision

BIN = Path(sys.executable).parent


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "jupyter"), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_extension_is_enabled_without_a_manual_step() -> None:
    result = run(["server", "extension", "list"], dict(os.environ))
    output = result.stdout + result.stderr
    line = next(line for line in output.splitlines() if "energyops_ext" in line)
    assert "enabled" in line


def test_db_upgrade_migrates_the_configured_database(tmp_path: Path) -> None:
    env = {**os.environ, "ENERGYOPS_DATA_DIR": str(tmp_path)}
    env.pop("ENERGYOPS_DB_URL", None)
    result = run(["energyops", "db", "upgrade"], env)
    assert result.returncode == 0, result.stderr
    assert f"-> {head_revision()}" in result.stdout
    engine = create_engine(f"sqlite:///{tmp_path / 'energyops.db'}")
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"scripts", "runs", "log_chunks", "uploads", "market_snapshot"} <= tables


def test_help_all_lists_the_configuration() -> None:
    result = run(["energyops", "--help-all"], dict(os.environ))
    assert result.returncode == 0
    for trait in ("EnergyOps.db_url", "EnergyOps.max_concurrent_runs", "EnergyOps.sandbox_mode"):
        assert trait in result.stdout
