"""Background tasks of the service: stopping them cleanly."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has finished.

    The task's own CancelledError is expected and absorbed; but if the caller is being
    cancelled while it waits, that cancellation is passed on rather than swallowed (the
    common `suppress(CancelledError)` idiom loses it).
    """
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
