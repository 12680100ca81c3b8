"""Typed parameters of scripts and notebooks: declared in the source, read with ``ast`` (never
by running the file), and run requests checked against them before a run is queued.

A script declares a module-level literal (``sdk.parameters(PARAMETERS)`` reads the values)::

    PARAMETERS = {
        "date": {"type": "date", "default": "latest", "input": "market-snapshot",
                 "help": "delivery day"},
        "capacity_mwh": {"type": "float", "default": 100.0, "min": 0, "max": 5000},
        "mode": {"type": "choice", "choices": ["lp", "milp"], "default": "milp"},
    }

A notebook declares them in its papermill parameters cell (the code cell tagged
``parameters``), one assignment per line, with a type hint and a trailing comment::

    date: str = "2025-01-01"  # delivery day; type: date; input: market-snapshot
    capacity_mw: float = 50.0  # plant capacity; bounds [0, 500]
    mode: str = "fast"  # solver mode; choices: fast, exact
    solver: Literal["highs", "cbc"] = "highs"

The comment is split on ``;``: ``bounds [lo, hi]``, ``min X``, ``max X``, ``choices: a, b``,
``type: date`` and ``input: KIND`` are directives, the rest is the help text. Types: ``date``,
``int``, ``float``, ``str``, ``bool``, ``choice``. A key without ``default`` (scripts) is
required. A date may default to ``"latest"``: the latest day with DAM prices when queued. A
date with ``input`` gets that dataset's rows of the day as an input file unless the run asks
for inputs of that kind itself.
"""

from __future__ import annotations

import ast
import io
import json
import math
import re
import tokenize
from dataclasses import dataclass
from datetime import date
from typing import Any

from ..db.models import DATASET_MODELS
from ..errors import Invalid

TYPES = ("date", "int", "float", "str", "bool", "choice")
KEYS = frozenset({"type", "default", "min", "max", "choices", "help", "input"})
DECLARATION = "PARAMETERS"
LATEST = "latest"
MAX_PARAMETERS = 100
MAX_NAME = 64
MAX_HELP = 500
MAX_STR = 4096
MAX_CHOICES = 100
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BOUNDS = re.compile(r"^bounds\s*\[\s*([^,\]]*)\s*,\s*([^\]]*)\s*\]$", re.I)
_ONE_BOUND = re.compile(r"^(min|max)\s*[:=]?\s*(\S+)$", re.I)
_DIRECTIVE = re.compile(r"^(choices|type|input)\s*:\s*(.*)$", re.I)


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    help: str | None = None
    input: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "required": self.required,
            "min": self.minimum,
            "max": self.maximum,
            "choices": list(self.choices) if self.choices is not None else None,
            "help": self.help,
            "input": self.input,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Parameter:
        choices = data.get("choices")
        return cls(
            name=data["name"],
            type=data["type"],
            default=data.get("default"),
            required=bool(data.get("required")),
            minimum=data.get("min"),
            maximum=data.get("max"),
            choices=tuple(choices) if choices is not None else None,
            help=data.get("help"),
            input=data.get("input"),
        )


