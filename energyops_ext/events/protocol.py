"""The WebSocket protocol as pure functions: client frames in, encoded server frames out.

Also the JSON codec every client payload goes through (socket frames here, request bodies in
``handlers.base``): ``decode_json`` refuses nesting past ``MAX_JSON_DEPTH`` before parsing
(the parser recurses) and numbers no float holds (NaN, Infinity, 1e400), naming the field;
``encode_json`` never writes NaN or Infinity, which no strict JSON parser reads.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from .types import is_topic

log = logging.getLogger(__name__)

MAX_TOPICS = 100
OPS = ("subscribe", "unsubscribe", "ping")
MAX_JSON_DEPTH = 32


class UnreadableJSON(ValueError):
    """A client payload that is not JSON the server accepts; ``message`` says why."""

    code = "invalid_json"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class JSONTooDeep(UnreadableJSON):
    code = "too_deep"


class NonFiniteNumber(UnreadableJSON):
    code = "non_finite_number"

    def __init__(self, path: str, literal: str) -> None:
        shown = literal if len(literal) <= 40 else literal[:40] + "\u2026"
        super().__init__(f"{path} must be a finite number; got {shown}")
        self.path = path


_BRACKET_OR_QUOTE = re.compile(r'[\[\]{}"]')
# The rest of a JSON string after its opening quote (possessive: no backtracking).
_STRING_REST = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_:\-]*")


def check_depth(text: str, max_depth: int, what: str) -> None:
    """Refuse ``text`` if its arrays and objects nest deeper than ``max_depth``: one linear
    scan that skips strings (brackets inside them nest nothing), no recursion. Malformed JSON
    is left for the parser to report."""
    if text.count("[") + text.count("{") <= max_depth:
        return
    depth, position = 0, 0
    while (found := _BRACKET_OR_QUOTE.search(text, position)) is not None:
        char, position = found.group(), found.end()
        if char == '"':
            rest = _STRING_REST.match(text, position)
            if rest is None:
                return  # an unterminated string: not JSON, and nothing after it nests
            position = rest.end()
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                raise JSONTooDeep(
                    f"{what} is nested more than {max_depth} levels deep; "
                    f"the limit is {max_depth} levels"
                )
        else:
            depth -= 1


class _NonFinite:
    """Where the parser met NaN, Infinity or a float literal past the float range."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def decode_json(raw: str | bytes, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a client payload (``what`` names it in messages: "request body", "frame")."""
    try:
        text = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw))
    except UnicodeDecodeError as exc:
        raise UnreadableJSON(f"{what} is not valid JSON: {exc}") from None
    check_depth(text, max_depth, what)
    found: list[_NonFinite] = []

    def non_finite(literal: str) -> _NonFinite:
        found.append(_NonFinite(literal))
        return found[-1]

    def number(literal: str) -> float | _NonFinite:
        value = float(literal)
        return value if math.isfinite(value) else non_finite(literal)

    try:
        value = json.loads(text, parse_constant=non_finite, parse_float=number)
    except (ValueError, RecursionError) as exc:
        raise UnreadableJSON(f"{what} is not valid JSON: {exc}") from None
    first = _first_non_finite(value, what) if found else None
    if first is not None:
        raise NonFiniteNumber(*first)
    return value


def _first_non_finite(value: Any, root: str) -> tuple[str, str] | None:
    """Path (``config.weights[2]``) and literal of the first non-finite number, in document
    order; an explicit stack, so depth costs no recursion. None when a repeated key replaced
    every one the parser met."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, _NonFinite):
            return path or root, item.literal
        if isinstance(item, dict):
            stack.extend((_key_path(path, k), v) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(item))))
    return None


def _key_path(path: str, key: str) -> str:
    if _NAME.fullmatch(key):
        return f"{path}.{key}" if path else key
    shown = key if len(key) <= 40 else key[:40] + "\u2026"
    return f"{path}[{json.dumps(shown, ensure_ascii=False)}]"


class BadFrame(ValueError):
    """A client frame the server cannot act on; answered with an ``error`` frame."""

    def __init__(self, message: str, code: str = "bad_frame") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Subscribe:
    topics: tuple[str, ...]
    since: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Unsubscribe:
    topics: tuple[str, ...]


@dataclass(frozen=True)
class Ping:
    pass


ClientOp = Subscribe | Unsubscribe | Ping


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_json(data: Any) -> str:
    """Compact JSON (dates as ISO 8601). A non-finite float, which a model's output can put
    in a stored run (``Objective value: 1e400``), is written as null."""
    try:
        return json.dumps(data, default=_json_default, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        if "Out of range float values" not in str(exc):
            raise
    log.warning("non-finite numbers in a response or frame were sent as null")
    return json.dumps(_finite(data), default=_json_default, separators=(",", ":"), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def encode_frame(topic: str | None, type: str, data: dict[str, Any]) -> bytes:
    """One server frame as UTF-8 JSON bytes, encoded once and written to every subscriber."""
    return encode_json({"topic": topic, "type": type, "data": data}).encode()


def error_frame(message: str, code: str = "bad_frame", **details: Any) -> bytes:
    return encode_frame(None, "error", {"code": code, "message": message, **details})


def _topics(frame: dict[str, Any]) -> tuple[str, ...]:
    topics = frame.get("topics")
    if not isinstance(topics, list) or not topics:
        raise BadFrame("topics must be a non-empty list of topic names", "bad_topics")
    if len(topics) > MAX_TOPICS:
        raise BadFrame(f"at most {MAX_TOPICS} topics per frame, got {len(topics)}", "bad_topics")
    bad = [t for t in topics if not is_topic(t)]
    if bad:
        raise BadFrame(
            f"unknown topic {bad[0]!r}: use runs, datasets, dashboard, notifications or run:<id>",
            "bad_topic",
        )
    return tuple(dict.fromkeys(topics))


def _since(frame: dict[str, Any], topics: tuple[str, ...]) -> dict[str, int]:
    since = frame.get("since", {})
    if since is None:
        return {}
    if not isinstance(since, dict):
        raise BadFrame('since must be an object like {"run:42": 1200}', "bad_since")
    result: dict[str, int] = {}
    for topic, seq in since.items():
        if topic not in topics:
            raise BadFrame(f"since names {topic!r}, which is not in topics", "bad_since")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise BadFrame(f"since[{topic!r}] must be an integer >= 0, got {seq!r}", "bad_since")
        result[topic] = seq
    return result


def parse_client_frame(raw: str | bytes) -> ClientOp:
    """Validate one client frame; raises ``BadFrame`` saying what is wrong."""
    try:
        frame = decode_json(raw, "frame")
    except UnreadableJSON as exc:
        raise BadFrame(exc.message, exc.code) from None
    if not isinstance(frame, dict):
        raise BadFrame("frame must be a JSON object with an op", "bad_frame")
    op = frame.get("op")
    if op not in OPS:
        raise BadFrame(f"unknown op {op!r}: use {', '.join(OPS)}", "unknown_op")
    if op == "ping":
        return Ping()
    topics = _topics(frame)
    if op == "unsubscribe":
        return Unsubscribe(topics)
    return Subscribe(topics, _since(frame, topics))
