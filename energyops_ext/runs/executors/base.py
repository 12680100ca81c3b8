"""The one seam between the run engine and a remote executor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

# told when the executor ended a run itself (killed or failed before it started)
OnEnded = Callable[[int], Awaitable[None]]


class Executor(Protocol):
    """Runs claimed runs somewhere else. The engine decides what starts (queue, priority,
    limits); the executor starts it and knows how many it has in flight."""

    name: str
    on_ended: OnEnded | None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ready(self) -> str | None:
        """None when runs can be handed over now, else why not (shown on queued runs)."""
        ...

    def in_flight(self) -> int:
        """Runs handed over and not yet finished, as far as this server knows."""
        ...

    async def submit(self, run_id: int) -> None: ...

    async def take_kill_requests(self) -> None:
        """End runs killed while handed over but not yet started."""
        ...

    def health(self) -> dict[str, Any]: ...
