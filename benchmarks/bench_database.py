"""Database baseline: health-style reads through the service layer vs raw driver calls."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

from energyops_ext.db import Database, upgrade

from .harness import Figure, Result, benchmark, percentile


@benchmark("db_ping")
def db_ping() -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        db = Database(f"sqlite:///{path}")
        upgrade(db.write_engine)
        ours = []
        for _ in range(500):
            start = time.perf_counter()
            db.ping()
            ours.append(time.perf_counter() - start)
        db.close()
        raw = []
        conn = sqlite3.connect(path)
        for _ in range(500):
            start = time.perf_counter()
            conn.execute("SELECT 1").fetchall()
            raw.append(time.perf_counter() - start)
        conn.close()
    return Result(
        "db_ping",
        [
            Figure(
                "ping p50",
                percentile(ours, 50) * 1000,
                "ms",
                baseline=percentile(raw, 50) * 1000,
                baseline_name="sqlite3 SELECT 1",
            )
        ],
    )
