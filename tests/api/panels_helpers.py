"""Factories for the run panel tests: scripts that print, clients, waiting for a condition."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from energyops_ext.widgets import EnergyOpsClient

# prints flat out: 8,000 lines in bursts of 400 (a short pause between bursts keeps it printing
# for about a second, so a panel opened meanwhile meets it mid-flight)
FLAT_OUT = """
import time
for i in range(1, 8001):
    print(f"flat-{i}")
    if i % 400 == 0:
        time.sleep(0.05)
"""
FLAT_OUT_LINES = 8000

# reports 25 %, prints a marker and a plain line, then waits to be killed
HOLDS_AT_25 = """
import time
print("holding-start", flush=True)
print('::energyops {"progress": 25, "objective": 1234.5}', flush=True)
print("holding at 25", flush=True)
while True:
    time.sleep(0.2)
"""

# reports as it goes and ends by itself
REPORTS_AND_ENDS = """
print("report-start", flush=True)
for p in (20, 60, 100):
    print(f'::energyops {{"progress": {p}}}', flush=True)
print("Objective value: 99.5", flush=True)
print("report-last-line", flush=True)
"""


def eventually(check: Callable[[], bool], within: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what} not met in {within} s"
        time.sleep(0.05)


def upload(client: EnergyOpsClient, source: str, name: str) -> int:
    script = client.upload_script(source.encode(), filename=name, kind="test")
    return int(script["id"])


def all_lines(client: EnergyOpsClient, run_id: int) -> list[dict[str, Any]]:
    """Every stored line of a run, read page by page."""
    lines: list[dict[str, Any]] = []
    while True:
        page = client.get(f"runs/{run_id}/logs", after=len(lines), limit=10_000)["items"]
        lines.extend(page)
        if len(page) < 10_000:
            return lines