class DeclarationError(ValueError):
    """A declaration that cannot be used; ``line`` is 1-based within its source."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


# --- values ---


def rule_error(name: str, rule: str, message: str) -> Invalid:
    return Invalid(
        message,
        code="invalid_parameter",
        details={"field": f"parameters.{name}", "parameter": name, "rule": rule},
    )


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def check_value(param: Parameter, value: Any) -> Any:
    """``value`` as the run will see it, or an Invalid naming the parameter and the rule."""
    name, kind = param.name, param.type
    if value is None:
        if param.required:
            raise rule_error(name, "required", f"parameter {name!r} is required")
        return None
    if kind == "bool":
        if not isinstance(value, bool):
            raise rule_error(
                name, "type", f"parameter {name!r} must be true or false; got {value!r}"
            )
        return value
    if kind in ("int", "float"):
        return _check_number(param, value)
    if kind == "date":
        return _check_date(param, value)
    if kind == "choice":
        assert param.choices is not None
        if isinstance(value, bool) or value not in param.choices:
            allowed = ", ".join(str(c) for c in param.choices)
            raise rule_error(
                name, "choices", f"parameter {name!r} must be one of {allowed}; got {value!r}"
            )
        return value
    if not isinstance(value, str):
        raise rule_error(name, "type", f"parameter {name!r} must be a string; got {value!r}")
    if len(value) > MAX_STR or "\x00" in value:
        raise rule_error(
            name, "length", f"parameter {name!r} must be at most {MAX_STR} characters, no NUL"
        )
    return value


def _check_number(param: Parameter, value: Any) -> int | float:
    name = param.name
    if param.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise rule_error(name, "type", f"parameter {name!r} must be an integer; got {value!r}")
        number: int | float = value
    else:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise rule_error(name, "type", f"parameter {name!r} must be a number; got {value!r}")
        if not math.isfinite(value):
            raise rule_error(
                name, "finite", f"parameter {name!r} must be a finite number; got {value}"
            )
        number = float(value)
    low, high = param.minimum, param.maximum
    if (low is not None and number < low) or (high is not None and number > high):
        if low is not None and high is not None:
            what = f"between {_number_text(low)} and {_number_text(high)}"
        elif low is not None:
            what = f"at least {_number_text(low)}"
        else:
            assert high is not None
            what = f"at most {_number_text(high)}"
        raise rule_error(name, "bounds", f"parameter {name!r} must be {what}; got {value}")
    return number


def _check_date(param: Parameter, value: Any) -> str:
    name = param.name
    if value == LATEST:
        return LATEST
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise rule_error(
            name, "date", f"parameter {name!r} must be a date (YYYY-MM-DD); got {value!r}"
        ) from None


def resolve(declared: list[Parameter], values: Any) -> dict[str, Any]:
    """The values of a run: every declared parameter, given or defaulted, each checked."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise Invalid(
            "parameters must be a JSON object",
            code="invalid_parameter",
            details={"field": "parameters"},
        )
    names = [p.name for p in declared]
    unknown = sorted(set(values) - set(names))
    if unknown:
        known = f"declared: {', '.join(names)}" if names else "the script declares no parameters"
        raise rule_error(
            unknown[0],
            "unknown",
            f"unknown parameter {unknown[0]!r} ({known})",
        )
    return {p.name: check_value(p, values.get(p.name, p.default)) for p in declared}


def defaults(declared: list[Parameter]) -> dict[str, Any]:
    return {p.name: p.default for p in declared}


def to_json(declared: list[Parameter]) -> list[dict[str, Any]]:
    return [p.to_json() for p in declared]


def from_json(data: list[dict[str, Any]] | None) -> list[Parameter]:
    return [Parameter.from_json(item) for item in data or []]


# --- declarations ---


