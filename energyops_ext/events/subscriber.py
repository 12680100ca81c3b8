"""One connected client: its topics, a bounded queue of encoded frames and a writer task.

The hub hands frames to ``push``/``push_batch``, which never wait: a client whose queue is full
is dropped (close code 1013) and may come back with ``since``. Only this client's own work (its
writer, its replay) ever waits for its socket.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Protocol

from .protocol import BadFrame
from .stream import Batch, Stream, chunks

if TYPE_CHECKING:
    from .hub import EventHub

CLOSE_TOO_SLOW = 1013
CLOSE_GOING_AWAY = 1001
CLOSE_WRITE_FAILED = 1011
IN_FLIGHT = 8
REPLAY_PAGE = 10_000
TOO_SLOW = "subscriber too slow: more than {} frames queued; reconnect with since"


class Transport(Protocol):
    """The socket under a subscriber (the WebSocket handler, or a test double)."""

    def send(self, frame: bytes) -> asyncio.Future[None]: ...

    def close(self, code: int, reason: str) -> None: ...


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


async def _written(future: asyncio.Future[None]) -> None:
    """Wait for a write without cancelling it if this subscriber's writer is cancelled
    (the socket's own bookkeeping expects its write futures to finish)."""
    if not future.done():
        await asyncio.wait({future})
    if not future.cancelled() and future.exception() is not None:
        raise future.exception()  # type: ignore[misc]


class Subscriber:
    def __init__(self, hub: EventHub, transport: Transport, queue_frames: int) -> None:
        self.hub = hub
        self.transport = transport
        self.limit = max(2, queue_frames)
        self.topics: set[str] = set()
        self.closed = False
        self.close_code: int | None = None
        self.frames_sent = 0
        self._queue: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._replaying: dict[str, list[Batch | bytes]] = {}
        self._overflows: dict[str, int] = {}
        self._last_seq: dict[str, int] = {}
        self._ops = asyncio.Lock()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    # --- delivery from the hub: never waits ---

    def push(self, topic: str, frame: bytes) -> None:
        buffer = self._replaying.get(topic)
        if buffer is None:
            self.enqueue(frame)
        elif len(buffer) < self.limit:
            buffer.append(frame)
        else:
            self._buffer_full(topic, buffer, frame)

    def push_batch(self, batch: Batch) -> None:
        buffer = self._replaying.get(batch.topic)
        if buffer is None:
            self._send_batch(batch)
        elif len(buffer) < self.limit:
            buffer.append(batch)
        else:
            self._buffer_full(batch.topic, buffer, batch)

    def _buffer_full(self, topic: str, buffer: list[Batch | bytes], entry: Batch | bytes) -> None:
        """A replay outlasted the buffer: forget buffered items (the next fetch has them)."""
        buffer[:] = [e for e in buffer if not isinstance(e, Batch)]
        self._overflows[topic] = self._overflows.get(topic, 0) + 1
        if len(buffer) >= self.limit:
            self.drop(CLOSE_TOO_SLOW, TOO_SLOW.format(self.limit))
        elif not isinstance(entry, Batch):
            buffer.append(entry)

    def _send_batch(self, batch: Batch) -> None:
        fresh = batch.after(self._last_seq.get(batch.topic, -1))
        if fresh is not None:
            self._last_seq[batch.topic] = fresh.last_seq
            self.enqueue(fresh.frame)

    def enqueue(self, frame: bytes) -> None:
        if self.closed:
            return
        if len(self._queue) >= self.limit:
            self.drop(CLOSE_TOO_SLOW, TOO_SLOW.format(self.limit))
            return
        self._queue.append(frame)
        if len(self._queue) > self.limit // 2:
            self._room.clear()
        self._wake.set()

    # --- client operations, one at a time ---

    async def subscribe(self, topics: tuple[str, ...], since: dict[str, int]) -> dict[str, int]:
        """Attach ``topics``; replay the ones in ``since``. Returns items replayed per topic."""
        async with self._ops:
            streams: dict[str, Stream] = {}
            for topic in since:
                stream = self.hub.stream_for(topic)
                if stream is None:
                    raise BadFrame(f"{topic} cannot be replayed: it is not a log", "no_replay")
                streams[topic] = stream
            for topic in topics:
                stream = self.hub.stream_for(topic)
                if stream is not None and stream.prepare is not None:
                    await stream.prepare(topic)
            for topic in topics:
                if topic in since:
                    self._replaying[topic] = []
                    self._last_seq[topic] = since[topic]
                self.topics.add(topic)
                self.hub.attach(self, topic)
            replayed = {}
            for topic, seq in since.items():
                replayed[topic] = await self._replay(streams[topic], topic, seq)
            return replayed

    async def unsubscribe(self, topics: tuple[str, ...]) -> None:
        async with self._ops:
            for topic in topics:
                self.topics.discard(topic)
                self._last_seq.pop(topic, None)
                self.hub.detach(self, topic)

    async def _replay(self, stream: Stream, topic: str, after: int) -> int:
        """Send every item after ``after``, then the live items buffered meanwhile, deduped;
        the topic turns live only once its buffer is empty. If the buffer overflowed, its
        items are fetched again instead."""
        sent = 0
        try:
            while not self.closed:
                overflows = self._overflows.get(topic, 0)
                sent += await self._send_backlog(stream, topic, self._last_seq[topic])
                if self._overflows.get(topic, 0) != overflows:
                    continue
                if await self._drain(topic, overflows):
                    break
        except BaseException:
            self._replaying.pop(topic, None)
            self.topics.discard(topic)
            self.hub.detach(self, topic)
            raise
        self._replaying.pop(topic, None)
        return sent

    async def _send_backlog(self, stream: Stream, topic: str, after: int) -> int:
        sent = 0
        while not self.closed:
            items = await stream.fetch(topic, after, REPLAY_PAGE)
            fresh = [item for item in items if int(item["seq"]) > after]
            for chunk in chunks(fresh, self.hub.batch_max_items):
                await self._room.wait()
                self.enqueue(Batch.of(stream, topic, chunk, stream.extra(topic)).frame)
                after = int(chunk[-1]["seq"])
                self._last_seq[topic] = after
                sent += len(chunk)
            if len(items) < REPLAY_PAGE or not fresh:
                break
        return sent

    async def _drain(self, topic: str, overflows: int) -> bool:
        """Send the buffered live entries; False if the buffer overflowed meanwhile."""
        buffer = self._replaying.get(topic, [])
        while buffer and not self.closed:
            await self._room.wait()
            if self._overflows.get(topic, 0) != overflows:
                return False
            entry = buffer.pop(0)
            if isinstance(entry, Batch):
                self._send_batch(entry)
            else:
                self.enqueue(entry)
        return self._overflows.get(topic, 0) == overflows

    # --- the socket ---

    async def _write_loop(self) -> None:
        inflight: deque[asyncio.Future[None]] = deque()
        try:
            while True:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                frame = self._queue.popleft()
                if len(self._queue) <= self.limit // 2:
                    self._room.set()
                future = self.transport.send(frame)
                future.add_done_callback(_consume)
                inflight.append(future)
                self.frames_sent += 1
                while len(inflight) >= IN_FLIGHT or (inflight and inflight[0].done()):
                    await _written(inflight.popleft())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.drop(CLOSE_WRITE_FAILED, f"write failed: {type(exc).__name__}")

    def drop(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` and free everything this subscriber holds."""
        if self.closed:
            return
        self.close_code = code
        self.disconnect()
        self.transport.close(code, reason)

    def disconnect(self) -> None:
        """The socket is gone: leave every topic, stop the writer. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self.hub.forget(self)
        self.topics.clear()
        self._queue.clear()
        self._replaying.clear()
        self._room.set()
        self._writer.cancel()
