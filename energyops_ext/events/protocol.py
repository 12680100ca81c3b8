"""The WebSocket protocol as pure functions: client frames in, encoded server frames out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from .types import is_topic

MAX_TOPICS = 100
OPS = ("subscribe", "unsubscribe", "ping")


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


def encode_frame(topic: str | None, type: str, data: dict[str, Any]) -> bytes:
    """One server frame as UTF-8 JSON bytes, encoded once and written to every subscriber."""
    frame = {"topic": topic, "type": type, "data": data}
    return json.dumps(frame, default=_json_default, separators=(",", ":")).encode()


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
        frame = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadFrame(f"frame is not valid JSON: {exc}", "invalid_json") from None
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
