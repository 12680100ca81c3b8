"""Two runs side by side (GET /runs/compare): pure functions over their JSON and results."""

from __future__ import annotations

from typing import Any

MAX_IDS_TEXT = 64


def parse_ids(raw: str | None) -> tuple[int, int]:
    """``ids=A,B``: two different positive run ids (ValueError says what is wrong)."""
    if not raw or len(raw) > MAX_IDS_TEXT:
        raise ValueError("ids must be two run ids, e.g. ids=12,15")
    parts = [p.strip() for p in raw.split(",")]
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"ids must be two run ids, e.g. ids=12,15; got {raw!r}")
    a, b = int(parts[0]), int(parts[1])
    if a == b:
        raise ValueError("ids must name two different runs")
    return a, b


def dict_diff(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    """Keys only in A (removed), only in B (added), and in both with other values."""
    a, b = a or {}, b or {}
    return {
        "equal": a == b,
        "removed": {k: a[k] for k in sorted(set(a) - set(b))},
        "added": {k: b[k] for k in sorted(set(b) - set(a))},
        "changed": {k: {"a": a[k], "b": b[k]} for k in sorted(set(a) & set(b)) if a[k] != b[k]},
    }


def _delta(a: float | int | None, b: float | int | None) -> float | None:
    return None if a is None or b is None else float(b) - float(a)


def _figure(run_a: dict[str, Any], run_b: dict[str, Any], key: str) -> dict[str, Any]:
    return {
        "a": run_a.get(key),
        "b": run_b.get(key),
        "delta": _delta(run_a.get(key), run_b.get(key)),
    }


def block_diff(
    a: dict[tuple[str, int], float] | None, b: dict[tuple[str, int], float] | None
) -> dict[str, Any] | None:
    """Per block values of both runs and B - A, where both have block results. Two one-day
    results (today's run against yesterday's) pair by block; otherwise by date and block."""
    if not a or not b:
        return None
    days_a, days_b = sorted({d for d, _ in a}), sorted({d for d, _ in b})
    if len(days_a) == 1 and len(days_b) == 1:
        pairs = [
            ((days_a[0], k), (days_b[0], k)) for k in sorted({k for _, k in a} | {k for _, k in b})
        ]
    else:
        pairs = [(key, key) for key in sorted(set(a) | set(b))]
    rows = [
        {
            "date_a": key_a[0],
            "date_b": key_b[0],
            "block": key_a[1],
            "a": a.get(key_a),
            "b": b.get(key_b),
            "diff": _delta(a.get(key_a), b.get(key_b)),
        }
        for key_a, key_b in pairs
    ]
    diffs = [abs(float(r["diff"])) for r in rows if r["diff"] is not None]
    return {
        "blocks": rows,
        "blocks_differing": sum(1 for d in diffs if d > 1e-9),
        "max_abs_diff": max(diffs) if diffs else None,
        "total_a": sum(a.values()),
        "total_b": sum(b.values()),
    }


def compare(
    run_a: dict[str, Any],
    run_b: dict[str, Any],
    scripts: tuple[dict[str, Any], dict[str, Any]],
    blocks: tuple[dict[tuple[str, int], float] | None, dict[tuple[str, int], float] | None],
) -> dict[str, Any]:
    script_a, script_b = scripts
    hashes_a, hashes_b = run_a.get("input_hashes") or {}, run_b.get("input_hashes") or {}
    return {
        "ids": [run_a["id"], run_b["id"]],
        "runs": [run_a, run_b],
        "script": {
            "same_script": script_a["name"] == script_b["name"],
            "same_version": script_a["id"] == script_b["id"],
            "a": {k: script_a[k] for k in ("id", "name", "version", "sha256", "format")},
            "b": {k: script_b[k] for k in ("id", "name", "version", "sha256", "format")},
        },
        "args": {"equal": run_a["args"] == run_b["args"], "a": run_a["args"], "b": run_b["args"]},
        "config": dict_diff(run_a["config"], run_b["config"]),
        "parameters": dict_diff(run_a.get("parameters"), run_b.get("parameters")),
        "inputs": {
            "equal": hashes_a == hashes_b,
            "a": hashes_a,
            "b": hashes_b,
            "differing": sorted(
                n for n in set(hashes_a) | set(hashes_b) if hashes_a.get(n) != hashes_b.get(n)
            ),
        },
        "status": {"a": run_a["status"], "b": run_b["status"]},
        "objective_value": _figure(run_a, run_b, "objective_value"),
        "runtime_ms": _figure(run_a, run_b, "runtime_ms"),
        "solver_time_ms": _figure(run_a, run_b, "solver_time_ms"),
        "counts": {
            key: _figure(run_a, run_b, key)
            for key in ("line_count", "error_count", "results_count")
        },
        "block_results": block_diff(*blocks),
    }
