"""Helpers for models and test scripts run by EnergyOps (standard library only).

Each reporting call prints one ``::energyops {json}`` line; the server reads it from the run's
output and stores the value on the run::

    from energyops_ext import sdk

    cfg = sdk.config()
    prices = sdk.input_dir() / "market-snapshot.csv"
    sdk.progress(40)
    sdk.objective(125436.78)
    sdk.results(500)
    sdk.solver_time(0.812)
    (sdk.output_dir() / "schedule.csv").write_text(...)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

PREFIX = "::energyops "


def emit(**values: Any) -> None:
    """Print one marker line with ``values`` (flushed, so the server sees it at once)."""
    sys.stdout.write(PREFIX + json.dumps(values, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def progress(percent: float) -> None:
    """Progress of the run, 0 to 100."""
    emit(progress=max(0.0, min(100.0, float(percent))))


def objective(value: float) -> None:
    """The objective value the model reached."""
    emit(objective=float(value))


def results(count: int) -> None:
    """How many result records the model wrote."""
    emit(results=int(count))


def solver_time(seconds: float) -> None:
    """Time the solver took, in seconds (stored in milliseconds)."""
    emit(solver_time_ms=round(float(seconds) * 1000))


def config() -> dict[str, Any]:
    """The run's ``config`` object (ENERGYOPS_CONFIG, or CONFIG for older scripts)."""
    raw = os.environ.get("ENERGYOPS_CONFIG") or os.environ.get("CONFIG") or "{}"
    data = json.loads(raw)
    return data if isinstance(data, dict) else {}


def run_id() -> int | None:
    raw = os.environ.get("ENERGYOPS_RUN_ID") or os.environ.get("JOB_ID")
    return int(raw) if raw and raw.isdigit() else None


def model_type() -> str | None:
    return os.environ.get("ENERGYOPS_MODEL_TYPE") or os.environ.get("MODEL_TYPE") or None


def input_dir() -> Path:
    """Where the run's declared inputs are (one CSV per input)."""
    return Path(os.environ.get("ENERGYOPS_INPUT_DIR") or "input")


def output_dir() -> Path:
    """Where to write files that become the run's artifacts."""
    path = Path(os.environ.get("ENERGYOPS_OUTPUT_DIR") or "output")
    path.mkdir(parents=True, exist_ok=True)
    return path
