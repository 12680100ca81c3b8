"""The live event stream (WebSocket ``/energyops/api/events``), off the kernel's event loop.

With ipykernel 7, asyncio tasks started in a cell may stall once the cell finishes, so the
socket lives in its own thread (websocket-client, blocking). It reconnects with backoff and
re-subscribes with ``since`` for every run topic it has seen lines of, so no log line is lost
or repeated across a reconnect.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import websocket

log = logging.getLogger(__name__)

CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
OFFLINE = "offline"
CLOSED = "closed"

Event = dict[str, Any]
Listener = Callable[[Event], None]
StateListener = Callable[[str], None]


def ws_url(base_url: str) -> str:
    """``http://host:8888/base/`` → ``ws://host:8888/base/energyops/api/events``."""
    if base_url.startswith("https://"):
        scheme, rest = "wss://", base_url[len("https://") :]
    elif base_url.startswith("http://"):
        scheme, rest = "ws://", base_url[len("http://") :]
    else:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    return scheme + rest.rstrip("/") + "/energyops/api/events"


class SeqTracker:
    """Remembers the last log seq per run topic; drops lines already seen (replay overlap)."""

    def __init__(self, since: Mapping[str, int] | None = None) -> None:
        self.last: dict[str, int] = dict(since or {})
        # the stream's thread filters while a panel's thread may move a topic on
        self._lock = threading.Lock()

    def advance(self, topic: str, seq: int) -> None:
        """Lines up to ``seq`` of ``topic`` count as seen (never moves back)."""
        with self._lock:
            self.last[topic] = max(self.last.get(topic, 0), seq)

    def fresh(self, event: Event) -> Event | None:
        """``event`` with only unseen lines (None if nothing is left), other events as they are."""
        if event.get("type") != "run.log":
            return event
        topic = str(event.get("topic", ""))
        data = event.get("data") or {}
        with self._lock:
            last = self.last.get(topic, 0)
            lines = [line for line in data.get("lines", []) if int(line.get("seq", 0)) > last]
            if not lines:
                return None
            self.last[topic] = max(int(line["seq"]) for line in lines)
        return {**event, "data": {**data, "lines": lines}}


