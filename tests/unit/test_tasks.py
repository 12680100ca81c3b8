"""How background loops wait and stop: no cancel is lost, no stop hangs."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import pytest

from energyops_ext.tasks import cancel_and_wait, wait_event


async def _waiter_loop(event: asyncio.Event, wait: str) -> None:
    while True:
        if wait == "wait_for":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 10)
        else:
            await wait_event(event, 10)
        event.clear()


async def _cancel_as_the_event_is_set(wait: str) -> asyncio.Task[None]:
    event = asyncio.Event()
    task = asyncio.create_task(_waiter_loop(event, wait))
    for _ in range(3):
        await asyncio.sleep(0)  # the loop waits on the event now
    event.set()
    task.cancel()
    await asyncio.wait({task}, timeout=0.5)
    return task


async def test_a_cancel_arriving_as_the_event_is_set_is_not_lost() -> None:
    task = await _cancel_as_the_event_is_set("wait_event")
    assert task.cancelled()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for keeps the cancel from 3.12 on")
async def test_the_race_wait_event_is_there_for() -> None:
    # on Python 3.11 wait_for swallows this cancel and the loop goes on
    task = await _cancel_as_the_event_is_set("wait_for")
    try:
        assert not task.done()
    finally:
        await cancel_and_wait(task, recancel_s=0.01)
    assert task.cancelled()


async def test_wait_event_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 10) is True


async def test_a_task_that_swallows_its_first_cancel_is_cancelled_again() -> None:
    swallowed = 0

    async def swallows_once() -> None:
        nonlocal swallowed
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            swallowed += 1
        await asyncio.sleep(10)

    task = asyncio.create_task(swallows_once())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, None, recancel_s=0.01), 2)
    assert task.cancelled() and swallowed == 1


async def test_an_error_a_task_ended_with_is_raised() -> None:
    async def fails() -> None:
        raise ValueError("broken loop")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="broken loop"):
        await cancel_and_wait(task)
