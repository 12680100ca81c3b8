"""Result markers: the metrics a printed line reports, ``::energyops {json}`` or the plain
forms of API.md (``Objective value: 1.5``, ``progress: 40%``...), for one line
(``parse_marker``) or found among a group of lines (``reporting_lines``)."""

from __future__ import annotations

import json
import re
from typing import Any

from .levels import lines_matching, one_per_line

MARKER_PREFIX = "::energyops "
_PLAIN = re.compile(
    r"^\s*(?:"
    r"objective(?:\s+value)?\s*[:=]\s*(?P<objective>[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r"|results?\s+written\s*[:=]\s*(?P<results>\d[\d,]*)"
    r"|progress\s*[:=]\s*(?P<progress>\d+(?:\.\d+)?)\s*%"
    r"|solver\s+time\s*[:=]\s*(?P<solver>\d+(?:\.\d+)?)\s*(?P<unit>ms|s)\b"
    r")",
    re.IGNORECASE,
)
_MARKER_HINT = re.compile(r"::energyops |objective|results? written|progress|solver time", re.I)
# a notebook run labels each output line with its cell: "[cell 3] Objective value: 1.5"
_CELL_LABEL = re.compile(r"^\[(?:cell \d+|parameters|setup)\] ")
SOLVER_KEYS = ("incumbent", "bound", "gap", "elapsed_s")


def might_report(text: str) -> bool:
    """Cheap pre-test for ``parse_marker``: every marker form contains ':' or '='."""
    return (":" in text or "=" in text) and _MARKER_HINT.search(text) is not None


def reporting_lines(texts: list[str]) -> list[int]:
    """Indices of the texts that may hold a result marker (``might_report``), in order."""
    joined = "\n".join(texts)
    if (":" not in joined and "=" not in joined) or _MARKER_HINT.search(joined) is None:
        return []
    if not one_per_line(joined, texts):
        return [i for i, text in enumerate(texts) if might_report(text)]
    return [i for i in lines_matching(joined, _MARKER_HINT) if might_report(texts[i])]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if number == number and abs(number) != float("inf") else None


def parse_marker(text: str) -> dict[str, float | int] | None:
    """Metrics a line reports: ``::energyops {json}`` or the plain forms of API.md.
    Returns keys among progress, objective_value, results_count, solver_time_ms and the
    solver figures incumbent, bound, gap, elapsed_s. A notebook cell's label is skipped."""
    if not might_report(text):
        return None
    if text.startswith("[") and (label := _CELL_LABEL.match(text)):
        text = text[label.end() :]
    stripped = text.strip()
    if stripped.startswith(MARKER_PREFIX):
        return _parse_json_marker(stripped[len(MARKER_PREFIX) :])
    match = _PLAIN.match(text)
    if match is None:
        return None
    if match["results"] is not None:
        return {"results_count": int(match["results"].replace(",", ""))}
    # a printed number may overflow to inf (Objective value: 1e400): not a figure
    if match["objective"] is not None:
        objective = _number(float(match["objective"].replace(",", "")))
        return None if objective is None else {"objective_value": objective}
    if match["progress"] is not None:
        progress = _number(float(match["progress"]))
        return None if progress is None else {"progress": min(100.0, progress)}
    solver = _number(float(match["solver"]))
    if solver is None:
        return None
    return {"solver_time_ms": round(solver * 1000 if match["unit"].lower() == "s" else solver)}


def _parse_json_marker(payload: str) -> dict[str, float | int] | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    found: dict[str, float | int] = {}
    progress = _number(data.get("progress"))
    if progress is not None:
        found["progress"] = max(0.0, min(100.0, progress))
    objective = _number(data.get("objective", data.get("objective_value")))
    if objective is not None:
        found["objective_value"] = objective
    results = _number(data.get("results", data.get("results_count")))
    if results is not None:
        found["results_count"] = int(results)
    solver = _number(data.get("solver_time_ms"))
    if solver is None and _number(data.get("solver_time_s")) is not None:
        solver = float(data["solver_time_s"]) * 1000
    if solver is not None:
        found["solver_time_ms"] = round(solver)
    for key in SOLVER_KEYS:
        figure = _number(data.get(key))
        if figure is not None:
            found[key] = figure
    return found or None
