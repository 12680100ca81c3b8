"""Background tasks of the services: how they wait and how they are stopped."""

from __future__ import annotations

import asyncio
from typing import Any

RECANCEL_S = 0.5


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` passes; True when it was set.

    Not ``asyncio.wait_for(event.wait(), t)``: on Python 3.11 a cancel that arrives as the
    event is set is swallowed there, and a service loop built on it never stops."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None, recancel_s: float = RECANCEL_S) -> None:
    """Cancel background tasks and wait until each has ended (``None`` entries are skipped).
    A task still running after ``recancel_s`` is cancelled again: a cancel can be swallowed
    (a library's ``wait_for`` racing it), and a stop must not hang on that. An exception a
    task ended with, other than its cancellation, is raised."""
    pending = {task for task in tasks if task is not None}
    for task in pending:
        task.cancel()
    ended = set(pending)
    while pending:
        _done, pending = await asyncio.wait(pending, timeout=recancel_s)
        for task in pending:
            task.cancel()
    for task in ended:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
