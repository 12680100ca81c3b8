"""WebSocket /events: authenticated and authorized (read) before the upgrade."""

from __future__ import annotations

import asyncio
from typing import Any

from tornado.websocket import WebSocketHandler

from ..errors import BadRequest
from ..events.session import ClientSession
from .base import EnergyOpsHandler, allow

MAX_CLIENT_FRAME_BYTES = 64 * 1024


class EventsSocket(EnergyOpsHandler, WebSocketHandler):
    """One client socket; everything it does is in ``ClientSession``."""

    session: ClientSession | None = None

    @property
    def ping_interval(self) -> float | None:
        return self.services.settings.ws_ping_interval_s or None

    @property
    def ping_timeout(self) -> float | None:
        return self.services.settings.ws_ping_interval_s or None

    @property
    def max_message_size(self) -> int:
        return MAX_CLIENT_FRAME_BYTES

    @allow("read")
    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            raise BadRequest(
                "WebSocket upgrade required: connect to this URL with a WebSocket client",
                code="websocket_required",
            )
        await WebSocketHandler.get(self, *args, **kwargs)

    def open(self, *args: str, **kwargs: str) -> None:
        # small frames must not wait for the client's delayed ACK (Nagle: ~40 ms stalls)
        self.set_nodelay(True)
        self.session = ClientSession(self.services.hub, self)

    def on_message(self, message: str | bytes) -> None:
        if self.session is not None:
            self.session.handle(message)

    def on_close(self) -> None:
        if self.session is not None:
            self.session.close()

    def send(self, frame: bytes) -> asyncio.Future[None]:
        """Transport: write one encoded text frame (the same bytes for every subscriber)."""
        return self.write_message(frame)


routes = [(r"/events", EventsSocket)]
