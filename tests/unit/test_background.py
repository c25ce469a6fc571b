"""Stopping background tasks without losing the caller's own cancellation."""

from __future__ import annotations

import asyncio

import pytest

from service.background import cancel_and_wait


async def test_the_task_is_cancelled_and_awaited() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(forever())
    await started.wait()
    await cancel_and_wait(task)
    assert task.cancelled()
    await cancel_and_wait(None)  # nothing to stop is fine


async def test_a_cancelled_caller_stays_cancelled() -> None:
    release = asyncio.Event()
    stopping = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopping.set()
            await release.wait()  # cleanup that takes a while

    worker = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    caller = asyncio.create_task(cancel_and_wait(worker))
    await stopping.wait()
    caller.cancel()  # the caller is cancelled while it waits for the worker
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled()
