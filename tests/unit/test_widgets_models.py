"""Pure parts of the model panels: form fields and values, solver points, comparison rows."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

from energyops_ext.widgets.models import compare_rows, form_fields, form_values, solver_points

PARAMETERS: list[dict[str, Any]] = [
    {"name": "date", "type": "date", "default": "latest", "required": False, "help": None},
    {"name": "capacity_mw", "type": "float", "default": 50.0, "min": 0.0, "max": 500.0},
    {"name": "mode", "type": "choice", "default": "fast", "choices": ["fast", "exact"]},
    {"name": "label", "type": "str", "default": None},
    {"name": "seed", "type": "int", "default": None, "required": True},
    {"name": "verbose", "type": "bool", "default": False},
]


def test_form_fields_follow_the_declaration() -> None:
    fields = {f["name"]: f for f in form_fields(PARAMETERS)}
    assert fields["date"]["kind"] == "date" and fields["date"]["value"] == ""
    assert fields["date"]["help"] == "blank: the latest day with prices"
    assert (fields["capacity_mw"]["min"], fields["capacity_mw"]["max"]) == (0.0, 500.0)
    assert fields["mode"]["options"] == ["fast", "exact"]
    assert fields["label"]["kind"] == "text" and fields["label"]["value"] == ""
    assert fields["seed"]["label"] == "seed *"


def test_form_values_leave_blanks_to_the_defaults() -> None:
    fields = form_fields(PARAMETERS)
    raw = {
        "date": date(2025, 10, 6),
        "capacity_mw": 75.0,
        "mode": "exact",
        "label": "",
        "seed": 3,
        "verbose": True,
    }
    assert form_values(fields, raw) == {
        "date": "2025-10-06",
        "capacity_mw": 75.0,
        "mode": "exact",
        "seed": 3,
        "verbose": True,
    }
    assert "date" not in form_values(fields, {**raw, "date": ""})


def test_solver_points() -> None:
    events = [
        {"type": "run.progress", "data": {"progress": 10}},
        {"type": "run.progress", "data": {"incumbent": 5.0, "elapsed_s": 0.1}},
        {"type": "run.log", "data": {}},
        {
            "type": "run.progress",
            "data": {"incumbent": 6, "bound": 9.0, "gap": 0.3, "elapsed_s": 1},
        },
    ]
    points = solver_points(events)
    assert points["elapsed_s"] == [0.1, 1.0] and points["incumbent"] == [5.0, 6.0]
    assert math.isnan(points["bound"][0]) and points["bound"][1] == 9.0


def test_compare_rows_show_what_differs() -> None:
    figure = {"a": 1.0, "b": 2.0, "delta": 1.0}
    diff = {
        "ids": [3, 4],
        "script": {
            "a": {"name": "so.py", "version": 1},
            "b": {"name": "so.py", "version": 2},
        },
        "status": {"a": "succeeded", "b": "failed"},
        "parameters": {
            "changed": {"power_mw": {"a": 25.0, "b": 50.0}},
            "removed": {"old": 1},
            "added": {},
        },
        "config": {"changed": {}, "removed": {}, "added": {"x": True}},
        "args": {"equal": True, "a": [], "b": []},
        "inputs": {"equal": False, "differing": ["market-snapshot.csv"]},
        "objective_value": figure,
        "runtime_ms": figure,
        "solver_time_ms": {"a": None, "b": None, "delta": None},
        "counts": {"results_count": {"a": 96, "b": 96, "delta": 0}},
    }
    rows = compare_rows(diff)
    assert ("script", "so.py v1", "so.py v2") in rows
    assert ("parameters.power_mw", "25.0", "50.0") in rows
    assert ("parameters.old", "1", "—") in rows and ("config.x", "—", "True") in rows
    assert ("inputs", "differ: market-snapshot.csv", "") in rows
