"""One client's conversation over the event socket: parse its frames, act, answer.

Nothing here knows Tornado: the socket is a ``Transport`` (send bytes, close with a code).
A malformed frame is answered with an ``error`` frame and the socket stays open.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import EnergyOpsError
from .hub import EventHub
from .protocol import (
    BadFrame,
    Ping,
    Subscribe,
    Unsubscribe,
    encode_frame,
    error_frame,
    parse_client_frame,
)
from .subscriber import Subscriber, Transport

log = logging.getLogger(__name__)

PONG = encode_frame(None, "pong", {})


class ClientSession:
    def __init__(self, hub: EventHub, transport: Transport) -> None:
        self.subscriber: Subscriber = hub.connect(transport)
        self._tasks: set[asyncio.Task[None]] = set()

    def handle(self, raw: str | bytes) -> None:
        """Act on one client frame; never waits (subscriptions run as tasks, in order)."""
        try:
            op = parse_client_frame(raw)
        except BadFrame as exc:
            self.subscriber.enqueue(error_frame(exc.message, exc.code))
            return
        if isinstance(op, Ping):
            self.subscriber.enqueue(PONG)
            return
        task = asyncio.get_running_loop().create_task(self._apply(op))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _apply(self, op: Subscribe | Unsubscribe) -> None:
        subscriber = self.subscriber
        try:
            if isinstance(op, Subscribe):
                replayed = await subscriber.subscribe(op.topics, op.since)
                ack = {"topics": list(op.topics), "replayed": replayed}
                subscriber.enqueue(encode_frame(None, "subscribed", ack))
            else:
                await subscriber.unsubscribe(op.topics)
                subscriber.enqueue(encode_frame(None, "unsubscribed", {"topics": list(op.topics)}))
        except BadFrame as exc:
            subscriber.enqueue(error_frame(exc.message, exc.code))
        except EnergyOpsError as exc:
            subscriber.enqueue(error_frame(exc.message, exc.code, status=exc.status))
        except Exception:
            log.exception("event socket operation failed: %r", op)
            subscriber.enqueue(error_frame("internal error; see the server log", "internal_error"))

    def close(self) -> None:
        """The socket closed: free the subscriptions and stop pending work."""
        self.subscriber.disconnect()
        for task in list(self._tasks):
            task.cancel()
