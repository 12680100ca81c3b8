"""A small client of /energyops/api/events for the API tests, and an in-memory run log that
keeps the run engine's contract (lines are stored before they are published; the backlog
returns every line after a seq) for tests of the hub over real sockets."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

from tornado.websocket import WebSocketClientConnection

from energyops_ext.events import Event, EventHub, run_topic

Frame = dict[str, Any]


class EventsClient:
    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn

    async def send(self, frame: Frame | str) -> None:
        await self.conn.write_message(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, within: float = 10) -> Frame | None:
        message = await asyncio.wait_for(self.conn.read_message(), within)
        if message is None:
            return None
        frame: Frame = json.loads(message)
        return frame

    async def until(self, match: Callable[[Frame], bool], within: float = 10) -> list[Frame]:
        """Frames received up to and including the first that ``match``es."""
        seen: list[Frame] = []
        async with asyncio.timeout(within):
            while True:
                frame = await self.recv(within)
                assert frame is not None, f"closed ({self.conn.close_code}) after {seen[-3:]}"
                seen.append(frame)
                if match(frame):
                    return seen

    async def subscribe(self, *topics: str, since: dict[str, int] | None = None) -> list[Frame]:
        """Subscribe and wait for the ack; returns the frames before it (the replay)."""
        frame: Frame = {"op": "subscribe", "topics": list(topics)}
        if since is not None:
            frame["since"] = since
        await self.send(frame)
        frames = await self.until(lambda f: f["type"] in ("subscribed", "error"))
        assert frames[-1]["type"] == "subscribed", frames[-1]
        return frames[:-1]

    async def collect_lines(
        self, topic: str, last_seq: int, within: float = 30, seqs: list[int] | None = None
    ) -> list[int]:
        """Read frames until line ``last_seq`` of ``topic`` arrived; returns every seq seen."""
        seqs = [] if seqs is None else seqs
        async with asyncio.timeout(within):
            while not seqs or seqs[-1] < last_seq:
                frame = await self.recv(within)
                assert frame is not None, f"closed ({self.conn.close_code}) at {seqs[-1:]}"
                seqs.extend(line_seqs(frame, topic))
        return seqs

    def close(self) -> None:
        self.conn.close()


def line_seqs(frame: Frame, topic: str) -> list[int]:
    if frame.get("topic") != topic or frame.get("type") != "run.log":
        return []
    return [line["seq"] for line in frame["data"]["lines"]]


def all_seqs(frames: list[Frame], topic: str) -> list[int]:
    return [seq for frame in frames for seq in line_seqs(frame, topic)]


class MemoryRunLog:
    """Lines of one run held in memory, written from a thread like the run engine's reader."""

    def __init__(self, hub: EventHub, run_id: int, text_size: int = 40) -> None:
        self.hub = hub
        self.run_id = run_id
        self.lines: list[Frame] = []
        self.filler = "x" * text_size
        self._lock = threading.Lock()

    def write(self, count: int) -> None:
        with self._lock:
            start = len(self.lines) + 1
            chunk = [
                {
                    "seq": seq,
                    "stream": "stdout",
                    "level": "info",
                    "ts": "2025-01-01T00:00:00+00:00",
                    "text": f"line {seq} {self.filler}",
                }
                for seq in range(start, start + count)
            ]
            self.lines.extend(chunk)
        self.hub.publish(Event(run_topic(self.run_id), "run.log", {"lines": chunk}))

    def write_in_thread(self, total: int, chunk: int, pause_s: float = 0.0) -> threading.Thread:
        def work() -> None:
            for _ in range(0, total, chunk):
                self.write(chunk)
                if pause_s:
                    threading.Event().wait(pause_s)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        return thread

    async def backlog(self, run_id: int, after: int, limit: int | None = None) -> list[Frame]:
        def read() -> list[Frame]:
            with self._lock:
                rest = self.lines[after:]
            return rest[:limit] if limit else rest

        return await asyncio.to_thread(read)