def _make(
    name: str,
    kind: str,
    *,
    default: Any,
    required: bool,
    minimum: Any = None,
    maximum: Any = None,
    choices: Any = None,
    help_text: Any = None,
    input_kind: Any = None,
    line: int | None = None,
) -> Parameter:
    """A checked declaration (DeclarationError says what is wrong)."""

    def bad(message: str) -> DeclarationError:
        return DeclarationError(f"parameter {name!r}: {message}", line)

    if not isinstance(name, str) or not _NAME.match(name) or len(name) > MAX_NAME:
        raise DeclarationError(
            f"parameter name {name!r} must be an identifier of at most {MAX_NAME} characters",
            line,
        )
    if kind not in TYPES:
        raise bad(f"type must be one of {', '.join(TYPES)}; got {kind!r}")
    for label, bound in (("min", minimum), ("max", maximum)):
        if bound is None:
            continue
        if kind not in ("int", "float"):
            raise bad(f"{label} applies to int and float parameters only")
        if (
            isinstance(bound, bool)
            or not isinstance(bound, int | float)
            or not math.isfinite(bound)
        ):
            raise bad(f"{label} must be a finite number; got {bound!r}")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise bad(f"min {minimum} is above max {maximum}")
    options: tuple[Any, ...] | None = None
    if kind == "choice":
        if not isinstance(choices, list | tuple) or not choices or len(choices) > MAX_CHOICES:
            raise bad(f"a choice needs a list of 1 to {MAX_CHOICES} choices")
        if not all(isinstance(c, str | int | float) and not isinstance(c, bool) for c in choices):
            raise bad("choices must be strings or numbers")
        if len(set(choices)) != len(choices):
            raise bad("choices repeat a value")
        options = tuple(choices)
    elif choices is not None:
        raise bad("choices apply to choice parameters only")
    if help_text is not None and (not isinstance(help_text, str) or len(help_text) > MAX_HELP):
        raise bad(f"help must be a string of at most {MAX_HELP} characters")
    if input_kind is not None:
        if kind != "date":
            raise bad("input applies to date parameters only")
        if input_kind not in DATASET_MODELS:
            raise bad(f"input must be one of {', '.join(DATASET_MODELS)}; got {input_kind!r}")
    param = Parameter(
        name,
        kind,
        None,
        required,
        None if minimum is None else float(minimum),
        None if maximum is None else float(maximum),
        options,
        help_text or None,
        input_kind,
    )
    if not required and default is not None:
        try:
            default = check_value(param, default)
        except Invalid as exc:
            raise bad(f"the default does not fit: {exc.message}") from None
    return Parameter(
        name,
        kind,
        default,
        required,
        param.minimum,
        param.maximum,
        options,
        param.help,
        input_kind,
    )


def _check_count(params: list[Parameter]) -> list[Parameter]:
    if len(params) > MAX_PARAMETERS:
        raise DeclarationError(f"{len(params)} parameters; the limit is {MAX_PARAMETERS}")
    seen: set[str] = set()
    for param in params:
        if param.name in seen:
            raise DeclarationError(f"parameter {param.name!r} is declared twice")
        seen.add(param.name)
    return params


def script_parameters(source: str) -> list[Parameter]:
    """The module-level ``PARAMETERS = {...}`` literal of a script (none: no parameters)."""
    tree = ast.parse(source)
    found: ast.expr | None = None
    line = 0
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        if value is not None and any(
            isinstance(t, ast.Name) and t.id == DECLARATION for t in targets
        ):
            found, line = value, node.lineno
    if found is None:
        return []
    try:
        literal = ast.literal_eval(found)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise DeclarationError(
            f"{DECLARATION} must be a literal dict (no names, calls or expressions)", line
        ) from None
    if not isinstance(literal, dict):
        raise DeclarationError(f"{DECLARATION} must be a dict of name -> {{type, ...}}", line)
    params = []
    for name, spec in literal.items():
        if not isinstance(spec, dict):
            raise DeclarationError(f"parameter {name!r}: its declaration must be a dict", line)
        extra = sorted(set(spec) - KEYS, key=str)
        if extra:
            raise DeclarationError(
                f"parameter {name!r}: unknown keys {', '.join(map(str, extra))} "
                f"(allowed: {', '.join(sorted(KEYS))})",
                line,
            )
        params.append(
            _make(
                name,
                spec.get("type", ""),
                default=spec.get("default"),
                required="default" not in spec,
                minimum=spec.get("min"),
                maximum=spec.get("max"),
                choices=spec.get("choices"),
                help_text=spec.get("help"),
                input_kind=spec.get("input"),
                line=line,
            )
        )
    return _check_count(params)


# --- the notebook parameters cell ---

_ANNOTATIONS = {"str": "str", "int": "int", "float": "float", "bool": "bool", "date": "date"}


