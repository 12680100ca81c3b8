"""The event hub: services publish events from any thread; subscribers receive them on the loop.

Each event is encoded once and the same bytes are queued for every subscriber of its topic.
Events of a registered ``Stream`` (run.log on run:<id>) are coalesced per topic: the first one
after a quiet spell goes out on the next loop turn, later ones at most ``window(topic)`` after
the previous flush, in frames of at most ``batch_max_items`` items. The hub knows topics, not
meanings.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .protocol import encode_frame
from .stream import Batch, Item, Stream, chunks
from .subscriber import CLOSE_GOING_AWAY, CLOSE_TOO_SLOW, Subscriber, Transport
from .types import Event

Listener = Callable[[Event], None]
# told when a topic gains its first subscriber (True) or loses its last (False)
TopicWatcher = Callable[[str, bool], None]

log = logging.getLogger(__name__)

LISTENERS_PER_WINDOW = 5


@dataclass
class Pending:
    """Items of one stream topic waiting for the next flush."""

    stream: Stream
    extra: dict[str, Any]
    items: list[Item]


@dataclass
class HubStats:
    frames_encoded: int = 0
    stream_frames: int = 0
    stream_items: int = 0
    dropped_slow: int = 0


class EventHub:
    def __init__(
        self,
        *,
        queue_frames: int = 256,
        batch_window_s: float = 0.005,
        max_batch_window_s: float = 0.05,
        batch_max_items: int = 1000,
    ) -> None:
        self.queue_frames = queue_frames
        self.batch_window_s = batch_window_s
        self.max_batch_window_s = max(batch_window_s, max_batch_window_s)
        self.batch_max_items = batch_max_items
        self.stats = HubStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._listeners: list[Listener] = []
        self._streams: list[Stream] = []
        self._topics: dict[str, set[Subscriber]] = {}
        self._subscribers: set[Subscriber] = set()
        self._pending: dict[str, Pending] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = 0.0
        self._listened: dict[str, asyncio.Event] = {}
        self._watchers: list[TopicWatcher] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def add_topic_watcher(self, watcher: TopicWatcher) -> None:
        self._watchers.append(watcher)

    def _watch(self, topic: str, listened: bool) -> None:
        for watcher in list(self._watchers):
            try:
                watcher(topic, listened)
            except Exception:
                log.exception("topic watcher failed on %s", topic)

    def topics(self) -> list[str]:
        """Topics with at least one subscriber here."""
        return list(self._topics)

    def add_stream(self, stream: Stream) -> None:
        self._streams = [s for s in self._streams if s.prefix != stream.prefix] + [stream]

    def stream_for(self, topic: str) -> Stream | None:
        return next((s for s in self._streams if s.matches(topic)), None)

    # --- subscribers (on the loop) ---

    def connect(self, transport: Transport) -> Subscriber:
        subscriber = Subscriber(self, transport, self.queue_frames)
        self._subscribers.add(subscriber)
        return subscriber

    def attach(self, subscriber: Subscriber, topic: str) -> None:
        if subscriber.closed:
            return
        subscribers = self._topics.setdefault(topic, set())
        first = not subscribers
        subscribers.add(subscriber)
        if first:
            self._watch(topic, True)
        waiter = self._listened.pop(topic, None)
        if waiter is not None:
            waiter.set()

    def detach(self, subscriber: Subscriber, topic: str) -> None:
        subscribers = self._topics.get(topic)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._topics[topic]
                self._pending.pop(topic, None)
                self._watch(topic, False)

    def forget(self, subscriber: Subscriber) -> None:
        if subscriber.close_code == CLOSE_TOO_SLOW:
            self.stats.dropped_slow += 1
        for topic in list(subscriber.topics):
            self.detach(subscriber, topic)
        self._subscribers.discard(subscriber)

    def listeners_of(self, topic: str) -> int:
        return len(self._topics.get(topic, ()))

    def listened(self, topic: str) -> bool:
        return bool(self._topics.get(topic))

    async def until_listened(self, topic: str) -> None:
        while not self.listened(topic):
            waiter = self._listened.setdefault(topic, asyncio.Event())
            await waiter.wait()

    @property
    def connections(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        """Server stop: close every socket (1001) and forget pending batches."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._pending.clear()
        for subscriber in list(self._subscribers):
            subscriber.drop(CLOSE_GOING_AWAY, "server stopping")

    # --- publishing ---

    def publish(self, event: Event) -> None:
        """Deliver ``event``; safe to call from any thread (delivery happens on the loop)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self._deliver(event)
        else:
            loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed on %s %s", event.topic, event.type)
        stream = self.stream_for(event.topic)
        if stream is not None and event.type == stream.type:
            self._add_items(stream, event)
            return
        self._flush()
        subscribers = self._topics.get(event.topic)
        if not subscribers:
            return
        frame = encode_frame(event.topic, event.type, event.data)
        self.stats.frames_encoded += 1
        for subscriber in list(subscribers):
            subscriber.push(event.topic, frame)

    def _add_items(self, stream: Stream, event: Event) -> None:
        items = event.data.get(stream.key)
        if not items or event.topic not in self._topics:
            return
        pending = self._pending.get(event.topic)
        if pending is None:
            pending = self._pending[event.topic] = Pending(stream, stream.extra(event.topic), [])
        pending.items.extend(items)
        if len(pending.items) >= self.batch_max_items:
            self._flush_topic(event.topic)
        elif self._flush_handle is None:
            assert self._loop is not None
            delay = self._last_flush + self.window(event.topic) - self._loop.time()
            if delay > 0:
                self._flush_handle = self._loop.call_later(delay, self._flush)
            else:
                self._flush_handle = self._loop.call_soon(self._flush)

    def window(self, topic: str) -> float:
        """How long a topic's items may wait: ``batch_window_s`` for a few listeners, longer
        for many (up to ``max_batch_window_s``), since every frame costs a write per listener."""
        scale = max(1.0, self.listeners_of(topic) / LISTENERS_PER_WINDOW)
        return min(self.max_batch_window_s, self.batch_window_s * scale)

    def _flush(self) -> None:
        """Send every pending batch (also before any other event, to keep the order)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._pending:
            return
        assert self._loop is not None
        self._last_flush = self._loop.time()
        for topic in list(self._pending):
            self._flush_topic(topic)

    def _flush_topic(self, topic: str) -> None:
        pending = self._pending.pop(topic)
        subscribers = self._topics.get(topic)
        if not subscribers:
            return
        for items in chunks(pending.items, self.batch_max_items):
            batch = Batch.of(pending.stream, topic, items, pending.extra)
            self.stats.frames_encoded += 1
            self.stats.stream_frames += 1
            self.stats.stream_items += len(batch.items)
            for subscriber in list(subscribers):
                subscriber.push_batch(batch)
