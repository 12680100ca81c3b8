"""Streams: events whose data carries ordered items with a ``seq`` (run.log lines).

The hub coalesces a stream's events per topic into batches and lets a subscriber replay a topic
from a seq. It knows only the prefix, the type and where the items are, not what they mean.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .protocol import encode_frame
from .types import RUN_TOPIC_PREFIX, run_id_of

Item = dict[str, Any]
# fetch(topic, after_seq, limit) -> every item with seq > after_seq, in order, at most limit
Fetch = Callable[[str, int, int], Awaitable[list[Item]]]
LogBacklog = Callable[[int, int, int | None], Awaitable[list[Item]]]
# awaited before a subscriber attaches to a topic of the stream
Prepare = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Stream:
    prefix: str
    type: str
    fetch: Fetch
    key: str = "lines"
    describe: Callable[[str], dict[str, Any]] | None = None
    prepare: Prepare | None = None

    def matches(self, topic: str) -> bool:
        return topic.startswith(self.prefix)

    def extra(self, topic: str) -> dict[str, Any]:
        """Data sent beside the items of ``topic`` (e.g. its run_id), live and replayed."""
        return self.describe(topic) if self.describe is not None else {}


@dataclass(frozen=True)
class Batch:
    """Consecutive items of one topic, encoded once for every subscriber."""

    stream: Stream
    topic: str
    items: list[Item]
    frame: bytes
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, stream: Stream, topic: str, items: list[Item], extra: dict[str, Any] | None = None
    ) -> Batch:
        extra = extra or {}
        data = {**extra, stream.key: items}
        return cls(stream, topic, items, encode_frame(topic, stream.type, data), extra)

    @property
    def first_seq(self) -> int:
        return int(self.items[0]["seq"])

    @property
    def last_seq(self) -> int:
        return int(self.items[-1]["seq"])

    def after(self, seq: int) -> Batch | None:
        """This batch without the items a subscriber already has (seq <= ``seq``)."""
        if self.first_seq > seq:
            return self
        rest = [item for item in self.items if int(item["seq"]) > seq]
        return Batch.of(self.stream, self.topic, rest, self.extra) if rest else None


def chunks(items: list[Item], size: int) -> list[list[Item]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_log_stream(log_backlog: LogBacklog, prepare: Prepare | None = None) -> Stream:
    """run.log on run:<id>, replayed from the run engine's ``log_backlog(run_id, after, limit)``;
    ``prepare`` readies the live lines of a run that runs on another server."""

    async def fetch(topic: str, after: int, limit: int) -> list[Item]:
        return await log_backlog(run_id_of(topic), after, limit)

    return Stream(
        RUN_TOPIC_PREFIX,
        "run.log",
        fetch,
        describe=lambda topic: {"run_id": run_id_of(topic)},
        prepare=prepare,
    )
