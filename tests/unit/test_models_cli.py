"""``jupyter energyops demo-data`` installs the reference models (a real process, a real
database): once as version 1, then up to date."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, text

from .test_cli import run


def test_demo_data_installs_the_reference_models(tmp_path: Path) -> None:
    env = {**os.environ, "ENERGYOPS_DATA_DIR": str(tmp_path)}
    env.pop("ENERGYOPS_DB_URL", None)
    first = run(["energyops", "demo-data", "--days", "2", "--start", "2025-10-06"], env)
    assert first.returncode == 0, first.stderr
    assert (
        "reference models: so_storage_arbitrage.py v1 (SO, installed), "
        "dmo_bid_builder.py v1 (DMO, installed)"
    ) in first.stdout
    again = run(["energyops", "demo-data", "--days", "1", "--start", "2025-10-06"], env)
    assert "so_storage_arbitrage.py v1 (SO, up to date)" in again.stdout
    engine = create_engine(f"sqlite:///{tmp_path / 'energyops.db'}")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT name, kind, model_type, format, version FROM scripts ORDER BY name")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("dmo_bid_builder.py", "model", "DMO", "py", 1),
        ("so_storage_arbitrage.py", "model", "SO", "py", 1),
    ]
    assert len(list((tmp_path / "files" / "scripts").iterdir())) == 2
