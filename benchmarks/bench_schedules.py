"""Slot due → run started with three real servers on one database, on PostgreSQL and SQLite.

A schedule fires every 2 seconds (a 6-field cron, seconds last) on a cluster of three servers
with the shipped timing settings (``schedule_poll_s`` 1 s, ``poll_s`` 0.5 s). For every slot:
slot → fired (the fire row written by whichever server won it) and slot → started (the run's
``started_at``, on whichever server claimed it). Baseline in the same cluster: a run posted by
hand, created → started. Every slot must give exactly one run.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from energyops_ext.config import Settings
from tests.api.cluster import CLUSTER_SETTINGS, Node, cluster

from .harness import Figure, Result, benchmark, percentile

SERVERS = 3
SLOTS = 30
CRON = "* * * * * */2"  # every 2 s
MANUAL = 10
GOAL = "≤ 1 s (p99)"

_DEFAULTS = {f.name: f.default for f in fields(Settings)}
ENERGYOPS: dict[str, Any] = {
    **{name: _DEFAULTS[name] for name in CLUSTER_SETTINGS},
    "schedule_poll_s": _DEFAULTS["schedule_poll_s"],
    "kill_grace_s": 0.5,
}


def _at(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _manual(node: Node, script_id: int) -> list[float]:
    """created → started of runs posted by hand, one at a time."""
    samples = []
    for _ in range(MANUAL):
        run = node.finished(node.run(script_id)["id"])
        samples.append(_at(run["started_at"]) - _at(run["created_at"]))
    return samples


def _fires(node: Node, schedule_id: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = node.get(f"schedules/{schedule_id}/fires", limit=1000)["items"]
    return items


def measure(backend: str) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-schedules-{backend}-") as tmp,
        cluster(Path(tmp), backend, SERVERS, energyops=ENERGYOPS) as nodes,
    ):
        names = {node.id: node.name for node in nodes}
        script = int(nodes[0].upload_script("test_bench_schedule.py", "print('ok')\n")["id"])
        manual = _manual(nodes[1], script)
        schedule = nodes[0].post(
            "schedules", {"script_id": script, "cron": CRON, "name": "bench"}, status=201
        )
        started = time.monotonic()
        while len(_fires(nodes[0], schedule["id"])) < SLOTS:
            assert time.monotonic() - started < SLOTS * 2 + 60, "the schedule stopped firing"
            time.sleep(0.5)
        response = requests.patch(
            nodes[0].server.url(f"schedules/{schedule['id']}"),
            headers=nodes[0].server.headers,
            json={"enabled": False},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        fires = sorted(_fires(nodes[0], schedule["id"]), key=lambda f: f["slot"])[:SLOTS]
        assert all(f["status"] == "fired" for f in fires), fires
        runs = [nodes[2].finished(f["run_id"]) for f in fires]
        listed = nodes[0].get("runs", limit=1000)["items"]
        per_slot = Counter(r["id"] for r in listed if r["schedule_id"] == schedule["id"])
        assert len(per_slot) >= SLOTS and set(per_slot.values()) == {1}
        return {
            "fired": [_at(f["fired_at"]) - _at(f["slot"]) for f in fires],
            "started": [
                _at(r["started_at"]) - _at(f["slot"]) for f, r in zip(fires, runs, strict=True)
            ],
            "manual": manual,
            "firers": Counter(names[str(f["server_id"])] for f in fires),
            "starters": Counter(names[str(r["server_id"])] for r in runs),
        }


@benchmark("schedules")
def run() -> Result:
    result = Result("schedules")
    notes = []
    for backend in ("postgresql", "sqlite"):
        print(f"  {backend}: {SLOTS} slots, every 2 s, {SERVERS} servers", flush=True)
        got = measure(backend)
        manual_p50 = percentile(got["manual"], 50) * 1000
        for pct in (50, 95, 99):
            result.figures.append(
                Figure(
                    f"{backend}: slot → run started p{pct}",
                    percentile(got["started"], pct) * 1000,
                    "ms",
                    baseline=manual_p50,
                    baseline_name="POST → started p50",
                    goal=GOAL if pct == 99 else "",
                )
            )
        result.figures.append(
            Figure(f"{backend}: slot → fired p99", percentile(got["fired"], 99) * 1000, "ms")
        )
        result.figures.append(
            Figure(f"{backend}: slot → run started max", max(got["started"]) * 1000, "ms")
        )
        notes.append(
            f"{backend}: slots fired by {dict(got['firers'])}, runs started by "
            f"{dict(got['starters'])}; one run per slot"
        )
    result.notes = "; ".join(notes)
    return result
