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

Typed parameters (declared as a ``PARAMETERS`` literal the server reads at upload)::

    PARAMETERS = {"capacity_mw": {"type": "float", "default": 50.0, "min": 0, "max": 500}}
    values = sdk.parameters(PARAMETERS)   # the run's values; the defaults outside EnergyOps

Stop and keep the best (POST /runs/{id}/stop sends SIGINT, then SIGTERM)::

    stop = sdk.stop_handler()             # SIGINT/SIGTERM set stop.requested
    status = sdk.solve_highs(h, stop)     # HiGHS reports incumbent/bound/gap, stops on request
    ...write the best solution...; sys.exit(0)
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
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


def parameters(declared: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The run's validated parameter values (ENERGYOPS_PARAMETERS). Outside EnergyOps (no
    such variable) the ``default`` of each entry of ``declared`` (a ``PARAMETERS`` dict)."""
    raw = os.environ.get("ENERGYOPS_PARAMETERS")
    if raw:
        data = json.loads(raw)
        return data if isinstance(data, dict) else {}
    return {name: spec.get("default") for name, spec in (declared or {}).items()}


# --- stop and keep the best ---


class StopHandler:
    """SIGINT and SIGTERM set ``requested`` (and call each ``on_stop`` callback once) instead
    of ending the process, so a model can stop its solver and write its best solution."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def install(self) -> StopHandler:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._handle)
            signal.signal(signal.SIGTERM, self._handle)
        return self

    def on_stop(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)
            fire = self.requested
        if fire:
            callback()

    def request(self, signum: int | None = None) -> None:
        with self._lock:
            first = not self.requested
            self.requested, self.signal = True, self.signal or signum
            callbacks = list(self._callbacks) if first else []
        for callback in callbacks:
            callback()

    def _handle(self, signum: int, _frame: Any) -> None:
        if not self.requested:
            name = signal.Signals(signum).name
            sys.stderr.write(f"stop requested ({name}): keeping the best solution so far\n")
            sys.stderr.flush()
        self.request(signum)


_STOP: StopHandler | None = None


def stop_handler() -> StopHandler:
    """The process's stop handler, installed on first use."""
    global _STOP
    if _STOP is None:
        _STOP = StopHandler()
    return _STOP.install()


def stop_requested() -> bool:
    return _STOP is not None and _STOP.requested


# --- solver progress ---


def solver_progress(
    *,
    incumbent: float | None = None,
    bound: float | None = None,
    gap: float | None = None,
    elapsed_s: float | None = None,
) -> None:
    """One marker with the solver's figures; the server sends them as run.progress."""
    values = {
        key: float(value)
        for key, value in (
            ("incumbent", incumbent),
            ("bound", bound),
            ("gap", gap),
            ("elapsed_s", elapsed_s),
        )
        if value is not None and math.isfinite(value)
    }
    if values:
        emit(**values)


class HighsReporter:
    """HiGHS callbacks (highspy): improving solutions and MIP progress as solver markers at
    most every ``every_s`` seconds (each new incumbent at once), and a stop on request."""

    def __init__(self, stop: StopHandler | None, every_s: float) -> None:
        self.stop = stop
        self.every_s = every_s
        self.last = 0.0
        self.started = time.monotonic()

    def report(self, out: Any, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        incumbent = getattr(out, "mip_primal_bound", None)
        if incumbent is None or not math.isfinite(incumbent) or abs(incumbent) >= 1e30:
            incumbent = getattr(out, "objective_function_value", None)
        bound = getattr(out, "mip_dual_bound", None)
        gap = getattr(out, "mip_gap", None)
        solver_progress(
            incumbent=_finite(incumbent),
            bound=_finite(bound),
            gap=_finite(gap),
            elapsed_s=_finite(getattr(out, "running_time", None)) or now - self.started,
        )

    def on_improving(self, event: Any) -> None:
        self.report(event.data_out, True)

    def on_progress(self, event: Any) -> None:
        self.report(event.data_out, False)
        self.on_interrupt(event)

    def on_interrupt(self, event: Any) -> None:
        if self.stop is not None and self.stop.requested:
            event.interrupt()


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value) and abs(value) < 1e30:
        return float(value)
    return None


def solve_highs(highs: Any, stop: StopHandler | None = None, every_s: float = 0.5) -> Any:
    """``highs.run()`` with solver progress markers and stop handling: a stop request
    interrupts the solve, which returns with the best solution found (model status
    "Interrupted by user"). Returns the run status. ``highs`` is a ``highspy.Highs``."""
    reporter = HighsReporter(stop if stop is not None else stop_handler(), every_s)
    highs.cbMipImprovingSolution.subscribe(reporter.on_improving)
    highs.cbMipInterrupt.subscribe(reporter.on_progress)
    highs.cbSimplexInterrupt.subscribe(reporter.on_interrupt)
    highs.cbIpmInterrupt.subscribe(reporter.on_interrupt)
    try:
        # the solve runs in a thread so that this (main) thread takes the signals
        thread = highs.startSolve()
        while True:
            done, status = highs.wait(0.1)
            if done:
                break
        thread.join()
    finally:
        highs.cbMipImprovingSolution.unsubscribe(reporter.on_improving)
        highs.cbMipInterrupt.unsubscribe(reporter.on_progress)
        highs.cbSimplexInterrupt.unsubscribe(reporter.on_interrupt)
        highs.cbIpmInterrupt.unsubscribe(reporter.on_interrupt)
    info = highs.getInfo()
    solver_progress(
        incumbent=_finite(getattr(info, "objective_function_value", None)),
        bound=_finite(getattr(info, "mip_dual_bound", None)),
        gap=_finite(getattr(info, "mip_gap", None)),
        elapsed_s=time.monotonic() - reporter.started,
    )
    solver_time(time.monotonic() - reporter.started)
    return status