class ContiguousLines:
    """Orders the lines of one run log: lines come from a REST page read, a replay and the
    live stream, in any order and overlapping; ``add`` hands back only the lines that now
    follow on from the last one handed back (seq ``after``+1, +2, …), each once. A line past
    a gap waits until the gap is filled; ``gap()`` says which seqs are still missing."""

    def __init__(self, after: int = 0, max_waiting: int = 100_000) -> None:
        self.last = after
        self.max_waiting = max_waiting
        self.skipped = 0
        self._waiting: dict[int, Mapping[str, Any]] = {}

    def add(self, lines: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        for line in lines:
            seq = int(line.get("seq", 0))
            if seq > self.last and len(self._waiting) < self.max_waiting:
                self._waiting.setdefault(seq, line)
        ready: list[Mapping[str, Any]] = []
        while self.last + 1 in self._waiting:
            self.last += 1
            ready.append(self._waiting.pop(self.last))
        return ready

    def gap(self) -> tuple[int, int] | None:
        """(first, last) missing seq before the lines that wait, or None if none wait."""
        if not self._waiting:
            return None
        return self.last + 1, min(self._waiting) - 1

    def skip(self, through: int) -> list[Mapping[str, Any]]:
        """Give up on the seqs up to ``through`` (they no longer exist anywhere); returns the
        lines that follow on from there."""
        self.skipped += max(0, through - self.last)
        self.last = max(self.last, through)
        for seq in [s for s in self._waiting if s <= through]:
            del self._waiting[seq]
        return self.add(())

    @property
    def waiting(self) -> int:
        return len(self._waiting)


class EventStream:
    """Subscribed topics, listeners called from the stream's thread, and a connection state:
    ``connecting`` → ``connected``; ``reconnecting`` after a drop, ``offline`` when several
    attempts in a row failed (it keeps trying); ``closed`` after ``close()``."""

    ping_interval = 20.0
    max_backoff = 10.0
    offline_after = 3

    def __init__(
        self,
        base_url: str,
        token: str,
        topics: Iterable[str] = (),
        *,
        since: Mapping[str, int] | None = None,
        keep: int = 10_000,
    ) -> None:
        self.url = ws_url(base_url)
        self.token = token
        self.topics: set[str] = set(topics)
        self._counts: dict[str, int] = dict.fromkeys(self.topics, 1)
        self.seq = SeqTracker(since)
        self.state = CONNECTING
        self.reconnects = 0
        self._listeners: list[Listener] = []
        self._state_listeners: list[StateListener] = []
        self._queue: deque[Event] = deque(maxlen=keep)
        self._ready = threading.Condition()
        self._lock = threading.Lock()
        self._socket: websocket.WebSocket | None = None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="energyops-events", daemon=True)

    # --- public ---

    def start(self) -> EventStream:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            if self._socket is not None:
                with contextlib.suppress(OSError):
                    self._socket.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self._set_state(CLOSED)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_state_listener(self, listener: StateListener) -> None:
        self._state_listeners.append(listener)
        listener(self.state)

    def subscribe(self, topics: Iterable[str], since: Mapping[str, int] | None = None) -> None:
        """Subscribe (counted: panels share the stream, and a topic stays subscribed until
        each ``subscribe`` of it had its ``unsubscribe``). A topic already subscribed is asked
        for again only when ``since`` names it (a replay after that seq)."""
        since = dict(since or {})
        wanted = []
        with self._lock:
            for topic in topics:
                if self._counts.get(topic, 0) == 0 or topic in since:
                    wanted.append(topic)
                self._counts[topic] = self._counts.get(topic, 0) + 1
                self.topics.add(topic)
        for topic, seq in since.items():
            self.seq.advance(topic, seq)
        if wanted:
            self._send(self._subscribe_frame(wanted))

    def unsubscribe(self, topics: Iterable[str]) -> None:
        gone = []
        with self._lock:
            for topic in topics:
                count = self._counts.get(topic, 0) - 1
                if count > 0:
                    self._counts[topic] = count
                    continue
                self._counts.pop(topic, None)
                if topic in self.topics:
                    self.topics.discard(topic)
                    gone.append(topic)
        if gone:
            self._send({"op": "unsubscribe", "topics": gone})

    def wait_connected(self, timeout: float = 10.0) -> bool:
        with self._ready:
            return self._ready.wait_for(lambda: self.state == CONNECTED, timeout)

    def get(self, timeout: float = 10.0) -> Event | None:
        """The next event kept for readers (oldest first), or None after ``timeout``."""
        with self._ready:
            if not self._ready.wait_for(lambda: bool(self._queue), timeout):
                return None
            return self._queue.popleft()

    def iter(self, timeout: float = 10.0) -> Iterator[Event]:
        """Events until none arrives for ``timeout`` seconds."""
        while (event := self.get(timeout)) is not None:
            yield event

    # --- the thread ---

    def _run(self) -> None:
        failures = 0
        backoff = 0.5
        while not self._closing.is_set():
            try:
                self._connect()
                failures, backoff = 0, 0.5
                self._receive()
            except (OSError, websocket.WebSocketException) as exc:
                log.debug("event stream %s: %s", self.url, exc)
            if self._closing.is_set():
                break
            failures += 1
            self.reconnects += 1
            self._set_state(OFFLINE if failures >= self.offline_after else RECONNECTING)
            self._closing.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def _connect(self) -> None:
        header = [f"Authorization: token {self.token}"] if self.token else []
        sock = websocket.create_connection(self.url, timeout=10, header=header)
        sock.settimeout(1.0)
        with self._lock:
            self._socket = sock
        if self.topics:
            self._send(self._subscribe_frame(sorted(self.topics)))
        self._set_state(CONNECTED)

    def _receive(self) -> None:
        sock = self._socket
        assert sock is not None
        next_ping = time.monotonic() + self.ping_interval
        try:
            while not self._closing.is_set():
                if time.monotonic() >= next_ping:
                    self._send({"op": "ping"})
                    next_ping = time.monotonic() + self.ping_interval
                try:
                    raw = sock.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                if not raw:
                    return
                self._dispatch(raw)
        finally:
            with self._lock:
                self._socket = None
            with contextlib.suppress(OSError):
                sock.close()

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        fresh = self.seq.fresh(event)
        if fresh is None:
            return
        with self._ready:
            self._queue.append(fresh)
            self._ready.notify_all()
        for listener in list(self._listeners):
            try:
                listener(fresh)
            except Exception:
                log.exception("event listener failed on %s", fresh.get("type"))

    def _subscribe_frame(self, topics: Iterable[str]) -> dict[str, Any]:
        topics = list(topics)
        since = {t: self.seq.last[t] for t in topics if t in self.seq.last}
        frame: dict[str, Any] = {"op": "subscribe", "topics": topics}
        if since:
            frame["since"] = since
        return frame

    def _send(self, frame: dict[str, Any]) -> None:
        with self._lock:
            sock = self._socket
            if sock is None:
                return
            try:
                sock.send(json.dumps(frame))
            except (OSError, websocket.WebSocketException) as exc:
                log.debug("event stream send failed: %s", exc)

    def _set_state(self, state: str) -> None:
        with self._ready:
            if self.state == CLOSED:
                return
            self.state = state
            self._ready.notify_all()
        for listener in list(self._state_listeners):
            try:
                listener(state)
            except Exception:
                log.exception("state listener failed")
