"""Typed parameters: declarations read with ast (scripts and notebook parameters cells) and run
values checked against them, with the exact messages a client sees."""

from __future__ import annotations

from typing import Any

import pytest

from energyops_ext.errors import Invalid
from energyops_ext.runs import parameters as params
from energyops_ext.runs.parameters import DeclarationError, Parameter

SCRIPT = """
import sys
PARAMETERS = {
    "date": {"type": "date", "default": "latest", "input": "market-snapshot", "help": "day"},
    "capacity_mw": {"type": "float", "default": 50.0, "min": 0, "max": 500},
    "blocks": {"type": "int", "default": 96, "min": 1, "max": 96},
    "mode": {"type": "choice", "choices": ["fast", "exact"], "default": "fast"},
    "label": {"type": "str", "default": "desk"},
    "verbose": {"type": "bool", "default": False},
    "seed": {"type": "int"},
}
print(sys.argv)
"""

CELL = """from typing import Literal
from datetime import date
day: str = "2025-01-01"  # delivery day; type: date
capacity_mw: float = 50.0  # plant capacity; bounds [0, 500]
mode: str = "fast"  # choices: fast, exact
solver: Literal["highs", "cbc"] = "highs"
blocks: int = 96  # min 1; max 96
verbose = False
note = None  # free text
start: date = "2025-02-01"  # input: market-snapshot
"""


def declared() -> list[Parameter]:
    return params.script_parameters(SCRIPT)


def test_script_declaration_is_read_without_running_it() -> None:
    found = {p.name: p.to_json() for p in declared()}
    assert list(found) == ["date", "capacity_mw", "blocks", "mode", "label", "verbose", "seed"]
    assert found["date"] == {
        "name": "date",
        "type": "date",
        "default": "latest",
        "required": False,
        "min": None,
        "max": None,
        "choices": None,
        "help": "day",
        "input": "market-snapshot",
    }
    assert found["capacity_mw"]["min"] == 0.0 and found["capacity_mw"]["max"] == 500.0
    assert found["mode"]["choices"] == ["fast", "exact"]
    assert found["seed"]["required"] is True
    assert params.script_parameters("print('no parameters')\n") == []


def test_notebook_cell_declaration() -> None:
    found = {p.name: p for p in params.cell_parameters(CELL)}
    assert [(p.name, p.type, p.default) for p in found.values()] == [
        ("day", "date", "2025-01-01"),
        ("capacity_mw", "float", 50.0),
        ("mode", "choice", "fast"),
        ("solver", "choice", "highs"),
        ("blocks", "int", 96),
        ("verbose", "bool", False),
        ("note", "str", None),
        ("start", "date", "2025-02-01"),
    ]
    assert found["day"].help == "delivery day"
    assert (found["capacity_mw"].minimum, found["capacity_mw"].maximum) == (0.0, 500.0)
    assert found["capacity_mw"].help == "plant capacity"
    assert found["mode"].choices == ("fast", "exact") and found["mode"].help is None
    assert found["solver"].choices == ("highs", "cbc")
    assert (found["blocks"].minimum, found["blocks"].maximum) == (1.0, 96.0)
    assert found["note"].help == "free text"
    assert found["start"].input == "market-snapshot"


def test_round_trip_through_json() -> None:
    assert params.from_json(params.to_json(declared())) == declared()


BAD_DECLARATIONS = [
    ("PARAMETERS = {'x': {'type': 'decimal'}}", "parameter 'x': type must be one of"),
    ("PARAMETERS = {'x': {'type': 'int', 'default': 5, 'min': 10}}", "the default does not fit"),
    ("PARAMETERS = {'x': {'type': 'str', 'min': 1}}", "min applies to int and float"),
    ("PARAMETERS = {'x': {'type': 'int', 'min': 5, 'max': 1}}", "min 5 is above max 1"),
    ("PARAMETERS = {'x': {'type': 'choice'}}", "a choice needs a list of 1 to 100 choices"),
    ("PARAMETERS = {'x': {'type': 'choice', 'choices': ['a', 'a']}}", "choices repeat a value"),
    ("PARAMETERS = {'x': {'type': 'int', 'unit': 'MW'}}", "unknown keys unit"),
    ("PARAMETERS = {'x': {'type': 'int', 'input': 'market-snapshot'}}", "input applies to date"),
    ("PARAMETERS = {'x': {'type': 'date', 'input': 'weather'}}", "input must be one of"),
    ("PARAMETERS = {'x y': {'type': 'int'}}", "must be an identifier"),
    ("PARAMETERS = {'x': {'type': 'date', 'default': '2025-02-30'}}", "must be a date"),
    ("PARAMETERS = dict(x=1)", "PARAMETERS must be a literal dict"),
    ("PARAMETERS = [1, 2]", "PARAMETERS must be a dict of name"),
    ("PARAMETERS = {'x': 5}", "parameter 'x': its declaration must be a dict"),
]