def _annotation_type(node: ast.expr | None) -> tuple[str | None, list[Any] | None]:
    """(type, choices) of a hint: str, int, float, bool, date, datetime.date, Literal[...],
    Optional[X] and X | None."""
    if node is None:
        return None, None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string hint
        try:
            return _annotation_type(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return "?", None
    if isinstance(node, ast.Name):
        return _ANNOTATIONS.get(node.id, "?"), None
    if isinstance(node, ast.Attribute):
        return ("date" if node.attr == "date" else "?"), None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        sides = [s for s in (node.left, node.right) if not _is_none(s)]
        return _annotation_type(sides[0]) if len(sides) == 1 else ("?", None)
    if isinstance(node, ast.Subscript):
        head = node.value.attr if isinstance(node.value, ast.Attribute) else None
        head = node.value.id if isinstance(node.value, ast.Name) else head
        if head == "Optional":
            return _annotation_type(node.slice)
        if head == "Literal":
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            try:
                return "choice", [ast.literal_eval(item) for item in items]
            except ValueError:
                return "?", None
    return "?", None


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _infer(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


def _number(text: str, line: int) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise DeclarationError(f"bound {text!r} is not a number", line) from None
    return value


def _comment_directives(comment: str, line: int) -> dict[str, Any]:
    found: dict[str, Any] = {"help": []}
    for part in comment.split(";"):
        part = part.strip()
        if not part:
            continue
        if bounds := _BOUNDS.match(part):
            found["min"], found["max"] = _number(bounds[1], line), _number(bounds[2], line)
        elif one := _ONE_BOUND.match(part):
            found[one[1].lower()] = _number(one[2], line)
        elif directive := _DIRECTIVE.match(part):
            key, value = directive[1].lower(), directive[2].strip()
            if key == "choices":
                found["choices"] = [c.strip() for c in value.split(",") if c.strip()]
            else:
                found[key] = value
        else:
            found["help"].append(part)
    found["help"] = "; ".join(found["help"]) or None
    return found


def _trailing_comments(source: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = token.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return comments


def _coerce_choices(choices: list[str], hinted: str | None) -> list[Any]:
    if hinted in ("int", "float"):
        try:
            return [int(c) if hinted == "int" else float(c) for c in choices]
        except ValueError:
            raise DeclarationError(f"choices {', '.join(choices)} are not {hinted}s") from None
    return choices


def cell_parameters(source: str) -> list[Parameter]:
    """The parameters of a papermill parameters cell (one assignment per parameter)."""
    tree = ast.parse(source)
    comments = _trailing_comments(source)
    params = []
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name, hint, value = node.target.id, node.annotation, node.value
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            name, hint, value = node.targets[0].id, None, node.value
        else:
            continue  # imports, comments, expressions: not parameters
        line = node.lineno
        if value is None:
            raise DeclarationError(f"parameter {name!r} needs a default value", line)
        try:
            default = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise DeclarationError(
                f"parameter {name!r}: the default must be a literal (a number, string, "
                "True/False or None)",
                line,
            ) from None
        hinted, choices = _annotation_type(hint)
        if hinted == "?":
            raise DeclarationError(
                f"parameter {name!r}: type hint {ast.unparse(hint) if hint else ''!r} is not "
                "one of str, int, float, bool, date, Literal[...]",
                line,
            )
        directives = _comment_directives(comments.get(node.end_lineno or line, ""), line)
        kind = directives.get("type") or hinted or ("str" if default is None else _infer(default))
        if directives.get("choices") is not None:
            choices = _coerce_choices(directives["choices"], hinted)
            kind = "choice"
        elif choices is not None:
            kind = "choice"
        if kind == "date" and isinstance(default, date):
            default = default.isoformat()
        params.append(
            _make(
                name,
                kind,
                default=default,
                required=False,
                minimum=directives.get("min"),
                maximum=directives.get("max"),
                choices=choices,
                help_text=directives["help"],
                input_kind=directives.get("input"),
                line=line,
            )
        )
    return _check_count(params)


def environment_value(values: dict[str, Any]) -> str:
    """ENERGYOPS_PARAMETERS: the validated values as compact JSON."""
    return json.dumps(values, separators=(",", ":"))