@pytest.mark.parametrize(("source", "fragment"), BAD_DECLARATIONS)
def test_bad_script_declarations(source: str, fragment: str) -> None:
    with pytest.raises(DeclarationError) as caught:
        params.script_parameters("import os\n" + source + "\n")
    assert fragment in caught.value.message
    assert caught.value.line == 2


BAD_CELLS = [
    ("x: float = 1.0  # bounds [0, big]", 1, "bound 'big' is not a number"),
    ("x: dict = {}", 1, "type hint 'dict' is not one of"),
    ("x = 1\ny: int = compute()", 2, "the default must be a literal"),
    ("x: int = 5  # bounds [10, 20]", 1, "must be between 10 and 20; got 5"),
    ("x: int = 1\nx: int = 2", None, "parameter 'x' is declared twice"),
    ("x: int", 1, "parameter 'x' needs a default value"),
    ("x: int = 1  # choices: a, b", None, "choices a, b are not ints"),
]


@pytest.mark.parametrize(("source", "line", "fragment"), BAD_CELLS)
def test_bad_parameters_cells(source: str, line: int | None, fragment: str) -> None:
    with pytest.raises(DeclarationError) as caught:
        params.cell_parameters(source)
    assert fragment in caught.value.message
    assert caught.value.line == line


def test_values_are_checked_and_defaults_filled_in() -> None:
    values = params.resolve(declared(), {"capacity_mw": 75, "seed": 3, "date": "2025-10-06"})
    assert values == {
        "date": "2025-10-06",
        "capacity_mw": 75.0,
        "blocks": 96,
        "mode": "fast",
        "label": "desk",
        "verbose": False,
        "seed": 3,
    }
    assert isinstance(values["capacity_mw"], float)
    assert params.resolve([], {}) == {}
    assert params.environment_value({"a": 1.5}) == '{"a":1.5}'


BAD_VALUES: list[tuple[dict[str, Any], str, str, str]] = [
    ({"seed": 1, "power": 5}, "power", "unknown", "unknown parameter 'power' (declared: date,"),
    ({}, "seed", "required", "parameter 'seed' is required"),
    ({"seed": 1.5}, "seed", "type", "parameter 'seed' must be an integer; got 1.5"),
    ({"seed": True}, "seed", "type", "parameter 'seed' must be an integer; got True"),
    ({"seed": 1, "capacity_mw": "50"}, "capacity_mw", "type", "must be a number; got '50'"),
    (
        {"seed": 1, "capacity_mw": 600},
        "capacity_mw",
        "bounds",
        "parameter 'capacity_mw' must be between 0 and 500; got 600",
    ),
    (
        {"seed": 1, "capacity_mw": float("inf")},
        "capacity_mw",
        "finite",
        "parameter 'capacity_mw' must be a finite number; got inf",
    ),
    (
        {"seed": 1, "capacity_mw": float("nan")},
        "capacity_mw",
        "finite",
        "must be a finite number; got nan",
    ),
    ({"seed": 1, "blocks": 0}, "blocks", "bounds", "parameter 'blocks' must be between 1 and 96"),
    (
        {"seed": 1, "mode": "slow"},
        "mode",
        "choices",
        "parameter 'mode' must be one of fast, exact; got 'slow'",
    ),
    (
        {"seed": 1, "date": "2025-02-30"},
        "date",
        "date",
        "parameter 'date' must be a date (YYYY-MM-DD); got '2025-02-30'",
    ),
    ({"seed": 1, "date": "06-10-2025"}, "date", "date", "must be a date (YYYY-MM-DD)"),
    ({"seed": 1, "date": 20251006}, "date", "date", "must be a date (YYYY-MM-DD); got 20251006"),
    ({"seed": 1, "verbose": "yes"}, "verbose", "type", "must be true or false; got 'yes'"),
    ({"seed": 1, "label": 7}, "label", "type", "parameter 'label' must be a string; got 7"),
    ({"seed": 1, "label": "x" * 5000}, "label", "length", "at most 4096 characters, no NUL"),
]


@pytest.mark.parametrize(("values", "name", "rule", "message"), BAD_VALUES)
def test_bad_values_name_the_parameter_and_the_rule(
    values: dict[str, Any], name: str, rule: str, message: str
) -> None:
    with pytest.raises(Invalid) as caught:
        params.resolve(declared(), values)
    error = caught.value
    assert error.status == 422 and error.code == "invalid_parameter"
    assert message in error.message, error.message
    assert error.details == {"field": f"parameters.{name}", "parameter": name, "rule": rule}


def test_no_declaration_takes_no_parameters() -> None:
    with pytest.raises(Invalid) as caught:
        params.resolve([], {"x": 1})
    assert caught.value.message == "unknown parameter 'x' (the script declares no parameters)"
    with pytest.raises(Invalid) as caught:
        params.resolve([], [1])
    assert caught.value.message == "parameters must be a JSON object"
